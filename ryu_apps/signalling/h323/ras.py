"""RAS (H.225.0 registration, admission and status) on the gatekeeper's UDP port.

GRQ/GCF/GRJ; RRQ/RCF/RRJ (full and lightweight keepAlive, time to live); URQ/UCF/URJ
both ways; ARQ/ACF/ARJ (admission against the pool between the two communities; the
ACF names our own call-signalling address: gatekeeper-routed); BRQ/BCF/BRJ (modify);
DRQ/DCF (release; both ways); LRQ/LCF/LRJ; IRQ/IRR/IACK (polling for dead calls); RIP.

A request retransmitted with the same requestSeqNum from the same address is answered
with the bytes sent the first time (or RIP while admission is still deciding), never
decided twice.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Hashable

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, SignallingProtocol

from ..call_control import Admit, Modify
from .actions import Datagram
from .asn1 import Asn1Error, decode_ras, encode_ras_fast
from .media import spec_from_bandwidth
from .reasons import CALLED_PARTY_NOT_REGISTERED, CALLER_NOT_REGISTERED, REJECTIONS, TIMER_EXPIRY
from .registry import (Address, Endpoint, aliases_of, asn_alias, asn_transport, community_of,
                       destination_community, transport_address)

if TYPE_CHECKING:
    from .gatekeeper import Gatekeeper, H323Call, Result

log = logging.getLogger(__name__)
PROTOCOL_ID = (0, 0, 8, 2250, 0, 4)
Answer = tuple[str, dict[str, Any]]


def call_key(fields: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """(admission call id, callIdentifier guid, conferenceID) of a RAS request or UUIE."""
    conference = fields.get("conferenceID", b"") or b""
    ident = fields.get("callIdentifier")
    guid = ident.get("guid", b"") if isinstance(ident, dict) else b""
    guid = guid or conference
    return "h323-" + guid.hex(), guid, conference


class RasHandler:
    def __init__(self, gk: "Gatekeeper") -> None:
        self.gk = gk
        self.answers: collections.OrderedDict[Hashable, tuple[float, bytes | int]] = collections.OrderedDict()
        self.seq = 0
        self.irq_sent: dict[str, tuple[int, float]] = {}     # endpoint id -> (seq, when)
        self.irq_missed: dict[str, int] = {}

    # --- input ----------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> None:
        gk = self.gk
        gk.stats.ras_received += 1
        if len(data) > gk.settings.max_message_bytes:
            gk.drop("ras-oversized", f"{len(data)} bytes from {source[0]}:{source[1]}")
            return
        try:
            kind, fields = decode_ras(data)
        except Asn1Error as error:
            gk.drop("ras-undecodable", f"from {source[0]}:{source[1]}: {error}")
            return
        seq = fields.get("requestSeqNum")
        handler = getattr(self, "_" + kind, None)
        if handler is None or not isinstance(seq, int):
            gk.drop("ras-unhandled", f"{kind} from {source[0]}:{source[1]}")
            return
        key = (source, kind, seq)
        cached = self.answers.get(key)
        if cached is not None:
            gk.stats.retransmissions += 1
            answer = cached[1]
            if isinstance(answer, bytes):
                self._send_bytes(source, answer)
            else:
                self._rip(source, seq)
            return
        handler(fields, source, seq, key, now)

    # --- registration ---------------------------------------------------------------------

    def _gatekeeperRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        wanted = f.get("gatekeeperIdentifier")
        if wanted and wanted != gk.settings.gatekeeper_id:
            self._answer(key, src, ("gatekeeperReject", {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                                                         "gatekeeperIdentifier": gk.settings.gatekeeper_id,
                                                         "rejectReason": ("terminalExcluded", 0)}), now)
            return
        self._answer(key, src, ("gatekeeperConfirm", {
            "requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
            "gatekeeperIdentifier": gk.settings.gatekeeper_id, "rasAddress": asn_transport(gk.settings.ras)}), now)

    def _registrationRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        ttl = gk.settings.registration_ttl_s
        asked = f.get("timeToLive")
        if isinstance(asked, int) and 0 < asked < ttl:
            ttl = asked
        if f.get("keepAlive"):
            endpoint = gk.registry.get(f.get("endpointIdentifier"))
            if endpoint is None:
                self._reject_rrq(key, src, seq, ("fullRegistrationRequired", 0), now)
                return
            gk.registry.refresh(endpoint.endpoint_id, now)
            gk.deadlines.set(("reg", endpoint.endpoint_id), now + endpoint.ttl_s * 1.5)
            self._rcf(key, src, seq, endpoint, now)
            return
        signal = [a for a in (transport_address(x) for x in f.get("callSignalAddress", ())) if a is not None]
        aliases = aliases_of(f.get("terminalAlias"))
        previous = gk.registry.by_ras(src)
        endpoint_id = previous.endpoint_id if previous is not None else gk.registry.new_id()
        for alias in aliases:
            owner = gk.registry.alias_owner(alias)
            if owner is not None and owner != endpoint_id:
                self._reject_rrq(key, src, seq, ("duplicateAlias", [asn_alias(alias)]), now)
                return
        addresses = [src[0]] + [a[0] for a in signal]
        community = community_of(gk.directory, addresses, aliases)
        endpoint = Endpoint(endpoint_id, src, signal[0] if signal else None, aliases, community, ttl, now + ttl)
        gk.registry.add(endpoint)
        gk.stats.registrations += 1
        gk.deadlines.set(("reg", endpoint_id), now + ttl * 1.5)
        if community is None:
            log.info("H.323 endpoint %s (%s) belongs to no community: its calls will be refused",
                     endpoint_id, ", ".join(a[1] for a in aliases) or src[0])
        self._rcf(key, src, seq, endpoint, now)

    def _rcf(self, key: Hashable, src: Address, seq: int, endpoint: Endpoint, now: float) -> None:
        gk = self.gk
        fields: dict[str, Any] = {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                                  "callSignalAddress": [asn_transport(gk.settings.call_signal)],
                                  "gatekeeperIdentifier": gk.settings.gatekeeper_id,
                                  "endpointIdentifier": endpoint.endpoint_id, "timeToLive": endpoint.ttl_s,
                                  "willRespondToIRR": False, "maintainConnection": False}
        if endpoint.aliases:
            fields["terminalAlias"] = [asn_alias(a) for a in endpoint.aliases]
        self._answer(key, src, ("registrationConfirm", fields), now)

    def _reject_rrq(self, key: Hashable, src: Address, seq: int, reason: Any, now: float) -> None:
        self._answer(key, src, ("registrationReject", {"requestSeqNum": seq, "protocolIdentifier": PROTOCOL_ID,
                                                       "rejectReason": reason}), now)

    def _unregistrationRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        endpoint = gk.registry.get(f.get("endpointIdentifier")) or gk.registry.by_ras(src)
        if endpoint is None:
            self._answer(key, src, ("unregistrationReject", {"requestSeqNum": seq,
                                                             "rejectReason": ("notCurrentlyRegistered", 0)}), now)
            return
        self._forget(endpoint, 16, "h323: endpoint unregistered", now)
        self._answer(key, src, ("unregistrationConfirm", {"requestSeqNum": seq}), now)

    def _forget(self, endpoint: Endpoint, q850: int, cause: str, now: float) -> None:
        gk = self.gk
        gk.registry.remove(endpoint.endpoint_id)
        gk.deadlines.cancel(("reg", endpoint.endpoint_id))
        self.irq_sent.pop(endpoint.endpoint_id, None)
        self.irq_missed.pop(endpoint.endpoint_id, None)
        for call in [c for c in gk.calls.values() if endpoint.endpoint_id in (c.caller_ep, c.callee_ep)]:
            gk.signalling.end_call(call, q850, cause, now)

    # --- admission --------------------------------------------------------------------------

    def _admissionRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        endpoint = gk.registry.get(f.get("endpointIdentifier"))
        if endpoint is None:
            self._arj(key, src, seq, CALLER_NOT_REGISTERED, "caller not registered", now)
            return
        call_id, guid, conference = call_key(f)
        asked = f.get("bandWidth")
        bandwidth = asked if isinstance(asked, int) and asked > 0 else 1280
        existing = gk.calls.get(call_id)
        if existing is not None:                 # the callee's ARQ, or the caller asking again
            if f.get("answerCall"):
                existing.callee_ep = endpoint.endpoint_id
            self._acf(key, src, seq, existing.bandwidth, now)
            return
        sources = [a[0] for a in (transport_address(f.get("srcCallSignalAddress")),) if a is not None]
        if f.get("answerCall"):
            callee_community = endpoint.community
            caller_community = community_of(gk.directory, sources, aliases_of(f.get("srcInfo")))
        else:
            caller_community = endpoint.community
            callee_community = self.destination(f.get("destinationInfo"), f.get("destCallSignalAddress"))
        if caller_community is None and not f.get("answerCall"):
            self._arj(key, src, seq, "requestDenied", f"caller {endpoint.endpoint_id} belongs to no community", now)
            return
        if callee_community is None or caller_community is None:
            self._arj(key, src, seq, CALLED_PARTY_NOT_REGISTERED, "destination in no known community", now)
            return
        spec = spec_from_bandwidth(bandwidth)
        request = AdmissionRequest(call_id, caller_community, callee_community, spec, protocol=SignallingProtocol.H323)

        def decided(result: "Result") -> None:
            self._decided(result, key, src, seq, request, endpoint, guid, conference, bandwidth, bool(f.get("answerCall")),
                          now)
        ticket = gk.ask(Admit(request), decided)
        if gk.pending(ticket):
            self._hold(key, src, seq, ticket, now)

    def _decided(self, result: "Result", key: Hashable, src: Address, seq: int, request: AdmissionRequest,
                 endpoint: Endpoint, guid: bytes, conference: bytes, bandwidth: int, answer_call: bool,
                 now: float) -> None:
        from .gatekeeper import H323Call
        gk = self.gk
        if isinstance(result, Admitted):
            call = H323Call(result.call_id, guid, conference, request.caller_community, request.callee_community,
                            bandwidth, request.media, result.serial, now,
                            caller_ep=None if answer_call else endpoint.endpoint_id,
                            callee_ep=endpoint.endpoint_id if answer_call else None)
            gk.calls[call.call_id] = call
            gk.stats.admitted += 1
            gk.deadlines.set(("setup", call.call_id), now + gk.settings.setup_wait_s)
            self._acf(key, src, seq, bandwidth, now)
        elif isinstance(result, Rejected):
            ras_reason, _ = REJECTIONS[result.reason]
            self._arj(key, src, seq, ras_reason, f"{result.reason.value}: {result.detail}", now)
        else:
            self._arj(key, src, seq, "resourceUnavailable", f"admission failed: {result!r}", now)

    def destination(self, destination_info: Any, dest_address: Any) -> str | None:
        """The callee's community: a registered alias, else E.164 prefix / domain, else address."""
        gk = self.gk
        aliases = aliases_of(destination_info)
        callee = gk.registry.find(aliases)
        if callee is not None:
            return callee.community
        found = destination_community(gk.directory, aliases)
        if found is None:
            address = transport_address(dest_address)
            if address is not None and address != gk.settings.call_signal:
                found = gk.directory.by_address(address[0])
        return found

    def _acf(self, key: Hashable, src: Address, seq: int, bandwidth: int, now: float) -> None:
        self._answer(key, src, ("admissionConfirm", {
            "requestSeqNum": seq, "bandWidth": bandwidth, "callModel": ("gatekeeperRouted", 0),
            "destCallSignalAddress": asn_transport(self.gk.settings.call_signal), "willRespondToIRR": False}), now)

    def _arj(self, key: Hashable, src: Address, seq: int, reason: str, detail: str, now: float) -> None:
        gk = self.gk
        gk.stats.rejected += 1
        log.info("H.323 ARJ %s to %s:%d: %s", reason, src[0], src[1], detail)
        self._answer(key, src, ("admissionReject", {"requestSeqNum": seq, "rejectReason": (reason, 0)}), now)

    def _bandwidthRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        call = gk.calls.get(call_key(f)[0])
        asked = f.get("bandWidth")
        if call is None or not isinstance(asked, int):
            self._answer(key, src, ("bandwidthReject", {"requestSeqNum": seq, "rejectReason": ("invalidConferenceID", 0),
                                                        "allowedBandWidth": 0}), now)
            return
        spec = spec_from_bandwidth(asked)

        def decided(result: "Result") -> None:
            if isinstance(result, Admitted):
                call.bandwidth, call.spec = asked, spec
                self._answer(key, src, ("bandwidthConfirm", {"requestSeqNum": seq, "bandWidth": asked}), now)
            else:
                log.info("H.323 BRJ for %s: %s", call.call_id, getattr(result, "detail", result))
                self._answer(key, src, ("bandwidthReject", {"requestSeqNum": seq,
                                                            "rejectReason": ("insufficientResources", 0),
                                                            "allowedBandWidth": call.bandwidth}), now)
        ticket = gk.ask(Modify(call.call_id, spec), decided)
        if gk.pending(ticket):
            self._hold(key, src, seq, ticket, now)

    def _disengageRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        if gk.registry.get(f.get("endpointIdentifier")) is None and gk.registry.by_ras(src) is None:
            self._answer(key, src, ("disengageReject", {"requestSeqNum": seq, "rejectReason": ("notRegistered", 0)}),
                         now)
            return
        call = gk.calls.get(call_key(f)[0])
        if call is not None:
            gk.signalling.end_call(call, 16, "h323: DRQ", now)
        self._answer(key, src, ("disengageConfirm", {"requestSeqNum": seq}), now)

    def _locationRequest(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        reply = transport_address(f.get("replyAddress")) or src
        if gk.registry.find(aliases_of(f.get("destinationInfo"))) is None:
            self._answer(key, reply, ("locationReject", {"requestSeqNum": seq, "rejectReason": ("requestDenied", 0)}),
                         now)
            return
        self._answer(key, reply, ("locationConfirm", {"requestSeqNum": seq,
                                                      "callSignalAddress": asn_transport(gk.settings.call_signal),
                                                      "rasAddress": asn_transport(gk.settings.ras)}), now)

    # --- status polling -----------------------------------------------------------------

    def _infoRequestResponse(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        gk = self.gk
        endpoint = gk.registry.get(f.get("endpointIdentifier")) or gk.registry.by_ras(src)
        if f.get("needResponse"):
            self._send(src, ("infoRequestAck", {"requestSeqNum": seq}))
        if endpoint is None:
            return
        reported = {call_key(info)[0] for info in f.get("perCallInfo", ()) if isinstance(info, dict)}
        asked = self.irq_sent.pop(endpoint.endpoint_id, None)
        self.irq_missed.pop(endpoint.endpoint_id, None)
        if asked is None:                         # unsolicited: trust it only for what it reports
            return
        for call in [c for c in gk.calls.values() if endpoint.endpoint_id in (c.caller_ep, c.callee_ep)]:
            if call.call_id not in reported and call.created_at < asked[1]:
                gk.signalling.end_call(call, TIMER_EXPIRY, "h323: call not reported in IRR", now)

    def _unregistrationConfirm(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        return None

    def _disengageConfirm(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        return None

    def _disengageReject(self, f: dict[str, Any], src: Address, seq: int, key: Hashable, now: float) -> None:
        return None

    # --- requests we send -------------------------------------------------------------------

    def send_drq(self, endpoint_id: str | None, call: "H323Call") -> None:
        endpoint = self.gk.registry.get(endpoint_id)
        if endpoint is None:
            return
        self._send(endpoint.ras, ("disengageRequest", {
            "requestSeqNum": self._next_seq(), "endpointIdentifier": endpoint.endpoint_id,
            "conferenceID": call.conference_id.ljust(16, b"\0")[:16], "callReferenceValue": 0,
            "disengageReason": ("forcedDrop", 0), "callIdentifier": {"guid": call.guid.ljust(16, b"\0")[:16]}}))

    def timer(self, key: tuple[Any, ...], now: float) -> None:
        gk = self.gk
        if key[0] == "reg":
            endpoint = gk.registry.get(key[1])
            if endpoint is not None:
                self._send(endpoint.ras, ("unregistrationRequest", {
                    "requestSeqNum": self._next_seq(), "callSignalAddress": [],
                    "endpointIdentifier": endpoint.endpoint_id, "reason": ("ttlExpired", 0)}))
                self._forget(endpoint, TIMER_EXPIRY, "h323: registration expired", now)
        elif key[0] == "irq":
            self._poll(now)
            gk.deadlines.set(("irq",), now + gk.settings.irq_interval_s)
        elif key[0] == "rip":
            held = self.answers.get(key[1])
            if held is not None and isinstance(held[1], int) and gk.pending(held[1]):
                self._rip(key[2], key[3])
        elif key[0] == "answer":
            self._expire_answers(now)

    def _poll(self, now: float) -> None:
        gk = self.gk
        busy = {ep for c in gk.calls.values() for ep in (c.caller_ep, c.callee_ep) if ep is not None}
        for idle in [ep for ep in self.irq_sent if ep not in busy]:    # its calls ended: nothing to ask
            del self.irq_sent[idle]
            self.irq_missed.pop(idle, None)
        for endpoint_id in busy:
            endpoint = gk.registry.get(endpoint_id)
            if endpoint is None:
                continue
            if endpoint_id in self.irq_sent:      # the last poll went unanswered
                misses = self.irq_missed.get(endpoint_id, 0) + 1
                self.irq_missed[endpoint_id] = misses
                if misses >= gk.settings.irq_misses:
                    self.irq_missed.pop(endpoint_id, None)
                    self.irq_sent.pop(endpoint_id, None)
                    for call in [c for c in gk.calls.values() if endpoint_id in (c.caller_ep, c.callee_ep)]:
                        gk.signalling.end_call(call, TIMER_EXPIRY, "h323: endpoint answers no IRQ", now)
                    continue
                sent_at = self.irq_sent[endpoint_id][1]
            else:
                sent_at = now
            seq = self._next_seq()
            self.irq_sent[endpoint_id] = (seq, sent_at)
            self._send(endpoint.ras, ("infoRequest", {"requestSeqNum": seq, "callReferenceValue": 0}))

    # --- output -----------------------------------------------------------------------------

    def _answer(self, key: Hashable, dest: Address, message: Answer, now: float) -> None:
        data = self._send(dest, message)
        if data is not None:
            self._remember(key, data, now)

    def _hold(self, key: Hashable, src: Address, seq: int, ticket: int | None, now: float) -> None:
        assert ticket is not None
        self._remember(key, ticket, now)
        self.gk.deadlines.set(("rip", key, src, seq), now + self.gk.settings.rip_after_s)

    def _remember(self, key: Hashable, answer: bytes | int, now: float) -> None:
        self.answers[key] = (now + self.gk.settings.answer_cache_s, answer)
        self.answers.move_to_end(key)
        if len(self.answers) > 50_000:
            self.answers.popitem(last=False)
        if self.gk.deadlines.get(("answer",)) is None:
            self.gk.deadlines.set(("answer",), now + self.gk.settings.answer_cache_s)

    def _expire_answers(self, now: float) -> None:
        while self.answers:
            key, (until, _) = next(iter(self.answers.items()))
            if until > now:
                self.gk.deadlines.set(("answer",), until)
                return
            self.answers.popitem(last=False)

    def _rip(self, dest: Address, seq: int) -> None:
        self.gk.stats.rip_sent += 1
        self._send(dest, ("requestInProgress", {"requestSeqNum": seq, "delay": self.gk.settings.rip_delay_ms}))

    def _send(self, dest: Address, message: Answer) -> bytes | None:
        try:
            data = encode_ras_fast(message)
        except Asn1Error as error:
            self.gk.drop("ras-encode", f"{message[0]}: {error}")
            return None
        self._send_bytes(dest, data)
        return data

    def _send_bytes(self, dest: Address, data: bytes) -> None:
        self.gk.stats.ras_sent += 1
        self.gk.out.append(Datagram(dest[0], dest[1], data))

    def _next_seq(self) -> int:
        self.seq = self.seq % 65535 + 1
        return self.seq

