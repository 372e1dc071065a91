"""Overload control (issue 11 item 4) in the proxy core.

Over a limit (a datagram that waited too long in the kernel, too many open transactions,
too many admissions waiting), a new INVITE gets a stateless 503 with Retry-After and
Reason cause 42, built from its raw bytes; its ACK is dropped; RFC 7339 ``oc`` feedback
goes to clients that ask for it; everything in progress is still served.
"""

from __future__ import annotations

import dataclasses

from ryu_apps.signalling.sip.message import Request, Response, parse_message, parse_via
from ryu_apps.signalling.sip.overload import OverloadGate, OverloadLimits, fast_reject
from ryu_apps.signalling.sip.transaction import Peer

from test_sip_proxy import (CALLEE, CALLER, PROXY_HOST, Harness, answer, establish, invite, only_request, request,
                            statuses, to)

ROUTE = f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"
SLOW = 1.0                             # a datagram that waited a second in the kernel


def backlog(h: Harness, waited: float = SLOW, seconds: float = 1.0) -> None:
    """Datagrams that waited ``waited`` in the kernel, one every 10 ms for ``seconds``."""
    start = h.now
    for step in range(int(seconds * 100)):
        h.proxy.overload.note(waited, start + step / 100)
    h.now = start + seconds


def _503(out: list) -> Response:
    (response,) = to(out, CALLER)
    assert isinstance(response, Response) and response.status == 503
    return response


def test_a_new_invite_that_waited_too_long_gets_a_stateless_503_with_retry_after() -> None:
    h = Harness()
    backlog(h)
    out = h.proxy.receive(invite(), CALLER, h.now, waited=SLOW)
    response = _503(out)
    assert response.header("retry-after") == "5" and "cause=42" in (response.header("reason") or "")
    assert response.header_values("via") == ["SIP/2.0/UDP 10.1.0.10:5060;branch=z9hG4bKa1"]
    assert response.call_id == "c1" and response.cseq == (1, "INVITE")
    assert h.proxy.transaction_counts() == (0, 0) and not h.control.log       # nothing kept, nothing asked
    ack = request("ACK", "c1", "z9hG4bKa1", 1, to_tag=response.header("to").rsplit("tag=", 1)[1],
                  uri="sip:bob@site-b.example")
    assert h.proxy.receive(ack, CALLER, h.now, waited=SLOW) == []              # dropped, not forwarded
    stats = h.proxy.stats
    assert (stats.overload_rejected, stats.overload_acks, stats.overload_reasons) == (1, 1, {"queue-delay": 1})
    backlog(h, waited=0.001)                                    # the backlog is worked off: calls again
    assert statuses(h.send(invite("c2", "z9hG4bKc2"), CALLER), CALLER) == [100]


def test_a_one_off_stall_refuses_nothing() -> None:
    h = Harness()
    backlog(h, waited=0.001)
    for n in range(10):                                         # ten datagrams caught in a 0.5 s pause
        h.proxy.overload.note(0.5, h.now + n * 0.001)
    assert statuses(h.send(invite(), CALLER), CALLER) == [100] and h.proxy.stats.overload_rejected == 0


def test_calls_in_progress_are_served_while_new_ones_are_refused() -> None:
    h = Harness()
    forwarded = establish(h)
    backlog(h)
    late = h.proxy.receive(request("BYE", "c1", "z9hG4bKbye", 2, route=ROUTE), CALLER, h.now, waited=SLOW)
    _, raw = only_request(late, CALLEE, "BYE")
    assert statuses(h.proxy.receive(answer(raw, 200, "OK", contact=""), CALLEE, h.now, waited=SLOW), CALLER) == [200]
    assert not h.control.used and h.proxy.stats.overload_rejected == 0
    reinvite = invite("c1", "z9hG4bKre", to_tag="bt", cseq=3, uri="sip:bob@10.2.0.20:5060", route=ROUTE)
    assert to(h.proxy.receive(reinvite, CALLER, h.now, waited=SLOW), CALLEE)   # in-dialog: forwarded
    assert forwarded


def test_a_retransmitted_invite_of_a_call_in_progress_is_absorbed_not_refused() -> None:
    h = Harness()
    h.send(invite(), CALLER)
    backlog(h)
    out = h.proxy.receive(invite(), CALLER, h.now, waited=SLOW)
    assert statuses(out, CALLER) == [100] and h.proxy.stats.overload_rejected == 0


def test_rfc_7339_feedback_for_a_client_that_supports_oc() -> None:
    h = Harness()
    backlog(h)
    with_oc = invite().replace(b"branch=z9hG4bKa1", b"branch=z9hG4bKa1;oc")
    via = parse_via(_503(h.proxy.receive(with_oc, CALLER, h.now, waited=SLOW)).header_values("via")[0])
    params = dict(via.params)
    assert params["oc"] == "100" and params["oc-algo"] == '"loss"' and params["oc-validity"] == "1000"
    assert params["oc-seq"] == "1"
    saved = h.proxy.overload.delay
    h.proxy.overload.delay = 0.0
    h.send(invite("c2", "z9hG4bKc2"), CALLER)                    # one admitted: half refused now
    h.proxy.overload.delay = saved
    via = parse_via(_503(h.proxy.receive(with_oc.replace(b"c1", b"c3").replace(b"a1", b"a3"), CALLER, h.now,
                                          waited=SLOW)).header_values("via")[0])
    assert dict(via.params)["oc"] == "67" and dict(via.params)["oc-seq"] == "2"
    plain = parse_via(_503(h.proxy.receive(invite("c4", "z9hG4bKc4"), CALLER, h.now, waited=SLOW))
                      .header_values("via")[0])
    assert "oc" not in dict(plain.params)


def test_too_many_open_transactions_refuse_new_invites_over_udp_and_tcp() -> None:
    h = Harness(overload=OverloadLimits(max_transactions=2))
    h.send(invite("c1", "z9hG4bKc1"), CALLER)                    # server + client: 2 open
    assert statuses(h.send(invite("c2", "z9hG4bKc2"), CALLER), CALLER) == [100]
    _503(h.send(invite("c3", "z9hG4bKc3"), CALLER))
    tcp = Peer("tcp", "10.1.0.10", 40000)
    message = parse_message(invite("c4", "z9hG4bKc4"))
    (response,) = to(h.proxy.receive_message(message, tcp, h.now), tcp)     # the parsed path (TCP)
    assert isinstance(response, Response) and response.status == 503 and response.header("retry-after") == "5"
    tag = response.header("to").rsplit("tag=", 1)[1]
    ack = parse_message(request("ACK", "c4", "z9hG4bKc4", 1, to_tag=tag, uri="sip:bob@site-b.example"))
    assert h.proxy.receive_message(ack, tcp, h.now) == []
    assert h.proxy.stats.overload_reasons == {"transactions": 2} and h.proxy.stats.overload_acks == 1


def test_admissions_waiting_for_the_controller_are_a_limit_too() -> None:
    h = Harness(overload=OverloadLimits(max_pending_admissions=1))
    h.proxy.deferred = True
    h.send(invite("c1", "z9hG4bKc1"), CALLER)
    h.send(invite("c2", "z9hG4bKc2"), CALLER)
    _503(h.send(invite("c3", "z9hG4bKc3"), CALLER))
    assert h.proxy.stats.overload_reasons == {"pending-admissions": 1}


def test_the_fast_path_leaves_odd_invites_to_the_parser() -> None:
    gate = OverloadGate(OverloadLimits())
    assert fast_reject(invite(to_tag="x"), b"t", 5, gate) is None                       # in-dialog
    assert fast_reject(invite().replace(b"Call-ID: c1\r\n", b""), b"t", 5, gate) is None
    assert fast_reject(invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE"), b"t", 5, gate) is None
    assert fast_reject(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n  folded"), b"t", 5, gate) is None
    compact = invite().replace(b"Via:", b"v:").replace(b"From:", b"f:").replace(b"To:", b"t:").replace(b"Call-ID:", b"i:")
    reply, top = fast_reject(compact, b"t", 5, gate)  # type: ignore[misc]
    assert parse_message(reply).status == 503 and top.startswith(b"SIP/2.0/UDP 10.1.0.10")  # type: ignore[union-attr]


def test_finished_transactions_keep_no_body_and_no_retransmission_copy() -> None:
    h = Harness()
    establish(h)
    servers = list(h.proxy._servers.values())
    clients = list(h.proxy._clients.values())
    invite_server = next(s for s in servers if s.request.method == "INVITE")
    invite_client = next(c for c in clients if c.request.method == "INVITE")
    assert invite_server.request.body == b"" and invite_server.last_response is None       # Accepted: 2xx from below
    assert invite_client.data == b"" and invite_client.request.body == b""
    assert {name for name, _ in invite_client.request.headers} <= {"via", "route", "from", "to", "call-id", "cseq"}
    assert isinstance(invite_server.request, Request) and dataclasses.is_dataclass(invite_server.request)


def test_a_refused_invite_stays_refused_when_its_retransmission_comes_after_the_backlog() -> None:
    """Else the caller hears 503, moves on, and a late copy is admitted and rings for nobody."""
    h = Harness()
    backlog(h)
    _503(h.proxy.receive(invite(), CALLER, h.now, waited=SLOW))
    backlog(h, waited=0.001)                                   # caught up
    again = h.send(invite(), CALLER)                           # the caller's retransmission (timer A)
    assert statuses(again, CALLER) == [503] and not to(again, CALLEE) and not h.control.calls_of("admit")
    assert h.proxy.stats.overload_retransmissions == 1 and h.proxy.stats.overload_rejected == 1
    assert statuses(h.send(invite("c2", "z9hG4bKc2"), CALLER), CALLER) == [100]      # others are welcome


# --- the same in every shell: a burst over the transaction limit -----------------------------

import socket as _socket  # noqa: E402
import time as _time  # noqa: E402

import pytest  # noqa: E402

from fakes.sip_peer import SDP, establish_call, probe_tcp, probe_udp, recv_skip_100, udp_socket  # noqa: E402
from fakes.sip_shells import KINDS, running_shell  # noqa: E402


def _flood_invite(port: int, sock: _socket.socket, n: int) -> bytes:
    offer = SDP.format(ip="10.1.0.10", port=4000 + n)
    local = sock.getsockname()[1]
    return (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKfl{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=f{n}\r\nTo: <sip:bob@site-b.example>\r\n"
            f"Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{local}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}").encode()


@pytest.mark.osken
@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_over_the_limit_is_refused_and_the_call_in_progress_ends_cleanly(kind: str) -> None:
    sip = {"overload": {"max_transactions": 40, "retry_after_s": 7}, "timers": {"t1_s": 0.05, "t2_s": 0.2}}
    with running_shell(kind, pool_kbps=5000, **sip) as shell, udp_socket() as caller, udp_socket() as flooder:
        route = establish_call(shell.port, caller, shell.callee, "kept")
        for n in range(100):
            flooder.sendto(_flood_invite(shell.port, flooder, n), ("127.0.0.1", shell.port))
        statuses: dict[int, int] = {}
        retry_after = set()
        flooder.settimeout(1.0)
        try:
            while True:
                answer = parse_message(flooder.recv(65535))
                assert isinstance(answer, Response)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if answer.status == 503:
                    retry_after.add(answer.header("retry-after"))
                    assert "cause=42" in (answer.header("reason") or "")
        except _socket.timeout:
            pass
        assert statuses.get(503, 0) >= 50 and statuses.get(100, 0) >= 1 and retry_after == {"7"}, statuses
        assert probe_udp(shell.port) and probe_tcp(shell.port)
        cport, eport = caller.getsockname()[1], shell.callee.getsockname()[1]
        bye = (f"BYE sip:bob@127.0.0.1:{eport} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKkeptb\r\n"
               f"Max-Forwards: 70\r\nRoute: {route}\r\nFrom: <sip:alice@site-a.example>;tag=akept\r\n"
               f"To: <sip:bob@site-b.example>;tag=bkept\r\nCall-ID: kept\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
        caller.sendto(bye.encode(), ("127.0.0.1", shell.port))
        shell.callee.settimeout(3)
        while True:                                  # the callee also hears the admitted flood INVITEs
            received = recv_skip_100(shell.callee)
            if isinstance(received, Request) and received.method == "BYE":
                break
        deadline = _time.monotonic() + 8             # the flood calls nobody answers: timer B (64 x 0.05 s)
        while (stats := shell.stats())["pool_used_kbps"] and _time.monotonic() < deadline:
            _time.sleep(0.2)
        assert stats["pool_used_kbps"] == 0 and stats["admitted_calls"] == 0, stats
        assert stats["overload_rejected"] >= 50 and stats["overload_reasons"].get("transactions", 0) >= 50
        assert stats["internal_errors"] == 0 and not stats["faults"], stats
