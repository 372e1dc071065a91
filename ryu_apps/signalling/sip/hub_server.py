"""The proxy inside the controller process, on the framework's hub.

The controller app passes in how to run things: ``spawn`` (``hub.spawn``: greenlets on
ryu's eventlet hub, threads on os-ken's native hub), ``sleep`` (``hub.sleep``), a
``socket_factory`` (``socket.socket``: green once eventlet has patched it) and a
``wakeup_factory`` (``compat.Wakeup``). No asyncio, no threads of its own. One
lock serialises the proxy core between the UDP loop, TCP readers, the timer loop and
data-plane notifications.

Admission reports calls it ended itself (preemption, aggregate deleted) through
:meth:`HubSipServer.on_changes`, which only queues them and wakes the timer loop: it runs
under the service's lock, and taking the proxy's lock there could deadlock against a
proxy thread that holds its own lock while asking admission.

The timer loop sleeps until the proxy's next timer; it is woken early when a message
sets an earlier timer or a notification arrives. Every loop body and every send is
guarded: a failure is counted in :attr:`HubSipServer.faults` by kind, logged once per kind
(then at most once a minute) and dropped. No input stops a loop.

Wiring (the app): ``server = HubSipServer(SipProxy(config, service, HashIds(os.urandom(16))),
spawn=hub.spawn, sleep=hub.sleep, wakeup_factory=compat.Wakeup);
service.subscribe(server.on_changes); server.start()``.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator, Protocol

from .guard import Faults, deliverable, resolve_routes
from .message import StreamFramer
from .proxy import SipProxy
from .tcp_limits import ConnectionTable
from .transaction import Peer, Send
from .udp_server import ANCILLARY, BATCH, enable_timestamps, kernel_delay, tune_buffers

log = logging.getLogger(__name__)
MAX_SLEEP_S = 5.0              # the timer loop wakes at least this often (to notice stop())
SOCKET_POLL_S = 0.5            # blocking socket calls return this often (to notice stop())
TCP_SEND_TIMEOUT_S = 0.5       # a peer that does not read for this long loses its connection


class Wakeup(Protocol):
    """A sleep another thread or greenlet can cut short (``ryu_apps.compat.Wakeup``)."""

    def sleep(self, seconds: float) -> bool: ...

    def wake(self) -> None: ...


class ThreadWakeup:
    """:class:`Wakeup` for native threads (the default; the app passes ``compat.Wakeup``)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def sleep(self, seconds: float) -> bool:
        woken = self._event.wait(max(0.0, seconds))
        self._event.clear()
        return woken

    def wake(self) -> None:
        self._event.set()


class HubSipServer:
    def __init__(self, proxy: SipProxy, *, spawn: Callable[..., Any], sleep: Callable[[float], Any] = time.sleep,
                 socket_factory: Callable[..., socket.socket] = socket.socket,
                 clock: Callable[[], float] = time.monotonic, transports: tuple[str, ...] = ("udp", "tcp"),
                 bind_host: str | None = None, wakeup_factory: Callable[[], Wakeup] = ThreadWakeup) -> None:
        self.proxy = proxy
        self.spawn, self.sleep, self.socket_factory, self.clock = spawn, sleep, socket_factory, clock
        self.transports = transports
        self.bind_host = bind_host or proxy.config.host
        self.lock = threading.RLock()
        self.running = False
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        self.connections: dict[Peer, socket.socket] = {}
        self.tcp_table = ConnectionTable(proxy.config.tcp)
        self._tcp_lock = threading.Lock()
        self.faults = Faults(log)
        self.timer_wakeups = 0
        self._pending: dict[Peer, list[bytes]] = {}        # TCP data waiting for a connect
        self._ended: collections.deque[tuple[str, str, int | None]] = collections.deque()
        self._idle: collections.deque[str] = collections.deque()
        self._wakeup = wakeup_factory()
        self._sleeping_until: float | None = None          # None: asleep without a timer

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        port = self.proxy.config.port
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        resolve_routes(self.proxy)
        self.running = True
        if "udp" in self.transports:
            self.udp = self.socket_factory(family, socket.SOCK_DGRAM)
            tune_buffers(self.udp)
            enable_timestamps(self.udp)
            self.udp.bind((self.bind_host, port))
            self.udp.settimeout(SOCKET_POLL_S)
            self.spawn(self._udp_loop)
        if "tcp" in self.transports:
            self.tcp = self.socket_factory(family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.bind_host, port))
            self.tcp.listen(128)
            self.tcp.settimeout(SOCKET_POLL_S)
            self.spawn(self._accept_loop)
        self.spawn(self._timer_loop)

    def stop(self) -> None:
        self.running = False
        self._wakeup.wake()
        for sock in [self.udp, self.tcp, *self.connections.values()]:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    # --- notifications from the controller (never block) ---------------------------------

    def on_changes(self, changes: Any) -> None:
        """A :class:`~ryu_apps.service.MamService` listener: queue the calls admission ended."""
        try:
            for released in getattr(changes, "released", ()):
                self._ended.append((released.call_id, released.cause, getattr(released, "serial", None)))
            self._wakeup.wake()
        except Exception as error:  # noqa: BLE001 - never raise into the service
            self.faults.record("notification", error)

    def restore(self, dialogs: Any) -> None:
        """Calls set up before a restart (their saved dialogs): the proxy can end them again."""
        try:
            with self.lock:
                self._send(self.proxy.restore(dialogs, self.clock()))
        except Exception as error:  # noqa: BLE001
            self.faults.record("notification", error)

    def media_idle(self, call_id: str) -> None:
        """The data plane saw the call's media stop (flow idle timeout)."""
        self._idle.append(call_id)
        self._wakeup.wake()

    # --- loops ----------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        udp = self.udp
        assert udp is not None
        receive = _receiver(udp)
        while self.running:
            try:
                batch = receive()
            except socket.timeout:
                continue
            except Exception as error:  # noqa: BLE001 - OSError or worse: count, pause, go on
                if not self.running:
                    break
                self.faults.record("udp-receive", error)
                self.sleep(0.01)
                continue
            invites = []
            for data, addr, waited in batch:         # what finishes calls before what starts them
                if data[:7] == b"INVITE ":
                    invites.append((data, addr, waited))
                else:
                    self._handle(data, Peer("udp", addr[0], addr[1]), "udp-receive", waited)
            for data, addr, waited in invites:
                self._handle(data, Peer("udp", addr[0], addr[1]), "udp-receive", waited)
            # Let the hub's other greenlets run between batches (the data plane's timer loop
            # sends the flows of the calls just admitted; the switches' barrier replies confirm
            # them): a busy socket never blocks, so without this the loop would hold the hub
            # until the socket is empty and the flows would lag the signalling by seconds.
            self.sleep(0)

    def _handle(self, item: Any, peer: Peer, kind: str, waited: float = 0.0) -> None:
        """One datagram (bytes) or framed TCP item through the core, then its outputs out."""
        try:
            with self.lock:
                if isinstance(item, bytes):
                    out = self.proxy.receive(item, peer, self.clock(), waited)
                else:
                    out = self.proxy.receive_message(item, peer, self.clock())
                when = self.proxy.next_timer()
            self._send(out)
            if when is not None and (self._sleeping_until is None or when < self._sleeping_until):
                self._wakeup.wake()                      # an earlier timer than the loop sleeps for
        except Exception as error:  # noqa: BLE001
            self.faults.record("handler", error, f"{kind} from {peer.host}:{peer.port}")

    def _accept_loop(self) -> None:
        tcp = self.tcp
        assert tcp is not None
        for conn, addr in accepted(tcp, lambda: self.running, self.faults, "tcp-accept", self.sleep):
            try:
                peer = Peer("tcp", addr[0], addr[1])
                with self._tcp_lock:
                    refused = self.tcp_table.admit(peer, peer.host, self.clock())
                if refused is not None:           # over a limit (counted in the table)
                    _close(conn)
                    continue
                conn.settimeout(SOCKET_POLL_S)
                self.connections[peer] = conn
                self.spawn(self._tcp_reader, conn, peer)
            except Exception as error:  # noqa: BLE001
                self.faults.record("tcp-accept", error)
                _close(conn)

    def _tcp_reader(self, conn: socket.socket, peer: Peer) -> None:
        framer = StreamFramer(self.proxy.config.max_message_bytes)
        table, lock = self.tcp_table, self._tcp_lock
        try:
            while self.running:
                try:
                    data = conn.recv(65535)
                except socket.timeout:
                    with lock:                       # idle too long, or a message too slow to complete
                        if table.check(peer, self.clock()) is not None:
                            break
                    continue
                if not data:
                    break
                for item in framer.feed(data):
                    self._handle(item, peer, "tcp-receive")
                if framer.broken:
                    break
                with lock:
                    table.activity(peer, self.clock(), framer.pending)
                    if table.check(peer, self.clock()) is not None:
                        break
        except OSError:
            pass                                     # the peer went away: an ordinary end
        except Exception as error:  # noqa: BLE001
            self.faults.record("tcp-receive", error)
        finally:
            with lock:
                table.closed(peer)
            if self.connections.get(peer) is conn:
                del self.connections[peer]
            _close(conn)

    def _timer_loop(self) -> None:
        while self.running:
            timeout = MAX_SLEEP_S
            try:
                self.timer_wakeups += 1
                now = self.clock()
                out: list[Send] = []
                with self.lock:
                    while self._ended:
                        call_id, cause, serial = self._ended.popleft()
                        out += self.proxy.call_ended(call_id, cause, now, serial)
                    while self._idle:
                        out += self.proxy.media_idle(self._idle.popleft(), now)
                    when = self.proxy.next_timer()
                    if when is not None and when <= now:
                        out += self.proxy.handle_timer(now)
                        when = self.proxy.next_timer()
                    self._sleeping_until = when
                self._send(out)
                if when is not None:
                    timeout = min(MAX_SLEEP_S, max(0.0, when - self.clock()))
            except Exception as error:  # noqa: BLE001 - the loop goes on; try again shortly
                self.faults.record("timer", error)
                timeout = 0.1
            if timeout > 0 and self.running:
                self._wakeup.sleep(timeout)

    # --- output -----------------------------------------------------------------------------

    def _send(self, out: list[Send]) -> None:
        for item in out:
            peer = item.peer
            if not deliverable(peer):
                self.faults.record("undeliverable", None, f"{peer!r}")
                continue
            if peer.transport == "udp":
                try:
                    if self.udp is not None:
                        self.udp.sendto(item.data, (peer.host, peer.port))
                except Exception as error:  # noqa: BLE001 - OSError or worse: the socket stays
                    self.faults.record("udp-send", error, f"to {peer.host}:{peer.port}")
                continue
            conn = self.connections.get(peer)
            if conn is None:
                self._connect_later(peer, item.data)
                continue
            try:
                conn.sendall(item.data)
            except Exception as error:  # noqa: BLE001 - a peer that does not read loses its connection
                self.faults.record("tcp-send", error, f"to {peer.host}:{peer.port}")
                if self.connections.get(peer) is conn:
                    del self.connections[peer]
                _close(conn)

    def _connect_later(self, peer: Peer, data: bytes) -> None:
        """Queue ``data`` for ``peer`` and connect in a hub thread of its own (never in a loop)."""
        waiting = self._pending.get(peer)
        if waiting is not None:
            waiting.append(data)
            return
        self._pending[peer] = [data]
        try:
            self.spawn(self._connect, peer)
        except Exception as error:  # noqa: BLE001
            self._pending.pop(peer, None)
            self.faults.record("tcp-connect", error)

    def _connect(self, peer: Peer) -> None:
        conn: socket.socket | None = None
        try:
            family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
            conn = self.socket_factory(family, socket.SOCK_STREAM)
            conn.settimeout(2.0)
            conn.connect((peer.host, peer.port))
            conn.settimeout(TCP_SEND_TIMEOUT_S)
            with self._tcp_lock:
                self.tcp_table.opened(peer, peer.host, self.clock())
            self.connections[peer] = conn
            for data in self._pending.pop(peer, []):
                conn.sendall(data)
        except Exception as error:  # noqa: BLE001 - the transaction times out
            self._pending.pop(peer, None)
            self.faults.record("tcp-connect", error, f"to {peer.host}:{peer.port}")
            if conn is not None:
                _close(conn)
            return
        self._tcp_reader(conn, peer)


Datagram = tuple[bytes, Any, float]


def _receiver(sock: socket.socket) -> Callable[[], list[Datagram]]:
    """Read the datagrams waiting (at least one, at most BATCH), each with how long it waited
    in the kernel: ``recvmsg`` on a native socket (then more while ``select`` says so); on an
    eventlet green socket (no usable ``recvmsg``), its raw non-blocking socket, waited on
    with the hub."""
    raw = getattr(sock, "fd", None)            # an eventlet GreenSocket wraps a non-blocking socket
    if raw is None or not hasattr(raw, "recvmsg"):
        def native() -> list[Datagram]:
            data, ancillary, _, addr = sock.recvmsg(65535, ANCILLARY)
            batch = [(data, addr, kernel_delay(ancillary))]
            while len(batch) < BATCH and select.select([sock], [], [], 0)[0]:
                data, ancillary, _, addr = sock.recvmsg(65535, ANCILLARY)
                batch.append((data, addr, kernel_delay(ancillary)))
            return batch
        return native
    from eventlet.hubs import trampoline

    def green() -> list[Datagram]:
        batch: list[Datagram] = []
        while True:
            try:
                data, ancillary, _, addr = raw.recvmsg(65535, ANCILLARY)
            except BlockingIOError:
                if batch:
                    return batch
                trampoline(raw, read=True, timeout=SOCKET_POLL_S, timeout_exc=socket.timeout)
                continue
            batch.append((data, addr, kernel_delay(ancillary)))
            if len(batch) >= BATCH:
                return batch
    return green


def accepted(sock: socket.socket, running: Callable[[], bool], faults: Faults, kind: str,
             sleep: Callable[[float], Any]) -> Iterator[tuple[socket.socket, Any]]:
    """Connections accepted on ``sock`` (with a timeout) while ``running()``: a timeout only
    looks at ``running`` again; any other failure (EMFILE and the like) is counted as
    ``kind`` and waited out a little."""
    while running():
        try:
            yield sock.accept()
        except socket.timeout:
            continue
        except Exception as error:  # noqa: BLE001
            if not running():
                break
            faults.record(kind, error)
            sleep(0.1)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except Exception:  # noqa: BLE001
        pass
