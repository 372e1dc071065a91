"""The signalling gateway's cost: normalisation per message, and bridged call setups
against plain proxying, in the sans-IO cores (one process, one core, no sockets).

    .venv/bin/python benchmarks/bench_gateway.py [calls]

Each call is set up and torn down in full (SIP: INVITE, 180, 200, ACK, BYE, 200; bridged:
Setup -> INVITE, 180 -> Alerting, 200 -> Connect + ACK, ReleaseComplete -> BYE, 200),
with the same admission stub for both, so the figures compare signalling work only.
"Added latency" is the core's processing time from a message in to its translation out
(the INVITE, and the answer), measured per message with perf_counter.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import h323sim as sim  # noqa: E402

from ryu_apps.core.admission import Admitted  # noqa: E402
from ryu_apps.core.network import Community  # noqa: E402
from ryu_apps.signalling.gateway.interwork import Gateway, GatewaySettings  # noqa: E402
from ryu_apps.signalling.gateway.normalise import ProxyNormaliser  # noqa: E402
from ryu_apps.signalling.gateway.profile import (Identity, NumberForm, NumberPlan, Profile,  # noqa: E402
                                                 SdpRules)
from ryu_apps.signalling.h323.actions import StreamSend  # noqa: E402
from ryu_apps.signalling.sip.ids import HashIds  # noqa: E402
from ryu_apps.signalling.sip.message import Request, parse_message, serialize  # noqa: E402
from ryu_apps.signalling.sip.proxy import SipProxy  # noqa: E402
from ryu_apps.signalling.sip.proxy_config import ProxyConfig  # noqa: E402
from ryu_apps.signalling.sip.routing import RouteTable  # noqa: E402
from ryu_apps.signalling.sip.transaction import Peer, Send  # noqa: E402


class Control:
    def admit(self, request: Any) -> Admitted:
        return Admitted(request.call_id, "a-b", 91)

    def attach_media(self, *args: Any) -> None:
        return None

    def modify(self, call_id: str, media: Any) -> Admitted:
        return Admitted(call_id, "a-b", 91)

    def release(self, call_id: str, cause: str) -> None:
        return None

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        return {"site-a.example": "a", "site-b.example": "b", "site-s.example": "s"}.get(domain or "")


class Directory:
    def by_address(self, ip: str) -> str | None:
        return {"10.1.0.5": "h", "10.2.0.5": "s"}.get(ip)

    def by_domain(self, domain: str) -> str | None:
        return None

    def by_number(self, digits: str) -> str | None:
        return "s" if digits.lstrip("+").startswith("44") else "h" if digits.startswith("33") else None


CALLER, CALLEE = Peer("udp", "10.1.0.5", 5060), Peer("udp", "10.2.0.5", 5060)
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.1.0.5\r\ns=-\r\nc=IN IP4 10.1.0.5\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")


def invite(i: int) -> bytes:
    head = [f"INVITE sip:02079460000@site-b.example SIP/2.0", f"Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bKb{i}",
            f"From: \"Alice\" <sip:02071230000@site-a.example>;tag=a{i}", "To: <sip:02079460000@site-b.example>",
            f"Call-ID: call-{i}", "CSeq: 1 INVITE", "Contact: <sip:alice@10.1.0.5:5060>", "Max-Forwards: 70",
            "P-Asserted-Identity: <sip:02071230000@site-a.example>", "User-Agent: PBX-A/1.0",
            "Content-Type: application/sdp", f"Content-Length: {len(SDP)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + SDP


def answer(request: Request, status: int, body: bytes = b"") -> bytes:
    head = [f"SIP/2.0 {status} X"] + [f"{n}: {v}" for n, v in request.headers if n in ("via", "from", "call-id", "cseq")]
    head += [f"To: {request.header('to')};tag=callee", "Contact: <sip:b@10.2.0.5:5060>"]
    if body:
        head.append("Content-Type: application/sdp")
    return ("\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


ANSWER_SDP = SDP.replace(b"10.1.0.5", b"10.2.0.5").replace(b"40000 RTP/AVP 0 8 101", b"50000 RTP/AVP 0")


def timed(samples: list[float], call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    out = call()
    samples.append(time.perf_counter() - started)
    return out


def sip(message: Any) -> list[Any]:
    return [parse_message(a.data) for a in message if isinstance(a, Send)]


def proxy_calls(calls: int, profiles: bool) -> tuple[float, list[float], list[float]]:
    config = ProxyConfig(host="10.0.0.1", port=5060, routes=RouteTable.from_specs(["site-b.example=10.2.0.5:5060"]))
    proxy = SipProxy(config, Control(), HashIds(b"bench"))
    if profiles:
        uk = Profile("uk", identity=Identity.RPID, strip_topology=True,
                     numbers=NumberPlan("44", "0", "00", NumberForm.NATIONAL), sdp=SdpRules(codecs=("pcma", "pcmu")))
        import ipaddress
        proxy.normaliser = ProxyNormaliser([
            (Community("a", "s1", (1,), (ipaddress.ip_network("10.1.0.0/16"),)), uk),
            (Community("b", "s2", (1,), (ipaddress.ip_network("10.2.0.0/16"),)), uk)])
    first, answers = [], []
    started = time.perf_counter()
    for i in range(calls):
        now = i * 0.001
        out = timed(first, lambda: proxy.receive(invite(i), CALLER, now))
        forwarded = next(m for m in sip(out) if isinstance(m, Request))
        proxy.receive(answer(forwarded, 180), CALLEE, now)
        ok = timed(answers, lambda: proxy.receive(answer(forwarded, 200, ANSWER_SDP), CALLEE, now))
        response = sip(ok)[0]
        ack = (f"ACK sip:b@10.2.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bKk{i}\r\n"
               f"From: {response.header('from')}\r\nTo: {response.header('to')}\r\nCall-ID: call-{i}\r\n"
               f"CSeq: 1 ACK\r\nRoute: {response.header('record-route')}\r\nMax-Forwards: 70\r\n\r\n").encode()
        proxy.receive(ack, CALLER, now)
        bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"1 ACK", b"2 BYE").replace(b"z9hG4bKk", b"z9hG4bKy")
        sent = sip(proxy.receive(bye, CALLER, now))
        proxy.receive(answer(sent[0], 200), CALLEE, now)
    elapsed = time.perf_counter() - started
    return calls / elapsed, first, answers


def bridged_calls(calls: int) -> tuple[float, list[float], list[float]]:
    gw = Gateway(GatewaySettings("10.0.0.1", 5080, "10.0.0.1", 1720, sip_pbx={"s": CALLEE},
                                 domains={"s": "site-s.example"}), Control(), Directory(), HashIds(b"bench"))
    fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=None, rtcp=("10.1.0.5", 40001)),
            sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=("10.1.0.5", 40000), rtcp=("10.1.0.5", 40001))]
    first, answers = [], []
    started = time.perf_counter()
    for i in range(calls):
        now = i * 0.001
        guid = i.to_bytes(16, "big")
        conn = gw.h323_accept(("10.1.0.5", 30000))
        setup = sim.q931(sim.SETUP, 5, False, sim.setup_body(guid, [("dialledDigits", "442079460000")],
                                                            [("dialledDigits", "331234")], fast, ("10.1.0.5", 1720)),
                         called="442079460000")
        out = timed(first, lambda: gw.h323_data(conn, setup, now))
        request = next(m for m in sip(out) if isinstance(m, Request))
        gw.sip_receive(answer(request, 180), CALLEE, now)
        connected = timed(answers, lambda: gw.sip_receive(answer(request, 200, ANSWER_SDP), CALLEE, now))
        assert any(isinstance(a, StreamSend) for a in connected)
        out = gw.h323_data(conn, sim.q931(sim.RELEASE_COMPLETE, 5, False, sim.release_body(guid), cause=16), now)
        bye = next(m for m in sip(out) if isinstance(m, Request))
        gw.sip_receive(answer(bye, 200), CALLEE, now)
        gw.h323_closed(conn, now)
    elapsed = time.perf_counter() - started
    gw.handle_timer(calls * 0.001 + 100)
    return calls / elapsed, first, answers


def tunnelled_calls(calls: int) -> tuple[float, list[float], list[float]]:
    """H.323 caller without fastStart (H.245 tunnelled) -> SIP late offer. The simulator's H.245
    answers are computed once (a warm-up call) and replayed: each call re-encodes only the
    Q.931/H.225.0 around them (as the fastStart run encodes its Setup), so the figure is the
    gateway's work plus the same harness cost. "answer": the gateway's time from the 200
    (offer) to the ACK (answer), summed over the H.245 round trips in between."""
    gw = Gateway(GatewaySettings("10.0.0.1", 5080, "10.0.0.1", 1720, sip_pbx={"s": CALLEE},
                                 domains={"s": "site-s.example"}), Control(), Directory(), HashIds(b"bench"))
    script: list[list[bytes]] = []
    first, answers = [], []
    started = time.perf_counter()
    for i in range(calls + 1):
        now = i * 0.001
        guid = i.to_bytes(16, "big")
        peer = sim.TunnelledH245(("10.1.0.5", 40000))
        conn = gw.h323_accept(("10.1.0.5", 30000))
        setup = sim.q931(sim.SETUP, 5, False, sim.setup_body(guid, [("dialledDigits", "442079460000")],
                                                            [("dialledDigits", "331234")], [], ("10.1.0.5", 1720)),
                         called="442079460000", extra_pdu={"h245Tunnelling": True, "h245Control": peer.opening()})
        out = timed(first, lambda: gw.h323_data(conn, setup, now))
        request = next(m for m in sip(out) if isinstance(m, Request))
        gw.sip_receive(answer(request, 180), CALLEE, now)
        spent: list[float] = []
        out = timed(spent, lambda: gw.sip_receive(answer(request, 200, ANSWER_SDP), CALLEE, now))
        step = 0
        while not any(isinstance(m, Request) and m.method == "ACK" for m in sip(out)):
            if i == 0:                       # warm-up: the simulator answers, and is recorded
                replies = [r for a in out if isinstance(a, StreamSend)
                           for r in peer.on(sim.controls_of(sim.parse_q931(a.data[4:])))]
                script.append(replies)
            replies = script[step]
            step += 1
            facility = sim.facility(5, False, guid, replies)
            out = timed(spent, lambda: gw.h323_data(conn, facility, now))
        answers.append(sum(spent))
        out = gw.h323_data(conn, sim.q931(sim.RELEASE_COMPLETE, 5, False, sim.release_body(guid), cause=16), now)
        bye = next(m for m in sip(out) if isinstance(m, Request))
        gw.sip_receive(answer(bye, 200), CALLEE, now)
        gw.h323_closed(conn, now)
        if i == 0:                           # the warm-up call is not counted
            first, answers = [], []
            started = time.perf_counter()
    elapsed = time.perf_counter() - started
    assert gw.stats.get("late-offer-answered") == calls + 1 and gw.internal_errors == 0, gw.stats
    return calls / elapsed, first, answers


def normalise_cost(messages: int) -> tuple[float, float]:
    import ipaddress
    uk = Profile("uk", identity=Identity.RPID, strip_topology=True,
                 numbers=NumberPlan("44", "0", "00", NumberForm.NATIONAL), sdp=SdpRules(codecs=("pcma", "pcmu")))
    normaliser = ProxyNormaliser([(Community("b", "s2", (1,), (ipaddress.ip_network("10.2.0.0/16"),)), uk)])
    message = parse_message(invite(1))
    data = serialize(message)
    started = time.perf_counter()
    for _ in range(messages):
        normaliser.inbound(message, CALLEE)
    inbound = (time.perf_counter() - started) / messages
    started = time.perf_counter()
    sends = [Send(data, CALLEE)]
    for _ in range(messages):
        normaliser.outbound(sends)
    outbound = (time.perf_counter() - started) / messages
    return inbound, outbound


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), f"load average {os.getloadavg()[0]:.1f}")
    sim.enc("olc", sim.dec("olc", sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=None, rtcp=None)))
    inbound, outbound = normalise_cost(calls * 2)
    print(f"normalisation of an INVITE with SDP (profile: numbers, RPID, topology, SDP codecs): "
          f"inbound {inbound * 1e6:.0f} us, outbound (parse, rewrite, serialise) {outbound * 1e6:.0f} us")
    for name, run in (("plain proxy (SIP -> SIP)", lambda: proxy_calls(calls, False)),
                      ("proxy with profiles on both sides", lambda: proxy_calls(calls, True)),
                      ("gateway (H.323 -> SIP, bridged)", lambda: bridged_calls(calls)),
                      ("gateway (H.323 without fastStart, tunnelled H.245 -> SIP late offer)",
                       lambda: tunnelled_calls(calls))):
        rate, first, answers = run()
        print(f"{name}: {rate:,.0f} call setups+teardowns/s on one core; INVITE/Setup in -> out "
              f"p50 {pct(first, 0.5):.0f} us p99 {pct(first, 0.99):.0f} us; answer in -> out "
              f"p50 {pct(answers, 0.5):.0f} us p99 {pct(answers, 0.99):.0f} us")


if __name__ == "__main__":
    main()
