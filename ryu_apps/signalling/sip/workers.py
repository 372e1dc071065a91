"""A SIP worker process of ``--workers N`` (the shell; the logic is in the pure modules).

Started by the admission owner (:mod:`.owner`) as ``python -m ryu_apps.signalling.sip
<the owner's arguments> --worker-spec JSON``, with these descriptors inherited:

* the shared UDP socket (the public address): read by every worker; a datagram whose
  Call-ID belongs to another worker is handed to it (:mod:`.steering`);
* this worker's own UDP socket: its port is in the worker's Via and Record-Route, so
  responses and in-dialog requests come back here; everything is sent from it;
* one unix datagram socket per worker: its own to read steered datagrams from, the
  others' to write to.

The proxy core runs deferred: its call-control jobs go to the owner over the admission
channel (:class:`ChannelRunner`, a unix stream connection, pipelined) and each answer
comes back as ``job_done``. Without an owner new calls get a 503 with a
``store-unavailable`` Reason at once; a worker whose owner is gone for good exits after
``ORPHAN_EXIT_S`` (long enough for transactions in progress to finish).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

from .. import event_loop
from .channel_client import ChannelClient, Event
from .channel_codec import Ended, FrameError, Restore
from .control_jobs import Job, JobResult
from .ids import HashIds
from .proxy import SipProxy
from .standalone import SipServer
from .guard import Faults
from .steering import pack, unwrap, worker_for, wrap
from .udp_server import ANCILLARY, BATCH, UdpEndpoint, kernel_delay

log = logging.getLogger(__name__)
GIVE_UP_S = 1.0                 # no owner for this long: refuse new calls (503 store-unavailable)
RETRY_S = 1.0                   # then try to reach it again this often
ORPHAN_EXIT_S = 32.0            # the owner process gone this long: exit (64·T1: transactions are over)


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    count: int
    channel: str                # the owner's unix socket (an abstract name starts with NUL)
    shared_fd: int
    own_fd: int
    steer_fds: tuple[int, ...]  # per worker: ours is read, the others' are written
    shared_port: int
    read_shared: bool = False   # False: the owner reads the shared socket and steers everything

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        data = json.loads(text)
        return cls(int(data["index"]), int(data["count"]), str(data["channel"]), int(data["shared_fd"]),
                   int(data["own_fd"]), tuple(int(fd) for fd in data["steer_fds"]), int(data["shared_port"]),
                   bool(data.get("read_shared", False)))


class ChannelRunner(asyncio.Protocol):
    """The shell's job runner in a worker: :class:`~.channel_client.ChannelClient` on a unix socket."""

    def __init__(self, address: str, index: int, on_done: Callable[[int, JobResult], None],
                 on_event: Callable[[Restore | Ended], None], on_down: Callable[[], None]) -> None:
        self.address = address
        self._on_down = on_down
        self.client = ChannelClient(index, os.getpid())
        self._on_done = on_done
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.Transport | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closing = False
        self._outbox: list[bytes] = []

    @property
    def in_flight(self) -> int:
        return self.client.in_flight

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._loop.create_unix_connection(lambda: self, self.address)

    def submit(self, jobs: list[tuple[int, Job]]) -> None:
        data, answers = self.client.submit(jobs)
        if data:                            # written once per loop turn: one send for many jobs
            self._outbox.append(data)
            if len(self._outbox) == 1 and self._loop is not None:
                self._loop.call_soon(self._flush)
        self._answer(answers)

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if data and self.transport is not None:
            self.transport.write(data)      # (lost with the connection: connected() resends them)

    def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.client.connected())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.client.receive(data)
        except FrameError as error:
            log.warning("admission channel broken: %s; reconnecting", error)
            if self.transport is not None:
                self.transport.close()
            return
        answers = []
        for event in events:
            if isinstance(event, tuple):
                answers.append(event)
            else:
                self._on_event(event)
        for ticket, result in answers:
            self._on_done(ticket, result)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client.disconnected()
        if not self._closing and self._loop is not None and self._reconnect is None:
            self._reconnect = self._loop.create_task(self._reach_again())

    async def _reach_again(self) -> None:
        """Reconnect at once if the owner is there; else refuse calls until it is."""
        assert self._loop is not None
        deadline = self._loop.time() + GIVE_UP_S
        pause = 0.05
        try:
            while not self._closing:
                try:
                    await self.connect()
                    return
                except OSError:
                    pass
                if self.client.state != "down" and self._loop.time() >= deadline:
                    log.error("admission owner unreachable at %r: refusing new calls", self.address)
                    self._answer(self.client.gave_up())
                    self._on_down()
                    pause = RETRY_S
                await asyncio.sleep(pause)
        finally:
            self._reconnect = None

    def _answer(self, answers: list[tuple[int, JobResult]]) -> None:
        if answers and self._loop is not None:       # never inside the core's own step
            for ticket, result in answers:
                self._loop.call_soon(self._on_done, ticket, result)


class Dispatcher:
    """Reads the public socket and hands each datagram, in the order read, to the worker
    owning its Call-ID (:mod:`.steering`): the datagrams of one wake-up for one worker go
    packed in one send. In the owner (the default) it keeps nothing; in a worker reading
    the socket itself (``--shared-reader workers``, or its owner gone) it hands the others'
    over first, then what they handed it, then its own to ``mine``: a worker that read a
    call's ACK passes it on before anyone handles that call's BYE, read just after."""

    def __init__(self, shared: socket.socket, writers: dict[int, socket.socket], faults: Faults,
                 mine: Callable[[list[tuple[bytes, str, int, float]]], None] | None = None, index: int = -1) -> None:
        self.shared = shared
        self.writers = writers
        self.count = len(writers) + (1 if mine is not None else 0)
        self.faults = faults
        self.mine = mine
        self.index = index
        self.per_worker = [0] * self.count

    def readable(self) -> None:
        recvmsg = self.shared.recvmsg
        packets: dict[int, list[bytes]] = {}
        own: list[tuple[bytes, str, int, float]] = []
        for _ in range(BATCH):
            try:
                data, ancillary, _, addr = recvmsg(65535, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                self.faults.record("udp-receive", error)
                break
            target = worker_for(data, self.count)
            self.per_worker[target] += 1
            if target == self.index:
                own.append((data, addr[0], addr[1], kernel_delay(ancillary)))
            else:
                packets.setdefault(target, []).append(wrap(data, addr[0], addr[1], kernel_delay(ancillary)))
        for target, pieces in packets.items():         # one send per worker and wake-up
            for packet in pack(pieces):
                try:
                    self.writers[target].send(packet)
                except BlockingIOError:        # that worker is behind (or being restarted): UDP drops
                    self.faults.record("steer-full", None, f"to worker {target}")
                except OSError as error:
                    self.faults.record("steer", error, f"to worker {target}")
        if own and self.mine is not None:
            self.mine(own)


class WorkerServer(SipServer):
    def __init__(self, proxy: SipProxy, spec: WorkerSpec) -> None:
        super().__init__(proxy, ("udp",), bind_host=proxy.config.host)
        self.spec = spec
        self.channel = ChannelRunner(spec.channel, spec.index, self._job_done, self._channel_event,
                                     self._owner_down)
        self.runner = self.channel
        own = socket.socket(fileno=spec.own_fd)
        own.setblocking(False)
        self.udp = UdpEndpoint(self, own)
        self._shared: socket.socket | None = None
        self._steer_in: socket.socket | None = None
        self._dispatcher: Dispatcher | None = None

    async def start(self) -> None:
        await self.channel.connect()
        await super().start()
        loop = asyncio.get_running_loop()
        if self.spec.read_shared:
            self._read_shared()
        steer_in = self._steer_in = socket.socket(fileno=self.spec.steer_fds[self.spec.index])
        steer_in.setblocking(False)
        loop.add_reader(steer_in.fileno(), self._steered_in)

    def _read_shared(self) -> None:
        """Read the public socket too (handing the others' datagrams to them)."""
        if self._shared is not None or self._loop is None:
            return
        writers = {i: socket.socket(fileno=fd) for i, fd in enumerate(self.spec.steer_fds) if i != self.spec.index}
        for sock in writers.values():
            sock.setblocking(False)
        shared = self._shared = socket.socket(fileno=self.spec.shared_fd)
        shared.setblocking(False)
        self._dispatcher = Dispatcher(shared, writers, self.faults, self._mine, self.spec.index)
        self._loop.add_reader(shared.fileno(), self._dispatcher.readable)

    def _mine(self, datagrams: list[tuple[bytes, str, int, float]]) -> None:
        self._steered_in()                  # what the others read before these, first
        for data, host, port, waited in datagrams:
            self.on_datagram(data, host, port, waited)

    def _owner_down(self) -> None:
        """The owner, who read the public socket, is gone: read it ourselves, so that new
        calls get their 503 (store-unavailable) instead of silence."""
        try:
            self._read_shared()
        except Exception as error:  # noqa: BLE001
            self.faults.record("shared-socket", error)

    async def stop(self) -> None:
        if self._shared is not None and self._loop is not None:
            self._loop.remove_reader(self._shared.fileno())
            self._shared.close()
        if self._steer_in is not None and self._loop is not None:
            self._loop.remove_reader(self._steer_in.fileno())
        await super().stop()

    def _steered_in(self) -> None:
        assert self._steer_in is not None
        for _ in range(BATCH):
            try:
                packet = self._steer_in.recv(70000)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.faults.record("steer-receive", error)
                return
            try:
                datagrams = unwrap(packet)
            except ValueError as error:
                self.faults.record("steer-receive", error)
                continue
            for data, host, port, waited in datagrams:
                self.on_datagram(data, host, port, waited)

    def _channel_event(self, event: Restore | Ended) -> None:
        if isinstance(event, Restore):
            self._entry("notification", lambda now: self.proxy.restore(event.dialogs, now))
        else:
            self.ended(event.call_id, event.serial, event.cause)

    def report(self) -> dict[str, Any]:
        stats = super().report()
        stats.update(worker=self.spec.index, pid=os.getpid(), port=self.proxy.config.port,
                     read_shared=self._dispatcher.per_worker if self._dispatcher is not None else None,
                     channel=dict(asdict(self.channel.client.counters), state=self.channel.client.state,
                                  errors=self.channel.client.errors))
        return stats


def build_worker(args: argparse.Namespace, site: Any, spec: WorkerSpec) -> WorkerServer:
    from dataclasses import replace

    from .command import normalise, proxy_settings
    config, _, _ = proxy_settings(args, site)
    with socket.socket(fileno=os.dup(spec.own_fd)) as own:
        port = own.getsockname()[1]
    proxy = SipProxy(replace(config, port=port), OwnerControl(), HashIds(os.urandom(16)), deferred=True)
    proxy.own_ports.add(spec.shared_port)
    normalise(proxy, site)
    return WorkerServer(proxy, spec)


class OwnerControl:
    """The worker proxy's ``control``: admission lives in the owner and the proxy runs
    deferred, so every operation goes over the channel as a job (:class:`ChannelRunner`);
    calling these directly is a mistake. ``save_dialog`` is here so that the proxy
    sends its dialogs (the owner keeps them to restore a dead worker's calls)."""

    def _remote(self, *args: Any) -> Any:
        raise RuntimeError("a worker's call control runs as jobs over the admission channel")

    admit = modify = attach_media = release = community_of = save_dialog = _remote


async def run(server: WorkerServer, stats_file: str | None) -> None:
    from .command import serve
    parent = os.getppid()

    async def orphan_watch(stopped: asyncio.Event) -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.error("admission owner (pid %d) is gone: exiting in %g s", parent, ORPHAN_EXIT_S)
        await asyncio.sleep(ORPHAN_EXIT_S)
        stopped.set()

    await serve(server, stats_file, orphan_watch)       # (its stdout is not read: the owner speaks)
    if os.getppid() != parent:            # orphaned: the owner could not remove its channel's directory
        shutil.rmtree(os.path.dirname(server.spec.channel), ignore_errors=True)


def worker_main(args: argparse.Namespace, site: Any) -> int:
    spec = WorkerSpec.from_json(args.worker_spec)
    server = build_worker(args, site, spec)
    stats_file = f"{args.stats_file}.worker{spec.index}" if args.stats_file else None
    try:
        event_loop.run(run(server, stats_file))
    except OSError as error:                # the owner went away before we said hello
        print(f"worker {spec.index}: {error}", file=sys.stderr)
        return 1
    return 0
