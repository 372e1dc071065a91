"""The gatekeeper inside the controller process, on the framework's hub.

The app passes in ``spawn`` / ``sleep`` (``hub.spawn`` / ``hub.sleep``: greenlets on ryu's
eventlet hub, threads on os-ken's native hub), a ``socket_factory`` (``socket.socket``,
green once eventlet patched it) and an ``event_factory`` (the SIP hub server's
``hub_event_factory(hub)``). One lock serialises the gatekeeper core between the RAS
loop, the accept loop, one reader per call-signalling connection, connectors and the
timer loop.

Admission tells us about calls it ended itself through :meth:`HubGatekeeper.on_changes`,
which only queues them and wakes the timer loop (it runs under the service's lock).
Every loop body, send and timer is guarded: a failure is counted in :attr:`faults` by
kind, logged once per kind, and dropped; no input stops a loop.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any, Callable, Protocol

from ..call_control import perform
from .actions import Action, Datagram, Perform, StreamClose, StreamOpen, StreamSend
from .gatekeeper import Gatekeeper

log = logging.getLogger(__name__)
SOCKET_POLL_S = 0.5
MAX_SLEEP_S = 5.0
CONNECT_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 2.0


class Waker(Protocol):
    def set(self) -> Any: ...
    def clear(self) -> Any: ...
    def wait(self, timeout: float | None = None) -> Any: ...


class Faults:
    """Failures at the shell's boundary, counted by kind and logged once per kind."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = collections.Counter()

    def record(self, kind: str, error: BaseException | None, detail: str = "") -> None:
        self.counts[kind] += 1
        if self.counts[kind] == 1:
            log.warning("H.323 %s failed (logged once, counted): %s %s", kind, detail, error)


class _Stream:
    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.waiting: list[bytes] = []         # data queued while connecting
        self.close_after = False


class HubGatekeeper:
    def __init__(self, gatekeeper: Gatekeeper, *, spawn: Callable[..., Any],
                 sleep: Callable[[float], Any] = time.sleep,
                 socket_factory: Callable[..., socket.socket] = socket.socket,
                 clock: Callable[[], float] = time.monotonic, event_factory: Callable[[], Waker] = threading.Event,
                 ras_bind: tuple[str, int] | None = None, call_bind: tuple[str, int] | None = None) -> None:
        self.gk = gatekeeper
        self.spawn, self.sleep, self.socket_factory, self.clock = spawn, sleep, socket_factory, clock
        self.ras_bind = ras_bind or gatekeeper.settings.ras
        self.call_bind = call_bind or gatekeeper.settings.call_signal
        self.lock = threading.RLock()
        self.running = False
        self.ras: socket.socket | None = None
        self.listener: socket.socket | None = None
        self.streams: dict[int, _Stream] = {}
        self.faults = Faults()
        self._ended: collections.deque[tuple[str, int, str]] = collections.deque()
        self._wake = event_factory()

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        from .asn1 import load
        load()
        self.ras = self.socket_factory(_family(self.ras_bind[0]), socket.SOCK_DGRAM)
        self.ras.bind(self.ras_bind)
        self.ras.settimeout(SOCKET_POLL_S)
        self.listener = self.socket_factory(_family(self.call_bind[0]), socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(self.call_bind)
        self.listener.listen(128)
        self.listener.settimeout(SOCKET_POLL_S)
        self.running = True
        self.spawn(self._ras_loop)
        self.spawn(self._accept_loop)
        self.spawn(self._timer_loop)

    def stop(self) -> None:
        self.running = False
        self._wake.set()
        for sock in [self.ras, self.listener, *(s.sock for s in list(self.streams.values()))]:
            _close(sock)

    # --- notifications (never block) -------------------------------------------------------

    def on_changes(self, changes: Any) -> None:
        """A MamService listener: queue the calls admission ended (it runs under the service's lock)."""
        try:
            for released in getattr(changes, "released", ()):
                self._ended.append((released.call_id, int(getattr(released, "serial", 0)), released.cause))
            if getattr(changes, "released", ()):
                self._wake.set()
        except Exception as error:  # noqa: BLE001 - never raise into the service
            self.faults.record("notification", error)

    # --- loops ---------------------------------------------------------------------------------

    def _ras_loop(self) -> None:
        ras = self.ras
        assert ras is not None
        while self.running:
            try:
                data, addr = ras.recvfrom(65535)
            except socket.timeout:
                continue
            except Exception as error:  # noqa: BLE001
                if not self.running:
                    break
                self.faults.record("ras-receive", error)
                self.sleep(0.01)
                continue
            self._core("ras", lambda: self.gk.receive_ras(data, addr[0], addr[1], self.clock()))

    def _accept_loop(self) -> None:
        listener = self.listener
        assert listener is not None
        while self.running:
            try:
                sock, addr = listener.accept()
            except socket.timeout:
                continue
            except Exception as error:  # noqa: BLE001 - EMFILE and the like
                if not self.running:
                    break
                self.faults.record("accept", error)
                self.sleep(0.1)
                continue
            try:
                sock.settimeout(SOCKET_POLL_S)
                with self.lock:
                    conn = self.gk.stream_opened(addr[0], addr[1], self.clock())
                    self.streams[conn] = _Stream(sock)
                self.spawn(self._reader, conn, sock)
            except Exception as error:  # noqa: BLE001
                self.faults.record("accept", error)
                _close(sock)

    def _reader(self, conn: int, sock: socket.socket) -> None:
        reset = False
        try:
            while self.running:
                try:
                    data = sock.recv(65535)
                except socket.timeout:
                    if self.streams.get(conn) is None:
                        break                       # we closed it
                    continue
                if not data:
                    break
                self._core("stream", lambda: self.gk.stream_data(conn, data, self.clock()))
        except Exception as error:  # noqa: BLE001 - OSError, or eventlet's IOClosed when we closed it
            reset = True
            if conn in self.streams and not isinstance(error, OSError):
                self.faults.record("stream-receive", error)
        finally:
            with self.lock:
                known = self.streams.pop(conn, None) is not None
            _close(sock)
            if known:
                self._core("stream-close", lambda: self.gk.stream_closed(conn, self.clock(), reset))

    def _timer_loop(self) -> None:
        while self.running:
            timeout = MAX_SLEEP_S
            try:
                self._wake.clear()
                while self._ended:
                    call_id, serial, cause = self._ended.popleft()
                    self._core("call-ended", lambda: self.gk.call_ended(call_id, serial, cause, self.clock()))
                with self.lock:
                    when = self.gk.next_timer()
                    now = self.clock()
                    if when is not None and when <= now:
                        self._core("timer", lambda: self.gk.handle_timer(now))
                    when = self.gk.next_timer()
                if when is not None:
                    timeout = min(MAX_SLEEP_S, max(0.0, when - self.clock()))
            except Exception as error:  # noqa: BLE001
                self.faults.record("timer", error)
                timeout = 0.1
            if timeout > 0 and self.running:
                self._wake.wait(timeout)

    def _core(self, kind: str, call: Callable[[], list[Action]]) -> None:
        try:
            with self.lock:                       # sends in decision order: under the lock
                out = self._act(call())
                when = self.gk.next_timer()
            for action in out:                    # admission asked later (deferred mode only)
                result: Any
                try:
                    result = perform(self.gk.control, action.op)
                except Exception as error:  # noqa: BLE001
                    result = error
                self._core("performed", lambda: self.gk.performed(action.ticket, result, self.clock()))
            if when is not None:
                self._wake.set()                 # let the timer loop re-read its deadline
        except Exception as error:  # noqa: BLE001
            self.faults.record(kind, error)

    # --- output --------------------------------------------------------------------------------

    def _act(self, out: list[Action]) -> list[Perform]:
        """Carry out what the core asked (called under the lock); Performs are returned."""
        later: list[Perform] = []
        for action in out:
            try:
                if isinstance(action, Datagram):
                    if self.ras is not None:
                        self.ras.sendto(action.data, (action.host, action.port))
                elif isinstance(action, StreamSend):
                    self._write(action.conn, action.data)
                elif isinstance(action, StreamOpen):
                    self.streams[action.conn] = _Stream(None)
                    self.spawn(self._connect, action.conn, action.host, action.port)
                elif isinstance(action, StreamClose):
                    self._close_stream(action.conn)
                elif isinstance(action, Perform):
                    later.append(action)
            except Exception as error:  # noqa: BLE001 - one failed send must not stop the others
                self.faults.record(f"{type(action).__name__}", error)
        return later

    def _write(self, conn: int, data: bytes) -> None:
        stream = self.streams.get(conn)
        if stream is None:
            return
        if stream.sock is None:
            stream.waiting.append(data)
            return
        try:
            stream.sock.sendall(data)
        except OSError as error:
            self.faults.record("stream-send", error)
            _close(stream.sock)

    def _close_stream(self, conn: int) -> None:
        stream = self.streams.get(conn)
        if stream is None:
            return
        if stream.sock is None:
            stream.close_after = True
            return
        with self.lock:
            self.streams.pop(conn, None)
        try:
            stream.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        _close(stream.sock)

    def _connect(self, conn: int, host: str, port: int) -> None:
        sock: socket.socket | None = None
        try:
            sock = self.socket_factory(_family(host), socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect((host, port))
            sock.settimeout(SOCKET_POLL_S)
        except Exception as error:  # noqa: BLE001
            self.faults.record("connect", error, f"to {host}:{port}")
            _close(sock)
            with self.lock:
                known = self.streams.pop(conn, None) is not None
            if known:
                self._core("connect", lambda: self.gk.stream_closed(conn, self.clock(), True))
            return
        with self.lock:
            stream = self.streams.get(conn)
            if stream is None:
                _close(sock)
                return
            stream.sock = sock
            waiting, stream.waiting = stream.waiting, []
            for data in waiting:
                self._write(conn, data)
            if stream.close_after:
                self._close_stream(conn)
                return
        self._reader(conn, sock)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
