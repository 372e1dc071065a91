"""The SIP <-> H.323 interworking core: a sans-IO back-to-back user agent.

One :class:`Bridge` per call joins an H.323 leg (Q.931/H.225.0 over one TCP connection,
fastStart media) and a SIP leg (a UA dialog over UDP). Bytes, connection events and
``now`` go in; :class:`~..sip.transaction.Send` (SIP datagrams) and
:mod:`..h323.actions` stream actions come out; timers through :meth:`Gateway.next_timer`
and :meth:`Gateway.handle_timer`.

Admission: exactly one ``admit`` per bridged call, under one call id
(``gw-<32 hex digits of the H.225 callIdentifier>``) covering both legs, and exactly one
``release`` whichever side or timer ends it (:meth:`Gateway._finish` is the only place
that releases). When admission ends a call itself (:meth:`Gateway.call_ended`), both
legs are cleared and nothing is released twice.

Mapping (docs/gateway.md has the ladders):

=============================  =====================================
H.323                          SIP
=============================  =====================================
Setup + fastStart              INVITE + SDP offer
CallProceeding                 100 Trying
Alerting                       180 Ringing
Progress (fastStart)           183 Session Progress + SDP (early media)
Connect (fastStart)            200 OK + SDP, ACK
ReleaseComplete (cause N)      BYE / CANCEL / final >= 300, ``Reason: Q.850;cause=N``
=============================  =====================================

Q.850 causes and SIP statuses map per RFC 3398 (:mod:`.causes`); a Reason header's
Q.850 cause wins over the status. Not here yet: H.245 without fastStart (no media ->
488 / cause 65), DTMF, T.38, SIP late offer, re-INVITE (answered 488), TCP for SIP.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Protocol, Union

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, SignallingProtocol
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

from ..call_control import Admit, AttachMedia, CallControl, ControlOp, Modify, Release
from ..h323.actions import Perform, StreamClose, StreamOpen, StreamSend
from ..h323.asn1 import Asn1Error, decode_h245, decode_uu, encode_h245, encode_uu
from ..h323.q931 import (IE, SPEECH_BEARER, MessageType, Q931, Q931Error, TpktFramer, cause_ie, number_ie, parse,
                         serialize as q931_bytes, tpkt)
from ..h323.ras import PROTOCOL_ID
from ..h323.reasons import REJECTIONS as H323_REJECTIONS, cause_of_release, release_reason
from ..sip.errors import ParseError
from ..sip.ids import IdSource
from ..sip.message import (Message, NameAddr, Partial, Request, Response, build_response, parse_message, parse_name_addr, parse_uri,
                           serialize)
from ..sip.calls import REJECTIONS as SIP_REJECTIONS
from ..sip.transaction import Peer, Send
from . import normalise
from .causes import phrase, q850_of_reason, q850_of_status, reason_header, status_of_q850
from .media_map import (MediaError, Offer, Proposal, accepted_of, answer_faststart, build_sdp, faststart_offer,
                        offer_of, parse_faststart, read_sdp)
from .profile import GENERIC, Profile

log = logging.getLogger(__name__)

Action = Union[Send, StreamOpen, StreamSend, StreamClose, Perform]
Then = Callable[["Bridge", Any, float], None]

NORMAL, TEMPORARY_FAILURE, TIMER_EXPIRY, NO_ROUTE, UNALLOCATED = 16, 41, 102, 3, 1
INVALID_IE, BEARER_NOT_IMPLEMENTED, NO_ANSWER = 100, 65, 19


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
    control_timeout_s: float = 5.0                  # deferred admission (REST mode): no answer -> cause 41
    trusted: frozenset[str] = frozenset()           # the MAM's own proxy / gatekeeper: their calls are admitted


class Phase(str, Enum):
    SETUP = "setup"
    PROCEEDING = "proceeding"
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


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


class Gateway:
    """The interworking core. Never raises out of an entry point."""

    def __init__(self, settings: GatewaySettings, control: CallControl, directory: Directory, ids: IdSource, *,
                 defer: bool = False) -> None:
        self.settings = settings
        self.control = control
        self.defer = defer                               # admission answered later (Perform / performed)
        self._pending: dict[int, tuple[Bridge, Then]] = {}
        self._ignored: set[int] = set()                  # tickets of modify/attach/release: no continuation
        self._ticket = 0
        self.directory = directory
        self.ids = ids
        self.bridges: dict[str, Bridge] = {}             # admission call id -> bridge
        self._by_sip: dict[str, Bridge] = {}             # SIP Call-ID -> bridge
        self._by_conn: dict[int, Bridge] = {}
        self._framers: dict[int, TpktFramer] = {}
        self._peers: dict[int, tuple[str, int]] = {}
        self._next_conn = 1 << 20
        self._timers: dict[tuple[str, str], float] = {}  # (call id, name) -> deadline
        self._out: list[Action] = []
        self.stats: dict[str, int] = {}
        self.internal_errors = 0

    # --- entry points ---------------------------------------------------------------------

    def h323_accept(self, peer: tuple[str, int]) -> int:
        """A TCP connection to the gateway's H.225 port was accepted: its id."""
        conn = self._new_conn()
        self._framers[conn] = TpktFramer()
        self._peers[conn] = peer
        return conn

    def h323_data(self, conn: int, data: bytes, now: float) -> list[Action]:
        return self._run(self._h323_data, conn, data, now)

    def h323_closed(self, conn: int, now: float) -> list[Action]:
        """The connection closed, was reset, or could not be opened."""
        return self._run(self._h323_closed, conn, now)

    def sip_receive(self, data: bytes, source: Peer, now: float) -> list[Action]:
        return self._run(self._sip_receive, data, source, now)

    def call_ended(self, call_id: str, cause: str, now: float) -> list[Action]:
        """Admission ended the call (preempted, aggregate deleted, media idle, REST)."""
        return self._run(self._admission_ended, call_id, cause, now)

    def reconcile(self, live: set[str], asked_at: float, now: float) -> list[Action]:
        """REST mode: the call ids the controller held at ``asked_at``; admitted calls of ours
        from before then that it no longer holds were ended by it: clear both legs."""
        return self._run(self._reconcile, live, asked_at, now)

    def _reconcile(self, live: set[str], asked_at: float, now: float) -> None:
        for bridge in list(self.bridges.values()):
            if bridge.admitted and not bridge.released and bridge.admitted_at <= asked_at \
                    and bridge.call_id not in live and bridge.phase is not Phase.ENDED:
                self._count("controller-ended")
                self._admission_ended(bridge.call_id, "released by the controller", now)

    def performed(self, ticket: int, result: Any, now: float) -> list[Action]:
        """Deferred mode: the answer (a Decision, None, or the exception) to a Perform."""
        return self._run(self._performed, ticket, result, now)

    def next_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[Action]:
        return self._run(self._timers_due, now)

    def _run(self, handler: Callable[..., None], *args: Any) -> list[Action]:
        self._out = []
        try:
            handler(*args)
        except Exception:  # noqa: BLE001 - the gateway must outlive its own bugs
            self.internal_errors += 1
            log.exception("gateway failed in %s", getattr(handler, "__name__", handler))
        out, self._out = self._out, []
        return out

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def _new_conn(self) -> int:
        self._next_conn += 1
        return self._next_conn

    # --- H.323 side -------------------------------------------------------------------------

    def _h323_data(self, conn: int, data: bytes, now: float) -> None:
        framer = self._framers.get(conn)
        if framer is None:
            return
        for payload in framer.feed(data):
            try:
                message = parse(payload)
            except Q931Error as error:
                self._count("q931-malformed")
                log.debug("malformed Q.931 on %d: %s", conn, error)
                continue
            self._h323_message(conn, message, now)
        if framer.broken:
            self._count("tpkt-broken")
            self._out.append(StreamClose(conn))
            self._h323_closed(conn, now)

    def _uu_pdu(self, message: Q931) -> dict[str, Any] | None:
        raw = message.user_user
        if raw is None:
            return None
        try:
            pdu = decode_uu(raw)["h323-uu-pdu"]
        except (Asn1Error, KeyError, TypeError):
            self._count("uuie-undecodable")
            return None
        return pdu if isinstance(pdu, dict) else None

    def _uu_body(self, message: Q931, pdu: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
        pdu = self._uu_pdu(message) if pdu is None else pdu
        body = None if pdu is None else pdu.get("h323-message-body")
        if isinstance(body, tuple) and len(body) == 2 and isinstance(body[1], dict):
            return body[0], body[1]
        return None

    def _h323_message(self, conn: int, message: Q931, now: float) -> None:
        bridge = self._by_conn.get(conn)
        if message.message_type == MessageType.SETUP and bridge is None:
            self._setup(conn, message, now)
            return
        if bridge is None or message.call_ref != bridge.crv:
            self._count("q931-unknown-call")
            return
        kind = message.message_type
        if kind == MessageType.RELEASE_COMPLETE:
            cause = message.cause if message.cause is not None else NORMAL
            self._end(bridge, cause, f"h323: {'caller' if bridge.h323_caller else 'callee'} ReleaseComplete", now,
                      from_h323=True)
            return
        pdu = self._uu_pdu(message)
        controls = None if pdu is None else pdu.get("h245Control")
        if isinstance(controls, list) and controls:
            self._h245_in(bridge, controls, now)
        if bridge.h323_caller:
            return                        # H->S: the caller's Facility, Information ... are not carried over
        body = self._uu_body(message, pdu)
        fields = body[1] if body is not None else {}
        if kind == MessageType.ALERTING and bridge.phase in (Phase.SETUP, Phase.PROCEEDING):
            self._answer_media(bridge, fields)
            self._respond_invite(bridge, 180, now, with_sdp=False)
            bridge.phase = Phase.RINGING
            self._arm(bridge, "no-answer", now + self.settings.no_answer_s)
            self._disarm(bridge, "t303")
        elif kind == MessageType.CALL_PROCEEDING and bridge.phase is Phase.SETUP:
            bridge.phase = Phase.PROCEEDING
            self._disarm(bridge, "t303")
            self._arm(bridge, "no-answer", now + self.settings.no_answer_s)
        elif kind == MessageType.PROGRESS and bridge.phase in (Phase.SETUP, Phase.PROCEEDING, Phase.RINGING):
            self._disarm(bridge, "t303")
            if self._answer_media(bridge, fields):
                self._respond_invite(bridge, 183, now, with_sdp=True)
        elif kind == MessageType.CONNECT and bridge.phase is not Phase.CONNECTED:
            self._answer_media(bridge, fields)
            if bridge.callee_media is None or bridge.offer is None:
                self._end(bridge, BEARER_NOT_IMPLEMENTED, "h323: Connect without fastStart media", now)
                return
            self._disarm(bridge, "t303", "no-answer")
            bridge.phase = Phase.CONNECTED
            self._respond_invite(bridge, 200, now, with_sdp=True)
            self._arm(bridge, "ack", now + 64 * self.settings.t1)

    def _answer_media(self, bridge: Bridge, fields: dict[str, Any]) -> bool:
        """S->H: the callee's accepted fastStart channels (if any) -> callee media."""
        elements = fields.get("fastStart")
        if not isinstance(elements, list) or not elements:
            return bridge.callee_media is not None
        try:
            spec, receive = accepted_of(parse_faststart(elements))
        except MediaError:
            self._count("faststart-undecodable")
            return bridge.callee_media is not None
        if spec is not None and receive is not None and bridge.offer is not None:
            bridge.callee_media = receive
            bridge.offer = Offer(((spec.codec, spec.ptime_ms),), bridge.offer.receive)
            bridge.codec = (spec.codec, spec.ptime_ms)
            self._attach(bridge)
            return True
        return bridge.callee_media is not None

    def _setup(self, conn: int, message: Q931, now: float) -> None:
        self._count("h323-setups")
        body = self._uu_body(message)
        if body is None or body[0] != "setup":
            self._h323_refuse(conn, message.call_ref, b"", INVALID_IE)
            return
        fields = body[1]
        guid = _guid(fields)
        if guid is None:
            self._h323_refuse(conn, message.call_ref, b"", INVALID_IE)
            return
        call_id = "gw-" + guid.hex()
        if call_id in self.bridges:
            self._count("setup-duplicate")
            return
        called = message.called_number or _dialled(fields.get("destinationAddress"))
        calling = message.calling_number or _dialled(fields.get("sourceAddress"))
        self._send_h323(conn, message.call_ref, True, MessageType.CALL_PROCEEDING, ("callProceeding", {
            "protocolIdentifier": PROTOCOL_ID, "destinationInfo": _gateway_type(),
            "callIdentifier": {"guid": guid}}))
        peer = self._peers.get(conn, ("", 0))
        trusted = peer[0] in self.settings.trusted         # relayed by our gatekeeper: admitted there
        caller = self.directory.by_address(peer[0]) or ("" if trusted else None)
        callee = self.directory.by_number(called) if called else None
        if caller is None or callee is None or not called:
            self._h323_refuse(conn, message.call_ref, guid, UNALLOCATED if caller is not None else 21)
            return
        sip_peer = self.settings.sip_pbx.get(callee)
        if sip_peer is None:
            self._h323_refuse(conn, message.call_ref, guid, NO_ROUTE)
            return
        try:
            proposals = parse_faststart(fields.get("fastStart") or [])
        except MediaError:
            self._count("faststart-undecodable")
            proposals = []
        offer = offer_of(proposals)
        if not offer.codecs or offer.receive is None:
            self._h323_refuse(conn, message.call_ref, guid, BEARER_NOT_IMPLEMENTED)   # no fastStart: not yet
            return
        sip_call_id = f"{self.ids('call-id', call_id)}@{self.settings.sip_host}"
        bridge = Bridge(call_id, guid, True, caller, callee, conn, message.call_ref, sip_peer, sip_call_id,
                        self.ids("tag", call_id), proposals=tuple(proposals), offer=offer, caller_media=offer.receive,
                        trusted=trusted)
        domain = self.settings.domains.get(callee, sip_peer.host)
        number = "+" + called.lstrip("+")                 # it matched e164_prefixes: an E.164 number
        if calling and calling.lstrip("+").isdigit() and self.directory.by_number(calling) is not None:
            calling = "+" + calling.lstrip("+")
        uri = f"sip:{number}@{domain}"
        sdp = build_sdp(offer.receive, offer.codecs, now_id(now),
                        telephone_event_pt=None)
        headers: list[tuple[str, str]] = [
            ("via", self._via(self.ids("branch", call_id, "invite"))),
            ("max-forwards", "70"),
            ("from", f"<sip:{calling or 'anonymous'}@{self.settings.sip_host}>;tag={bridge.local_tag}"),
            ("to", f"<{uri}>"), ("call-id", sip_call_id), ("cseq", "1 INVITE"),
            ("contact", f"<sip:gw@{self.settings.sip_host}:{self.settings.sip_port}>"),
            ("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"),
        ]
        if calling:
            headers.append(("p-asserted-identity", f"<sip:{calling}@{self.settings.sip_host}>"))
        headers.append(("content-type", "application/sdp"))
        invite = Request("INVITE", uri, tuple(headers), sdp)
        self._register(bridge)

        def decided(bridge: Bridge, result: Any, now: float) -> None:
            if not self._admitted(bridge, result, now):
                return
            bridge.invite = invite
            self._sip_send(bridge, invite)
            bridge.interval = self.settings.t1
            self._arm(bridge, "retransmit", now + bridge.interval)
            self._arm(bridge, "timer-b", now + 64 * self.settings.t1)
        self._decide(bridge, AdmissionRequest(call_id, caller, callee, offer.spec(), protocol=SignallingProtocol.H323),
                     decided, now)

    def _h323_refuse(self, conn: int, crv: int, guid: bytes, cause: int) -> None:
        self._count(f"h323-refused-{cause}")
        self._send_release(conn, crv, True, guid, cause)
        self._out.append(StreamClose(conn))
        self._framers.pop(conn, None)
        self._peers.pop(conn, None)

    def _h323_closed(self, conn: int, now: float) -> None:
        self._framers.pop(conn, None)
        self._peers.pop(conn, None)
        bridge = self._by_conn.get(conn)
        if bridge is not None and bridge.phase is not Phase.ENDED:
            self._end(bridge, TEMPORARY_FAILURE, "h323: connection closed", now, from_h323=True, closed=True)

    # --- SIP side ---------------------------------------------------------------------------

    def _sip_receive(self, data: bytes, source: Peer, now: float) -> None:
        if not data.strip(b"\r\n\t \x00"):
            return
        try:
            message = parse_message(data)
        except ParseError as error:
            self._sip_malformed(error, error.partial, source)
            return
        try:
            message.call_id, message.cseq                   # noqa: B018 - validated here, used below
            parse_name_addr(message.header("from") or "").tag
            parse_name_addr(message.header("to") or "")
            message.top_via
        except ParseError as error:
            method = message.method if isinstance(message, Request) else None
            self._sip_malformed(error, Partial(method, message.headers), source)
            return
        community = self.directory.by_address(source.host)
        profile = self.settings.profiles.get(community or "", GENERIC)
        if not profile.changes_nothing:
            message = normalise.inbound(message, profile)
        if isinstance(message, Response):
            self._sip_response(message, now)
        else:
            self._sip_request(message, source, now)

    def _sip_malformed(self, error: ParseError, partial: Partial | None, source: Peer) -> None:
        self._count("sip-malformed")
        if partial is not None and partial.method not in (None, "ACK") and \
                all(partial.header(h) for h in ("via", "call-id", "cseq", "from", "to")):
            text = error.message[:100].replace('"', "'")
            response = build_response(partial, 400, "Bad Request", to_tag=self.ids("tag", "400"),
                                      extra=(("warning", f'399 mam-gw "{text}"'),))
            self._out.append(Send(serialize(response), source))

    def _sip_request(self, request: Request, source: Peer, now: float) -> None:
        bridge = self._by_sip.get(request.call_id)
        method = request.method
        if bridge is None:
            if method == "INVITE" and parse_name_addr(request.header("to") or "").tag is None:
                self._invite(request, source, now)
            elif method == "OPTIONS":
                self._reply(request, source, 200)
            elif method != "ACK":
                self._reply(request, source, 481)
            return
        if method == "INVITE" and not bridge.h323_caller and request.cseq == (bridge.invite.cseq if bridge.invite
                                                                               else None):
            if bridge.last_response is not None:                      # a retransmission
                self._out.append(Send(bridge.last_response, bridge.sip_peer))
            return
        if method == "ACK":
            if not bridge.h323_caller and bridge.phase is Phase.CONNECTED:
                bridge.acked = True
                self._disarm(bridge, "ack", "retransmit")
            elif not bridge.h323_caller and bridge.final_sent:
                self._disarm(bridge, "retransmit")
                self._forget_later(bridge, now)
            return
        if method == "BYE":
            self._reply(request, source, 200, bridge)
            cause = q850_of_reason(request.header_values("reason")) or NORMAL
            self._end(bridge, cause, f"sip: BYE from {'callee' if bridge.h323_caller else 'caller'}", now,
                      from_sip=True)
        elif method == "CANCEL" and not bridge.h323_caller:
            self._reply(request, source, 200, bridge)
            if bridge.phase is not Phase.CONNECTED and not bridge.final_sent:
                cause = q850_of_reason(request.header_values("reason")) or NORMAL
                self._end(bridge, cause, "sip: CANCEL", now, from_sip=True, status=487)
        elif method == "OPTIONS":
            self._reply(request, source, 200, bridge)
        elif method == "INFO":
            self._sip_info(bridge, request, source, now)
        elif method in ("INVITE", "UPDATE"):
            self._refresh(bridge, request, source, now)
        else:
            self._reply(request, source, 501, bridge)

    def _invite(self, request: Request, source: Peer, now: float) -> None:
        self._count("sip-invites")
        try:
            uri = parse_uri(request.uri)
        except ParseError:
            self._reply(request, source, 416)
            return
        user = uri.user or ""
        trusted = source.host in self.settings.trusted      # relayed by our SIP proxy: admitted there
        caller = self.directory.by_address(source.host) or ("" if trusted else None)
        callee = (self.directory.by_number(user) if user.lstrip("+").isdigit() else None) or \
            self.directory.by_domain(uri.host)
        if caller is None:
            self._reply(request, source, 403, reason=(21, "caller outside every community"))
            return
        target = self.settings.h323_pbx.get(callee or "")
        if callee is None or target is None:
            self._reply(request, source, 404, reason=(NO_ROUTE, "no H.323 route"))
            return
        if not request.body:
            self._reply(request, source, 488, reason=(BEARER_NOT_IMPLEMENTED, "late offer not supported"))
            return
        try:
            sdp = read_sdp(request.body)
        except MediaError as error:
            self._reply(request, source, 488, reason=(88, str(error)))
            return
        offer = sdp.offer()
        if not offer.codecs or offer.receive is None:
            self._reply(request, source, 488, reason=(BEARER_NOT_IMPLEMENTED, "no codec H.245 can carry"))
            return
        guid = bytes.fromhex(self.ids("guid", request.call_id, source.host) + self.ids("guid2", request.call_id))[:16]
        call_id = "gw-" + guid.hex()
        conn = self._new_conn()
        crv = int.from_bytes(guid[:2], "big") & 0x7FFF or 1
        bridge = Bridge(call_id, guid, False, caller, callee, conn, crv, source, request.call_id,
                        self.ids("tag", call_id), offer=offer, caller_media=offer.receive, invite=request,
                        sip_payload_types={name: pt for name, pt, _ in sdp.codecs}, trusted=trusted)
        bridge.h323_open = False
        self._register(bridge)
        self._respond_invite(bridge, 100, now, with_sdp=False)

        def decided(bridge: Bridge, result: Any, now: float) -> None:
            if self._admitted(bridge, result, now):
                self._send_setup(bridge, user, request, target, now)
        self._decide(bridge, AdmissionRequest(call_id, caller, callee, offer.spec(), protocol=SignallingProtocol.SIP),
                     decided, now)

    def _send_setup(self, bridge: Bridge, user: str, request: Request, target: tuple[str, int], now: float) -> None:
        """S->H, admitted: open the connection to the H.323 PBX and send the Setup."""
        offer, guid, conn, crv = bridge.offer, bridge.guid, bridge.conn, bridge.crv
        assert offer is not None and offer.receive is not None
        called = user.lstrip("+") if user.lstrip("+").isdigit() else user
        calling = parse_uri(parse_name_addr(request.header("from") or "").uri).user or ""
        self._framers[conn] = TpktFramer()
        bridge.h323_open = True
        self._out.append(StreamOpen(conn, target[0], target[1]))
        rtcp = MediaEndpoint(offer.receive.ip, offer.receive.port + 1)
        setup = ("setup", {
            "protocolIdentifier": PROTOCOL_ID,
            "sourceAddress": [_alias(calling)] if calling else [("h323-ID", "mam-gw")],
            "sourceInfo": _gateway_type(), "destinationAddress": [_alias(called)], "activeMC": False,
            "conferenceID": guid, "conferenceGoal": ("create", 0), "callType": ("pointToPoint", 0),
            "sourceCallSignalAddress": ("ipAddress", {"ip": _packed(self.settings.h323_host),
                                                      "port": self.settings.h323_port}),
            "callIdentifier": {"guid": guid}, "fastStart": faststart_offer(offer, rtcp),
            "mediaWaitForConnect": False, "canOverlapSend": False, "multipleCalls": False,
            "maintainConnection": False})
        ies: list[tuple[int, bytes]] = [(IE.BEARER_CAPABILITY, SPEECH_BEARER)]
        if calling.lstrip("+").isdigit():
            ies.append((IE.CALLING_PARTY_NUMBER, number_ie(calling.lstrip("+"), calling=True)))
        if called.isdigit():
            ies.append((IE.CALLED_PARTY_NUMBER, number_ie(called)))
        self._send_h323(conn, crv, False, MessageType.SETUP, setup, ies=ies)
        self._arm(bridge, "t303", now + self.settings.t303)

    def _sip_response(self, response: Response, now: float) -> None:
        bridge = self._by_sip.get(response.call_id)
        if bridge is None:
            self._count("sip-stray-responses")
            return
        number, method = response.cseq
        if method != "INVITE":
            branch = response.top_via.branch or ""
            if response.status >= 200:
                bridge.pending.pop(branch, None)
                if not bridge.pending:
                    self._disarm(bridge, "request-retransmit", "request-timeout")
            return
        if not bridge.h323_caller or bridge.invite is None or number != bridge.invite.cseq[0]:
            return
        status = response.status
        if bridge.phase is Phase.ENDED:
            if 200 <= status < 300:            # a 2xx crossing our CANCEL: ACK and BYE it
                self._learn_dialog(bridge, response)
                self._sip_send(bridge, self._ack(bridge, response))
                self._bye(bridge, NORMAL, now)
            elif status >= 300:
                self._sip_send(bridge, self._ack(bridge, response))
            return
        self._disarm(bridge, "retransmit")
        if status < 200:
            self._disarm(bridge, "timer-b")
            if status == 100:
                return
            media = self._sip_answer(bridge, response)
            if bridge.phase in (Phase.SETUP, Phase.PROCEEDING):
                self._arm(bridge, "no-answer", now + self.settings.no_answer_s)
            if status == 180 or (status != 183 and media is None):
                if bridge.phase is not Phase.RINGING:
                    bridge.phase = Phase.RINGING
                    self._send_to_caller(bridge, MessageType.ALERTING, "alerting", media)
            elif media is not None:
                self._send_to_caller(bridge, MessageType.PROGRESS, "progress", media)
            return
        self._disarm(bridge, "timer-b", "no-answer")
        if status < 300:
            self._learn_dialog(bridge, response)
            self._sip_send(bridge, self._ack(bridge, response))
            if bridge.phase is Phase.CONNECTED:
                return                                     # a retransmitted 2xx: ACKed again
            media = self._sip_answer(bridge, response)
            if media is None and not bridge.faststart_sent:
                self._bye(bridge, BEARER_NOT_IMPLEMENTED, now)
                self._end(bridge, BEARER_NOT_IMPLEMENTED, "sip: 200 without a usable answer", now, bye_sent=True)
                return
            bridge.phase = Phase.CONNECTED
            self._send_to_caller(bridge, MessageType.CONNECT, "connect", media)
            return
        self._sip_send(bridge, self._ack(bridge, response))
        cause = q850_of_reason(response.header_values("reason")) or q850_of_status(status)
        self._end(bridge, cause, f"sip-{status}", now, from_sip=True)

    def _sip_answer(self, bridge: Bridge, response: Response) -> list[bytes] | None:
        """H->S: the SIP answer in a 18x/2xx -> accepted fastStart channels (None: no SDP)."""
        if not response.body:
            return None
        try:
            sdp = read_sdp(response.body)
        except MediaError:
            self._count("sip-answer-unreadable")
            return None
        chosen = next(((name, ptime) for name, _, ptime in sdp.codecs
                       if any(c == name for c, _ in (bridge.offer.codecs if bridge.offer else ()))), None)
        if chosen is None or sdp.receive is None:
            return None
        try:
            elements = answer_faststart(bridge.proposals, chosen[0], chosen[1], sdp.receive)
        except MediaError:
            return None
        bridge.callee_media = sdp.receive
        bridge.codec = chosen
        bridge.sip_payload_types = {name: pt for name, pt, _ in sdp.codecs}
        if bridge.offer is not None and bridge.offer.codecs[0][0] != chosen[0]:
            self._modify(bridge, chosen)
        self._attach(bridge)
        return elements

    def _send_to_caller(self, bridge: Bridge, kind: int, name: str, faststart: list[bytes] | None) -> None:
        fields: dict[str, Any] = {"protocolIdentifier": PROTOCOL_ID, "destinationInfo": _gateway_type(),
                                  "callIdentifier": {"guid": bridge.guid}}
        if kind == MessageType.CONNECT:
            fields["conferenceID"] = bridge.guid
        if faststart and not bridge.faststart_sent:
            fields["fastStart"] = faststart
            bridge.faststart_sent = True
        self._send_h323(bridge.conn, bridge.crv, True, kind, (name, fields))

    # --- re-INVITE / UPDATE: session refresh (RFC 4028) and hold ------------------------------

    def _refresh(self, bridge: Bridge, request: Request, source: Peer, now: float) -> None:
        """A re-INVITE or UPDATE on a bridged call. The H.323 leg's media cannot be changed
        without H.245, so: an offer that keeps the call's codec and address (a session
        refresh, RFC 4028), or puts it on hold (no address), or no offer at all, is answered
        200 with the gateway's side of the media as it is; anything else 488."""
        if bridge.phase is not Phase.CONNECTED or bridge.codec is None:
            self._reply(request, source, 491 if request.method == "INVITE" else 200, bridge)
            return
        ours = bridge.callee_media if not bridge.h323_caller else bridge.caller_media
        theirs = bridge.caller_media if not bridge.h323_caller else bridge.callee_media
        if request.body:
            try:
                offer = read_sdp(request.body)
            except MediaError as error:
                self._reply(request, source, 488, bridge, reason=(88, str(error)))
                return
            same_codec = any(name == bridge.codec[0] for name, _, _ in offer.codecs)
            if not same_codec or (offer.receive is not None and offer.receive != theirs):
                self._count("reinvite-refused")
                self._reply(request, source, 488, bridge,
                            reason=(BEARER_NOT_IMPLEMENTED, "the H.323 leg's media cannot change"))
                return
            bridge.sip_payload_types.update({name: pt for name, pt, _ in offer.codecs})
        if ours is None:
            self._reply(request, source, 488, bridge, reason=(BEARER_NOT_IMPLEMENTED, "no media to describe"))
            return
        self._count("session-refreshed")
        extra: list[tuple[str, str]] = [("contact", f"<sip:gw@{self.settings.sip_host}:{self.settings.sip_port}>"),
                                        ("content-type", "application/sdp")]
        expires = request.header("session-expires")
        if expires:
            delta = expires.split(";")[0].strip()
            if delta.isdigit():
                extra.append(("session-expires", f"{delta};refresher=uac"))
                if "timer" in [t.strip().lower() for t in ",".join(request.header_values("supported")).split(",")]:
                    extra.append(("require", "timer"))
        body = build_sdp(ours, (bridge.codec,), now_id(now), payload_types=bridge.sip_payload_types)
        response = build_response(request, 200, "OK", extra=extra, body=body)
        self._out.append(Send(serialize(response), source))

    # --- DTMF: H.245 userInputIndication <-> SIP INFO (application/dtmf-relay) ----------------

    def _h245_in(self, bridge: Bridge, controls: list[Any], now: float) -> None:
        """Tunnelled H.245 from the H.323 leg: each userInputIndication becomes a SIP INFO."""
        for data in controls:
            try:
                kind, value = decode_h245(bytes(data))
            except (Asn1Error, TypeError, ValueError):
                self._count("h245-undecodable")
                continue
            digit, duration = _user_input(kind, value)
            if digit is None:
                continue                                 # other H.245 (capabilities ...): not carried
            if bridge.phase is not Phase.CONNECTED:
                self._count("dtmf-before-answer")
                continue
            self._count("dtmf-h323-to-sip")
            body = f"Signal={digit}\r\nDuration={duration}\r\n".encode("ascii")
            self._in_dialog(bridge, "INFO", (("content-type", "application/dtmf-relay"),), body, now)

    def _sip_info(self, bridge: Bridge, request: Request, source: Peer, now: float) -> None:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if not request.body:
            self._reply(request, source, 200, bridge)          # an empty INFO: a keep-alive
            return
        if content_type not in ("application/dtmf-relay", "application/dtmf"):
            self._reply(request, source, 415, bridge)
            return
        digit, duration = _dtmf_body(request.body, content_type)
        if digit is None:
            self._reply(request, source, 400, bridge)
            return
        self._reply(request, source, 200, bridge)
        if bridge.phase is not Phase.CONNECTED:
            return
        self._count("dtmf-sip-to-h323")
        uii = encode_h245(("indication", ("userInput", ("signal", {"signalType": digit, "duration": duration}))))
        body = ("facility", {"protocolIdentifier": PROTOCOL_ID, "reason": ("transportedInformation", 0),
                             "callIdentifier": {"guid": bridge.guid}})
        self._send_h323(bridge.conn, bridge.crv, bridge.h323_caller, MessageType.FACILITY, body, h245=[uii])

    # --- ending -----------------------------------------------------------------------------

    def _end(self, bridge: Bridge, cause: int, why: str, now: float, *, from_h323: bool = False,
             from_sip: bool = False, closed: bool = False, status: int | None = None, bye_sent: bool = False,
             release: bool = True) -> None:
        """End both legs (the side that ended it is not told again) and release once."""
        if bridge.phase is Phase.ENDED:
            return
        connected = bridge.phase is Phase.CONNECTED
        bridge.phase = Phase.ENDED
        self._count("ended")
        if not from_h323 and bridge.h323_open:
            self._send_release(bridge.conn, bridge.crv, bridge.h323_caller, bridge.guid, cause)
        if not closed and bridge.h323_open:
            self._out.append(StreamClose(bridge.conn))
        if not from_sip and not bye_sent:
            if bridge.h323_caller:
                if connected:
                    self._bye(bridge, cause, now)
                else:
                    self._cancel(bridge, cause, now)
            elif connected and bridge.acked:
                self._bye(bridge, cause, now)
            elif connected:
                self._bye(bridge, cause, now)                      # 200 not yet ACKed: BYE anyway
            else:
                self._final(bridge, status or status_of_q850(cause), cause, why, now)
        elif from_sip and status is not None and not bridge.h323_caller:
            self._final(bridge, status, cause, why, now)        # CANCEL: 487 to the INVITE
        self._disarm(bridge, "t303", "no-answer", "timer-b", "ack")
        keep_final = not bridge.h323_caller and bridge.final_sent and not connected
        if not keep_final:
            self._disarm(bridge, "retransmit")       # (a final to the INVITE repeats until its ACK)
        self._finish(bridge, why, release)
        if bridge.pending or keep_final or bridge.h323_caller:
            self._forget_later(bridge, now)          # absorb the last responses and retransmissions
        else:
            self._forget(bridge)

    def _finish(self, bridge: Bridge, cause: str, release: bool = True) -> None:
        """The one place admission hears that a call ended."""
        if bridge.admitted and not bridge.released:
            bridge.released = True
            if release:
                self._op(Release(bridge.call_id, cause))
                self._count("released")

    def _admission_ended(self, call_id: str, cause: str, now: float) -> None:
        bridge = self.bridges.get(call_id)
        if bridge is None or bridge.phase is Phase.ENDED:
            return
        bridge.released = True                  # admission has already let it go
        self._end(bridge, cause_of_release(cause), cause, now, release=False)

    def _forget_later(self, bridge: Bridge, now: float) -> None:
        self._arm(bridge, "forget", now + 64 * self.settings.t1)

    def _forget(self, bridge: Bridge) -> None:
        self.bridges.pop(bridge.call_id, None)
        if self._by_sip.get(bridge.sip_call_id) is bridge:
            del self._by_sip[bridge.sip_call_id]
        if self._by_conn.get(bridge.conn) is bridge:
            del self._by_conn[bridge.conn]
        self._framers.pop(bridge.conn, None)
        self._peers.pop(bridge.conn, None)
        for key in [k for k in self._timers if k[0] == bridge.call_id]:
            del self._timers[key]

    # --- timers -----------------------------------------------------------------------------

    def _arm(self, bridge: Bridge, name: str, when: float) -> None:
        self._timers[(bridge.call_id, name)] = when

    def _disarm(self, bridge: Bridge, *names: str) -> None:
        for name in names:
            self._timers.pop((bridge.call_id, name), None)

    def _timers_due(self, now: float) -> None:
        due = sorted((when, key) for key, when in self._timers.items() if when <= now)
        for _, key in due[:256]:
            if self._timers.get(key) is None:
                continue
            del self._timers[key]
            bridge = self.bridges.get(key[0])
            if bridge is None:
                continue
            try:
                self._timer(bridge, key[1], now)
            except Exception:  # noqa: BLE001 - one call's timer never stops the others
                self.internal_errors += 1
                log.exception("gateway timer %s failed", key)

    def _timer(self, bridge: Bridge, name: str, now: float) -> None:
        t1, t2 = self.settings.t1, self.settings.t2
        if name == "retransmit":
            if bridge.h323_caller and bridge.invite is not None and bridge.phase is not Phase.ENDED:
                self._sip_send(bridge, bridge.invite)
                bridge.interval = min(bridge.interval * 2, 64 * t1)
                self._arm(bridge, name, now + bridge.interval)
            elif not bridge.h323_caller and bridge.last_response is not None and not bridge.acked:
                self._out.append(Send(bridge.last_response, bridge.sip_peer))
                bridge.interval = min(bridge.interval * 2, t2)
                self._arm(bridge, name, now + bridge.interval)
        elif name == "request-retransmit":
            for request in bridge.pending.values():
                self._sip_send(bridge, request)
            bridge.interval = min(bridge.interval * 2, t2)
            self._arm(bridge, name, now + bridge.interval)
        elif name == "request-timeout":
            bridge.pending.clear()
            self._disarm(bridge, "request-retransmit")
        elif name == "timer-b":
            self._end(bridge, TIMER_EXPIRY, "timeout", now, from_sip=True)
        elif name == "t303":
            self._end(bridge, TIMER_EXPIRY, "h323: T303 expired", now)
        elif name == "no-answer":
            self._end(bridge, NO_ANSWER, "no-answer", now, status=480 if not bridge.h323_caller else None)
        elif name == "ack":
            self._end(bridge, TIMER_EXPIRY, "ack-timeout", now)
        elif name == "forget":
            self._forget(bridge)
        elif name == "admission":
            self._admission_timeout(bridge, now)

    # --- admission ------------------------------------------------------------------------

    def _decide(self, bridge: Bridge, request: AdmissionRequest, then: Then, now: float) -> None:
        """Ask admission for ``bridge``: at once (in-process), or by a Perform the shell runs
        off its loop (REST mode), answered through :meth:`performed`."""
        if bridge.trusted:                                   # our own proxy/gatekeeper admitted it
            self._count("admitted-by-front-end")
            then(bridge, _TRUSTED, now)
            return
        if not self.defer:
            result: Any
            try:
                result = self.control.admit(request)
            except Exception as error:  # noqa: BLE001 - call control down: refuse this call only
                result = error
            then(bridge, result, now)
            return
        self._ticket += 1
        self._pending[self._ticket] = (bridge, then)
        self._out.append(Perform(self._ticket, Admit(request)))
        self._arm(bridge, "admission", now + self.settings.control_timeout_s)

    def _performed(self, ticket: int, result: Any, now: float) -> None:
        if ticket in self._ignored:
            self._ignored.discard(ticket)
            if isinstance(result, Exception):
                log.warning("call control failed: %s", result)
            return
        entry = self._pending.pop(ticket, None)
        if entry is None:                                   # answered after its timeout
            if isinstance(result, Admitted):
                self._op(Release(result.call_id, "admission answered too late"))
            return
        bridge, then = entry
        self._disarm(bridge, "admission")
        if bridge.phase is Phase.ENDED:                      # the call ended while admission thought
            if isinstance(result, Admitted):
                self._op(Release(bridge.call_id, "ended before admission answered"))
            return
        then(bridge, result, now)

    def _admission_timeout(self, bridge: Bridge, now: float) -> None:
        for ticket in [t for t, (b, _) in self._pending.items() if b is bridge]:
            _, then = self._pending.pop(ticket)                # a late yes is released (_performed)
            then(bridge, TimeoutError("call control did not answer in time"), now)

    def _admitted(self, bridge: Bridge, result: Any, now: float) -> bool:
        """True if admitted; else the call is refused on the leg that asked (cause and status
        as the proxy and the gatekeeper give them)."""
        if result is _TRUSTED:
            return True                                       # nothing of ours to release
        if isinstance(result, Admitted):
            bridge.admitted, bridge.admitted_at = True, now
            self._count("admitted")
            return True
        if isinstance(result, Rejected):
            self._count(f"rejected-{result.reason.value}")
            status, cause = SIP_REJECTIONS[result.reason]
            if bridge.h323_caller:
                cause = H323_REJECTIONS[result.reason][1]
            why = f"{result.reason.value}: {result.detail}"
        else:
            log.warning("admission failed for %s: %s", bridge.call_id, result)
            self._count("control-errors")
            status, cause, why = 503, TEMPORARY_FAILURE, "call control unreachable"
        if bridge.h323_caller:
            self._end(bridge, cause, why, now, from_sip=True)
        else:
            self._end(bridge, cause, why, now, from_h323=True, closed=True, status=status)
        return False

    def _op(self, op: ControlOp) -> None:
        """modify / attach_media / release: at once, or as a Perform whose answer is dropped."""
        if not self.defer:
            try:
                if isinstance(op, Modify):
                    self.control.modify(op.call_id, op.media)
                elif isinstance(op, AttachMedia):
                    self.control.attach_media(op.call_id, op.caller, op.callee)
                elif isinstance(op, Release):
                    self.control.release(op.call_id, op.cause)
            except Exception as error:  # noqa: BLE001 - admission reclaims what it no longer hears of
                log.warning("%s of %s failed: %s", type(op).__name__, getattr(op, "call_id", "?"), error)
            return
        self._ticket += 1
        self._ignored.add(self._ticket)
        self._out.append(Perform(self._ticket, op))

    def _modify(self, bridge: Bridge, chosen: tuple[str, int]) -> None:
        if not bridge.admitted:
            return                                        # admitted by our proxy/gatekeeper: theirs to tell
        self._op(Modify(bridge.call_id, MediaSpec(chosen[0], chosen[1])))

    def _attach(self, bridge: Bridge) -> None:
        if not bridge.admitted or bridge.caller_media is None or bridge.callee_media is None:
            return
        pair = (bridge.caller_media, bridge.callee_media)
        if bridge.attached == pair:
            return
        bridge.attached = pair
        self._count("attached")
        self._op(AttachMedia(bridge.call_id, *pair))

    def _register(self, bridge: Bridge) -> None:
        self.bridges[bridge.call_id] = bridge
        self._by_sip[bridge.sip_call_id] = bridge
        self._by_conn[bridge.conn] = bridge

    # --- building messages ------------------------------------------------------------------

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.settings.sip_host}:{self.settings.sip_port};branch=z9hG4bK{branch};rport"

    def _sip_send(self, bridge: Bridge, message: Message) -> None:
        profile = self.settings.profiles.get(bridge.h323_caller and bridge.callee_community or
                                             bridge.caller_community, GENERIC)
        if not profile.changes_nothing:
            message = normalise.outbound(message, profile)
        self._out.append(Send(serialize(message), bridge.sip_peer))

    def _learn_dialog(self, bridge: Bridge, response: Response) -> None:
        bridge.remote_tag = parse_name_addr(response.header("to") or "").tag
        contact = response.header("contact")
        if contact:
            try:
                bridge.remote_target = parse_name_addr(contact.split(",")[0]).uri
            except ParseError:
                pass

    def _ack(self, bridge: Bridge, response: Response) -> Request:
        assert bridge.invite is not None
        invite = bridge.invite
        if 200 <= response.status < 300:
            uri = bridge.remote_target or invite.uri
            via = self._via(self.ids("branch", bridge.call_id, "ack"))
        else:
            uri, via = invite.uri, invite.header("via") or ""
        headers = (("via", via), ("max-forwards", "70"), ("from", invite.header("from") or ""),
                   ("to", response.header("to") or ""), ("call-id", bridge.sip_call_id),
                   ("cseq", f"{invite.cseq[0]} ACK"))
        return Request("ACK", uri, headers)

    def _cancel(self, bridge: Bridge, cause: int, now: float) -> None:
        invite = bridge.invite
        if invite is None:
            return
        headers = (("via", invite.header("via") or ""), ("max-forwards", "70"), ("from", invite.header("from") or ""),
                   ("to", invite.header("to") or ""), ("call-id", bridge.sip_call_id),
                   ("cseq", f"{invite.cseq[0]} CANCEL"), ("reason", reason_header(cause)))
        self._request(bridge, Request("CANCEL", invite.uri, headers), invite.top_via.branch or "", now)

    def _bye(self, bridge: Bridge, cause: int, now: float) -> None:
        self._in_dialog(bridge, "BYE", (("reason", reason_header(cause)),), b"", now)

    def _in_dialog(self, bridge: Bridge, method: str, extra: tuple[tuple[str, str], ...], body: bytes,
                   now: float) -> None:
        """A request of ours in the SIP dialog (BYE, INFO), retransmitted until answered."""
        bridge.local_cseq += 1
        branch = self.ids("branch", bridge.call_id, method.lower(), str(bridge.local_cseq))
        if bridge.h323_caller:
            assert bridge.invite is not None
            uri = bridge.remote_target or bridge.invite.uri
            from_, to = bridge.invite.header("from") or "", f"{bridge.invite.header('to')};tag={bridge.remote_tag}" \
                if bridge.remote_tag else bridge.invite.header("to") or ""
        else:
            assert bridge.invite is not None
            contact = bridge.invite.header("contact") or ""
            try:
                uri = parse_name_addr(contact.split(",")[0]).uri
            except ParseError:
                uri = bridge.invite.uri
            from_ = f"{_strip_tag(bridge.invite.header('to') or '')};tag={bridge.local_tag}"
            to = bridge.invite.header("from") or ""
        headers = (("via", self._via(branch)), ("max-forwards", "70"), ("from", from_), ("to", to),
                   ("call-id", bridge.sip_call_id), ("cseq", f"{bridge.local_cseq} {method}")) + extra
        self._request(bridge, Request(method, uri, headers, body), "z9hG4bK" + branch, now)

    def _request(self, bridge: Bridge, request: Request, branch: str, now: float) -> None:
        bridge.pending[branch] = request
        self._sip_send(bridge, request)
        bridge.interval = self.settings.t1
        self._arm(bridge, "request-retransmit", now + bridge.interval)
        self._arm(bridge, "request-timeout", now + 64 * self.settings.t1)

    def _respond_invite(self, bridge: Bridge, status: int, now: float, *, with_sdp: bool) -> None:
        """S->H: a response to the caller's INVITE (18x/200 with our To tag and Contact)."""
        invite = bridge.invite
        if invite is None or bridge.h323_caller:
            return
        extra: list[tuple[str, str]] = []
        body = b""
        if status > 100:
            extra.append(("contact", f"<sip:gw@{self.settings.sip_host}:{self.settings.sip_port}>"))
        if with_sdp and bridge.callee_media is not None and bridge.offer is not None:
            body = build_sdp(bridge.callee_media, bridge.offer.codecs[:1], now_id(now),
                             payload_types=bridge.sip_payload_types)
            extra.append(("content-type", "application/sdp"))
        reasons = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK"}
        response = build_response(invite, status, reasons.get(status, "OK"),
                                  to_tag=None if status == 100 else bridge.local_tag, extra=extra, body=body)
        self._send_response(bridge, response, now, final=status >= 200)

    def _final(self, bridge: Bridge, status: int, cause: int, text: str, now: float) -> None:
        invite = bridge.invite
        if invite is None or bridge.final_sent:
            return
        response = build_response(invite, status, phrase(status), to_tag=bridge.local_tag,
                                  extra=(("reason", reason_header(cause, text)),))
        self._send_response(bridge, response, now, final=True)

    def _send_response(self, bridge: Bridge, response: Response, now: float, *, final: bool) -> None:
        profile = self.settings.profiles.get(bridge.caller_community, GENERIC)
        message: Message = response if profile.changes_nothing else normalise.outbound(response, profile)
        data = serialize(message)
        bridge.last_response = data
        self._out.append(Send(data, bridge.sip_peer))
        if final:
            bridge.final_sent = True
            bridge.interval = self.settings.t1
            self._arm(bridge, "retransmit", now + bridge.interval)

    def _reply(self, request: Request, source: Peer, status: int, bridge: Bridge | None = None, *,
               reason: tuple[int, str] | None = None) -> None:
        extra = [] if reason is None else [("reason", reason_header(*reason))]
        tag = None if parse_name_addr(request.header("to") or "").tag else self.ids("tag", request.call_id)
        response = build_response(request, status, phrase(status) if status != 200 else "OK",
                                  to_tag=tag, extra=extra)
        self._out.append(Send(serialize(response), source))

    def _send_h323(self, conn: int, crv: int, to_originator: bool, kind: int, body: tuple[str, dict[str, Any]],
                   *, cause: int | None = None, ies: list[tuple[int, bytes]] | None = None,
                   h245: list[bytes] | None = None) -> None:
        message = Q931(kind, crv, to_originator, tuple(ies or ()))
        if cause is not None:
            message = message.with_ie(IE.CAUSE, cause_ie(cause))
        pdu: dict[str, Any] = {"h323-message-body": body}
        if h245:
            pdu.update({"h245Tunnelling": True, "h245Control": h245})
        message = message.with_user_user(encode_uu({"h323-uu-pdu": pdu}))
        self._out.append(StreamSend(conn, tpkt(q931_bytes(message))))

    def _send_release(self, conn: int, crv: int, to_originator: bool, guid: bytes, cause: int) -> None:
        fields: dict[str, Any] = {"protocolIdentifier": PROTOCOL_ID, "reason": (release_reason(cause), 0)}
        if len(guid) == 16:
            fields["callIdentifier"] = {"guid": guid}
        self._send_h323(conn, crv, to_originator, MessageType.RELEASE_COMPLETE, ("releaseComplete", fields),
                        cause=cause)


# --- helpers ------------------------------------------------------------------------------------

_TRUSTED = object()            # the "decision" for a call our own proxy or gatekeeper admitted

def now_id(now: float) -> int:
    return int(now * 1000) % 4_000_000_000 + 1


def _guid(fields: dict[str, Any]) -> bytes | None:
    ident = fields.get("callIdentifier")
    guid = ident.get("guid") if isinstance(ident, dict) else None
    if not isinstance(guid, bytes) or len(guid) != 16:
        guid = fields.get("conferenceID")
    return guid if isinstance(guid, bytes) and len(guid) == 16 else None


def _dialled(aliases: Any) -> str | None:
    if not isinstance(aliases, list):
        return None
    for alias in aliases:
        if isinstance(alias, tuple) and len(alias) == 2 and alias[0] == "dialledDigits" and isinstance(alias[1], str):
            return alias[1]
    return None


def _alias(user: str) -> tuple[str, str]:
    digits = user.lstrip("+")
    if digits and all(c in "0123456789#*," for c in digits) and len(digits) <= 128:
        return ("dialledDigits", digits)
    return ("h323-ID", user[:256] or "mam-gw")


def _gateway_type() -> dict[str, Any]:
    return {"gateway": {}, "mc": False, "undefinedNode": False}


def _packed(host: str) -> bytes:
    return ipaddress.IPv4Address(host).packed


_DTMF = "0123456789*#ABCD"
_RFC4733_EVENTS = {str(i): str(i) for i in range(10)} | {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C",
                                                         "15": "D"}


def _user_input(kind: str, value: Any) -> tuple[str | None, int]:
    """(digit, duration ms) of an H.245 userInputIndication, or (None, 0)."""
    if kind != "indication" or not isinstance(value, tuple) or value[0] != "userInput":
        return None, 0
    choice = value[1]
    if not isinstance(choice, tuple) or len(choice) != 2:
        return None, 0
    if choice[0] == "alphanumeric" and isinstance(choice[1], str) and choice[1][:1].upper() in _DTMF:
        return choice[1][:1].upper(), 100
    if choice[0] == "signal" and isinstance(choice[1], dict):
        digit = str(choice[1].get("signalType", ""))[:1].upper()
        duration = choice[1].get("duration", 100)
        if digit and digit in _DTMF:
            return digit, duration if isinstance(duration, int) and 1 <= duration <= 65535 else 100
    return None, 0


def _dtmf_body(body: bytes, content_type: str) -> tuple[str | None, int]:
    """(digit, duration ms) of an INFO body: ``Signal=5`` / ``Duration=160`` (dtmf-relay, as
    Cisco and most PBXs send it) or a bare digit / RFC 4733 event number (application/dtmf)."""
    text = body.decode("ascii", "replace")
    if content_type == "application/dtmf":
        value = text.strip().upper()
        value = _RFC4733_EVENTS.get(value, value)
        return (value, 100) if len(value) == 1 and value in _DTMF else (None, 0)
    digit, duration = None, 100
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "signal":
            value = _RFC4733_EVENTS.get(value, value).upper()
            digit = value if len(value) == 1 and value in _DTMF else None
        elif key == "duration" and value.isdigit() and 1 <= int(value) <= 65535:
            duration = int(value)
    return digit, duration


def _strip_tag(value: str) -> str:
    addr = parse_name_addr(value)
    return NameAddr(addr.display, addr.uri, tuple(p for p in addr.params if p[0] != "tag"), addr.bracketed).render()
