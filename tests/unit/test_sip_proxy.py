"""The proxy core's call state against a recording CallControl, on byte fixtures."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Decision, Rejected, RejectReason, ServiceLevel,
                                     SignallingProtocol)
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import CodecPolicy, MediaSpec
from ryu_apps.signalling.sip.message import Request, Response, parse_message, parse_name_addr, parse_via
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.routing import RouteTable
from ryu_apps.signalling.sip.transaction import Peer, Send, TimerSettings

CALLER = Peer("udp", "10.1.0.10", 5060)
CALLEE = Peer("udp", "10.2.0.20", 5060)
PROXY_HOST = "10.0.0.1"
POLICY = CodecPolicy(allowed=frozenset({"pcmu", "pcma", "g729", "t38"}))


@dataclass
class RecordingControl:
    """A pool of ``capacity`` kbit/s between communities a and b, recording every call."""

    capacity: int = 200
    used: dict[str, int] = field(default_factory=dict)
    log: list[tuple] = field(default_factory=list)
    serials: dict[str, int] = field(default_factory=dict)
    next_serial: int = 1

    def admit(self, request: AdmissionRequest) -> Decision:
        self.log.append(("admit", request))
        if request.call_id in self.used:
            return Admitted(request.call_id, "a-b", self.used[request.call_id], serial=self.serials[request.call_id])
        return self._fit(request.call_id, request.media, 0)

    def _fit(self, call_id: str, media: MediaSpec, current: int) -> Decision:
        if not POLICY.is_allowed(media.codec):
            return Rejected(call_id, RejectReason.CODEC_NOT_ALLOWED, f"codec {media.codec!r} is not allowed")
        kbps = POLICY.bandwidth_kbps(media) or 0
        if sum(self.used.values()) - current + kbps > self.capacity:
            return Rejected(call_id, RejectReason.POOL_FULL, f"{sum(self.used.values())} of {self.capacity} in use")
        self.used[call_id] = kbps
        if call_id not in self.serials:
            self.serials[call_id] = self.next_serial
            self.next_serial += 1
        return Admitted(call_id, "a-b", kbps, serial=self.serials[call_id])

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> None:
        self.log.append(("attach", call_id, caller, callee))

    def modify(self, call_id: str, media: MediaSpec) -> Decision:
        self.log.append(("modify", call_id, media))
        if call_id not in self.used:
            return Rejected(call_id, RejectReason.UNKNOWN_CALL, "no such call")
        return self._fit(call_id, media, self.used[call_id])

    def release(self, call_id: str, cause: str) -> None:
        self.log.append(("release", call_id, cause))
        self.used.pop(call_id, None)
        self.serials.pop(call_id, None)

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        by_domain = {"site-a.example": "a", "site-b.example": "b"}
        if domain in by_domain:
            return by_domain[domain]
        if address and address.startswith("10.1."):
            return "a"
        if address and address.startswith("10.2."):
            return "b"
        return None

    def calls_of(self, kind: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == kind]


def sdp(codec_pt: str = "0", ip: str = "10.1.0.10", port: int = 4000, extra: str = "") -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {codec_pt} 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}")


def invite(call_id: str = "c1", branch: str = "z9hG4bKa1", *, body: str | None = None, to_tag: str | None = None,
           cseq: int = 1, uri: str = "sip:bob@site-b.example", from_domain: str = "site-a.example",
           from_tag: str = "at", extra: str = "", route: str = "") -> bytes:
    body = sdp() if body is None else body
    to = "<sip:bob@site-b.example>" + (f";tag={to_tag}" if to_tag else "")
    return (f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.10:5060;branch={branch}\r\n"
            f"Max-Forwards: 70\r\n{route}From: <sip:alice@{from_domain}>;tag={from_tag}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@10.1.0.10:5060>\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def request(method: str, call_id: str, branch: str, cseq: int, *, from_tag: str = "at", to_tag: str = "bt",
            uri: str = "sip:bob@10.2.0.20:5060", route: str = "", caller_side: bool = True) -> bytes:
    a = f"<sip:alice@site-a.example>;tag={from_tag}"
    b = f"<sip:bob@site-b.example>;tag={to_tag}"
    sender, receiver = (a, b) if caller_side else (b, a)
    host = "10.1.0.10" if caller_side else "10.2.0.20"
    return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch={branch}\r\nMax-Forwards: 70\r\n{route}"
            f"From: {sender}\r\nTo: {receiver}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def answer(forwarded: bytes, status: int, reason: str, *, to_tag: str = "bt", body: str = "",
           contact: str = "<sip:bob@10.2.0.20:5060>") -> bytes:
    """What the callee answers to a request the proxy forwarded to it."""
    req = parse_message(forwarded)
    assert isinstance(req, Request)
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in req.header_values("via")]
    lines += [f"Record-Route: {v}" for v in req.header_values("record-route")]
    to = req.header("to") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines += [f"From: {req.header('from')}", f"To: {to}", f"Call-ID: {req.call_id}", f"CSeq: {req.header('cseq')}"]
    if contact:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class Harness:
    def __init__(self, control: RecordingControl | None = None, **config: object) -> None:
        self.control = control or RecordingControl()
        defaults: dict[str, object] = dict(host=PROXY_HOST, port=5060,
                                           routes=RouteTable.from_specs(["site-b.example=10.2.0.20:5060"]))
        defaults.update(config)
        self.proxy = SipProxy(ProxyConfig(**defaults), self.control, HashIds(b"test"))  # type: ignore[arg-type]
        self.now = 0.0

    def send(self, data: bytes, source: Peer) -> list[Send]:
        out = self.proxy.receive(data, source, self.now)
        assert self.proxy.stats.internal_errors == 0
        return out

    def advance(self, seconds: float) -> list[Send]:
        out: list[Send] = []
        end = self.now + seconds
        while (deadline := self.proxy.next_timer()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            out += self.proxy.handle_timer(self.now)
        self.now = end
        return out


def to(out: list[Send], peer: Peer) -> list[Request | Response]:
    return [parse_message(s.data) for s in out if s.peer == peer]


def statuses(out: list[Send], peer: Peer) -> list[int]:
    return [m.status for m in to(out, peer) if isinstance(m, Response)]


def only_request(out: list[Send], peer: Peer, method: str) -> tuple[Request, bytes]:
    found = [(parse_message(s.data), s.data) for s in out if s.peer == peer]
    requests = [(m, d) for m, d in found if isinstance(m, Request) and m.method == method]
    assert len(requests) == 1, found
    return requests[0]  # type: ignore[return-value]


def establish(h: Harness, call_id: str = "c1") -> bytes:
    """INVITE -> 180 -> 200 (with SDP) -> ACK. Returns the INVITE as forwarded."""
    out = h.send(invite(call_id, f"z9hG4bK{call_id}"), CALLER)
    _, forwarded = only_request(out, CALLEE, "INVITE")
    h.send(answer(forwarded, 180, "Ringing"), CALLEE)
    out = h.send(answer(forwarded, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)
    assert statuses(out, CALLER) == [200]
    ack = request("ACK", call_id, f"z9hG4bK{call_id}ack", 1, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n")
    only_request(h.send(ack, CALLER), CALLEE, "ACK")
    return forwarded


def test_admitted_invite_is_forwarded_with_record_route_and_media_attached() -> None:
    h = Harness()
    out = h.send(invite(), CALLER)
    assert statuses(out, CALLER) == [100]
    forwarded, raw = only_request(out, CALLEE, "INVITE")
    vias = [parse_via(v) for v in forwarded.header_values("via")]
    assert vias[0].host == PROXY_HOST and vias[0].branch.startswith("z9hG4bK") and vias[1].branch == "z9hG4bKa1"
    assert forwarded.header("max-forwards") == "69"
    assert forwarded.header_values("record-route") == [f"<sip:{PROXY_HOST}:5060;lr>"]
    (_, admitted), = h.control.calls_of("admit")
    assert admitted == AdmissionRequest("c1", "a", "b", MediaSpec("pcmu", 20), ServiceLevel.VOICE, SignallingProtocol.SIP)
    out = h.send(answer(raw, 180, "Ringing"), CALLEE)
    ringing, = to(out, CALLER)
    assert isinstance(ringing, Response) and ringing.header_values("via") == ["SIP/2.0/UDP 10.1.0.10:5060;branch=z9hG4bKa1"]
    h.send(answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)
    assert h.control.calls_of("attach") == [
        ("attach", "c1", MediaEndpoint("10.1.0.10", 4000), MediaEndpoint("10.2.0.20", 5000))]
    # the same deterministic ids again for the same input
    again = Harness()
    assert only_request(again.send(invite(), CALLER), CALLEE, "INVITE")[1] == raw


def test_retransmitted_invite_is_absorbed_and_admitted_once() -> None:
    h = Harness()
    h.send(invite(), CALLER)
    for _ in range(3):
        out = h.send(invite(), CALLER)
        assert statuses(out, CALLER) == [100] and not to(out, CALLEE)
    assert len(h.control.calls_of("admit")) == 1 and h.proxy.stats.retransmissions == 3


def test_bye_from_callee_releases_and_is_forwarded_to_caller_contact() -> None:
    h = Harness()
    establish(h)
    bye = request("BYE", "c1", "z9hG4bKbye", 1, caller_side=False, uri="sip:alice@10.1.0.10:5060",
                  route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n")
    out = h.send(bye, CALLEE)
    forwarded, _ = only_request(out, CALLER, "BYE")
    assert not forwarded.header_values("route")
    assert h.control.calls_of("release") == [("release", "c1", "bye-from-callee")] and not h.control.used


def test_bye_from_caller_releases() -> None:
    h = Harness()
    establish(h)
    out = h.send(request("BYE", "c1", "z9hG4bKbye", 2, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"), CALLER)
    _, raw = only_request(out, CALLEE, "BYE")
    assert statuses(h.send(answer(raw, 200, "OK", contact=""), CALLEE), CALLER) == [200]
    assert h.control.calls_of("release") == [("release", "c1", "bye-from-caller")]


@pytest.mark.parametrize("used, body, extra, status, cause", [
    (200, None, "", 503, "cause=34"),
    (200, sdp(extra="a=curr:qos local none\r\na=des:qos mandatory local sendrecv\r\n"), "", 580, "cause=34"),
    (0, sdp("9"), "", 488, "cause=65"),     # G.722 is not allowed
])
def test_rejections_answer_with_status_and_reason(used: int, body: str | None, extra: str, status: int,
                                                  cause: str) -> None:
    h = Harness(RecordingControl(used={"old": used} if used else {}))
    out = h.send(invite(body=body, extra=extra), CALLER)
    assert statuses(out, CALLER) == [100, status] and not to(out, CALLEE)
    response = to(out, CALLER)[-1]
    assert cause in (response.header("reason") or "") and parse_name_addr(response.header("to") or "").tag
    # the caller's ACK ends the transaction there; retransmitted INVITE gets the same answer, no new admit
    assert statuses(h.send(invite(body=body, extra=extra), CALLER), CALLER) == [status]
    assert h.send(request("ACK", "c1", "z9hG4bKa1", 1, to_tag="x", uri="sip:bob@site-b.example"), CALLER) == []
    assert len(h.control.calls_of("admit")) == 1


def test_a_path_down_refusal_is_503_network_out_of_order_with_the_link_named() -> None:
    control = RecordingControl()
    detail = "aggregate a-b (path s1-s2-s3): link s2-s3 is down: port s2:11 (s2-eth11) is down"
    control.admit = lambda request: Rejected(request.call_id, RejectReason.PATH_DOWN, detail)  # type: ignore
    h = Harness(control)
    out = h.send(invite(), CALLER)
    assert statuses(out, CALLER) == [100, 503] and not to(out, CALLEE)
    reason = to(out, CALLER)[-1].header("reason") or ""
    assert "cause=38" in reason and f"path-down: {detail}" in reason
    assert h.proxy.stats.rejected == {"path-down": 1}


def test_caller_outside_every_community_is_403() -> None:
    h = Harness()
    out = h.send(invite(from_domain="elsewhere.example"), Peer("udp", "192.0.2.1", 5060))
    assert statuses(out, Peer("udp", "192.0.2.1", 5060)) == [100, 403]
    assert not h.control.calls_of("admit") and h.proxy.stats.forbidden == 1


def test_emergency_and_fax_levels() -> None:
    h = Harness(routes=RouteTable.from_specs(["site-b.example=10.2.0.20:5060"]))
    h.send(invite("e1", "z9hG4bKe1", uri="sip:911@site-b.example"), CALLER)
    h.send(invite("e2", "z9hG4bKe2", extra="Resource-Priority: esnet.0\r\n"), CALLER)
    h.send(invite("f1", "z9hG4bKf1", body=sdp().replace("m=audio 4000 RTP/AVP 0 101", "m=image 4000 udptl t38")),
           CALLER)
    levels = {r.call_id: r.level for _, r in h.control.calls_of("admit")}
    assert levels == {"e1": ServiceLevel.EMERGENCY, "e2": ServiceLevel.EMERGENCY, "f1": ServiceLevel.VOICE_BAND_DATA}


def test_cancel_during_ringing_releases_and_cancels_downstream() -> None:
    h = Harness()
    out = h.send(invite(), CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    h.send(answer(raw, 180, "Ringing"), CALLEE)
    cancel = request("CANCEL", "c1", "z9hG4bKa1", 1, to_tag="", uri="sip:bob@site-b.example").replace(
        b"To: <sip:bob@site-b.example>;tag=\r\n", b"To: <sip:bob@site-b.example>\r\n")
    out = h.send(cancel, CALLER)
    assert statuses(out, CALLER) == [200]
    forwarded_cancel, _ = only_request(out, CALLEE, "CANCEL")
    assert forwarded_cancel.top_via.branch == parse_message(raw).top_via.branch
    assert h.control.calls_of("release") == [("release", "c1", "cancel")]
    out = h.send(answer(raw, 487, "Request Terminated"), CALLEE)
    only_request(out, CALLEE, "ACK")
    assert statuses(out, CALLER) == [487]


def test_cancel_before_any_provisional_waits_for_one() -> None:
    h = Harness()
    out = h.send(invite(), CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    out = h.send(request("CANCEL", "c1", "z9hG4bKa1", 1, uri="sip:bob@site-b.example"), CALLER)
    assert statuses(out, CALLER) == [200] and not to(out, CALLEE)
    out = h.send(answer(raw, 180, "Ringing"), CALLEE)
    only_request(out, CALLEE, "CANCEL")


def test_busy_final_failure_releases_and_is_acked_hop_by_hop() -> None:
    h = Harness()
    _, raw = only_request(h.send(invite(), CALLER), CALLEE, "INVITE")
    out = h.send(answer(raw, 486, "Busy Here"), CALLEE)
    ack, _ = only_request(out, CALLEE, "ACK")
    assert ack.top_via.branch == parse_message(raw).top_via.branch
    assert statuses(out, CALLER) == [486]
    assert h.control.calls_of("release") == [("release", "c1", "sip-486")]
    # a retransmitted 486 is absorbed (ACK repeated, nothing forwarded)
    out = h.send(answer(raw, 486, "Busy Here"), CALLEE)
    assert statuses(out, CALLER) == [] and len(to(out, CALLEE)) == 1


def test_timer_c_cancels_and_releases_a_call_nobody_answers() -> None:
    h = Harness(timers=TimerSettings(timer_c=3.0))
    _, raw = only_request(h.send(invite(), CALLER), CALLEE, "INVITE")
    h.send(answer(raw, 180, "Ringing"), CALLEE)
    out = h.advance(3.2)   # (the CANCEL itself is retransmitted from 3.5 s on, like any UDP request)
    only_request(out, CALLEE, "CANCEL")
    assert h.control.calls_of("release") == [("release", "c1", "timer-c")]
    out = h.send(answer(raw, 487, "Request Terminated"), CALLEE)
    assert statuses(out, CALLER) == [487]


def test_no_response_at_all_times_out_with_408_after_retransmitting() -> None:
    h = Harness()
    h.send(invite(), CALLER)
    out = h.advance(40)
    retransmitted = [m for m in to(out, CALLEE) if isinstance(m, Request) and m.method == "INVITE"]
    assert len(retransmitted) == 6       # timer A: 0.5, 1, 2, 4, 8, 16 s before timer B at 32 s
    assert statuses(out, CALLER)[0] == 408 and set(statuses(out, CALLER)) == {408}   # repeated until ACKed (G)
    assert h.control.calls_of("release") == [("release", "c1", "timeout")]


def test_reinvite_refused_keeps_the_old_allocation_and_accepted_one_modifies() -> None:
    h = Harness(RecordingControl(capacity=100))
    establish(h)
    assert h.control.used == {"c1": 91}
    route = f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"
    too_big = invite("c1", "z9hG4bKre1", to_tag="bt", cseq=2, uri="sip:bob@10.2.0.20:5060", route=route,
                     body=sdp("96").replace("a=rtpmap:101", "b=AS:200\r\na=rtpmap:96 PCMU/8000\r\na=rtpmap:101"))
    out = h.send(too_big, CALLER)
    assert statuses(out, CALLER) == [100, 503] and not to(out, CALLEE)
    assert h.control.used == {"c1": 91} and h.proxy.calls["c1"].media == MediaSpec("pcmu", 20)
    smaller = invite("c1", "z9hG4bKre2", to_tag="bt", cseq=3, uri="sip:bob@10.2.0.20:5060", route=route,
                     body=sdp("18", port=4002))
    out = h.send(smaller, CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    assert h.control.used["c1"] < 91
    h.send(answer(raw, 200, "OK", body=sdp("18", "10.2.0.20", 5002)), CALLEE)
    assert h.control.calls_of("attach")[-1] == (
        "attach", "c1", MediaEndpoint("10.1.0.10", 4002), MediaEndpoint("10.2.0.20", 5002))


def test_failed_reinvite_reverts_the_modification() -> None:
    h = Harness()
    establish(h)
    route = f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"
    out = h.send(invite("c1", "z9hG4bKre1", to_tag="bt", cseq=2, uri="sip:bob@10.2.0.20:5060", route=route,
                        body=sdp("18")), CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    h.send(answer(raw, 488, "Not Acceptable Here"), CALLEE)
    assert h.control.used == {"c1": 91}


def test_media_idle_releases_and_sends_bye_both_ways() -> None:
    h = Harness()
    establish(h)
    out = h.proxy.media_idle("c1", h.now)
    to_callee, _ = only_request(out, CALLEE, "BYE")
    to_caller, _ = only_request(out, CALLER, "BYE")
    assert to_callee.uri == "sip:bob@10.2.0.20:5060" and to_caller.uri == "sip:alice@10.1.0.10:5060"
    assert parse_name_addr(to_callee.header("from") or "").tag == "at"
    assert parse_name_addr(to_caller.header("from") or "").tag == "bt"
    assert to_callee.cseq == (2, "BYE") and 'text="media-idle"' in (to_callee.header("reason") or "")
    assert h.control.calls_of("release") == [("release", "c1", "media-idle")]
    # the 200s to our own BYEs stop there
    _, raw = only_request(out, CALLEE, "BYE")
    assert h.send(answer(raw, 200, "OK", contact=""), CALLEE) == []
    assert h.proxy.media_idle("c1", h.now) == []


def test_malformed_input_is_answered_or_dropped_and_counted() -> None:
    h = Harness()
    established = establish(h)
    bad_cseq = invite("c9", "z9hG4bKc9").replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    assert statuses(h.send(bad_cseq, CALLER), CALLER) == [400]
    no_call_id = invite("c8", "z9hG4bKc8").replace(b"Call-ID: c8\r\n", b"")
    assert h.send(no_call_id, CALLER) == []
    assert h.send(b"\x00\xffgarbage\r\n\r\n", CALLER) == []
    huge = invite("c7", "z9hG4bKc7").replace(b"Contact:", b"X-Pad: " + b"x" * 70000 + b"\r\nContact:")
    assert statuses(h.send(huge, CALLER), CALLER) == [413]
    huge_early = invite("c6", "z9hG4bKc6").replace(b"Max-Forwards:", b"X-Pad: " + b"x" * 70000 + b"\r\nMax-Forwards:")
    assert h.send(huge_early, CALLER) == []   # Call-ID etc. lie beyond the limit: no response can be built
    assert h.send(b"\r\n\r\n", CALLER) == []
    stats = h.proxy.stats
    assert (stats.malformed, stats.dropped, stats.answered_malformed, stats.oversized, stats.keepalives) == (5, 3, 2, 2, 1)
    assert h.control.used == {"c1": 91} and "c1" in h.proxy.calls and established


def test_max_forwards_zero_is_483_and_requests_to_the_proxy_itself() -> None:
    h = Harness()
    out = h.send(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), CALLER)
    assert statuses(out, CALLER) == [100, 483]
    options = request("OPTIONS", "o1", "z9hG4bKo1", 1, uri=f"sip:{PROXY_HOST}:5060")
    assert statuses(h.send(options, CALLER), CALLER) == [200]
    nowhere = request("OPTIONS", "o2", "z9hG4bKo2", 1, uri="sip:x@unknown.example")
    assert statuses(h.send(nowhere, CALLER), CALLER) == [404]


def test_same_community_call_is_forwarded_without_admission() -> None:
    h = Harness(routes=RouteTable.from_specs(["site-a.example=10.1.0.99:5060"]))
    out = h.send(invite(uri="sip:carol@site-a.example"), CALLER)
    only_request(out, Peer("udp", "10.1.0.99", 5060), "INVITE")
    assert not h.control.calls_of("admit") and h.proxy.stats.unmanaged == 1


def test_transactions_are_forgotten_after_their_timers() -> None:
    h = Harness()
    establish(h)
    h.send(request("BYE", "c1", "z9hG4bKbye", 2, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"), CALLER)
    h.advance(100)
    assert h.proxy.transaction_counts() == (0, 0) and h.proxy.next_timer() is None


def test_with_the_real_media_aggregation_manager() -> None:
    from ryu_apps.config import build_manager, parse_config
    from ryu_apps.service import MamService

    config = parse_config({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 200}],
        "codecs": {"allowed": ["pcmu", "g729"]},
    })
    service = MamService(build_manager(config))
    h = Harness()
    h.proxy.control = service  # type: ignore[assignment]
    for n in range(3):
        h.send(invite(f"r{n}", f"z9hG4bKr{n}"), CALLER)
    assert service.read(lambda m: m.used_kbps("a-b")) == 182
    assert h.proxy.stats.admitted == 2 and h.proxy.stats.rejected == {"pool-full": 1}
    h.send(invite("r9", "z9hG4bKr9", body=sdp("8")), CALLER)
    assert h.proxy.stats.rejected == {"pool-full": 1, "codec-not-allowed": 1}
    h.advance(40)   # nobody answers: timer B releases everything
    assert service.read(lambda m: m.used_kbps("a-b")) == 0


# --- fuzz: the proxy core never raises and garbage never disturbs an established call ------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ROUTE = f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"
_SEEDS = [invite("f1", "z9hG4bKf1"), invite("c1", "z9hG4bKre", to_tag="bt", cseq=5, route=_ROUTE),
          request("BYE", "c1", "z9hG4bKb", 6, route=_ROUTE), request("CANCEL", "f1", "z9hG4bKf1", 1),
          request("ACK", "c1", "z9hG4bKk", 1, route=_ROUTE), request("OPTIONS", "o", "z9hG4bKo", 1),
          b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
          b"To: <sip:c@d>;tag=2\r\nCall-ID: f1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"]
_TOKENS = [b"\r\n", b":", b";", b",", b"<", b">", b'"', b" ", b"=", b"@", b"\xff", b"0", b"tag=", b"branch=",
           b"z9hG4bK", b"Max-Forwards: 0\r\n", b"l: 5\r\n", b"v: SIP/2.0/TCP x\r\n", b"m=audio 0 RTP/AVP 0\r\n"]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data)))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            data[position:position] = draw(st.sampled_from(_TOKENS))
        elif choice == 1:
            del data[position:position + draw(st.integers(1, 30))]
        elif data:
            data[min(position, len(data) - 1)] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_mutated(), st.binary(max_size=300)), min_size=1, max_size=8),
       st.sampled_from([CALLER, CALLEE, Peer("tcp", "192.0.2.9", 40000)]))
def test_proxy_core_never_raises(messages: list[bytes], source: Peer) -> None:
    h = Harness()
    establish(h)
    for data in messages:
        h.send(data, source)       # asserts internal_errors == 0
        h.advance(1.0)
    h.advance(200)
    assert h.proxy.stats.internal_errors == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=10))
def test_garbage_never_disturbs_an_established_call(messages: list[bytes]) -> None:
    h = Harness()
    establish(h)
    for data in messages:
        h.send(b"SIP/2.0 " + data, CALLER)
        h.send(b"BYE " + data, CALLEE)
        h.send(data, CALLER)
    assert "c1" in h.proxy.calls and h.control.used == {"c1": 91}


def test_compact_form_invite_over_tcp_is_admitted_and_record_routed_twice() -> None:
    h = Harness(routes=RouteTable.from_specs(["site-b.example=10.2.0.20:5060"]))
    compact = (invite().replace(b"Via:", b"v:").replace(b"From:", b"f:").replace(b"To:", b"t:")
               .replace(b"Call-ID:", b"i:").replace(b"Contact:", b"m:").replace(b"Content-Length:", b"l:")
               .replace(b"Content-Type:", b"c:").replace(b"SIP/2.0/UDP 10.1.0.10", b"SIP/2.0/TCP 10.1.0.10"))
    tcp_caller = Peer("tcp", "10.1.0.10", 40001)
    out = h.send(compact, tcp_caller)
    assert statuses(out, tcp_caller) == [100]
    forwarded, _ = only_request(out, CALLEE, "INVITE")
    assert forwarded.header_values("record-route") == [f"<sip:{PROXY_HOST}:5060;lr>",
                                                       f"<sip:{PROXY_HOST}:5060;transport=tcp;lr>"]
    assert h.control.calls_of("admit")[0][1].media == MediaSpec("pcmu", 20)


def test_a_response_that_lost_every_via_is_sent_upstream_with_the_request_vias() -> None:
    h = Harness(timers=TimerSettings(timer_c=1.0))
    _, raw = only_request(h.send(invite(), CALLER), CALLEE, "INVITE")
    h.send(answer(raw, 180, "Ringing"), CALLEE)
    cancel, cancel_raw = only_request(h.advance(1.1), CALLEE, "CANCEL")
    # a sloppy callee answers the INVITE with the Via of our hop-by-hop CANCEL (only ours)
    out = h.send(answer(cancel_raw, 487, "Request Terminated").replace(b"CSeq: 1 CANCEL", b"CSeq: 1 INVITE"), CALLEE)
    terminated, = [m for m in to(out, CALLER) if isinstance(m, Response)]
    assert terminated.status == 487 and terminated.header_values("via") == [
        "SIP/2.0/UDP 10.1.0.10:5060;branch=z9hG4bKa1"]


def test_echo_of_our_own_release_does_not_end_a_newer_call_with_the_same_call_id() -> None:
    """A service listener reports every release, ours included, a moment later: the serial
    tells the first admission of the Call-ID from the second."""
    h = Harness()
    _, raw = only_request(h.send(invite(), CALLER), CALLEE, "INVITE")
    first = h.proxy.calls["c1"].serial
    h.send(answer(raw, 407, "Proxy Authentication Required"), CALLEE)       # released: sip-407
    h.send(request("ACK", "c1", "z9hG4bKa1", 1, to_tag="bt", uri="sip:bob@site-b.example"), CALLER)
    out = h.send(invite(branch="z9hG4bKa2", cseq=2), CALLER)                # retried with credentials
    assert "c1" in h.proxy.calls and h.control.used == {"c1": 91}
    second = h.proxy.calls["c1"].serial
    assert second != first
    assert h.proxy.call_ended("c1", "sip-407", h.now, serial=first) == []  # the echo of the first release
    assert "c1" in h.proxy.calls
    _, raw = only_request(out, CALLEE, "INVITE")
    h.send(answer(raw, 180, "Ringing"), CALLEE)
    out = h.proxy.call_ended("c1", "preempted by e1", h.now, serial=second)  # admission really ended it
    assert "c1" not in h.proxy.calls
    cancel, _ = only_request(out, CALLEE, "CANCEL")                         # ringing: CANCEL downstream
    assert h.proxy.stats.controller_ended == 1 and not h.control.calls_of("release")[1:]


@pytest.mark.parametrize("cause, preemption", [
    ("preempted: capacity: s2->s3 can reserve 300 kbit/s", 'preemption ;cause=2 ;text="Reserved Resources Preempted"'),
    ("preempted: path-down: aggregate a-b: link s1-s2 is down", 'preemption ;cause=2 ;text="Reserved Resources Preempted"'),
    ("preempted: priority: an emergency call needed 91 kbit/s", 'preemption ;cause=3 ;text="Generic Preemption"'),
])
def test_a_call_admission_preempted_is_byed_with_an_rfc_4411_reason(cause: str, preemption: str) -> None:
    h = Harness()
    establish(h)
    out = h.proxy.call_ended("c1", cause, h.now, serial=h.proxy.calls["c1"].serial)
    for party in (CALLEE, CALLER):
        bye, _ = only_request(out, party, "BYE")
        assert bye.header_values("reason") == [preemption, f'Q.850;cause=8;text="{cause}"']


def test_a_bye_for_any_other_ending_carries_only_the_q850_reason() -> None:
    h = Harness()
    establish(h)
    out = h.proxy.call_ended("c1", "aggregate-deleted", h.now, serial=h.proxy.calls["c1"].serial)
    bye, _ = only_request(out, CALLEE, "BYE")
    assert bye.header_values("reason") == ['Q.850;cause=102;text="aggregate-deleted"']
