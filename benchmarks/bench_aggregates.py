"""Aggregate creation on a large network (pure core; one core).

    .venv/bin/python benchmarks/bench_aggregates.py [--switches 1000] [--aggregates 1000]

A ring of N switches plus 2N seeded random chords (N switches, 3N links), 100
communities on switches spread around the ring; aggregates are created one after the
other between community pairs (path found by the constrained search), each timed from
the call to ``create_aggregate`` to its return, plan diff included. The per-create
latency is printed for the first and the last hundred aggregates, so growth with the
number of aggregates shows (goal: p99 <= 50 ms at 1,000 switches, flat as aggregates
accumulate). Then ``expected_plan()`` (what a reconnecting switch is reconciled
against) is timed once.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ryu_apps.core.manager import MediaAggregationManager  # noqa: E402
from ryu_apps.core.network import Community, Link, Switch, Topology  # noqa: E402

COMMUNITIES = 100
GOAL_P99_MS = 50.0


def network(switches: int, seed: int = 13) -> Topology:
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(switches)]
    ports = {name: 10 for name in names}
    pairs: set[frozenset[str]] = set()
    links: list[Link] = []

    def join(a: str, b: str) -> None:
        pairs.add(frozenset((a, b)))
        ports[a] += 1
        ports[b] += 1
        links.append(Link(a, ports[a], b, ports[b], 10_000_000, 5_000_000))
    for i in range(switches):
        join(names[i], names[(i + 1) % switches])
    while len(links) < 3 * switches:
        a, b = rng.sample(names, 2)
        if frozenset((a, b)) not in pairs:
            join(a, b)
    communities = tuple(
        Community(f"site{i}", names[(i * switches) // COMMUNITIES], (1,),
                  (ipaddress.ip_network(f"10.{i}.0.0/16"),))
        for i in range(COMMUNITIES))
    return Topology(tuple(Switch(name, i + 1) for i, name in enumerate(names)), tuple(links), communities)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=1000)
    parser.add_argument("--aggregates", type=int, default=1000)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)  # run_all passes its own
    topology = network(args.switches)
    manager = MediaAggregationManager(topology)
    rng = random.Random(5)
    names = [c.name for c in topology.communities]
    timings: list[float] = []
    gc.collect()
    started = time.perf_counter()
    for n in range(args.aggregates):
        a, b = rng.sample(names, 2)
        t0 = time.perf_counter()
        manager.create_aggregate(f"agg{n}", a, b, 10_000)
        timings.append(time.perf_counter() - t0)
        if n % 100 == 99:
            manager.drain()
    elapsed = time.perf_counter() - started
    manager.drain()
    t0 = time.perf_counter()
    expected = manager.expected_plan()
    whole = time.perf_counter() - t0
    ms = [t * 1000 for t in timings]
    first, last = ms[:100], ms[-100:]
    print(f"topology: {len(topology.switches):,} switches, {len(topology.links):,} links, "
          f"{COMMUNITIES} communities; {args.aggregates:,} aggregates created in {elapsed:.2f} s")
    print(f"  create_aggregate: p50 {statistics.median(ms):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, "
          f"max {max(ms):.2f} ms (goal p99 <= {GOAL_P99_MS:g} ms -> "
          f"{'met' if percentile(ms, 0.99) <= GOAL_P99_MS else 'NOT met'})")
    print(f"  first 100: p50 {statistics.median(first):.2f} ms, p99 {percentile(first, 0.99):.2f} ms; "
          f"last 100: p50 {statistics.median(last):.2f} ms, p99 {percentile(last, 0.99):.2f} ms "
          "(flat when these match)")
    print(f"  expected_plan() with {args.aggregates:,} aggregates: {len(expected):,} entries in "
          f"{whole * 1000:.0f} ms")


if __name__ == "__main__":
    main()
