"""What the proxy remembers about each admitted call (keyed by Call-ID).

Enough to feed admission (media, both media addresses), to tell caller from callee
(the caller's From tag), to revert a refused or failed re-INVITE, and to end the call
itself with a BYE each way when the data plane reports its media idle (both legs'
addresses, tags, route sets and CSeq numbers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ryu_apps.core.admission import ServiceLevel
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

from .message import Request
from .transaction import Peer


class CallPhase(str, enum.Enum):
    EARLY = "early"            # admitted, INVITE not yet answered
    CONFIRMED = "confirmed"    # 2xx seen: a dialog exists
    ENDED = "ended"            # released (BYE, CANCEL, failure, timer, media idle)


@dataclass
class Leg:
    """One side of the dialog as the proxy must address it to send that side a BYE."""

    header: str                       # the party's own From (caller) or To (callee) header, with tag
    contact: str | None = None        # its Contact URI (remote target)
    route: tuple[str, ...] = ()       # Route values from the proxy toward it
    cseq: int = 0                     # highest CSeq it sent


@dataclass
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
    admitted_at: float = 0.0
    aggregate_id: str = ""
    upstream: Peer | None = None      # where the initial INVITE came from (stray 2xx go only there)
    invite_branch: str = ""           # the branch we gave the forwarded INVITE

    def media_pair(self) -> tuple[MediaEndpoint, MediaEndpoint] | None:
        """Both media addresses when known and not yet given to admission."""
        if self.caller_media is None or self.callee_media is None:
            return None
        pair = (self.caller_media, self.callee_media)
        return None if pair == self.attached else pair

    def is_caller(self, from_tag: str | None) -> bool:
        return from_tag == self.caller_tag


@dataclass
class InviteContext:
    """Carried by an INVITE's client transaction until its final response."""

    call_id: str
    initial: bool
    offerer_is_caller: bool = True
    offer_endpoint: MediaEndpoint | None = None
    previous_media: MediaSpec | None = None      # re-INVITE: what to revert to if it fails
    request: Request | None = field(default=None, repr=False)
