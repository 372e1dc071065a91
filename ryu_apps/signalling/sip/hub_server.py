"""The proxy inside the controller process, on the framework's hub.

The controller app passes in how to run things: ``spawn`` (``hub.spawn``: greenlets on
ryu's eventlet hub, threads on os-ken's native hub), ``sleep`` (``hub.sleep``) and a
``socket_factory`` (``socket.socket``: green once eventlet has patched it). No asyncio,
no threads of its own. One lock serialises the proxy core between the UDP loop, TCP
readers, the timer loop and data-plane notifications.

Admission reports calls it ended itself (preemption, aggregate deleted) through
:meth:`HubSipServer.on_changes`, which only queues them: it runs under the service's
lock, and taking the proxy's lock there could deadlock against a proxy thread that
holds its own lock while asking admission. The timer loop drains the queue.

Wiring (the app): ``server = HubSipServer(SipProxy(config, service, HashIds(os.urandom(16))),
spawn=hub.spawn, sleep=hub.sleep); service.subscribe(server.on_changes); server.start()``.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any, Callable

from .message import StreamFramer
from .proxy import SipProxy
from .transaction import Peer, Send
from .udp_server import tune_buffers

log = logging.getLogger(__name__)
TIMER_TICK_S = 0.02


class HubSipServer:
    def __init__(self, proxy: SipProxy, *, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep,
                 socket_factory: Callable[..., socket.socket] = socket.socket,
                 clock: Callable[[], float] = time.monotonic, transports: tuple[str, ...] = ("udp", "tcp"),
                 bind_host: str | None = None) -> None:
        self.proxy = proxy
        self.spawn, self.sleep, self.socket_factory, self.clock = spawn, sleep, socket_factory, clock
        self.transports = transports
        self.bind_host = bind_host or proxy.config.host
        self.lock = threading.RLock()
        self.running = False
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        self.connections: dict[Peer, socket.socket] = {}
        self._ended: collections.deque[tuple[str, str]] = collections.deque()
        self._idle: collections.deque[str] = collections.deque()

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        port = self.proxy.config.port
        self.running = True
        if "udp" in self.transports:
            self.udp = self.socket_factory(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((self.bind_host, port))
            tune_buffers(self.udp)
            self.udp.settimeout(0.5)
            self.spawn(self._udp_loop)
        if "tcp" in self.transports:
            self.tcp = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.bind_host, port))
            self.tcp.listen(128)
            self.tcp.settimeout(0.5)
            self.spawn(self._accept_loop)
        self.spawn(self._timer_loop)

    def stop(self) -> None:
        self.running = False
        for sock in [self.udp, self.tcp, *self.connections.values()]:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    # --- notifications from the controller (never block) ---------------------------------

    def on_changes(self, changes: Any) -> None:
        """A :class:`~ryu_apps.service.MamService` listener: queue the calls admission ended."""
        for released in getattr(changes, "released", ()):
            self._ended.append((released.call_id, released.cause))

    def media_idle(self, call_id: str) -> None:
        """The data plane saw the call's media stop (flow idle timeout)."""
        self._idle.append(call_id)

    # --- loops ----------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        assert self.udp is not None
        while self.running:
            try:
                data, addr = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self.running:
                    log.exception("SIP UDP receive failed")
                    self.sleep(0.1)
                continue
            with self.lock:
                out = self.proxy.receive(data, Peer("udp", addr[0], addr[1]), self.clock())
            self._send(out)

    def _accept_loop(self) -> None:
        assert self.tcp is not None
        while self.running:
            try:
                conn, addr = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.running:
                    self.sleep(0.1)
                continue
            peer = Peer("tcp", addr[0], addr[1])
            self.connections[peer] = conn
            self.spawn(self._tcp_reader, conn, peer)

    def _tcp_reader(self, conn: socket.socket, peer: Peer) -> None:
        framer = StreamFramer(self.proxy.config.max_message_bytes)
        conn.settimeout(None)
        try:
            while self.running:
                data = conn.recv(65535)
                if not data:
                    break
                for item in framer.feed(data):
                    with self.lock:
                        out = self.proxy.receive_message(item, peer, self.clock())
                    self._send(out)
                if framer.broken:
                    break
        except OSError:
            pass
        finally:
            if self.connections.get(peer) is conn:
                del self.connections[peer]
            conn.close()

    def _timer_loop(self) -> None:
        while self.running:
            now = self.clock()
            out: list[Send] = []
            with self.lock:
                while self._ended:
                    call_id, cause = self._ended.popleft()
                    out += self.proxy.call_ended(call_id, cause, now)
                while self._idle:
                    out += self.proxy.media_idle(self._idle.popleft(), now)
                when = self.proxy.next_timer()
                if when is not None and when <= now:
                    out += self.proxy.handle_timer(now)
            self._send(out)
            self.sleep(TIMER_TICK_S)

    # --- output -----------------------------------------------------------------------------

    def _send(self, out: list[Send]) -> None:
        for item in out:
            peer = item.peer
            try:
                if peer.transport == "udp":
                    if self.udp is not None:
                        self.udp.sendto(item.data, (peer.host, peer.port))
                    continue
                conn = self.connections.get(peer)
                if conn is None:
                    conn = self.socket_factory(socket.AF_INET, socket.SOCK_STREAM)
                    conn.settimeout(2.0)
                    conn.connect((peer.host, peer.port))
                    self.connections[peer] = conn
                    self.spawn(self._tcp_reader, conn, peer)
                conn.sendall(item.data)
            except OSError as error:      # the transaction will time out; nothing else to do
                log.warning("SIP send to %s failed: %s", peer, error)
