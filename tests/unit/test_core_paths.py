"""The path search picks exactly what enumerating every shortest path would pick; plan diffs
chain in one pass exactly as they add pairwise.

Reference: networkx's ``all_shortest_paths`` over the usable links, then the widest
narrowest hop, then the smallest path by names (what ``constrained_path`` promised
before it became a bidirectional search). Random graphs, random reservations, random
closed and speed-limited links, and an ``own`` aggregate counted as free.
"""

from __future__ import annotations

import hypothesis.strategies as st
import networkx as nx
from hypothesis import given, settings

from ryu_apps.core.aggregate import Aggregate, CapacityBook
from ryu_apps.core.flowplan import MeterEntry, PlanDiff
from ryu_apps.core.network import Link, Switch, Topology
from ryu_apps.core.paths import constrained_path


def reference(topology: Topology, book: CapacityBook, source: str, target: str, kbps: int,
              own: Aggregate | None = None) -> tuple[str, ...] | None:
    if source == target:
        return (source,)

    def usable(a: str, b: str) -> bool:
        if book.blocked((a, b)):
            return False
        return book.residual((a, b), own) >= kbps and book.residual((b, a), own) >= kbps

    def bottleneck(path: list[str]) -> int:
        return min(min(book.residual((a, b), own), book.residual((b, a), own)) for a, b in zip(path, path[1:]))

    view = nx.subgraph_view(topology.graph, filter_edge=usable)
    try:
        return tuple(min(nx.all_shortest_paths(view, source, target), key=lambda p: (-bottleneck(p), p)))
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Topology, CapacityBook, str, str, int, Aggregate | None]:
    n = draw(st.integers(min_value=2, max_value=14))
    names = [f"s{i:02d}" for i in draw(st.permutations(range(n)))]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=min(len(pairs), 3 * n)))
    ports = {name: 0 for name in names}
    links = []
    for a, b in chosen:
        ports[a] += 1
        ports[b] += 1
        share = draw(st.sampled_from([100, 200, 300]))
        links.append(Link(a, ports[a], b, ports[b], 1000, share))
    topology = Topology(tuple(Switch(name, i + 1) for i, name in enumerate(names)), tuple(links))
    book = CapacityBook(topology)
    own = None
    for number in range(draw(st.integers(min_value=0, max_value=4))):   # some paths already reserved
        if not links:
            break
        start = draw(st.sampled_from(names))
        walk = [start]
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            nxt = sorted(topology.adjacency[walk[-1]])
            options = [x for x in nxt if x not in walk]
            if not options:
                break
            walk.append(draw(st.sampled_from(options)))
        if len(walk) < 2:
            continue
        aggregate = Aggregate(f"a{number}", ("x", "y"), draw(st.sampled_from([10, 50, 100])), tuple(walk), number + 2)
        if book.fits(aggregate.hops(), aggregate.size_kbps):
            book.add(aggregate)
            if draw(st.booleans()):
                own = aggregate
    if links:
        closed = draw(st.lists(st.sampled_from(links), max_size=2))
        limited = draw(st.lists(st.sampled_from(links), max_size=2))
        book.set_conditions({link: 60 for link in limited}, closed)
    source = draw(st.sampled_from(names + ["nowhere"]))
    target = draw(st.sampled_from(names))
    kbps = draw(st.sampled_from([1, 20, 60, 150]))
    return topology, book, source, target, kbps, own


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_same_choice_as_enumerating_every_shortest_path(scenario) -> None:
    topology, book, source, target, kbps, own = scenario
    assert constrained_path(topology, book, source, target, kbps, own) == reference(
        topology, book, source, target, kbps, own)


def test_a_grid_with_many_equal_paths_prefers_the_widest_then_the_smallest_names() -> None:
    size = 6
    name = lambda r, c: f"n{r}{c}"  # noqa: E731
    links, ports = [], {name(r, c): 0 for r in range(size) for c in range(size)}
    for r in range(size):
        for c in range(size):
            for r2, c2 in ((r + 1, c), (r, c + 1)):
                if r2 < size and c2 < size:
                    a, b = name(r, c), name(r2, c2)
                    ports[a] += 1
                    ports[b] += 1
                    links.append(Link(a, ports[a], b, ports[b], 1000, 500))
    topology = Topology(tuple(Switch(n, i + 1) for i, n in enumerate(ports)), tuple(links))
    book = CapacityBook(topology)
    book.add(Aggregate("busy", ("x", "y"), 100, ("n00", "n01", "n02"), 2))
    found = constrained_path(topology, book, "n00", f"n{size - 1}{size - 1}", 10)
    assert found == reference(topology, book, "n00", f"n{size - 1}{size - 1}", 10)
    assert found is not None and found[1] == "n10"   # n01 is narrower now


# --- PlanDiff.chain: one pass, the same as adding the parts pairwise ------------------------

ENTRIES = [MeterEntry(f"s{i % 3}", i, 100, 64) for i in range(6)]
PARTS = st.lists(st.builds(lambda add, remove: PlanDiff(tuple(add), tuple(remove)),
                           st.lists(st.sampled_from(ENTRIES), max_size=4),
                           st.lists(st.sampled_from(ENTRIES), max_size=4)), max_size=8)


@settings(max_examples=500, deadline=None)
@given(PARTS)
def test_chaining_plan_diffs_equals_adding_them_pairwise(parts) -> None:
    pairwise = PlanDiff()
    for part in parts:
        pairwise = pairwise + part
    assert PlanDiff.chain(parts) == pairwise
