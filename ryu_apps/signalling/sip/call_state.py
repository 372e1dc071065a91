"""What the proxy remembers about each admitted call (keyed by Call-ID): SIP dialog state only.

Whether the call is alive and what it holds is admission's business (the core's call
lifecycle); the proxy keeps what SIP needs: the caller's From tag (caller or callee?),
both legs' addresses, tags, route sets and CSeq numbers (to end the call itself with a
BYE each way), the media it told admission about, the admission's ``serial`` (a release
notification for another serial is not about this call), and its deadlines (ACK of the
2xx, session expiry, longest call). :meth:`CallRecord.to_dialog` and
:meth:`CallRecord.from_dialog` turn the dialog into plain data kept with the call by
the controller, so a call set up before a restart can still be ended with BYEs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from ryu_apps.core.admission import ServiceLevel
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.serialize import media_from_dict, media_to_dict

from .transaction import Event, Peer, Send

DIALOG_VERSION = 1
RESTORED_CSEQ_MARGIN = 100     # a restored leg's CSeq jumps ahead: requests after the save are unknown


class CallPhase(str, enum.Enum):
    EARLY = "early"            # admitted, INVITE not yet answered
    CONFIRMED = "confirmed"    # 2xx seen: a dialog exists
    ENDED = "ended"            # released (BYE, CANCEL, failure, timer, media idle, controller)


@dataclass(slots=True)
class Leg:
    """One side of the dialog as the proxy must address it to send that side a BYE."""

    header: str                       # the party's own From (caller) or To (callee) header, with tag
    contact: str | None = None        # its Contact URI (remote target)
    route: tuple[str, ...] = ()       # Route values from the proxy toward it
    cseq: int = 0                     # highest CSeq it sent

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "contact": self.contact, "route": list(self.route), "cseq": self.cseq}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Leg":
        return cls(str(data["header"]), None if data.get("contact") is None else str(data["contact"]),
                   tuple(str(r) for r in data.get("route", ())), int(data.get("cseq", 0)) + RESTORED_CSEQ_MARGIN)


@dataclass(eq=False, slots=True)  # identity: a record is a timer owner
class CallRecord:
    call_id: str
    caller_community: str
    callee_community: str
    level: ServiceLevel
    media: MediaSpec
    caller_tag: str
    caller: Leg
    callee: Leg
    caller_media: MediaEndpoint | None = None
    callee_media: MediaEndpoint | None = None
    attached: tuple[MediaEndpoint, MediaEndpoint] | None = None
    phase: CallPhase = CallPhase.EARLY
    transport: str = "udp"
    admitted_at: float = 0.0          # the proxy's clock when admission answered
    aggregate_id: str = ""
    serial: int = 0                   # admission's name for this admission of the call id
    upstream: Peer | None = None      # where the initial INVITE came from (stray 2xx go only there)
    invite_branch: str = ""           # the branch we gave the forwarded INVITE
    invite_cseq: int = 0
    session_expires: int | None = None   # RFC 4028 interval (s) when negotiated
    ended_cause: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def media_pair(self) -> tuple[MediaEndpoint, MediaEndpoint] | None:
        """Both media addresses when known and not yet given to admission."""
        if self.caller_media is None or self.callee_media is None:
            return None
        pair = (self.caller_media, self.callee_media)
        return None if pair == self.attached else pair

    def is_caller(self, from_tag: str | None) -> bool:
        return from_tag == self.caller_tag

    def on_timer(self, name: str, now: float) -> tuple[list[Send], Event | None]:
        """``ack``: no ACK for the 2xx; ``session``: no refresh in time; ``lifetime``: too long."""
        if self.phase is CallPhase.ENDED:
            return [], None
        return [], {"ack": Event.ACK_TIMEOUT, "session": Event.SESSION_EXPIRED,
                    "lifetime": Event.LIFETIME}.get(name)

    # --- plain data, kept with the call by the controller ----------------------------

    def to_dialog(self) -> dict[str, Any]:
        """What it takes to end this call with BYEs after a restart (JSON-ready)."""
        return {
            "v": DIALOG_VERSION, "protocol": "sip", "call_id": self.call_id, "serial": self.serial,
            "caller_community": self.caller_community, "callee_community": self.callee_community,
            "level": self.level.label, "media": media_to_dict(self.media), "caller_tag": self.caller_tag,
            "caller": self.caller.to_dict(), "callee": self.callee.to_dict(), "phase": self.phase.value,
            "transport": self.transport, "aggregate_id": self.aggregate_id,
            "caller_media": _endpoint_dict(self.caller_media), "callee_media": _endpoint_dict(self.callee_media),
            "session_expires": self.session_expires,
        }

    @classmethod
    def from_dialog(cls, data: Mapping[str, Any], now: float) -> "CallRecord":
        """The record again, from :meth:`to_dialog` output; ``now`` on the proxy's clock.
        Raises ``ValueError`` (or ``KeyError``/``TypeError``) for data it cannot read."""
        if data.get("v") != DIALOG_VERSION or data.get("protocol") != "sip":
            raise ValueError(f"not a SIP dialog of version {DIALOG_VERSION}: {dict(data)!r:.120}")
        caller_media, callee_media = _endpoint(data.get("caller_media")), _endpoint(data.get("callee_media"))
        record = cls(
            str(data["call_id"]), str(data["caller_community"]), str(data["callee_community"]),
            ServiceLevel.parse(str(data["level"])), media_from_dict(dict(data["media"])), str(data["caller_tag"]),
            Leg.from_dict(data["caller"]), Leg.from_dict(data["callee"]), caller_media, callee_media,
            phase=CallPhase(str(data.get("phase", "confirmed"))), transport=str(data.get("transport", "udp")),
            admitted_at=now, aggregate_id=str(data.get("aggregate_id", "")), serial=int(data.get("serial", 0)),
            session_expires=None if data.get("session_expires") is None else int(data["session_expires"]))
        if caller_media is not None and callee_media is not None:
            record.attached = (caller_media, callee_media)
        return record


def _endpoint_dict(endpoint: MediaEndpoint | None) -> dict[str, Any] | None:
    return None if endpoint is None else {"ip": endpoint.ip, "port": endpoint.port}


def _endpoint(data: Any) -> MediaEndpoint | None:
    return None if data is None else MediaEndpoint(str(data["ip"]), int(data["port"]))


@dataclass(slots=True)
class InviteContext:
    """Carried by an INVITE's client transaction until its final response."""

    call_id: str
    initial: bool
    offerer_is_caller: bool = True
    offer_endpoint: MediaEndpoint | None = None
    previous_media: MediaSpec | None = None      # re-INVITE: what to revert to if it fails
    record: CallRecord | None = field(default=None, repr=False)   # initial INVITE: its call, even once ended
