"""The controller as the owner of SIP worker processes (``sip.workers: N``), on its hub.

With ``sip.workers: N`` (N >= 1) the controller app (``mam_app``) runs no SIP of its own:
it starts N worker processes of the standalone proxy (:mod:`.workers`, the code
``--workers`` runs) and answers their admission channel here, on the framework's hub,
with the same :class:`~.owner_core.OwnerCore` as the standalone owner (:mod:`.owner`)
over the controller's one :class:`~ryu_apps.service.MamService`: each job is
``run_job(service, job)``, so an admitted call's flows are drawn and sent exactly as for
the in-process proxy. The sockets and processes are a :class:`~.worker_pool.WorkerPool`.

Hub threads (``spawn``: greenlets under ryu's eventlet, threads under os-ken's native
hub), each guarded — a failure is counted in :attr:`HubOwner.faults` and the loop goes on:

* accept: one reader per worker connection. Bytes go through :meth:`~.owner_core.Link.
  feed` (nothing a worker sends gets past it; a broken stream closes that link only),
  under :attr:`HubOwner.lock`; the answers are written after the lock is released.
* dispatch: reads the public UDP socket and steers each datagram to its call's worker
  (:class:`~.workers.Dispatcher`); not started when the workers read it themselves.
* watch: every ``WATCH_S``, or at once when woken: calls admission ended on its own
  (queued by :meth:`HubOwner.on_changes`, which runs under the service's lock and so
  only queues) go to the worker holding them; a dead worker's calls are settled and the
  worker started again (:meth:`~.worker_pool.WorkerPool.watch`).

:meth:`HubOwner.stop` (the app's shutdown, and SIGTERM) stops the workers by PID.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import threading
from typing import Any, Callable, Iterable, Mapping, cast

from ..call_control import CallControl
from .guard import Faults
from .hub_server import accepted
from .owner_core import Link, OwnerCore
from .steering import worker_of_call
from .udp_server import tune_buffers
from .worker_pool import WorkerPool

log = logging.getLogger(__name__)
WATCH_S = 0.2
SOCKET_POLL_S = 0.5           # blocking socket calls return this often (to notice stop())
SEND_TIMEOUT_S = 10.0         # a worker that reads none of its answers for this long loses its channel
READ_BYTES = 256 * 1024


def native(sock: socket.socket) -> socket.socket:
    """The OS socket inside an eventlet green socket (the socket itself otherwise)."""
    raw = getattr(sock, "fd", None)                 # (eventlet's GreenSocket wraps a non-blocking one)
    return sock if raw is None or not hasattr(raw, "recvmsg") else cast(socket.socket, raw)


def readable_waiter(sock: socket.socket) -> Callable[[float], None]:
    """Waits until ``sock`` (non-blocking) is readable, raising ``socket.timeout`` after the
    time given: the eventlet hub's trampoline for a green socket, ``select`` otherwise."""
    if native(sock) is not sock:
        from eventlet.hubs import trampoline
        raw = native(sock)
        return lambda seconds: trampoline(raw, read=True, timeout=seconds, timeout_exc=socket.timeout)

    def wait(seconds: float) -> None:
        if not select.select([sock], [], [], seconds)[0]:
            raise socket.timeout()
    return wait


class Channel:
    """One worker's connection: answers are queued under the owner's lock and written
    outside it, whole frames in order, by whichever hub thread flushes first."""

    def __init__(self, conn: socket.socket, lock_factory: Callable[[], Any]) -> None:
        self.conn = conn
        self.outbox: collections.deque[bytes] = collections.deque()
        self.send_lock = lock_factory()
        self.link: Link | None = None

    def queue(self, data: bytes) -> None:
        self.outbox.append(data)

    def flush(self) -> None:
        """Write what is queued; raises OSError (socket.timeout included) for the caller."""
        if not self.outbox:
            return
        with self.send_lock:
            chunks = []
            while self.outbox:
                chunks.append(self.outbox.popleft())
            if chunks:
                self.conn.sendall(b"".join(chunks))

    def close(self) -> None:
        try:
            self.conn.shutdown(socket.SHUT_RDWR)     # (wakes a reader blocked on it, on any hub)
        except OSError:
            pass
        try:
            self.conn.close()
        except OSError:
            pass


class HubOwner:
    def __init__(self, control: CallControl, argv: list[str], count: int, host: str, port: int, *,
                 spawn: Callable[..., Any], sleep: Callable[[float], Any],
                 wakeup_factory: Callable[[], Any], lock_factory: Callable[[], Any] = threading.RLock,
                 read_shared: bool = False) -> None:
        self.spawn, self.sleep, self._lock_factory = spawn, sleep, lock_factory
        self.core = OwnerCore(control)
        self.lock = lock_factory()                 # the core's state: links, calls held, replay caches
        self.faults = Faults(log)
        self.pool = WorkerPool(argv, count, host, port, self._settle, read_shared)
        self.dispatcher = self.pool.dispatcher(self.faults, native)
        self.channels: dict[int, Channel] = {}     # by id(): every connection open now
        self._changes: collections.deque[Any] = collections.deque()
        self._wakeup = wakeup_factory()
        self.running = False

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self.pool.listener.settimeout(SOCKET_POLL_S)
        self.pool.spawn_all()
        self.spawn(self._accept_loop)
        if self.dispatcher is not None:
            self.spawn(self._dispatch_loop)
        self.spawn(self._watch_loop)

    def stop(self, wait: bool = True) -> None:
        """Stop the workers by PID (``wait``: until they exit, SIGKILL after a few seconds),
        then close the channel and the sockets. Safe to call more than once."""
        if self.pool.stopping:
            return
        self.running = False
        self.pool.stop_workers(wait)
        self._wakeup.wake()
        for channel in list(self.channels.values()):
            channel.close()
        if wait:
            self.pool.close()

    def pids(self) -> list[int]:
        return [w.pid for w in self.pool.workers if w.pid is not None]

    # --- from the controller (never block) -----------------------------------------------

    def on_changes(self, changes: Any) -> None:
        """A MamService listener (under the service's lock): queue what ends a call a worker
        holds (a worker's own Release is no longer held, so it is not queued), wake the watch."""
        try:
            calls = self.core.calls
            for released in getattr(changes, "released", ()):
                held = calls.get(released.call_id)
                if held is not None and held.serial == released.serial:
                    self._changes.append(changes)
                    self._wakeup.wake()
                    return
        except Exception as error:  # noqa: BLE001 - never raise into the service
            self.faults.record("notification", error)

    def restore(self, calls: Iterable[tuple[str, int, Mapping[str, Any]]]) -> int:
        """Calls set up before a restart ``(call_id, serial, dialog)``: each goes to the worker
        its Call-ID steers to, with that worker's hello (so its BYE ends it there)."""
        count = 0
        with self.lock:
            for call_id, serial, dialog in calls:
                self.core.adopt(worker_of_call(call_id.encode(), self.pool.count), call_id, serial, dialog)
                count += 1
        return count

    def report(self) -> dict[str, Any]:
        from dataclasses import asdict
        with self.lock:
            return {"workers": self.pool.per_worker(), "shared_port": self.pool.shared_port,
                    "owner": asdict(self.core.counters), "held_by_worker": self.core.held_by(),
                    "faults": self.faults.snapshot(),
                    "dispatched": None if self.dispatcher is None else list(self.dispatcher.per_worker)}

    # --- hub threads --------------------------------------------------------------------

    def _settle(self, index: int) -> tuple[int, int]:
        with self.lock:
            return self.core.worker_gone(index)

    def _accept_loop(self) -> None:
        for conn, _ in accepted(self.pool.listener, lambda: self.running, self.faults, "channel-accept", self.sleep):
            channel = Channel(conn, self._lock_factory)
            try:
                conn.settimeout(SEND_TIMEOUT_S)
                tune_buffers(conn)
                self.spawn(self._serve, channel)
            except Exception as error:  # noqa: BLE001
                self.faults.record("channel-accept", error)
                channel.close()

    def _serve(self, channel: Channel) -> None:
        self.channels[id(channel)] = channel
        with self.lock:
            link = channel.link = self.core.link(channel.queue)
        try:
            while self.running:
                try:
                    data = channel.conn.recv(READ_BYTES)
                except socket.timeout:
                    continue
                if not data:
                    break
                with self.lock:
                    whole = link.feed(data)
                channel.flush()
                if not whole:
                    break
                # Let the hub's other threads run between batches (a green recv that finds data
                # does not yield): the timer loop sends the flows of the calls just admitted.
                self.sleep(0)
        except OSError as error:                     # the worker went away, or stopped reading
            if self.running:
                self.faults.record("channel", error, f"worker {link.who}")
        except Exception as error:  # noqa: BLE001
            self.faults.record("channel", error, f"worker {link.who}")
        finally:
            with self.lock:
                link.closed()
            self.channels.pop(id(channel), None)
            channel.close()

    def _dispatch_loop(self) -> None:
        dispatcher = self.dispatcher
        assert dispatcher is not None
        wait = readable_waiter(self.pool.shared)
        while self.running:
            try:
                wait(SOCKET_POLL_S)
                if self.running:
                    dispatcher.readable()
            except socket.timeout:
                continue
            except Exception as error:  # noqa: BLE001 - the socket stays; pause, go on
                if not self.running:
                    break
                self.faults.record("dispatch", error)
                self.sleep(0.01)

    def _watch_loop(self) -> None:
        while self.running:
            try:
                with self.lock:
                    while self._changes:
                        self.core.on_changes(self._changes.popleft())
                self._flush_all()
                self.pool.watch()
            except Exception as error:  # noqa: BLE001 - watching must go on
                self.faults.record("watch", error)
            if self.running:
                self._wakeup.sleep(WATCH_S)

    def _flush_all(self) -> None:
        for channel in list(self.channels.values()):
            try:
                channel.flush()
            except OSError as error:
                self.faults.record("channel", error)
                channel.close()                      # its reader sees the end and closes the link
