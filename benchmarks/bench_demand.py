"""Aggregates that follow demand: what a resize costs and what it buys.

    .venv/bin/python benchmarks/bench_demand.py [--hours H] [--seed S]

Prints
  1. decision time: an admission that grows its pool vs one that does not (same pool),
     and a capacity drop that shrinks 50 pools and preempts their newest calls;
  2. OpenFlow messages per resize (meters modified in place, flows untouched), from the
     valve's own batches;
  3. blocking under a Poisson call load: an autosized pool vs a fixed pool of the same
     average size (and of the autosized pool's maximum), with Erlang B as the reference,
     plotted to out/demand_blocking.png.

The core runs alone (no switches): these are the controller's costs, not the network's.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import statistics
import sys
import time
from typing import Callable

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from ryu_apps.core.admission import AdmissionRequest, Admitted  # noqa: E402
from ryu_apps.core.autosize import Autosize  # noqa: E402
from ryu_apps.core.codec import MediaSpec  # noqa: E402
from ryu_apps.core.lifecycle import LifecycleTimers  # noqa: E402
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager  # noqa: E402
from ryu_apps.core.network import Community, Link, Switch, Topology  # noqa: E402
from ryu_apps.openflow.batch import batch_for  # noqa: E402

import ipaddress  # noqa: E402

PCMU = MediaSpec("pcmu")
CALL_KBPS = 91


def line(reservable: int) -> Topology:
    return Topology(
        (Switch("s1", 1), Switch("s2", 2), Switch("s3", 3)),
        (Link("s1", 2, "s2", 1, reservable * 2, reservable), Link("s2", 2, "s3", 1, reservable * 2, reservable)),
        (Community("a", "s1", (1,), (ipaddress.ip_network("10.1.0.0/16"),)),
         Community("b", "s3", (2,), (ipaddress.ip_network("10.2.0.0/16"),))))


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        out.append((time.perf_counter() - started) * 1e6)
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def decision_times() -> None:
    print("1. decision time (microseconds, p50 / p99 over 2000 admissions each)")
    policy = Autosize(min_kbps=1000, max_kbps=10_000_000, step_kbps=1000, grow_at=0.9, shrink_at=0.3, hold_s=300)
    for label, autosize in (("fixed pool, no resize", None), ("autosized, every 11th call grows it", policy)):
        manager = MediaAggregationManager(line(50_000_000))
        manager.create_aggregate("ab", "a", "b", 1000 if autosize else 10_000_000, autosize=autosize)
        counter = iter(range(10 ** 9))
        samples = timed(lambda: manager.admit(AdmissionRequest(f"c{next(counter)}", "a", "b", PCMU), 0.0), 2000)
        grows = manager.counters.resizes.get("grow", 0)
        print(f"   {label:38s} p50 {statistics.median(samples):7.1f}  p99 {percentile(samples, 0.99):7.1f}"
              f"   ({grows} resizes)")
    manager = MediaAggregationManager(line(5_000_000))
    for n in range(50):
        manager.create_aggregate(f"p{n}", "a", "b", 100_000)
        for c in range(200):
            manager.admit(AdmissionRequest(f"p{n}-c{c}", "a", "b", PCMU), float(c))
    manager.drain()
    link = manager.topology.link("s2", "s3")
    started = time.perf_counter()
    manager.set_link_conditions({}, {link: 500_000}, now=1000.0)
    took = (time.perf_counter() - started) * 1e3
    changes = manager.drain()
    print(f"   capacity drop to 500 Mbit/s under 50 pools x 200 calls: {took:.1f} ms, "
          f"{len(changes.released)} calls preempted, {manager.counters.resizes.get('shrink', 0)} pools shrunk")


def messages_per_resize() -> None:
    print("2. OpenFlow messages per resize (from the valve's batches)")
    policy = Autosize(min_kbps=1000, max_kbps=100_000, step_kbps=1000)
    manager = MediaAggregationManager(line(1_000_000))
    manager.create_aggregate("ab", "a", "b", 1000, autosize=policy)
    manager.drain()
    grows = 0
    totals = {"meter_modifies": 0, "meter_adds": 0, "meter_removes": 0, "flow_adds": 0, "flow_removes": 0,
              "classes": 0}
    for c in range(200):
        before = manager.counters.resizes.get("grow", 0)
        manager.admit(AdmissionRequest(f"c{c}", "a", "b", PCMU), 0.0)
        plan = manager.drain().plan
        if manager.counters.resizes.get("grow", 0) == before:
            continue
        grows += 1
        for switch in ("s1", "s2", "s3"):
            batch = batch_for(plan.for_switch(switch))
            for name in totals:
                totals[name] += len(getattr(batch, name))
    per = {name: value / grows for name, value in totals.items()}
    print(f"   {grows} grows: per resize " + ", ".join(f"{name} {value:.1f}" for name, value in per.items())
          + " (+1 barrier per switch touched)")


def erlang_b(load: float, servers: int) -> float:
    blocking = 1.0
    for n in range(1, servers + 1):
        blocking = load * blocking / (n + load * blocking)
    return blocking


def simulate(load: float, hours: float, seed: int, autosize: Autosize | None, size_kbps: int) -> tuple[float, float, int]:
    """(blocking probability, time-averaged size in kbit/s, resizes) for a Poisson load of
    ``load`` Erlangs with 180 s mean holding time."""
    rng = random.Random(seed)
    # calls without media addresses are not reclaimed here: the load is what is offered
    manager = MediaAggregationManager(line(10_000_000), ManagerSettings(timers=LifecycleTimers(attach_s=1e9)))
    manager.create_aggregate("ab", "a", "b", size_kbps, autosize=autosize)
    hold = 180.0
    rate = load / hold
    now, offered, blocked, serial = 0.0, 0, 0, 0
    ends: list[tuple[float, str]] = []
    area, last, end_time = 0.0, 0.0, hours * 3600
    while now < end_time:
        now += rng.expovariate(rate)
        ends.sort()
        while ends and ends[0][0] <= now:
            at, call_id = ends.pop(0)
            area += manager.aggregate("ab").size_kbps * (at - last)
            last = at
            manager.handle_timer(at)
            manager.release(call_id, at)
        area += manager.aggregate("ab").size_kbps * (now - last)
        last = now
        manager.handle_timer(now)
        serial += 1
        offered += 1
        decision = manager.admit(AdmissionRequest(f"c{serial}", "a", "b", PCMU), now)
        if isinstance(decision, Admitted):
            ends.append((now + rng.expovariate(1 / hold), f"c{serial}"))
            manager.drain()           # what a shell does: keep the pending plan small
        else:
            blocked += 1
        manager.drain()
    return blocked / offered, area / end_time, sum(manager.counters.resizes.values())


def blocking(hours: float, seed: int) -> None:
    print(f"3. blocking under Poisson load ({hours:g} h simulated per point, 180 s mean hold, G.711 at {CALL_KBPS} "
          "kbit/s)")
    policy = Autosize(min_kbps=910, max_kbps=4550, step_kbps=455, grow_at=0.9, shrink_at=0.5, hold_s=300)
    rows = []
    print(f"   {'load E':>7} {'autosize':>9} {'avg kbit/s':>10} {'resizes/h':>9} {'fixed@avg':>9} "
          f"{'ErlangB@avg':>11} {'fixed@max':>9}")
    for load in (5, 10, 15, 20, 25, 30, 35, 40):
        auto, average, resizes = simulate(load, hours, seed, policy, policy.min_kbps)
        servers = max(1, int(average // CALL_KBPS))
        fixed, _, _ = simulate(load, hours, seed, None, servers * CALL_KBPS)
        at_max, _, _ = simulate(load, hours, seed, None, policy.max_kbps)
        rows.append((load, auto, average, fixed, erlang_b(load, servers), at_max, erlang_b(load, policy.max_kbps // CALL_KBPS)))
        print(f"   {load:7d} {auto:9.4f} {average:10.0f} {resizes / hours:9.1f} {fixed:9.4f} {erlang_b(load, servers):11.4f} "
              f"{at_max:9.4f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("   (matplotlib missing: no plot)")
        return
    out = HERE.parent / "out"
    out.mkdir(exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    loads = [r[0] for r in rows]
    axis.plot(loads, [r[1] for r in rows], "o-", label="autosized pool (910..4550 kbit/s)")
    axis.plot(loads, [r[3] for r in rows], "s--", label="fixed pool, same average size (simulated)")
    axis.plot(loads, [r[4] for r in rows], ":", label="Erlang B at that average size")
    axis.plot(loads, [r[5] for r in rows], "^-", label="fixed pool at the maximum (4550 kbit/s)")
    axis.set_xlabel("offered load (Erlangs)")
    axis.set_ylabel("blocking probability")
    axis.set_yscale("symlog", linthresh=1e-3)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(f"Blocking: autosized vs fixed pools ({time.strftime('%Y-%m-%d')})")
    figure.tight_layout()
    path = out / "demand_blocking.png"
    figure.savefig(path, dpi=110)
    print(f"   plot: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv if argv is not None else [])
    print(f"bench_demand {time.strftime('%Y-%m-%d %H:%M')} (python {sys.version.split()[0]})")
    decision_times()
    messages_per_resize()
    blocking(args.hours, args.seed)


if __name__ == "__main__":
    main(sys.argv[1:])
