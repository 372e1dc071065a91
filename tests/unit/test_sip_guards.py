"""Issue 11: one forged packet must never stop the service.

The forged "200 OK" of the issue (top Via the proxy's own address, an unknown branch,
the next Via naming ``127.0.1.1\\x00``, ``exämple..test`` or a 64-character label) is sent
over UDP and TCP to every shell: the asyncio standalone server, the hub server on native
threads in this process, and the hub server under the framework's own hub in a
subprocess (ryu's eventlet here, os-ken's native threads in .venv-osken). After each,
OPTIONS probes over UDP and TCP are answered and a clean call runs with the pool back at
zero. Every guard (receive handler, UDP send, TCP send, timer) is then driven with an
injected fault and must count it and go on.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest

from fakes.sip_peer import (FORGED_HOSTS, FaultInjector, ThreadedLoop, clean_call, forged_stray_200, free_port,
                            probe_tcp, probe_udp, send_tcp, service, udp_socket)
from fakes.sip_shells import KINDS, Shell, running_shell
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.routing import RouteTable
from ryu_apps.signalling.sip.standalone import SipServer

@pytest.fixture(params=KINDS)
def shell(request: pytest.FixtureRequest) -> Iterator[Shell]:
    with running_shell(request.param) as running:
        yield running


def _alive(shell: Shell, call_id: str) -> None:
    assert probe_udp(shell.port), "OPTIONS over UDP unanswered"
    assert probe_tcp(shell.port), "OPTIONS over TCP unanswered"
    with udp_socket() as caller:
        clean_call(shell.port, caller, shell.callee, call_id)
    deadline = time.monotonic() + 3
    while (stats := shell.stats())["pool_used_kbps"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats["pool_used_kbps"] == 0 and stats["admitted_calls"] == 0


def _drain(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0.2)
    seen = []
    try:
        while True:
            seen.append(sock.recv(65535))
    except OSError:
        pass
    finally:
        sock.settimeout(3)
    return seen


@pytest.mark.osken
def test_forged_stray_responses_over_udp_and_tcp_stop_nothing(shell: Shell) -> None:
    with udp_socket() as attacker:
        for host in FORGED_HOSTS + ["127.0.0.1"]:       # the last one well formed: a reflection attempt
            attacker.sendto(forged_stray_200(shell.port, host), ("127.0.0.1", shell.port))
            send_tcp(shell.port, forged_stray_200(shell.port, host))
        _alive(shell, "after-forgery")
        assert _drain(attacker) == []                    # nothing reflected to anyone
    stats = shell.stats()
    assert stats["stray_forwarded"] == 0 and stats["internal_errors"] == 0
    # no call of the proxy's has that branch: all eight (four hosts, UDP and TCP) are dropped strays
    assert stats["stray_responses"] == 8
    assert not stats["faults"], stats["faults"]


@pytest.mark.osken
def test_every_guard_counts_its_fault_and_the_service_goes_on(shell: Shell) -> None:
    for kind in FaultInjector.KINDS:
        shell.inject(kind)
        probe_udp(shell.port, timeout=0.5)              # triggers the fault (may go unanswered)
        assert probe_udp(shell.port), f"UDP dead after {kind}"
        assert probe_tcp(shell.port), f"TCP dead after {kind}"
    stats = shell.stats()
    assert stats["fired"] == list(FaultInjector.KINDS)
    faults = stats["faults"]
    assert faults.get("handler", 0) >= 1 and faults.get("undeliverable", 0) >= 1, faults
    assert faults.get("udp-send", 0) >= 2 and faults.get("timer", 0) >= 1, faults
    _alive(shell, "after-faults")


def test_a_tcp_send_failure_closes_that_connection_only() -> None:
    """TCP send guard: a next hop that accepts and resets; the proxy counts and goes on."""
    callee = socket.socket()
    callee.bind(("127.0.0.1", 0))
    callee.listen(1)
    port = free_port()
    svc = service()
    routes = RouteTable.from_specs([f"site-b.example=tcp:127.0.0.1:{callee.getsockname()[1]}"])
    proxy = SipProxy(ProxyConfig(host="127.0.0.1", port=port, routes=routes, timers=_short_timers()), svc,
                     HashIds(b"g"))
    server = SipServer(proxy)
    loop = ThreadedLoop()
    loop.run(server.start())
    try:
        with udp_socket() as caller:
            invite = _invite(port, caller.getsockname()[1], "tcp-reset")
            caller.sendto(invite, ("127.0.0.1", port))
            conn, _ = callee.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()                                 # RST
            callee.close()
            deadline = time.monotonic() + 8
            while svc.read(lambda m: m.used_kbps("a-b")) and time.monotonic() < deadline:
                time.sleep(0.1)                          # timer B (short here) releases the call
            assert svc.read(lambda m: m.used_kbps("a-b")) == 0
            assert probe_udp(port) and probe_tcp(port)
    finally:
        loop.run(server.stop())
        loop.close()


def _short_timers() -> Any:
    from ryu_apps.signalling.sip.transaction import TimerSettings
    return TimerSettings(t1=0.05, t2=0.4, t4=0.5, timer_c=3.0)


def _invite(port: int, cport: int, call_id: str) -> bytes:
    sdp = "v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    return (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK{call_id}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=a\r\nTo: <sip:bob@site-b.example>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{cport}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
