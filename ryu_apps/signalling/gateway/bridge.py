"""The gateway's record of one bridged call and what every part of it shares.

:class:`Bridge` holds both legs of one call (the H.323 leg's connection and call
reference, the SIP leg's dialog) and its :class:`Phase`; :class:`GatewaySettings` the
gateway's addresses, routes, profiles and timers; :class:`Directory` the communities by
address, domain and number. The helpers below build and read the small H.225.0 values
both legs use.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Protocol, Union

from ryu_apps.core.calls import MediaEndpoint

from ..h323.actions import Perform, StreamClose, StreamOpen, StreamSend
from ..h323.h245 import H245Session
from ..h323.media import Channel
from ..sip.message import NameAddr, Request, Response, parse_name_addr
from ..sip.transaction import Peer, Send
from .media_map import Offer, Proposal, SdpMedia
from .profile import Profile

Action = Union[Send, StreamOpen, StreamSend, StreamClose, Perform]
Then = Callable[["Bridge", Any, float], None]

NORMAL, TEMPORARY_FAILURE, TIMER_EXPIRY, NO_ROUTE, UNALLOCATED = 16, 41, 102, 3, 1
INVALID_IE, BEARER_NOT_IMPLEMENTED, NO_ANSWER = 100, 65, 19
TRUSTED = object()            # the "decision" for a call our own proxy or gatekeeper admitted


class Directory(Protocol):
    def by_address(self, ip: str) -> str | None: ...

    def by_domain(self, domain: str) -> str | None: ...

    def by_number(self, digits: str) -> str | None: ...


@dataclass(frozen=True)
class GatewaySettings:
    sip_host: str                                   # the gateway's SIP address (Via, Contact)
    sip_port: int
    h323_host: str                                  # its H.225 call-signalling address
    h323_port: int
    sip_pbx: Mapping[str, Peer] = field(default_factory=dict)          # SIP community -> its PBX
    h323_pbx: Mapping[str, tuple[str, int]] = field(default_factory=dict)   # H.323 community -> its PBX
    domains: Mapping[str, str] = field(default_factory=dict)           # community -> domain for URIs
    profiles: Mapping[str, Profile] = field(default_factory=dict)      # SIP community -> its profile
    t1: float = 0.5                                 # SIP retransmission base
    t2: float = 4.0
    t303: float = 4.0                               # Setup sent, nothing back
    no_answer_s: float = 180.0                      # ringing without an answer (T301 / timer C)
    h245_timeout_s: float = 10.0                    # no fastStart: media not settled by then -> cause 102
    control_timeout_s: float = 5.0                  # deferred admission (REST mode): no answer -> cause 41
    trusted: frozenset[str] = frozenset()           # the MAM's own proxy / gatekeeper: their calls are admitted


class Phase(str, Enum):
    SETUP = "setup"
    PROCEEDING = "proceeding"
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(eq=False)
class T38State:
    """A fax switch-over under way or done (:mod:`.t38`)."""

    from_sip: bool                                # the SIP party's re-INVITE asked (else the H.323 party)
    request: Request | None = None                # that re-INVITE, answered when both addresses are known
    source: Peer | None = None
    sip_address: MediaEndpoint | None = None      # where the SIP party receives T.38
    kinds: tuple[str, ...] = ()                   # the re-INVITE's m= lines (the answer mirrors them)
    h323_address: MediaEndpoint | None = None     # where the H.323 party receives T.38 (its OLCAck)
    our_number: int | None = None                 # our T.38 channel
    their_number: int | None = None               # the H.323 party's T.38 channel, not yet acked
    cseq: int | None = None                       # our re-INVITE (the H.323 party asked)


@dataclass(eq=False)
class Bridge:
    call_id: str                     # admission's id, both legs
    guid: bytes
    h323_caller: bool                # True: H.323 -> SIP
    caller_community: str
    callee_community: str
    conn: int                        # the H.323 leg's TCP connection
    crv: int
    sip_peer: Peer
    sip_call_id: str
    local_tag: str
    phase: Phase = Phase.SETUP
    admitted: bool = False
    released: bool = False
    proposals: tuple[Proposal, ...] = ()          # H.323 caller's fastStart
    offer: Offer | None = None
    caller_media: MediaEndpoint | None = None
    callee_media: MediaEndpoint | None = None
    attached: tuple[MediaEndpoint, MediaEndpoint] | None = None
    faststart_sent: bool = False
    h323_open: bool = True                        # False until the S->H leg's connection is asked for
    admitted_at: float = 0.0
    codec: tuple[str, int] | None = None          # the codec both sides settled on (name, ptime)
    trusted: bool = False                         # came through our own proxy/gatekeeper: admitted there
    # SIP leg
    invite: Request | None = None                 # H->S: ours; S->H: the caller's
    remote_tag: str | None = None
    remote_target: str | None = None
    local_cseq: int = 1
    last_response: bytes | None = None            # S->H: our latest response to the INVITE
    final_sent: bool = False
    acked: bool = False
    pending: dict[str, Request] = field(default_factory=dict)    # our non-INVITE requests by branch
    retransmit_at: float = 0.0
    interval: float = 0.5
    sip_payload_types: dict[str, str] = field(default_factory=dict)
    # tunnelled H.245 (no fastStart on the H.323 leg; late offer on the SIP leg): see .h245_leg
    h245: H245Session | None = None
    h245_queue: list[bytes] = field(default_factory=list)        # to tunnel in the next H.225.0 message
    our_channel: int | None = None                # our OpenLogicalChannel (the SIP party transmits)
    their_channels: dict[int, Channel] = field(default_factory=dict)   # the H.323 party's, not yet acked
    sip_offer: SdpMedia | None = None             # H->S: the SIP callee's offer in its 200
    answer_200: Response | None = None            # H->S: that 200, its ACK (with our answer) owed
    late_ack: Request | None = None               # H->S: the ACK sent, for retransmitted 200s
    rseq: int = 0                                 # H->S: the last reliable 18x's RSeq (RFC 3262), PRACKed
    prack_rseq: int | None = None                 # H->S: the reliable 18x whose offer our PRACK answers
    early_answered: bool = False                  # H->S: offer/answer done in the PRACK; the 200 has none
    early_sdp: bytes = b""                        # H->S: an unreliable 18x's SDP (the 200 must repeat it)
    early_wanted: bool = False                    # S->H: the callee said in-band information (PI 8)
    sip_answer: bytes = b""                       # S->H: our SDP answer once sent (183), repeated in the 200
    connect_seen: bool = False                    # S->H: Connect arrived, our 200 waits for the media
    telephone_event_pt: int | None = None         # RFC 4733 payload type both sides agreed on
    t38: T38State | None = None                   # fax switch-over (H.245 calls only)
    h245_conn: int | None = None                  # H.245 on its own TCP connection (no tunnelling)
    setup_h245: list[bytes] = field(default_factory=list)   # S->H: what the Setup tunnelled (resent if refused)


    @property
    def answering(self) -> bool:
        """S->H with an SDP offer from the SIP caller: the gateway's SDP is an answer."""
        return not self.h323_caller and self.offer is not None and self.offer.receive is not None

    @property
    def tunnelling(self) -> bool:
        """H.245 tunnelled in this call's H.225.0 messages (no fastStart, no H.245 connection)."""
        return self.h245 is not None and self.h245_conn is None


def now_id(now: float) -> int:
    return int(now * 1000) % 4_000_000_000 + 1


def guid_of(fields: dict[str, Any]) -> bytes | None:
    ident = fields.get("callIdentifier")
    guid = ident.get("guid") if isinstance(ident, dict) else None
    if not isinstance(guid, bytes) or len(guid) != 16:
        guid = fields.get("conferenceID")
    return guid if isinstance(guid, bytes) and len(guid) == 16 else None


def dialled(aliases: Any) -> str | None:
    if not isinstance(aliases, list):
        return None
    for alias in aliases:
        if isinstance(alias, tuple) and len(alias) == 2 and alias[0] == "dialledDigits" and isinstance(alias[1], str):
            return alias[1]
    return None


def alias(user: str) -> tuple[str, str]:
    digits = user.lstrip("+")
    if digits and all(c in "0123456789#*," for c in digits) and len(digits) <= 128:
        return ("dialledDigits", digits)
    return ("h323-ID", user[:256] or "mam-gw")


def gateway_type() -> dict[str, Any]:
    return {"gateway": {}, "mc": False, "undefinedNode": False}


def address_of(value: Any) -> tuple[str, int] | None:
    """An H.225.0 TransportAddress (``ipAddress``) -> (host, port), else None."""
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] == "ipAddress" and isinstance(value[1], dict)):
        return None
    ip, port = value[1].get("ip"), value[1].get("port")
    if not isinstance(ip, bytes) or len(ip) != 4 or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return str(ipaddress.IPv4Address(ip)), port


def packed(host: str) -> bytes:
    return ipaddress.IPv4Address(host).packed


def strip_tag(value: str) -> str:
    addr = parse_name_addr(value)
    return NameAddr(addr.display, addr.uri, tuple(p for p in addr.params if p[0] != "tag"), addr.bracketed).render()
