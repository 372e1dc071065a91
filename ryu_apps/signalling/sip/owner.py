"""``--workers N``: the process that owns admission, and starts and watches the workers (shell).

Before any worker starts, the owner binds every socket the workers need and keeps them:
the shared UDP socket on the public address, one UDP socket per worker on a port of its
own (chosen by the kernel; a worker started again in a dead one's place gets the same
socket, so the same port), one unix datagram socket pair per worker for steered
datagrams, and the admission channel's unix socket in a private directory. Workers are
``python -m ryu_apps.signalling.sip <these arguments> --worker-spec JSON`` with the
descriptors passed down (:mod:`.workers`).

The owner runs :class:`~.owner_core.OwnerCore` over the one
:class:`~ryu_apps.service.MamService` (the same in-process admission as one-process
mode), answers each link's jobs on its loop, and every ``WATCH_S`` looks for workers
that died: their calls are settled (:meth:`~.owner_core.OwnerCore.worker_gone`) and the
worker is started again (at most once per ``RESPAWN_MIN_S``). SIGTERM/SIGINT stop the
workers (by PID), then the owner; the stats file (``--stats-file``) has the workers'
counters summed, each worker's PID and port, and the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from .channel_codec import FrameError
from .guard import Faults
from .owner_core import Link, OwnerCore
from .udp_server import open_udp, tune_buffers
from .workers import Dispatcher, WorkerSpec

log = logging.getLogger(__name__)
WATCH_S = 0.2
RESPAWN_MIN_S = 1.0
STABLE_S = 10.0                          # a worker that dies younger than this is restarted ever later,
MAX_BACKOFF_S = 30.0                     # up to this (a crash loop does not spin the owner)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
MAX_WRITE_BUFFER = 64 * 1024 * 1024      # a worker that stops reading its answers is cut off


@dataclass
class Worker:
    index: int
    own: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    deaths: int = 0
    died_at: float = 0.0
    backoff: float = 0.0        # seconds before it is started again (doubles while it dies young)

    @property
    def port(self) -> int:
        return int(self.own.getsockname()[1])


class OwnerProtocol(asyncio.Protocol):
    """One worker's connection: every receive and send guarded; the owner never stops for it."""

    def __init__(self, core: OwnerCore) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.link: Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.link = self.core.link(self._write)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            transport.write(data)
            if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                log.error("worker %s does not read its answers: closing its channel", self._who())
                transport.abort()
        except Exception as error:  # noqa: BLE001
            self.core.bad(f"writing to worker {self._who()}: {error}")

    def data_received(self, data: bytes) -> None:
        assert self.link is not None
        try:
            self.link.receive(data)
        except FrameError as error:
            self.core.counters.broken_links += 1
            self.core.bad(f"worker {self._who()}: {error}; closing its channel")
            if self.transport is not None:
                self.transport.close()
        except Exception as error:  # noqa: BLE001 - the owner outlives any message
            self.core.bad(f"worker {self._who()}: {type(error).__name__}: {error}")
            log.exception("admission channel")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.link is not None:
            self.link.closed()

    def _who(self) -> str:
        return "?" if self.link is None or self.link.index is None else str(self.link.index)


class Owner:
    def __init__(self, argv: list[str], site: Any, count: int, host: str, port: int, stats_file: str | None,
                 read_shared: bool = False) -> None:
        from ryu_apps.config import build_manager
        from ryu_apps.service import MamService
        self.argv = argv
        self.count = count
        self.host = host
        self.stats_file = stats_file
        self.service = MamService(build_manager(site, data_plane=False))
        self.core = OwnerCore(self.service)
        self.service.subscribe(self.core.on_changes)
        self.shared = open_udp(host, port)
        self.shared_port = int(self.shared.getsockname()[1])
        self.workers = [Worker(i, open_udp(host, 0)) for i in range(count)]
        self.steer = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]
        for pair in self.steer:
            for sock in pair:
                sock.setblocking(False)
                tune_buffers(sock)
        self.directory = tempfile.mkdtemp(prefix="mam-sip-")          # 0700: the channel is ours only
        self.address = os.path.join(self.directory, "admission.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.stopping = False
        self.read_shared = read_shared
        self.dispatcher = None if read_shared else Dispatcher(
            self.shared, {i: pair[0] for i, pair in enumerate(self.steer)}, Faults(log))

    # --- workers ------------------------------------------------------------------------

    def spec(self, worker: Worker) -> WorkerSpec:
        steer = tuple(pair[1].fileno() if i == worker.index else pair[0].fileno()
                      for i, pair in enumerate(self.steer))
        return WorkerSpec(worker.index, self.count, self.address, self.shared.fileno(), worker.own.fileno(), steer,
                          self.shared_port, self.read_shared)

    def spawn(self, worker: Worker) -> None:
        spec = self.spec(worker)
        command = [sys.executable, "-m", "ryu_apps.signalling.sip", *self.argv, "--worker-spec", spec.to_json()]
        fds = (spec.shared_fd, spec.own_fd, *spec.steer_fds)
        worker.process = subprocess.Popen(command, pass_fds=fds, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL)
        worker.started_at = time.monotonic()
        worker.starts += 1

    def watch(self) -> None:
        """Settle and restart workers that died."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                worker.deaths += 1
                released, kept = self.core.worker_gone(worker.index)
                log.error("SIP worker %d (pid %d) exited with %s: %d calls being set up released, "
                          "%d confirmed calls kept for its successor", worker.index, process.pid,
                          process.returncode, released, kept)
                worker.process = None
                worker.died_at = now
                young = now - worker.started_at < STABLE_S
                worker.backoff = min(MAX_BACKOFF_S, max(RESPAWN_MIN_S, 2 * worker.backoff)) if young else RESPAWN_MIN_S
            if worker.process is None and not self.stopping and now - worker.died_at >= worker.backoff:
                self.spawn(worker)

    async def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self.core.links) < self.count:
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is not None:
                    raise RuntimeError(f"SIP worker {worker.index} exited with {worker.process.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"SIP workers did not start within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)

    def stop_workers(self) -> None:
        self.stopping = True
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    # --- figures ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        per_worker = []
        for worker in self.workers:
            if self.stats_file:
                try:
                    with open(f"{self.stats_file}.worker{worker.index}", encoding="utf-8") as handle:
                        merge(stats, json.load(handle))
                except (OSError, ValueError, TypeError):
                    pass
            per_worker.append({"index": worker.index, "pid": worker.process.pid if worker.process else None,
                               "port": worker.port, "starts": worker.starts, "deaths": worker.deaths})
        service = self.service
        stats.update(workers=per_worker, shared_port=self.shared_port, owner_pid=os.getpid(),
                     owner=asdict(self.core.counters), held_by_worker=self.core.held_by(),
                     shared_reader="workers" if self.read_shared else "owner",
                     dispatched=None if self.dispatcher is None else self.dispatcher.per_worker,
                     dispatch_faults=None if self.dispatcher is None else self.dispatcher.faults.snapshot(),
                     active_calls=len(self.core.calls),
                     pool_used_kbps=service.read(lambda m: sum(m.used_kbps(a.id) for a in m.aggregates())),
                     admitted_calls=service.read(lambda m: len(m.calls())))
        return stats

    def dump(self) -> None:
        from .command import write_report
        if self.stats_file:
            write_report(self.stats_file, self.report())

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: OwnerProtocol(self.core), sock=self.listener)
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        loop.add_signal_handler(signal.SIGUSR1, self.dump)
        try:
            for worker in self.workers:
                self.spawn(worker)
            await self.wait_started()
            if self.dispatcher is not None:
                loop.add_reader(self.shared.fileno(), self.dispatcher.readable)
            pids = ", ".join(str(w.process.pid) for w in self.workers if w.process is not None)
            ports = ", ".join(str(w.port) for w in self.workers)
            print(f"SIP proxy listening on {self.host}:{self.shared_port} (udp; {self.count} workers, "
                  f"pids {pids}, own ports {ports}; admission in pid {os.getpid()})", flush=True)
            while not stopped.is_set():
                try:
                    await asyncio.wait_for(stopped.wait(), WATCH_S)
                except asyncio.TimeoutError:
                    pass
                if stopped.is_set():
                    break                      # (a worker stopped by the same ^C is not restarted)
                try:
                    self.watch()
                except Exception:  # noqa: BLE001 - watching must go on
                    log.exception("watching the SIP workers")
        finally:
            self.stop_workers()
            server.close()
            self.dump()
            shutil.rmtree(self.directory, ignore_errors=True)


def merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Sum a worker's counters into ``total`` (numbers, and dicts of numbers, by key)."""
    for key, value in part.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            into = total.setdefault(key, {})
            if isinstance(into, dict):
                for name, count in value.items():
                    into[name] = into.get(name, 0) + count


def owner_main(args: argparse.Namespace, argv: list[str], site: Any, count: int) -> int:
    from .command import fast_loop, proxy_settings
    _, host, transports = proxy_settings(args, site)
    _, port = args.listen if args.listen else (None, site.sip.listen_port)
    if "udp" not in transports:
        raise ValueError("--workers serves UDP only: the transports must include udp")
    owner = Owner(argv, site, count, host, port, args.stats_file, read_shared=args.shared_reader == "workers")
    fast_loop()
    try:
        asyncio.run(owner.run())
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
