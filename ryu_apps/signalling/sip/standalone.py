"""The standalone proxy's shell: the sans-IO core on an asyncio loop, over UDP and TCP.

The shell's only jobs: read sockets, pass bytes with the source and ``loop.time()`` to
the core, write the core's outputs, wake the core at ``next_timer()``, and, in REST mode
(a core made with ``deferred=True``), run the core's call-control jobs off the loop
(:class:`~.control_runner.JobRunner`) and feed it what the controller ended
(:class:`~.call_watch.CallWatch`). It also measures how long the core takes from an
INVITE's arrival to its forwarding (latency the proxy adds). The command line is
:mod:`.command` (``python -m ryu_apps.signalling.sip``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import asdict
from typing import Any, Mapping

from .call_watch import CallWatch
from .control_jobs import JobResult
from .control_runner import JobRunner, Runner
from .errors import ParseError
from .guard import Faults, deliverable, resolve_routes
from .message import Message
from .proxy import SipProxy
from .tcp_limits import ConnectionTable
from .tcp_server import TcpConnection, open_tcp
from .transaction import Peer, Send
from .udp_server import UdpEndpoint

log = logging.getLogger(__name__)
LATENCY_SAMPLES = 200_000
TCP_SWEEP_S = 1.0
PEER_CACHE = 4096               # peers remembered (as Peer values, and as deliverable); then forgotten
TIMER_SLOT_S = 0.01             # transaction timers fire up to 10 ms late, together (T1 is 500 ms)


class SipServer:
    """Runs one :class:`SipProxy` on the running asyncio loop.

    Every entry from the outside (a datagram, a TCP message, a timer, a notification)
    runs guarded: a failure is counted in :attr:`faults` by kind, logged once per kind
    (then at most once a minute) and dropped; sockets, timers and the loop go on."""

    def __init__(self, proxy: SipProxy, transports: tuple[str, ...] = ("udp", "tcp"),
                 bind_host: str | None = None, *, watch: CallWatch | None = None, control_workers: int = 8) -> None:
        self.proxy = proxy
        self.watch = watch
        self.runner: Runner | None = None           # deferred mode; a worker sets its channel first
        self._control_workers = control_workers
        self.transports = transports
        self.bind_host = bind_host or proxy.config.host
        self.udp: UdpEndpoint | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self.tcp_connections: dict[Peer, TcpConnection] = {}
        self.tcp_table = ConnectionTable(proxy.config.tcp)
        self.faults = Faults(log)
        self.invite_latency: list[float] = []      # seconds from INVITE in to its outputs sent
        self._peers: dict[tuple[str, int], Peer] = {}      # UDP sources seen lately, as Peers
        self._deliverable: set[Peer] = set()                # peers that passed deliverable() lately
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def send_errors(self) -> int:
        return self.faults.total()

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        resolve_routes(self.proxy)
        if self.proxy.deferred and self.runner is None:
            self.runner = JobRunner(self.proxy.control, loop, self._job_done, self._control_workers)
        if self.watch is not None:
            self.watch.start(loop, self)
        port = self.proxy.config.port
        if "udp" in self.transports:
            if self.udp is None:                    # (a worker's socket is bound by the owner)
                self.udp = UdpEndpoint.bind(self, self.bind_host, port)
            self.udp.start(loop)
        if "tcp" in self.transports:
            self.tcp_server = await loop.create_server(lambda: TcpConnection(self), self.bind_host, port,
                                                       reuse_address=True)
            self._sweeper = loop.call_later(TCP_SWEEP_S, self._sweep_tcp)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.watch is not None:
            self.watch.stop()
        if self.runner is not None:
            self.runner.close()
        if self.udp is not None:
            self.udp.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
        for connection in list(self.tcp_connections.values()):
            if connection.transport is not None:
                connection.transport.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _sweep_tcp(self) -> None:
        """Close connections idle too long, or whose message does not complete in time."""
        assert self._loop is not None
        try:
            for connection, _ in self.tcp_table.expired(self._loop.time()):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
        except Exception as error:  # noqa: BLE001
            self.faults.record("timer", error)
        self._sweeper = self._loop.call_later(TCP_SWEEP_S, self._sweep_tcp)

    # --- input (each entry guarded) ----------------------------------------------------

    def on_datagram(self, data: bytes, host: str, port: int, waited: float = 0.0) -> None:
        assert self._loop is not None
        try:
            peer = self._peers.get((host, port))
            if peer is None:                        # the same few peers send nearly everything
                if len(self._peers) >= PEER_CACHE:
                    self._peers.clear()
                peer = self._peers[(host, port)] = Peer("udp", host, port)
            if data[:7] != b"INVITE " or len(self.invite_latency) >= LATENCY_SAMPLES:
                self._after(self.proxy.receive(data, peer, self._loop.time(), waited))
                return
            started = time.perf_counter()
            self._after(self.proxy.receive(data, peer, self._loop.time(), waited))
            self.invite_latency.append(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - one datagram never stops the listener
            self.faults.record("handler", error, f"UDP datagram from {host}:{port}")

    def on_tcp_message(self, item: Message | ParseError, peer: Peer) -> None:
        assert self._loop is not None
        try:
            started = time.perf_counter()
            self._after(self.proxy.receive_message(item, peer, self._loop.time()))
            if getattr(item, "method", None) == "INVITE" and len(self.invite_latency) < LATENCY_SAMPLES:
                self.invite_latency.append(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001
            self.faults.record("handler", error, f"TCP message from {peer.host}:{peer.port}")

    def media_idle(self, call_id: str) -> None:
        """For a data-plane feed in this process (thread-safe: hops onto the loop)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._media_idle, call_id)

    def on_changes(self, changes: Any) -> None:
        """A :class:`~ryu_apps.service.MamService` listener: BYE the calls admission ended itself
        (preempted, aggregate deleted). Never blocks: it runs under the service's lock."""
        if self._loop is None:
            return
        try:
            for released in getattr(changes, "released", ()):
                self._loop.call_soon_threadsafe(self.ended, released.call_id, released.serial, released.cause)
        except Exception as error:  # noqa: BLE001 - a closed loop at shutdown, say
            self.faults.record("notification", error)

    # CallSink: what the controller ended (a REST poll, or in-process notifications)

    def held(self, calls: Mapping[str, int], as_of: float) -> None:
        self._entry("notification", lambda now: self.proxy.reconcile(calls, as_of, now))

    def ended(self, call_id: str, serial: int | None, cause: str) -> None:
        self._entry("notification", lambda now: self.proxy.call_ended(call_id, cause, now, serial))

    def _media_idle(self, call_id: str) -> None:
        self._entry("notification", lambda now: self.proxy.media_idle(call_id, now))

    def _job_done(self, ticket: int, result: JobResult) -> None:
        self._entry("control", lambda now: self.proxy.job_done(ticket, result, now))

    def _entry(self, kind: str, step: Any) -> None:
        assert self._loop is not None
        try:
            self._after(step(self._loop.time()))
        except Exception as error:  # noqa: BLE001
            self.faults.record(kind, error)

    # --- output and timers --------------------------------------------------------------

    def _after(self, out: list[Send]) -> None:
        """After each step of the core: its outputs out, its jobs to the runner, its next wake-up."""
        self.send(out)
        if self.runner is not None:
            jobs = self.proxy.take_jobs()
            if jobs:
                self.runner.submit(jobs)
        self._schedule()

    def send(self, out: list[Send]) -> None:
        for item in out:
            peer = item.peer
            if not self._can_send(peer):
                self.faults.record("undeliverable", None, f"{peer!r}")
                continue
            if peer.transport == "udp":
                if self.udp is not None:
                    self.udp.sendto(item.data, peer.host, peer.port)
                continue
            try:
                connection = self.tcp_connections.get(peer)
                if connection is not None:
                    connection.write(item.data)
                elif self._loop is not None:
                    self._loop.create_task(open_tcp(self, peer, item.data))
            except Exception as error:  # noqa: BLE001
                self.faults.record("tcp-send", error, f"to {peer.host}:{peer.port}")

    def _can_send(self, peer: Peer) -> bool:
        """:func:`deliverable`, remembered for the peers that passed (the same few, mostly)."""
        checked = self._deliverable
        try:
            if peer in checked:
                return True
        except TypeError:                   # not even hashable: certainly not deliverable
            return False
        if not deliverable(peer):
            return False
        if len(checked) >= PEER_CACHE:
            checked.clear()
        checked.add(peer)
        return True

    def _schedule(self) -> None:
        try:
            when = self.proxy.next_timer()
            if when is None:
                return
            when = wake_time(when)
            if when == self._timer_at:
                return
            if self._timer is not None:
                if self._timer_at is not None and self._timer_at <= when:
                    return                 # an earlier wake-up is set; it reschedules
                self._timer.cancel()
            assert self._loop is not None
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)
        except Exception as error:  # noqa: BLE001
            self.faults.record("timer", error)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        try:
            self._after(self.proxy.handle_timer(self._loop.time()))
        except Exception as error:  # noqa: BLE001 - the next timer still gets scheduled
            self.faults.record("timer", error)
            self._schedule()

    # --- figures ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        samples = sorted(self.invite_latency)

        def pct(p: float) -> float | None:
            return None if not samples else round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1e6, 1)
        stats = asdict(self.proxy.stats)
        stats.update(invite_latency_us={"count": len(samples), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                                        "max": pct(1.0)},
                     send_errors=self.send_errors, faults=self.faults.snapshot(), active_calls=len(self.proxy.calls),
                     transactions=self.proxy.transaction_counts(),
                     control_in_flight=self.runner.in_flight if self.runner is not None else 0,
                     tcp=dict(asdict(self.tcp_table.counters), open=len(self.tcp_table)))
        read = getattr(self.proxy.control, "read", None)
        if read is not None:               # in-process admission: what the pools hold now
            stats["pool_used_kbps"] = read(lambda m: sum(m.used_kbps(a.id) for a in m.aggregates()))
            stats["admitted_calls"] = read(lambda m: len(m.calls()))
        return stats


def wake_time(deadline: float) -> float:
    """When the loop wakes for ``deadline``: the end of its :data:`TIMER_SLOT_S` slot. Each call
    leaves half a dozen transaction deadlines (timers J, K, L, M, its ACK wait), each a moment
    of its own; woken per slot, the loop serves all the slot's deadlines at once instead of
    paying a wake-up (a timer handle, a loop turn, a scheduling pass) for each. Never early."""
    wake = math.ceil(deadline / TIMER_SLOT_S) * TIMER_SLOT_S
    return wake if wake >= deadline else deadline


def main(argv: list[str] | None = None) -> int:
    """``python -m ryu_apps.signalling.sip`` (kept here for callers of the old location)."""
    from .command import main as command_main
    return command_main(argv)


