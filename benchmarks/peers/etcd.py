"""A real etcd (Debian ``etcd-server``) for tests and benchmarks: one member on free
loopback ports with a temporary data directory, stopped by PID.

Heartbeat 50 ms and election timeout 500 ms (defaults 100/1000): etcd's shortest lease is
then 1 s, which is what a standby needs to take over within 2 s (docs/cluster.md).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Sequence

from .procs import free_port, stop


def etcd_available() -> str | None:
    """None when etcd can run here, else why not."""
    return None if shutil.which("etcd") else "etcd is not installed (Debian etcd-server; make bootstrap)"


class Etcd:
    def __init__(self, workdir: Path, name: str = "mam-test", max_txn_ops: int = 4096,
                 extra: Sequence[str] = ()) -> None:
        """``max_txn_ops``: 4096 lets tests force-delete pools with many calls; etcd's default is 128.
        ``extra``: more etcd flags."""
        self.max_txn_ops = max_txn_ops
        self.extra = list(extra)
        self.workdir = workdir
        self.name = name
        self.data = workdir / f"etcd-{name}.data"
        self.log = workdir / f"etcd-{name}.log"
        self.client_port, self.peer_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def url(self, prefix: str = "mam") -> str:
        return f"etcd://{self.endpoint}/{prefix}"

    def start(self) -> None:
        """Start (or restart, on the same data directory and ports)."""
        client, peer = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{self.peer_port}"
        argv = ["etcd", "--name", self.name, "--data-dir", str(self.data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500", "--max-txn-ops", str(self.max_txn_ops),
                "--log-level", "warn", *self.extra]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"etcd did not become healthy within 30 s: {self.log.read_text()[-2000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would (the data directory stays)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def __enter__(self) -> "Etcd":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
