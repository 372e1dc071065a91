"""Fuzzing a running SIP proxy over real sockets: mutated datagrams and TCP streams, with
OPTIONS probes in between that must all be answered. Used by the suite's fuzz test (small)
and by benchmarks/fuzz_sip_proxy.py (>= 200,000 datagrams and 2,000 streams).

The proxy may try to send to addresses the mutations invent: the suite's shells drop
anything that is not loopback (:func:`loopback_only`), the benchmark runs in a network
namespace of its own with only ``lo``.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from fakes.sip_mutator import Mutator
from fakes.sip_peer import probe_tcp, probe_udp


@dataclass
class FuzzReport:
    datagrams: int = 0
    streams: int = 0
    probes: int = 0
    answered: int = 0
    replies: int = 0                      # what came back to the fuzzer's sockets
    seconds: float = 0.0
    failed_probes: list[int] = field(default_factory=list)
    covered: tuple[int, int] = (0, 0)


def loopback_only(send: Callable[[list[Any]], None], dropped: list[int]) -> Callable[[list[Any]], None]:
    """Wrap a shell's send: outputs to anything but 127.0.0.0/8 are dropped (and counted)."""
    def filtered(out: list[Any]) -> None:
        kept = []
        for item in out:
            try:
                loopback = ipaddress.ip_address(item.peer.host).is_loopback
            except ValueError:
                loopback = True                # not an address: the shell's own guard refuses it
            if loopback:
                kept.append(item)
            else:
                dropped[0] += 1
        send(kept)
    return filtered


class Drain:
    """Reads and discards whatever arrives on some sockets (so no buffer fills up)."""

    def __init__(self, *socks: socket.socket) -> None:
        self.count = 0
        self._socks = socks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select
        while not self._stop.is_set():
            ready, _, _ = select.select(self._socks, [], [], 0.1)
            for sock in ready:
                try:
                    sock.recv(65535)
                    self.count += 1
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def fuzz(port: int, *, datagrams: int, streams: int, seed: int = 1, rate: float = 2000.0,
         probe_every: int = 1000, stream_workers: int = 16, callee: socket.socket | None = None,
         progress: Callable[[str], None] | None = None) -> FuzzReport:
    """Send ``datagrams`` mutated datagrams at ``rate`` per second, an OPTIONS probe every
    ``probe_every`` (UDP, and TCP every other time), then ``streams`` mutated TCP streams."""
    report = FuzzReport()
    mutator = Mutator(seed)
    rng = random.Random(seed)
    started = time.monotonic()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    drain = Drain(sender, *([callee] if callee is not None else []))
    try:
        for n in range(1, datagrams + 1):
            sender.sendto(mutator.next(), ("127.0.0.1", port))
            report.datagrams += 1
            if n % probe_every == 0:
                _probe(report, port, tcp=(n // probe_every) % 2 == 0)
                if progress is not None:
                    progress(f"{n} datagrams, {report.answered}/{report.probes} probes answered")
            behind = n / rate - (time.monotonic() - started)
            if behind > 0:
                time.sleep(behind)
        with concurrent.futures.ThreadPoolExecutor(stream_workers) as pool:
            jobs = [pool.submit(_stream, port, *mutator.stream(), rng.random()) for _ in range(streams)]
            for n, job in enumerate(concurrent.futures.as_completed(jobs), 1):
                report.replies += job.result()
                report.streams += 1
                if n % max(1, probe_every // 50) == 0:
                    _probe(report, port, tcp=n % 2 == 0)
        _probe(report, port, tcp=False)
        _probe(report, port, tcp=True)
    finally:
        drain.stop()
        sender.close()
    report.replies += drain.count
    report.seconds = time.monotonic() - started
    report.covered = mutator.covered()
    return report


def _probe(report: FuzzReport, port: int, tcp: bool) -> None:
    report.probes += 1
    if (probe_tcp if tcp else probe_udp)(port, 2.0):
        report.answered += 1
    else:
        report.failed_probes.append(report.datagrams + report.streams)


def _stream(port: int, data: bytes, cuts: list[int], how: float) -> int:
    """One TCP connection: the stream written in pieces; then read, close or reset it."""
    replies = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            previous = 0
            for cut in cuts + [len(data)]:
                sock.sendall(data[previous:cut])
                previous = cut
                if how < 0.2:
                    time.sleep(0.01)           # slowly
            sock.settimeout(0.2)
            try:
                while sock.recv(65535):
                    replies += 1
            except OSError:
                pass
            if how > 0.9:                      # an abrupt end: RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass                                   # refused or reset by the proxy: part of the game
    return replies
