"""The standalone proxy in REST mode (issue 12b, issue 11 item 7), against the controller's
real REST API served over HTTP on loopback.

* admission runs off the asyncio loop: while a slow controller thinks, the proxy still
  answers OPTIONS at once, and the INVITE it parked goes on when the answer comes;
* the proxy polls ``GET /mam/v1/calls?protocol=sip`` and BYEs both parties of a call the
  controller released on its own (here: over REST, as an operator would).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from fakes.sip_peer import SDP, ThreadedLoop, establish_call, free_port, probe_udp, recv_skip_100, service, udp_socket
from ryu_apps.config import ApiConfig
from ryu_apps.core.admission import AdmissionRequest, SignallingProtocol
from ryu_apps.core.codec import MediaSpec
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.call_watch import RestCallPoller
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.message import Request, Response
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.rest_client import RestCallControl
from ryu_apps.signalling.sip.routing import RouteTable
from ryu_apps.signalling.sip.standalone import SipServer


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService, dict[str, float]]]:
    """The REST API over HTTP; ``delays["POST"] = s`` makes admissions that slow."""
    svc = service(pool_kbps=1000)
    api = make_wsgi_app(svc, ApiConfig(token="secret"))
    delays: dict[str, float] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        time.sleep(delays.get(environ["REQUEST_METHOD"], 0.0))
        return api(environ, start_response)

    server = make_server("127.0.0.1", 0, app, server_class=_Threading, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", svc, delays
    finally:
        server.shutdown()
        server.server_close()


def test_sip_calls_lists_the_controllers_sip_calls_with_serials(controller: tuple[str, MamService, Any]) -> None:
    url, svc, _ = controller
    for call_id, protocol in (("s1", SignallingProtocol.SIP), ("r1", SignallingProtocol.REST)):
        svc.admit(AdmissionRequest(call_id, "a", "b", MediaSpec("pcmu"), protocol=protocol))
    calls = RestCallControl(url, "secret").sip_calls()
    assert calls == {"s1": svc.read(lambda m: m.call("s1").serial)}


@pytest.fixture
def rest_proxy(controller: tuple[str, MamService, dict[str, float]]) -> Iterator[tuple[int, Any, MamService, dict[str, float], Any]]:
    url, svc, delays = controller
    callee = udp_socket()
    port = free_port()
    rest = RestCallControl(url, "secret")
    routes = RouteTable.from_specs([f"site-b.example=127.0.0.1:{callee.getsockname()[1]}"])
    proxy = SipProxy(ProxyConfig(host="127.0.0.1", port=port, routes=routes), rest, HashIds(b"rest"), deferred=True)
    server = SipServer(proxy, watch=RestCallPoller(rest.sip_calls, 0.2))
    loop = ThreadedLoop()
    loop.run(server.start())
    try:
        yield port, callee, svc, delays, server
    finally:
        loop.run(server.stop())
        loop.close()
        callee.close()


def test_admission_runs_off_the_loop_while_the_proxy_answers_others(rest_proxy: Any) -> None:
    port, callee, svc, delays, server = rest_proxy
    delays["POST"] = 1.0                                     # a slow controller
    with udp_socket() as caller:
        cport = caller.getsockname()[1]
        offer = SDP.format(ip="10.1.0.10", port=4000)
        invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKslow\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=a\r\nTo: <sip:bob@site-b.example>\r\n"
                  f"Call-ID: slow\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{cport}>\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}")
        sent = time.monotonic()
        caller.sendto(invite.encode(), ("127.0.0.1", port))
        time.sleep(0.2)
        started = time.monotonic()
        assert probe_udp(port)                                # answered while admission waits on HTTP
        assert time.monotonic() - started < 0.3
        forwarded = recv_skip_100(callee)                     # the parked INVITE goes on when admitted
        assert isinstance(forwarded, Request) and forwarded.method == "INVITE"
        assert time.monotonic() - sent >= 0.9
        assert svc.read(lambda m: m.call("slow").protocol) is SignallingProtocol.SIP
    assert server.proxy.stats.admitted == 1 and server.proxy.stats.control_errors == 0


def test_a_call_the_controller_releases_gets_byes_both_ways(rest_proxy: Any) -> None:
    port, callee, svc, _, server = rest_proxy
    with udp_socket() as caller:
        establish_call(port, caller, callee, "rel")
        deadline = time.monotonic() + 2                       # media is attached fire-and-forget
        while not svc.read(lambda m: m.call("rel").media_attached) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert svc.read(lambda m: m.call("rel").media_attached)
        RestCallControl(server.proxy.control.url, "secret").release("rel", "operator")   # as an operator would
        byes = {side: recv_skip_100(sock) for side, sock in (("caller", caller), ("callee", callee))}
    for bye in byes.values():                                 # within a poll interval (0.2 s) and a bit
        assert isinstance(bye, Request) and bye.method == "BYE" and bye.call_id == "rel"
        assert 'text="ended-by-controller"' in (bye.header("reason") or "")
    assert svc.read(lambda m: m.used_kbps("a-b")) == 0 and "rel" not in server.proxy.calls
    assert server.proxy.stats.controller_ended == 1


def test_a_controller_that_is_away_is_503_and_counted(rest_proxy: Any, controller: Any) -> None:
    port, callee, svc, delays, server = rest_proxy
    server.proxy.config = dataclasses.replace(server.proxy.config, control_timeout_s=0.3)
    delays["POST"] = 1.0
    with udp_socket() as caller:
        cport = caller.getsockname()[1]
        offer = SDP.format(ip="10.1.0.10", port=4000)
        invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKaway\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=a\r\nTo: <sip:bob@site-b.example>\r\n"
                  f"Call-ID: away\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(offer)}\r\n\r\n{offer}")
        caller.sendto(invite.encode(), ("127.0.0.1", port))
        answer = recv_skip_100(caller)
    assert isinstance(answer, Response) and answer.status == 503
    deadline = time.monotonic() + 3                            # the admission that came too late is undone
    while svc.read(lambda m: len(m.calls())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.read(lambda m: len(m.calls())) == 0 and server.proxy.stats.control_errors >= 1
