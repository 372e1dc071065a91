"""A standalone gatekeeper process, a loopback capture and tshark, for the H.323 tests.

Everything started here is stopped by PID; ports are free ephemeral ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site(ras: int, call: int, pool_kbps: int = 2000, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10,
                                "capacity_kbps": max(10000, 2 * pool_kbps),
                                "reservable": 0.5}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"],
             "e164_prefixes": ["1"]},
            {"name": "site-b", "edge": "s2", "access_ports": [1], "prefixes": ["10.0.2.0/24"],
             "e164_prefixes": ["2"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": pool_kbps}],
        "codecs": {"allowed": ["pcmu", "pcma", "g729", "t38"]},
        "h323": {"ras_listen": f"127.0.0.1:{ras}", "call_listen": f"127.0.0.1:{call}", **(extra or {})},
    }


class GatekeeperProcess:
    """``python -m ryu_apps.signalling.h323 --config`` on free ports."""

    def __init__(self, tmp: Path, pool_kbps: int = 2000, extra: dict[str, Any] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.ras_port, self.call_port = free_port(socket.SOCK_DGRAM), free_port()
        self.config = tmp / "site.yaml"
        self.config.write_text(yaml.safe_dump(site(self.ras_port, self.call_port, pool_kbps, extra)))
        self.stats_file = tmp / "gk-stats.json"
        self.log = open(tmp / "gk.log", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ryu_apps.signalling.h323", "--config", str(self.config), "--stats-file",
             str(self.stats_file), "--log-level", "INFO", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()             # the "listening" line (or EOF on failure)
        if "H.323 gatekeeper" not in line:
            text = self.log_text()
            self.stop()
            raise RuntimeError(f"gatekeeper did not start: {line!r} {text}")

    @property
    def ras(self) -> tuple[str, int]:
        return "127.0.0.1", self.ras_port

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                try:
                    result: dict[str, Any] = json.loads(self.stats_file.read_text())
                    return result
                except ValueError:
                    pass
            time.sleep(0.02)
        raise TimeoutError("no stats from the gatekeeper")

    def pool(self) -> int:
        return int(self.stats()["pools_kbps"]["a-b"])

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


class Capture:
    """tcpdump on loopback for the given ports (root), stopped by PID."""

    def __init__(self, path: Path, ports: list[int]) -> None:
        self.path = path
        self.probe_port = free_port(socket.SOCK_DGRAM)
        expression = " or ".join(f"port {p}" for p in [*ports, self.probe_port])
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-n", "-s", "0", "-w", str(path), expression],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:          # "listening on lo ..." once it captures
            line = self.proc.stderr.readline()
            if "listening" in line or not line:
                break
        self._probe()                               # the filter is attached once a probe shows up

    def _probe(self, timeout: float = 10.0) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while time.monotonic() < deadline and self.proc.poll() is None:
                sock.sendto(b"probe", ("127.0.0.1", self.probe_port))
                time.sleep(0.05)
                if self.path.exists() and self.path.stat().st_size > size:
                    return

    def stop(self) -> None:
        self._probe()                               # everything before the probe is written
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def capture_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root for tcpdump"
    for tool in ("tcpdump", "tshark"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make bootstrap installs it)"
    return None


def tshark(pcap: Path, ras_port: int) -> str:
    result = subprocess.run(["tshark", "-r", str(pcap), "-n", "-d", f"udp.port=={ras_port},h225", "-V"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tshark_summary(pcap: Path, ras_port: int) -> list[str]:
    result = subprocess.run(["tshark", "-r", str(pcap), "-n", "-d", f"udp.port=={ras_port},h225"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()
