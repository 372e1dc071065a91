"""The link survey and rerouting at scale (pure core; one core).

A ring of N core switches with a chord every 10, an aggregate between every pair of 20
communities; then what a controller meets at start-up and on a failure:

* every switch describes its ports and LLDP hears every link in both directions (the
  start-up burst), timed per event: the survey folds each into link states;
* one core port goes down: the survey closes its link and the manager moves every
  aggregate on it to an open path, calls and all.

    .venv/bin/python benchmarks/bench_survey.py [--switches 1000]     (goal: start-up burst <= 3 s)
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ryu_apps.core.admission import AdmissionRequest, Admitted  # noqa: E402
from ryu_apps.core.codec import MediaSpec  # noqa: E402
from ryu_apps.core.manager import MediaAggregationManager  # noqa: E402
from ryu_apps.core.network import Community, Link, Switch, Topology  # noqa: E402
from ryu_apps.core.survey import PortInfo, Survey  # noqa: E402

COMMUNITIES = 20


def ring(switches: int) -> Topology:
    names = [f"c{i}" for i in range(switches)]
    links = []
    ports = {name: 10 for name in names}

    def join(a: str, b: str) -> None:
        ports[a] += 1
        ports[b] += 1
        links.append(Link(a, ports[a], b, ports[b], 10_000_000, 5_000_000))
    for i in range(switches):
        join(names[i], names[(i + 1) % switches])
    for i in range(0, switches // 2, 10):     # chords across the ring, each pair once
        join(names[i], names[i + switches // 2])
    edges = [names[(i * switches) // COMMUNITIES] for i in range(COMMUNITIES)]
    communities = tuple(Community(f"site{i}", edge, (1,), (ipaddress.ip_network(f"10.{i}.0.0/16"),))
                        for i, edge in enumerate(edges))
    return Topology(tuple(Switch(name, i + 1) for i, name in enumerate(names)), tuple(links), communities)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=1000)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)  # run_all passes its own
    topology = ring(args.switches)
    manager = MediaAggregationManager(topology)
    pairs = [(a.name, b.name) for i, a in enumerate(topology.communities) for b in topology.communities[i + 1:]]
    for a, b in pairs:
        manager.create_aggregate(f"{a}--{b}", a, b, 10_000)
    calls = 0
    for n, (a, b) in enumerate(pairs * 20):
        if isinstance(manager.admit(AdmissionRequest(f"call{n}", a, b, MediaSpec("pcmu")), 0.0), Admitted):
            calls += 1
    manager.drain()
    survey = Survey(topology, discovery=True)
    ports: dict[str, dict[int, PortInfo]] = {s.name: {1: PortInfo("access")} for s in topology.switches}
    for link in topology.links:
        ports[link.a][link.a_port] = PortInfo(f"{link.a}-eth{link.a_port}", 10_000_000)
        ports[link.b][link.b_port] = PortInfo(f"{link.b}-eth{link.b_port}", 10_000_000)

    timings = []
    started = time.perf_counter()
    for name, described in ports.items():
        t0 = time.perf_counter()
        survey.ports_described(name, described)
        timings.append(time.perf_counter() - t0)
    for link in topology.links:
        for src, dst in (((link.a, link.a_port), (link.b, link.b_port)), ((link.b, link.b_port), (link.a, link.a_port))):
            t0 = time.perf_counter()
            survey.link_heard(src, dst)
            timings.append(time.perf_counter() - t0)
    burst = time.perf_counter() - started
    verified = sum(1 for c in survey.conditions().values() if c.state.value == "verified")
    manager.set_link_conditions(survey.faults(), survey.limits())
    manager.drain()

    load = Counter(frozenset(hop) for agg in manager.aggregates() for hop in zip(agg.path, agg.path[1:]))
    busiest = topology.link(*max(load, key=lambda pair: load[pair]))
    on_it = load[frozenset((busiest.a, busiest.b))]
    t0 = time.perf_counter()
    survey.port_changed(busiest.a, busiest.a_port, PortInfo("down", live=False))
    t1 = time.perf_counter()
    manager.set_link_conditions(survey.faults(), survey.limits())
    changes = manager.drain()
    t2 = time.perf_counter()
    moved = sum(1 for note in changes.notes if " moved from " in note)

    print(f"topology: {len(topology.switches)} switches, {len(topology.links)} links, {len(pairs)} aggregates, "
          f"{calls} calls")
    print(f"start-up burst: {len(timings)} events (port descriptions + LLDP both ways) in {burst * 1000:.0f} ms; "
          f"per event p50 {statistics.median(timings) * 1e3:.2f} ms, p99 "
          f"{sorted(timings)[int(len(timings) * 0.99)] * 1e3:.2f} ms; {verified} of {len(topology.links)} links "
          "verified")
    print(f"link {busiest.a}-{busiest.b} down (carrying {on_it} aggregates): survey {(t1 - t0) * 1e3:.2f} ms, "
          f"reroute {(t2 - t1) * 1e3:.1f} ms -> {moved} aggregates moved, {len(changes.plan.add)} entries added, "
          f"{len(changes.plan.remove)} removed")


if __name__ == "__main__":
    main()
