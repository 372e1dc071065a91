"""SIP peers for shell-level tests: raw UDP/TCP sockets on 127.0.0.1, forged messages, probes.

Used by the guard, overload and fuzz tests against the asyncio shell (standalone), the
hub server (native threads in-process, or under the framework's hub in a subprocess:
tests/apps/sip_hub_runner.py).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from typing import Any, Callable

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.message import Request, Response, parse_message

#: The hosts of issue 11: each made the proxy's send raise something other than OSError.
FORGED_HOSTS = ["127.0.1.1\x00", "exämple..test", "a" * 64 + ".example"]
_counter = itertools.count(1)


def site(pool_kbps: int = 500, **sip: Any) -> dict[str, Any]:
    """Two communities a (10.1/16, site-a.example) and b (10.2/16, site-b.example)."""
    document: dict[str, Any] = {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1,
                                "capacity_kbps": max(100000, 4 * pool_kbps)}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": pool_kbps}]}
    if sip:
        document["sip"] = sip
    return document


def service(pool_kbps: int = 500) -> MamService:
    return MamService(build_manager(parse_config(site(pool_kbps))))


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def udp_socket(timeout: float = 3.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    return sock


def forged_stray_200(proxy_port: int, second_via_host: str, proxy_host: str = "127.0.0.1") -> bytes:
    """A "200 OK" to INVITE matching no transaction: top Via the proxy's own address, the
    next Via naming ``second_via_host`` (the reflection target)."""
    return (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {proxy_host}:{proxy_port};branch=z9hG4bKforged{next(_counter)}\r\n"
            f"Via: SIP/2.0/UDP {second_via_host}:5060;branch=z9hG4bKvictim\r\n"
            f"From: <sip:alice@site-a.example>;tag=f1\r\nTo: <sip:bob@site-b.example>;tag=f2\r\n"
            f"Call-ID: forged-{next(_counter)}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@10.2.0.20>\r\n"
            f"Content-Length: 0\r\n\r\n").encode("utf-8")


def options(proxy_port: int, local_port: int, transport: str = "UDP", call_id: str | None = None) -> bytes:
    call_id = call_id or f"probe-{next(_counter)}"
    return (f"OPTIONS sip:127.0.0.1:{proxy_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:probe@site-a.example>;tag=p\r\nTo: <sip:127.0.0.1:{proxy_port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def probe_udp(proxy_port: int, timeout: float = 2.0) -> bool:
    """An OPTIONS to the proxy itself over UDP: True when its 200 comes back."""
    with udp_socket(timeout) as sock:
        sock.sendto(options(proxy_port, sock.getsockname()[1]), ("127.0.0.1", proxy_port))
        try:
            answer = parse_message(sock.recv(65535))
        except (socket.timeout, OSError):
            return False
        return isinstance(answer, Response) and answer.status == 200


def probe_tcp(proxy_port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as sock:
            sock.sendall(options(proxy_port, sock.getsockname()[1], "TCP"))
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                chunk = sock.recv(65535)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    try:
        answer = parse_message(data)
    except Exception:  # noqa: BLE001
        return False
    return isinstance(answer, Response) and answer.status == 200


def send_tcp(proxy_port: int, data: bytes, linger: float = 0.05) -> None:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=2) as sock:
        sock.sendall(data)
        time.sleep(linger)


def recv_skip_100(sock: socket.socket, call_id: str | None = None) -> Request | Response:
    """The next message but a 100 Trying; with ``call_id``, the next one of that call (what
    earlier traffic left behind, e.g. a CANCEL the proxy still retransmits, is skipped)."""
    while True:
        message = parse_message(sock.recv(65535))
        if isinstance(message, Response) and message.status == 100:
            continue
        if call_id is None or message.header("call-id") == call_id:
            return message


SDP = "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"


def clean_call(proxy_port: int, caller: socket.socket, callee: socket.socket, call_id: str,
               check: Callable[[], None] | None = None) -> None:
    """INVITE -> 200 -> ACK -> BYE -> 200 through the proxy (callee reached by the route
    ``site-b.example``). ``check`` runs while the call is up."""
    route = establish_call(proxy_port, caller, callee, call_id)
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    for method, cseq, branch in (("BYE", 2, "b"),):
        request = (f"{method} sip:bob@127.0.0.1:{eport} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK{call_id}{branch}\r\nMax-Forwards: 70\r\n"
                   f"Route: {route}\r\nFrom: <sip:alice@site-a.example>;tag=a{call_id}\r\n"
                   f"To: <sip:bob@site-b.example>;tag=b{call_id}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
                   f"Content-Length: 0\r\n\r\n")
        if check is not None:
            check()
        caller.sendto(request.encode(), ("127.0.0.1", proxy_port))
        received = recv_skip_100(callee, call_id)
        assert isinstance(received, Request) and received.method == method, received
    bye = received
    lines = [f"Via: {v}" for v in bye.header_values("via")]
    ok_bye = ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + f"\r\nFrom: {bye.header('from')}\r\nTo: {bye.header('to')}\r\n"
              f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
    callee.sendto(ok_bye.encode(), ("127.0.0.1", proxy_port))
    final = recv_skip_100(caller, call_id)
    assert isinstance(final, Response) and final.status == 200, final


def establish_call(proxy_port: int, caller: socket.socket, callee: socket.socket, call_id: str) -> str:
    """INVITE -> 200 -> ACK through the proxy; returns the caller's route set (Route value)."""
    cport, eport = caller.getsockname()[1], callee.getsockname()[1]
    offer = SDP.format(ip="10.1.0.10", port=4000)
    invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK{call_id}i\r\n"
              f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=a{call_id}\r\nTo: <sip:bob@site-b.example>\r\n"
              f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{cport}>\r\n"
              f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}")
    caller.sendto(invite.encode(), ("127.0.0.1", proxy_port))
    forwarded = recv_skip_100(callee, call_id)
    assert isinstance(forwarded, Request) and forwarded.method == "INVITE", forwarded
    answer_sdp = SDP.format(ip="10.2.0.20", port=5000)
    lines = [f"Via: {v}" for v in forwarded.header_values("via")]
    lines += [f"Record-Route: {v}" for v in forwarded.header_values("record-route")]
    ok = ("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + f"\r\nFrom: {forwarded.header('from')}\r\n"
          f"To: <sip:bob@site-b.example>;tag=b{call_id}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
          f"Contact: <sip:bob@127.0.0.1:{eport}>\r\nContent-Type: application/sdp\r\n"
          f"Content-Length: {len(answer_sdp)}\r\n\r\n{answer_sdp}")
    callee.sendto(ok.encode(), ("127.0.0.1", proxy_port))
    response = recv_skip_100(caller, call_id)
    assert isinstance(response, Response) and response.status == 200, response
    route = ", ".join(reversed(response.header_values("record-route")))
    ack = (f"ACK sip:bob@127.0.0.1:{eport} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK{call_id}a\r\nMax-Forwards: 70\r\n"
           f"Route: {route}\r\nFrom: <sip:alice@site-a.example>;tag=a{call_id}\r\n"
           f"To: <sip:bob@site-b.example>;tag=b{call_id}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n"
           f"Content-Length: 0\r\n\r\n")
    caller.sendto(ack.encode(), ("127.0.0.1", proxy_port))
    received = recv_skip_100(callee, call_id)
    assert isinstance(received, Request) and received.method == "ACK", received
    return route


class ThreadedLoop:
    """An asyncio loop in a daemon thread; ``call(fn)`` runs ``fn`` on it and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.run(wrapper(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class FaultInjector:
    """Makes the proxy's next entry call fail in a chosen way, to drive the shells' guards:

    * ``receive-raises``: the core raises (a bug in the core);
    * ``bad-peer``: the core asks to send to ``127.0.1.1\\x00`` (the address of issue 11);
    * ``bad-data``: the core hands the socket a str instead of bytes (sendto raises TypeError);
    * ``ipv6-peer``: a send to an IPv6 address on an IPv4 socket (OSError from sendto);
    * ``timer-raises``: the next timer callback raises.
    """

    KINDS = ("receive-raises", "bad-peer", "bad-data", "ipv6-peer", "timer-raises")

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.armed: list[str] = []
        self.fired: list[str] = []
        original_receive, original_message = proxy.receive, proxy.receive_message
        original_timer, original_next = proxy.handle_timer, proxy.next_timer
        from ryu_apps.signalling.sip.transaction import Peer, Send

        def fault(out: list[Any]) -> list[Any]:
            kind = self.armed.pop(0)
            self.fired.append(kind)
            if kind == "receive-raises":
                raise RuntimeError("injected fault in the proxy core")
            if kind == "bad-peer":
                return [Send(b"SIP/2.0 200 OK\r\n\r\n", Peer("udp", "127.0.1.1\x00", 5060))] + out
            if kind == "bad-data":
                return [Send("not bytes", Peer("udp", "127.0.0.1", 9))] + out  # type: ignore[arg-type]
            return [Send(b"SIP/2.0 200 OK\r\n\r\n", Peer("udp", "::1", 5060))] + out

        def receive(*args: Any) -> list[Any]:
            out = original_receive(*args)
            if self.armed and self.armed[0] != "timer-raises":
                return fault(out)
            return out  # type: ignore[no-any-return]

        def receive_message(*args: Any) -> list[Any]:
            out = original_message(*args)
            if self.armed and self.armed[0] != "timer-raises":
                return fault(out)
            return out  # type: ignore[no-any-return]

        def next_timer() -> float | None:
            if self.armed and self.armed[0] == "timer-raises":
                return 0.0
            return original_next()  # type: ignore[no-any-return]

        def handle_timer(now: float) -> list[Any]:
            if self.armed and self.armed[0] == "timer-raises":
                self.fired.append(self.armed.pop(0))
                raise RuntimeError("injected fault in a timer")
            return original_timer(now)  # type: ignore[no-any-return]

        proxy.receive, proxy.receive_message = receive, receive_message
        proxy.handle_timer, proxy.next_timer = handle_timer, next_timer

    def arm(self, kind: str) -> None:
        assert kind in self.KINDS, kind
        self.armed.append(kind)
