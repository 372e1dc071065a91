"""Admission decisions per second and their latency, with 10,000 active calls over 100 pools.

    .venv/bin/python benchmarks/bench_admission.py

A star of 101 edge switches around one core; 100 aggregates from the hub community to
each of 100 others. The ledger is the in-memory one (the SQLite ledger's cost is
printed separately). Steady state: each step releases one random live call and admits a
new one, so 10,000 calls stay active; then a burst against full pools measures
rejections. Goal: >= 100,000 decisions/s on one core.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ryu_apps.core.admission import AdmissionRequest, Admitted  # noqa: E402
from ryu_apps.core.codec import MediaSpec  # noqa: E402
from ryu_apps.core.manager import MediaAggregationManager  # noqa: E402
from ryu_apps.core.network import Community, Link, Switch, Topology  # noqa: E402

POOLS = 100
ACTIVE = 10_000
STEPS = 100_000
GOAL = 100_000


def topology() -> Topology:
    switches = [Switch("core", 1000)] + [Switch(f"e{i}", i + 1) for i in range(POOLS + 1)]
    links = [Link(f"e{i}", 1, "core", i + 1, 10_000_000, 5_000_000) for i in range(POOLS + 1)]
    communities = [Community(f"c{i}", f"e{i}", (2,), (ipaddress.ip_network(f"10.{i}.0.0/16"),))
                   for i in range(POOLS + 1)]
    return Topology(tuple(switches), tuple(links), tuple(communities))


def build(ledger=None) -> MediaAggregationManager:
    manager = MediaAggregationManager(topology(), ledger=ledger)
    for i in range(1, POOLS + 1):
        # room for 329 G.711 calls (91 kbit/s each): 100 on average, so the steady state never fills
        manager.create_aggregate(f"pool-{i}", "c0", f"c{i}", 30_000)
    return manager


def percentile(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def steady_state(manager: MediaAggregationManager, steps: int) -> tuple[float, list[int]]:
    rng = random.Random(7)
    media = MediaSpec("pcmu")
    live: list[str] = []
    serial = 0
    for _ in range(ACTIVE):
        call_id = f"call-{serial}"
        serial += 1
        manager.admit(AdmissionRequest(call_id, "c0", f"c{serial % POOLS + 1}", media), 0.0)
        live.append(call_id)
    manager.drain()
    requests = [AdmissionRequest(f"call-{serial + i}", "c0", f"c{rng.randrange(POOLS) + 1}", media)
                for i in range(steps)]
    victims = [rng.randrange(ACTIVE) for _ in range(steps)]
    latencies = []
    clock = time.perf_counter_ns
    gc.disable()
    started = clock()
    for i in range(steps):
        slot = victims[i]
        manager.release(live[slot], 1.0, "bye")
        t0 = clock()
        decision = manager.admit(requests[i], 1.0)
        latencies.append(clock() - t0)
        if type(decision) is Admitted:
            live[slot] = decision.call_id
        if i % 1000 == 999:
            manager.drain()
    elapsed = (clock() - started) / 1e9
    gc.enable()
    assert len(manager.calls()) == ACTIVE
    return elapsed, latencies


def rejections(manager: MediaAggregationManager, count: int) -> float:
    # Fill pool-1, then hammer it.
    media = MediaSpec("pcmu")
    i = 0
    while isinstance(manager.admit(AdmissionRequest(f"fill-{i}", "c0", "c1", media), 2.0), Admitted):
        i += 1
    requests = [AdmissionRequest(f"excess-{n}", "c0", "c1", media) for n in range(count)]
    started = time.perf_counter()
    for request in requests:
        manager.admit(request, 3.0)
    return count / (time.perf_counter() - started)


def main() -> None:
    manager = build()
    elapsed, latencies = steady_state(manager, STEPS)
    admits_per_s = STEPS / elapsed
    print(f"admission with {ACTIVE:,} active calls over {POOLS} pools (in-memory ledger), {STEPS:,} steps:")
    print(f"  admit decisions/s (admit timed alone): {1e9 * len(latencies) / sum(latencies):,.0f}")
    print(f"  release+admit pairs/s:                 {admits_per_s:,.0f}  ({2 * admits_per_s:,.0f} decisions/s)")
    print(f"  admit latency: p50 {percentile(latencies, 0.5) / 1000:.1f} us, "
          f"p99 {percentile(latencies, 0.99) / 1000:.1f} us, mean {statistics.fmean(latencies) / 1000:.1f} us")
    print(f"  rejections/s against a full pool:     {rejections(manager, 20_000):,.0f}")
    print(f"  goal: >= {GOAL:,} decisions/s on one core -> "
          f"{'met' if 1e9 * len(latencies) / sum(latencies) >= GOAL else 'NOT met'}")
    with tempfile.TemporaryDirectory() as folder:
        from ryu_apps.store import SqliteLedger
        durable = build(SqliteLedger(os.path.join(folder, "ledger.sqlite")))
        steps = 5_000
        elapsed, latencies = steady_state_small(durable, steps)
        print(f"  with the SQLite ledger (WAL, synchronous=NORMAL): {steps / elapsed:,.0f} release+admit pairs/s, "
              f"admit p99 {percentile(latencies, 0.99) / 1000:.1f} us")


def steady_state_small(manager: MediaAggregationManager, steps: int) -> tuple[float, list[int]]:
    global ACTIVE
    saved, ACTIVE = ACTIVE, 1_000
    try:
        return steady_state(manager, steps)
    finally:
        ACTIVE = saved


if __name__ == "__main__":
    main()
