"""``--workers N``: the process that owns admission, and starts and watches the workers (shell).

The sockets and worker processes are a :class:`~.worker_pool.WorkerPool` (shared with the
controller's hub owner, :mod:`.hub_owner`): every socket the workers need is bound before
any worker starts, and a worker started again in a dead one's place gets the same ones.

The owner runs :class:`~.owner_core.OwnerCore` over the one
:class:`~ryu_apps.service.MamService` (the same in-process admission as one-process
mode), answers each link's jobs on its loop, and every ``WATCH_S`` looks for workers
that died: their calls are settled (:meth:`~.owner_core.OwnerCore.worker_gone`) and the
worker is started again (:meth:`~.worker_pool.WorkerPool.watch`). SIGTERM/SIGINT stop the
workers (by PID), then the owner; the stats file (``--stats-file``) has the workers'
counters summed, each worker's PID and port, and the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

from .. import event_loop
from .guard import Faults
from .owner_core import Link, OwnerCore
from .worker_pool import WorkerPool

log = logging.getLogger(__name__)
WATCH_S = 0.2
START_TIMEOUT_S = 60.0
MAX_WRITE_BUFFER = 64 * 1024 * 1024      # a worker that stops reading its answers is cut off


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
        if not self.link.feed(data) and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.link is not None:
            self.link.closed()

    def _who(self) -> str:
        return "?" if self.link is None else self.link.who


class Owner:
    def __init__(self, argv: list[str], site: Any, count: int, host: str, port: int, stats_file: str | None,
                 read_shared: bool = False) -> None:
        from ryu_apps.config import build_manager
        from ryu_apps.service import MamService
        self.count = count
        self.host = host
        self.stats_file = stats_file
        self.service = MamService(build_manager(site, data_plane=False))
        self.core = OwnerCore(self.service)
        self.service.subscribe(self.core.on_changes)
        self.pool = WorkerPool(argv, count, host, port, self.core.worker_gone, read_shared)
        self.pool.listener.setblocking(False)
        self.pool.shared.setblocking(False)
        self.dispatcher = self.pool.dispatcher(Faults(log))

    async def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self.core.links) < self.count:
            dead = self.pool.exited_at_start()
            if dead is not None:
                assert dead.process is not None
                raise RuntimeError(f"SIP worker {dead.index} exited with {dead.process.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"SIP workers did not start within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.05)

    # --- figures ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        for worker in self.pool.workers:
            if self.stats_file:
                try:
                    with open(f"{self.stats_file}.worker{worker.index}", encoding="utf-8") as handle:
                        merge(stats, json.load(handle))
                except (OSError, ValueError, TypeError):
                    pass
        service = self.service
        stats.update(workers=self.pool.per_worker(), shared_port=self.pool.shared_port, owner_pid=os.getpid(),
                     owner=asdict(self.core.counters), held_by_worker=self.core.held_by(),
                     shared_reader="workers" if self.pool.read_shared else "owner",
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
        pool = self.pool
        server = await loop.create_unix_server(lambda: OwnerProtocol(self.core), sock=pool.listener)
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        loop.add_signal_handler(signal.SIGUSR1, self.dump)
        try:
            pool.spawn_all()
            await self.wait_started()
            if self.dispatcher is not None:
                loop.add_reader(pool.shared.fileno(), self.dispatcher.readable)
            pids = ", ".join(str(w.pid) for w in pool.workers if w.pid is not None)
            ports = ", ".join(str(w.port) for w in pool.workers)
            print(f"SIP proxy listening on {self.host}:{pool.shared_port} (udp; {self.count} workers, "
                  f"pids {pids}, own ports {ports}; admission in pid {os.getpid()})", flush=True)
            while not stopped.is_set():
                try:
                    await asyncio.wait_for(stopped.wait(), WATCH_S)
                except asyncio.TimeoutError:
                    pass
                if stopped.is_set():
                    break                      # (a worker stopped by the same ^C is not restarted)
                try:
                    pool.watch()
                except Exception:  # noqa: BLE001 - watching must go on
                    log.exception("watching the SIP workers")
        finally:
            pool.stop_workers()
            server.close()
            self.dump()
            pool.close()


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
    from .command import proxy_settings
    _, host, transports = proxy_settings(args, site)
    _, port = args.listen if args.listen else (None, site.sip.listen_port)
    if "udp" not in transports:
        raise ValueError("--workers serves UDP only: the transports must include udp")
    reader = args.shared_reader or site.sip.shared_reader
    owner = Owner(argv, site, count, host, port, args.stats_file, read_shared=reader == "workers")
    try:
        event_loop.run(owner.run())
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
