"""The hub server with native threads (os-ken's hub) on 127.0.0.1, with the real manager."""

from __future__ import annotations

import socket
import threading
import time

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.hub_server import HubSipServer
from ryu_apps.signalling.sip.message import Request, Response, parse_message
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.routing import RouteTable


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    return sock


def _recv(sock: socket.socket) -> Request | Response:
    while True:
        message = parse_message(sock.recv(65535))
        if not (isinstance(message, Response) and message.status == 100):
            return message


def test_call_through_the_hub_server_and_release_by_admission() -> None:
    caller, callee = _udp(), _udp()
    probe = _udp()
    port = probe.getsockname()[1]
    probe.close()
    config = parse_config({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 500}]})
    service = MamService(build_manager(config))
    routes = RouteTable.from_specs([f"site-b.example=127.0.0.1:{callee.getsockname()[1]}"])
    proxy = SipProxy(ProxyConfig(host="127.0.0.1", port=port, routes=routes), service, HashIds(b"hub"))
    server = HubSipServer(proxy, spawn=lambda fn, *args: threading.Thread(target=fn, args=args, daemon=True).start(),
                          transports=("udp",))
    service.subscribe(server.on_changes)
    server.start()
    try:
        sdp = "v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        cport = caller.getsockname()[1]
        invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKh1\r\n"
                  f"From: <sip:alice@site-a.example>;tag=a\r\nTo: <sip:bob@site-b.example>\r\nCall-ID: h1\r\n"
                  f"CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{cport}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        caller.sendto(invite.encode(), ("127.0.0.1", port))
        forwarded = _recv(callee)
        assert isinstance(forwarded, Request) and forwarded.method == "INVITE"
        answer = sdp.replace("10.1.0.10", "10.2.0.20")
        lines = [f"Via: {v}" for v in forwarded.header_values("via")]
        lines += [f"Record-Route: {v}" for v in forwarded.header_values("record-route")]
        ok = ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + f"\r\nFrom: <sip:alice@site-a.example>;tag=a\r\n"
              f"To: <sip:bob@site-b.example>;tag=b\r\nCall-ID: h1\r\nCSeq: 1 INVITE\r\n"
              f"Contact: <sip:bob@127.0.0.1:{callee.getsockname()[1]}>\r\nContent-Type: application/sdp\r\n"
              f"Content-Length: {len(answer)}\r\n\r\n{answer}")
        callee.sendto(ok.encode(), ("127.0.0.1", port))
        response = _recv(caller)
        assert isinstance(response, Response) and response.status == 200
        assert service.read(lambda m: m.call("h1").media_attached)
        # admission ends the call itself (e.g. REST delete, preemption): the proxy BYEs both parties
        service.release("h1", cause="operator")
        for sock in (caller, callee):
            bye = _recv(sock)
            assert isinstance(bye, Request) and bye.method == "BYE" and bye.call_id == "h1"
        assert service.read(lambda m: m.used_kbps("a-b")) == 0
    finally:
        server.stop()
        time.sleep(0.05)
        for sock in (caller, callee):
            sock.close()


def test_the_timer_loop_sleeps_until_the_next_timer_and_wakes_early_for_an_earlier_one() -> None:
    from ryu_apps.signalling.sip.transaction import TimerSettings
    callee = _udp()
    probe = _udp()
    port = probe.getsockname()[1]
    probe.close()
    config = parse_config({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 500}]})
    service = MamService(build_manager(config))
    routes = RouteTable.from_specs([f"site-b.example=127.0.0.1:{callee.getsockname()[1]}"])
    proxy = SipProxy(ProxyConfig(host="127.0.0.1", port=port, routes=routes, timers=TimerSettings(t1=0.2)),
                     service, HashIds(b"hub"))
    server = HubSipServer(proxy, spawn=lambda fn, *args: threading.Thread(target=fn, args=args, daemon=True).start(),
                          transports=("udp",))
    server.start()
    try:
        time.sleep(1.0)
        assert server.timer_wakeups <= 2          # idle: no polling (a 20 ms tick woke 50 times)
        caller = _udp()
        cport = caller.getsockname()[1]
        sdp = "v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKw1\r\n"
                  f"From: <sip:alice@site-a.example>;tag=a\r\nTo: <sip:bob@site-b.example>\r\nCall-ID: w1\r\n"
                  f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        caller.sendto(invite.encode(), ("127.0.0.1", port))
        first = callee.recv(65535)
        sent = time.monotonic()
        again = callee.recv(65535)                 # timer A (T1 = 0.2 s): the loop woke early for it
        waited = time.monotonic() - sent
        assert again == first and 0.1 < waited < 0.6, waited
        assert server.timer_wakeups < 10
        caller.close()
    finally:
        server.stop()
        callee.close()


def test_after_a_restart_the_proxy_still_ends_a_call_admission_releases() -> None:
    """Issue 12e: the dialog is kept with the call (MamService.save_dialog); a new proxy
    rebuilds it and BYEs both parties when the call is released over REST."""
    caller, callee = _udp(), _udp()
    config = parse_config({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 500}]})
    service = MamService(build_manager(config))
    routes = RouteTable.from_specs([f"site-b.example=127.0.0.1:{callee.getsockname()[1]}"])

    def server_on(port: int) -> HubSipServer:
        proxy = SipProxy(ProxyConfig(host="127.0.0.1", port=port, routes=routes), service, HashIds(b"r"))
        server = HubSipServer(proxy, spawn=lambda fn, *a: threading.Thread(target=fn, args=a, daemon=True).start(),
                              transports=("udp",))
        service.subscribe(server.on_changes)
        server.restore(service.read(lambda m: [c.dialog for c in m.calls() if c.dialog]))
        server.start()
        return server

    from fakes.sip_peer import establish_call, free_port
    first = server_on(free_port())
    try:
        establish_call(first.proxy.config.port, caller, callee, "kept")
        dialog = service.read(lambda m: m.call("kept").dialog)
        assert dialog and dialog["call_id"] == "kept" and dialog["protocol"] == "sip"
    finally:
        first.stop()
        first.running = False
    second = server_on(free_port())                   # the controller restarted: a new proxy
    try:
        assert second.proxy.stats.restored == 1 and "kept" in second.proxy.calls
        service.release("kept", cause="operator")
        for sock in (caller, callee):
            bye = _recv(sock)
            assert isinstance(bye, Request) and bye.method == "BYE" and bye.call_id == "kept"
        assert service.read(lambda m: m.used_kbps("a-b")) == 0
    finally:
        second.stop()
        caller.close()
        callee.close()
