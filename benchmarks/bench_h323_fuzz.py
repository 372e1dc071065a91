"""Fuzz the H.323 gatekeeper: >= 100,000 mutated RAS datagrams and Q.931/TPKT streams.

    .venv/bin/python benchmarks/bench_h323_fuzz.py [datagrams] [streams]

Phase 1 feeds the sans-IO core directly (every input, counted by kind; a valid GRQ must
be answered after each batch). Phase 2 sends a share of them to a standalone gatekeeper
process over real sockets (datagrams, and streams written in small pieces as a slow
sender would, closed or reset), then checks it still answers a GRQ and counted them.
"""

from __future__ import annotations

import logging
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import h323sim as sim  # noqa: E402
from h323fuzz import mutate, q931_seeds, ras_seeds, run, stream  # noqa: E402
from h323lab import GatekeeperProcess  # noqa: E402


def core(datagrams: int, streams: int) -> None:
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    result = run(datagrams, streams, seed=2026)
    took = time.perf_counter() - started
    print(f"core: {result.datagrams:,} RAS datagrams + {result.streams:,} Q.931/TPKT streams in {took:.1f} s "
          f"({(result.datagrams + result.streams) / took:,.0f} inputs/s); GRQ answered after each of "
          f"{result.grq_checks} batches; internal failures: 0")
    print("  counted: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.dropped.items())))


def sockets(datagrams: int, streams: int) -> None:
    rng = random.Random(7)
    ras, q931 = ras_seeds(), q931_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        gk = GatekeeperProcess(Path(tmp))
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            started = time.perf_counter()
            for i in range(datagrams):
                sender.sendto(mutate(rng.choice(ras), rng, ras)[:65000], gk.ras)
                if i % 10 == 0:
                    time.sleep(0.001)                # do not just overflow the socket buffer
            resets = 0
            for _ in range(streams):
                chunks, reset = stream(rng, q931)
                try:
                    with socket.create_connection(("127.0.0.1", gk.call_port), timeout=2) as conn:
                        for chunk in chunks[:200]:
                            conn.sendall(chunk)
                        if reset:
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                            resets += 1
                except OSError:
                    pass                             # the gatekeeper closed a broken stream first
            took = time.perf_counter() - started
            phone = sim.Phone("1999", gk.ras)
            answer = phone.request(sim.grq(1, phone.ras_address))
            phone.close()
            stats = gk.stats()
            alive = gk.proc.poll() is None
        finally:
            gk.stop()
    print(f"sockets: {datagrams:,} datagrams + {streams:,} streams ({resets} reset) in {took:.1f} s; "
          f"gatekeeper alive: {alive}; valid GRQ afterwards: {answer[0]}")
    print(f"  gatekeeper counted: received {stats['ras_received']:,} RAS, dropped " +
          ", ".join(f"{k} {v:,}" for k, v in sorted(stats["dropped"].items())) +
          f"; shell faults {stats['shell_faults']}")
    assert alive and answer[0] == "gatekeeperConfirm"
    assert not any(k.startswith("internal") for k in stats["dropped"]), stats["dropped"]


def main(argv: list[str] | None = None) -> None:
    args = (argv if argv is not None else sys.argv[1:]) if __name__ == "__main__" else []
    datagrams = int(args[0]) if args else 100_000
    streams = int(args[1]) if len(args) > 1 else 10_000
    core(datagrams, streams)
    sockets(min(datagrams, 20_000), min(streams, 1_000))


if __name__ == "__main__":
    main()
