"""Free ports, CPU time of a process tree, and stopping only what we started."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(200):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of one process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and every live descendant (Kamailio forks its workers)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)], cpu[int(entry)] = stat
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process we started, then SIGKILL its own process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    try:                         # workers it forked (started with start_new_session: group id == its pid)
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_tcp(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def wait_sip(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until a SIP server on UDP ``port`` answers (an OPTIONS with Max-Forwards: 0 gets a 483)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        local = sock.getsockname()[1]
        n = 0
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited with {process.returncode} at start")
            n += 1
            probe = (f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};"
                     f"branch=z9hG4bKprobe{n}\r\nMax-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\n"
                     f"To: <sip:probe@127.0.0.1>\r\nCall-ID: probe-{n}-{local}\r\nCSeq: {n} OPTIONS\r\n"
                     "Content-Length: 0\r\n\r\n")
            sock.sendto(probe.encode(), ("127.0.0.1", port))
            try:
                if sock.recv(65535).startswith(b"SIP/2.0 "):
                    return
            except OSError:
                time.sleep(0.1)
    raise TimeoutError(f"no SIP answer on udp 127.0.0.1:{port} within {timeout} s")
