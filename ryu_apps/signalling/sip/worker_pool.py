"""The sockets and processes of N SIP workers, for either owner shell (no loop of its own).

Both owners of admission use it: the standalone proxy's ``--workers`` owner on asyncio
(:mod:`.owner`) and the controller on its hub (:mod:`.hub_owner`, ``sip.workers`` in
``mam_app``). Before any worker starts, the pool binds every socket the workers need and
keeps them: the shared UDP socket on the public address, one UDP socket per worker on a
port of its own (chosen by the kernel; a worker started again in a dead one's place gets
the same socket, so the same port), one unix datagram socket pair per worker for steered
datagrams, and the admission channel's unix socket in a private directory. Workers are
``python -m ryu_apps.signalling.sip <argv> --worker-spec JSON`` with the descriptors
passed down (:mod:`.workers`).

:meth:`WorkerPool.watch` settles a dead worker's calls (``settle``: the owner's
:meth:`~.owner_core.OwnerCore.worker_gone`, under whatever lock the shell needs) and
starts it again (at most once per ``RESPAWN_MIN_S``, ever later while it dies young).
:meth:`WorkerPool.stop_workers` stops them by PID. The shell decides how each socket
blocks: the pool leaves the listener and the shared socket as bound.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from .guard import Faults
from .udp_server import open_udp, tune_buffers
from .workers import Dispatcher, WorkerSpec

log = logging.getLogger(__name__)
RESPAWN_MIN_S = 1.0
STABLE_S = 10.0                          # a worker that dies younger than this is restarted ever later,
MAX_BACKOFF_S = 30.0                     # up to this (a crash loop does not spin the owner)
STOP_TIMEOUT_S = 5.0


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

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class WorkerPool:
    def __init__(self, argv: list[str], count: int, host: str, port: int,
                 settle: Callable[[int], tuple[int, int]], read_shared: bool = False) -> None:
        self.argv = argv
        self.count = count
        self.host = host
        self.settle = settle
        self.read_shared = read_shared
        self.stopping = False
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

    def dispatcher(self, faults: Faults, native: Callable[[socket.socket], socket.socket] = lambda s: s,
                   ) -> Dispatcher | None:
        """The reader of the public socket that steers each datagram to its call's worker
        (None when the workers read it themselves). ``native`` unwraps a green socket."""
        if self.read_shared:
            return None
        return Dispatcher(native(self.shared), {i: native(pair[0]) for i, pair in enumerate(self.steer)}, faults)

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

    def spawn_all(self) -> None:
        for worker in self.workers:
            self.spawn(worker)

    def watch(self) -> None:
        """Settle and restart workers that died."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                worker.deaths += 1
                released, kept = self.settle(worker.index)
                log.error("SIP worker %d (pid %d) exited with %s: %d calls being set up released, "
                          "%d confirmed calls kept for its successor", worker.index, process.pid,
                          process.returncode, released, kept)
                worker.process = None
                worker.died_at = now
                young = now - worker.started_at < STABLE_S
                worker.backoff = min(MAX_BACKOFF_S, max(RESPAWN_MIN_S, 2 * worker.backoff)) if young else RESPAWN_MIN_S
            if worker.process is None and not self.stopping and now - worker.died_at >= worker.backoff:
                self.spawn(worker)

    def exited_at_start(self) -> Worker | None:
        """A worker that has already exited (before it said hello), if any."""
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is not None:
                return worker
        return None

    def stop_workers(self, wait: bool = True) -> None:
        """SIGTERM to every worker by PID; with ``wait``, SIGKILL to those still there after
        ``STOP_TIMEOUT_S``. Nothing is restarted afterwards."""
        self.stopping = True
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            try:
                process.send_signal(signal.SIGTERM)
            except OSError:
                pass
        if not wait:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def per_worker(self) -> list[dict[str, Any]]:
        return [{"index": w.index, "pid": w.pid, "port": w.port, "starts": w.starts, "deaths": w.deaths}
                for w in self.workers]

    def close(self) -> None:
        """Close every socket and remove the channel's directory (after stop_workers)."""
        for sock in [self.listener, self.shared, *(w.own for w in self.workers),
                     *(end for pair in self.steer for end in pair)]:
            try:
                sock.close()
            except OSError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
