"""Gatekeeper-routed call signalling: H.225.0/Q.931 over TCP (TPKT), relayed call by call.

A caller's Setup arrives on our call-signalling port: the call is the one its ARQ
admitted (or is admitted now, for an endpoint that skips RAS), the caller hears our
CallProceeding at once, fastStart proposals refine the allocation (``modify``), and the
Setup goes to the callee on a connection of our own. Everything after it is relayed by
:class:`~.call_relay.CallRelay` (Alerting, Progress, Connect, Facility, Notify, ...;
tunnelled H.245 and a separate H.245 address pass unchanged); the accepted fastStart
channel (or tunnelled OpenLogicalChannel/Ack) gives the codec and both media addresses
(``attach_media``). A call ends on ReleaseComplete from either side, DRQ, a connection
closed or reset, a Q.931 timer, media idle, or admission ending it; whoever has not
said ReleaseComplete gets ours, with a Q.850 cause.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, SignallingProtocol
from ryu_apps.core.codec import MediaSpec

from ..call_control import Admit, AttachMedia, Modify, Release
from .actions import StreamClose, StreamOpen, StreamSend
from .asn1 import Asn1Error, decode_h245, decode_olc, decode_uu, encode_uu
from .call_relay import PHASE_TIMERS, CallRelay, Leg, Phase
from .media import Channel, channel_of, endpoint_of
from .q931 import IE, MessageType, Q931, Q931Error, TpktFramer, cause_ie, parse, serialize, tpkt
from .ras import PROTOCOL_ID, call_key
from .reasons import (NO_ANSWER, NORMAL, REJECTIONS, TEMPORARY_FAILURE, TIMER_EXPIRY, UNALLOCATED_NUMBER, cause_of_release,
                      release_reason)
from .registry import Address, aliases_of, community_of, destination_community, transport_address

if TYPE_CHECKING:
    from .gatekeeper import Gatekeeper, H323Call, Result

G711 = MediaSpec("pcmu", 20)
TIMER_CAUSES = {"t303": TIMER_EXPIRY, "t310": TIMER_EXPIRY, "t301": NO_ANSWER}


@dataclass
class Connection:
    conn: int
    peer: Address
    incoming: bool
    framer: TpktFramer
    calls: set[str] = field(default_factory=set)


class CallSignalling:
    def __init__(self, gk: "Gatekeeper") -> None:
        self.gk = gk
        self.conns: dict[int, Connection] = {}
        self.legs: dict[tuple[int, int], tuple[str, bool]] = {}   # (conn, call ref) -> (call id, caller leg?)
        self._ids = itertools.count(1)
        self._crv = 0

    # --- connections ------------------------------------------------------------------------

    def accept(self, peer: Address, now: float) -> int:
        conn = next(self._ids)
        self.conns[conn] = Connection(conn, peer, True, TpktFramer(self.gk.settings.max_message_bytes))
        return conn

    def receive(self, conn_id: int, data: bytes, now: float) -> None:
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        for payload in conn.framer.feed(data):
            try:
                message = parse(payload)
            except Q931Error as error:
                self.gk.drop("q931-malformed", f"from {conn.peer[0]}:{conn.peer[1]}: {error}")
                continue
            self._message(conn, message, now)
        if conn.framer.broken and conn_id in self.conns:
            self.gk.drop("tpkt-broken", f"from {conn.peer[0]}:{conn.peer[1]}: {conn.framer.broken}")
            self.gk.out.append(StreamClose(conn_id))
            self.closed(conn_id, now, True)

    def closed(self, conn_id: int, now: float, reset: bool) -> None:
        conn = self.conns.pop(conn_id, None)
        if conn is None:
            return
        for call_id in list(conn.calls):
            call = self.gk.calls.get(call_id)
            if call is not None:
                self.end_call(call, TEMPORARY_FAILURE, "h323: connection " + ("reset" if reset else "closed"), now)
        for key in [k for k in self.legs if k[0] == conn_id]:
            del self.legs[key]

    # --- messages ------------------------------------------------------------------------------

    def _message(self, conn: Connection, message: Q931, now: float) -> None:
        gk = self.gk
        leg = self.legs.get((conn.conn, message.call_ref))
        if leg is None:
            if message.message_type == MessageType.SETUP and conn.incoming and not message.to_originator:
                self._setup(conn, message, now)
            elif message.message_type != MessageType.RELEASE_COMPLETE:
                gk.drop("q931-unknown-call", f"{_name(message.message_type)} for call reference {message.call_ref}")
            return
        call = gk.calls.get(leg[0])
        if call is None or call.relay is None:
            return
        uu = self._uu(message)
        if leg[1]:
            self._from_caller(call, call.relay, message, uu, now)
        else:
            self._from_callee(call, call.relay, message, uu, now)

    def _uu(self, message: Q931) -> dict[str, Any] | None:
        raw = message.user_user
        if raw is None:
            return None
        try:
            return decode_uu(raw)
        except Asn1Error as error:
            self.gk.drop("uuie-undecodable", f"{_name(message.message_type)}: {error}")
            return None

    def _setup(self, conn: Connection, message: Q931, now: float) -> None:
        gk = self.gk
        gk.stats.setups += 1
        uu = self._uu(message)
        body = _body(uu, "setup")
        if body is None:
            self._refuse(conn, message.call_ref, b"", 100, "Setup without an H.225.0 setup UUIE")
            return
        call_id, guid, conference = call_key(body)
        if not guid:
            self._refuse(conn, message.call_ref, b"", 100, "Setup without callIdentifier or conferenceID")
            return
        call = gk.calls.get(call_id)
        if call is not None and call.relay is not None:
            gk.drop("setup-duplicate", f"second Setup for {call_id}")
            return
        relay = CallRelay(call_id, Leg(conn.conn, message.call_ref))
        self.legs[(conn.conn, message.call_ref)] = (call_id, True)
        conn.calls.add(call_id)
        self._send(conn.conn, self._own(MessageType.CALL_PROCEEDING, message.call_ref, True, guid, ("callProceeding", {
            "protocolIdentifier": PROTOCOL_ID, "destinationInfo": {"mc": False, "undefinedNode": False},
            "callIdentifier": {"guid": guid}})))
        aliases = aliases_of(body.get("destinationAddress"))
        if message.called_number:
            aliases += (("e164", message.called_number),)
        callee_ep = gk.registry.find(aliases)
        target = callee_ep.call_signal if callee_ep is not None else None
        if target is None:
            named = transport_address(body.get("destCallSignalAddress"))
            target = named if named != gk.settings.call_signal else None
        channels = self._channels(body)
        proposals = [c.spec for c in channels if not c.reverse and c.spec is not None]

        def admitted(record: "H323Call") -> None:
            record.relay = relay
            gk.deadlines.cancel(("setup", record.call_id))
            if callee_ep is not None:
                record.callee_ep = callee_ep.endpoint_id
            if record.caller_media is None:
                record.caller_media = next((c.media for c in channels if c.reverse and c.media), None)
            route = target or gk.settings.route_for(record.callee_community)   # a SIP community: the gateway
            if route is None:
                self.end_call(record, UNALLOCATED_NUMBER, "h323: destination not found", now)
                return
            self._refine(record, proposals, lambda: self._route(record, relay, message, route, now), now)

        if call is not None:
            admitted(call)
            return
        sources = [conn.peer[0]] + [a[0] for a in (transport_address(body.get("sourceCallSignalAddress")),) if a]
        caller_community = community_of(gk.directory, sources, aliases_of(body.get("sourceAddress")))
        callee_community = callee_ep.community if callee_ep is not None else destination_community(gk.directory,
                                                                                                   aliases)
        if callee_community is None and target is not None:
            callee_community = gk.directory.by_address(target[0])
        if target is None:
            target = gk.settings.route_for(callee_community)
        if caller_community is None or callee_community is None or target is None:
            self._refuse(conn, message.call_ref, guid, UNALLOCATED_NUMBER if caller_community else 21,
                         "caller or destination in no known community", call_id)
            return
        spec = proposals[0] if proposals else G711
        request = AdmissionRequest(call_id, caller_community, callee_community, spec, protocol=SignallingProtocol.H323)

        def decided(result: "Result") -> None:
            from .gatekeeper import H323Call
            if isinstance(result, Admitted) and conn.conn not in self.conns:   # the caller left meanwhile
                gk.ask(Release(call_id, "h323: caller left before admission answered"))
                return
            if isinstance(result, Admitted):
                record = H323Call(call_id, guid, conference, caller_community, callee_community, 1280, spec,
                                  result.serial, now)
                gk.calls[call_id] = record
                gk.stats.admitted += 1
                admitted(record)
            else:
                gk.stats.rejected += 1
                cause = REJECTIONS[result.reason][1] if isinstance(result, Rejected) else TEMPORARY_FAILURE
                self._refuse(conn, message.call_ref, guid, cause, f"admission: {_detail(result)}", call_id)
        gk.ask(Admit(request), decided)

    def _refine(self, call: "H323Call", proposals: list[MediaSpec], then: Callable[[], None], now: float) -> None:
        """Modify the allocation to the first proposed codec the policy admits, then continue."""
        candidates = list(dict.fromkeys(p for p in proposals if p is not None))
        if not candidates or call.spec in candidates[:1]:
            then()
            return
        spec = candidates[0]

        def decided(result: "Result") -> None:
            if call.ended:
                return
            if isinstance(result, Admitted):
                call.spec = spec
                then()
            elif isinstance(result, Rejected) and result.reason is RejectReason.CODEC_NOT_ALLOWED and candidates[1:]:
                self._refine(call, candidates[1:], then, now)
            else:
                cause = REJECTIONS[result.reason][1] if isinstance(result, Rejected) else TEMPORARY_FAILURE
                self.gk.stats.rejected += 1
                self.end_call(call, cause, f"h323: codec refused ({_detail(result)})", now)
        self.gk.ask(Modify(call.call_id, spec), decided)

    def _route(self, call: "H323Call", relay: CallRelay, setup: Q931, target: Address, now: float) -> None:
        if call.ended:
            return
        conn_id = next(self._ids)
        self._crv = self._crv % 0x7FFF + 1
        self.conns[conn_id] = Connection(conn_id, target, False, TpktFramer(self.gk.settings.max_message_bytes),
                                         {call.call_id})
        self.legs[(conn_id, self._crv)] = (call.call_id, False)
        self.gk.out.append(StreamOpen(conn_id, target[0], target[1]))
        self._send(conn_id, serialize(Q931(setup.message_type, self._crv, False, setup.ies)))
        self._timer(call, relay.routed(Leg(conn_id, self._crv)).timer, now)

    def _from_caller(self, call: "H323Call", relay: CallRelay, message: Q931, uu: dict[str, Any] | None,
                     now: float) -> None:
        step = relay.from_caller(message.message_type)
        if uu is not None:
            self._observe(call, True, uu, now)
        if step.forward and relay.callee is not None:
            self.gk.stats.relayed += 1
            self._send(relay.callee.conn, serialize(Q931(message.message_type, relay.callee.call_ref, False,
                                                         message.ies)))
        if step.ends:
            self.end_call(call, message.cause or 16, "h323: caller ReleaseComplete", now, notify=False)

    def _from_callee(self, call: "H323Call", relay: CallRelay, message: Q931, uu: dict[str, Any] | None,
                     now: float) -> None:
        before = relay.phase
        step = relay.from_callee(message.message_type)
        if uu is not None:
            self._observe(call, False, uu, now)
        if step.forward:
            self.gk.stats.relayed += 1
            self._send(relay.caller.conn, serialize(Q931(message.message_type, relay.caller.call_ref, True,
                                                         message.ies)))
        if step.ends:
            self.end_call(call, message.cause or 16, "h323: callee ReleaseComplete", now, notify=False)
            return
        if step.phase is not before:
            if step.phase is Phase.CONNECTED:
                self.gk.stats.connected += 1
            self._timer(call, step.timer, now)

    # --- media ----------------------------------------------------------------------------

    def _channels(self, body: dict[str, Any]) -> list[Channel]:
        out: list[Channel] = []
        for raw in body.get("fastStart", ()) or ():
            try:
                out.append(channel_of(decode_olc(raw)))
            except (Asn1Error, TypeError) as error:
                self.gk.drop("faststart-undecodable", str(error))
        return out

    def _observe(self, call: "H323Call", from_caller: bool, uu: dict[str, Any], now: float) -> None:
        pdu = uu.get("h323-uu-pdu", {})
        body = pdu.get("h323-message-body", ("", None))[1]
        answer: MediaSpec | None = None
        if isinstance(body, dict) and not from_caller:
            for channel in self._channels(body):
                if channel.reverse:
                    call.caller_media = call.caller_media or channel.media
                else:
                    call.callee_media = channel.media or call.callee_media
                    answer = answer or channel.spec
        for raw in pdu.get("h245Control", ()) or ():
            try:
                kind, value = decode_h245(raw)
            except Asn1Error as error:
                self.gk.drop("h245-undecodable", str(error))
                continue
            if kind == "request" and value[0] == "openLogicalChannel":
                channel = channel_of(value[1])
                answer = answer or (channel.spec if not channel.reverse else None)
            elif kind == "response" and value[0] == "openLogicalChannelAck":
                ack = value[1].get("forwardMultiplexAckParameters", ("", {}))[1]
                media = endpoint_of(ack.get("mediaChannel")) if isinstance(ack, dict) else None
                if media is not None:
                    if from_caller:
                        call.caller_media = media
                    else:
                        call.callee_media = media
        if answer is not None and answer != call.spec:
            self._refine(call, [answer], lambda: self._attach(call), now)
        else:
            self._attach(call)

    def _attach(self, call: "H323Call") -> None:
        if call.attached or call.ended or call.caller_media is None or call.callee_media is None:
            return
        call.attached = True
        self.gk.ask(AttachMedia(call.call_id, call.caller_media, call.callee_media))

    # --- ends ------------------------------------------------------------------------------

    def end_call(self, call: "H323Call", q850: int, cause: str, now: float, *, notify: bool = True,
                 release: bool = True) -> None:
        """The one way a call ends: admission released (unless it ended the call itself),
        ReleaseComplete to each leg still up (unless it came from there), connections closed."""
        gk = self.gk
        if call.ended:
            return
        call.ended = True
        gk.calls.pop(call.call_id, None)
        gk.deadlines.cancel(("setup", call.call_id))
        gk.deadlines.cancel(("q931", call.call_id))
        gk.stats.released += 1
        if release:
            gk.ask(Release(call.call_id, cause))
        relay = call.relay
        if relay is None:
            return
        relay.phase = Phase.RELEASED
        for leg, to_originator in ((relay.caller, True), (relay.callee, False)):
            if leg is None:
                continue
            self.legs.pop((leg.conn, leg.call_ref), None)
            conn = self.conns.get(leg.conn)
            if conn is None:
                continue
            if notify:
                self._send(leg.conn, self._release_complete(leg.call_ref, to_originator, call.guid, q850))
            conn.calls.discard(call.call_id)
            if not conn.calls:
                del self.conns[leg.conn]
                gk.out.append(StreamClose(leg.conn))

    def controller_ended(self, call_id: str, serial: int, cause: str, now: float) -> None:
        call = self.gk.calls.get(call_id)
        if call is None or (serial and call.serial and serial != call.serial):
            return
        self._drq_both(call)
        self.end_call(call, cause_of_release(cause), cause, now, release=False)

    def reconcile(self, live: set[str], asked_at: float, now: float) -> None:
        for call in [c for c in self.gk.calls.values() if c.call_id not in live and c.created_at < asked_at]:
            self._drq_both(call)
            self.end_call(call, NORMAL, "h323: the controller no longer holds the call", now, release=False)

    def media_idle(self, call_id: str, now: float) -> None:
        call = self.gk.calls.get(call_id)
        if call is not None:
            self._drq_both(call)
            self.end_call(call, TIMER_EXPIRY, "media-idle", now)

    def _drq_both(self, call: "H323Call") -> None:
        for endpoint_id in (call.caller_ep, call.callee_ep):
            self.gk.ras.send_drq(endpoint_id, call)

    def timer(self, key: tuple[Any, ...], now: float) -> None:
        call = self.gk.calls.get(key[1])
        if call is None:
            return
        if key[0] == "setup":
            self._drq_both(call)
            self.end_call(call, TIMER_EXPIRY, "h323: no Setup after ACF", now)
        elif key[0] == "q931" and call.relay is not None:
            name = PHASE_TIMERS.get(call.relay.phase, "")
            step = call.relay.expired(name)
            if step.ends:
                self.end_call(call, TIMER_CAUSES.get(name, TIMER_EXPIRY), f"h323: {name.upper()} expired", now)

    def _timer(self, call: "H323Call", name: str | None, now: float) -> None:
        if name is None:
            self.gk.deadlines.cancel(("q931", call.call_id))
        else:
            self.gk.deadlines.set(("q931", call.call_id), now + self.gk.settings.timer_s(name))

    # --- output ---------------------------------------------------------------------------

    def _refuse(self, conn: Connection, call_ref: int, guid: bytes, cause: int, detail: str,
                call_id: str | None = None) -> None:
        self.gk.drop("setup-refused", detail)
        self._send(conn.conn, self._release_complete(call_ref, True, guid, cause))
        self.legs.pop((conn.conn, call_ref), None)
        if call_id is not None:
            conn.calls.discard(call_id)

    def _release_complete(self, call_ref: int, to_originator: bool, guid: bytes, cause: int) -> bytes:
        fields: dict[str, Any] = {"protocolIdentifier": PROTOCOL_ID, "reason": (release_reason(cause), 0)}
        if len(guid) == 16:
            fields["callIdentifier"] = {"guid": guid}
        return self._own(MessageType.RELEASE_COMPLETE, call_ref, to_originator, guid, ("releaseComplete", fields),
                         cause)

    def _own(self, message_type: int, call_ref: int, to_originator: bool, guid: bytes, body: tuple[str, Any],
             cause: int | None = None) -> bytes:
        del guid
        uu = encode_uu({"h323-uu-pdu": {"h323-message-body": body}})
        message = Q931(message_type, call_ref, to_originator)
        if cause is not None:
            message = message.with_ie(IE.CAUSE, cause_ie(cause))
        return serialize(message.with_user_user(uu))

    def _send(self, conn: int, q931: bytes) -> None:
        self.gk.out.append(StreamSend(conn, tpkt(q931)))


def _body(uu: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if uu is None:
        return None
    body = uu.get("h323-uu-pdu", {}).get("h323-message-body")
    if isinstance(body, tuple) and body[0] == kind and isinstance(body[1], dict):
        return body[1]
    return None


def _detail(result: object) -> str:
    if isinstance(result, Rejected):
        return f"{result.reason.value}: {result.detail}"
    return repr(result)


def _name(message_type: int) -> str:
    try:
        return MessageType(message_type).name
    except ValueError:
        return f"message type {message_type:#04x}"
