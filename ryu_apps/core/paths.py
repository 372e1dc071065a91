"""Paths for aggregates: shortest path over links with enough residual reservable capacity.

The search is a bidirectional breadth-first search over the usable links (it stops where
the two frontiers meet instead of visiting the whole network), then one pass over the
shortest-path DAG for the tie-break: the widest narrowest hop, then the smallest path by
switch names. That is exactly ``min(all_shortest_paths(...), key=(-bottleneck, path))``
without enumerating the paths (their number can grow exponentially with the hops).
"""

from __future__ import annotations

from .aggregate import Aggregate, CapacityBook
from .network import Topology

_UNUSABLE = -1


def constrained_path(topology: Topology, book: CapacityBook, source: str, target: str, kbps: int,
                     own: Aggregate | None = None) -> tuple[str, ...] | None:
    """Fewest-hop path from ``source`` to ``target`` on which every hop, in both
    directions, is open (not blocked) and can still reserve ``kbps`` (counting ``own``'s reservation as free, so
    a resize never counts its own bandwidth twice). Ties go to the path with the most
    residual capacity at its narrowest hop, then by name. None when no path fits."""
    adjacent = topology.adjacency
    if source not in adjacent or target not in adjacent:
        return None
    if source == target:
        return (source,)
    widths: dict[tuple[str, str], int] = {}

    def width(a: str, b: str) -> int:
        """The link's residual at its narrower direction, or _UNUSABLE."""
        key = (a, b) if a < b else (b, a)
        known = widths.get(key)
        if known is None:
            if book.blocked((a, b)):
                known = _UNUSABLE
            else:
                there, back = book.residual((a, b), own), book.residual((b, a), own)
                known = min(there, back) if there >= kbps and back >= kbps else _UNUSABLE
            widths[key] = known
        return known

    # 1. Bidirectional BFS, one whole layer at a time, expanding the smaller frontier.
    from_source, from_target = {source: 0}, {target: 0}
    frontier_s, frontier_t = [source], [target]
    depth_s = depth_t = 0
    distance = -1
    while distance < 0:
        if not frontier_s or not frontier_t:
            return None
        grow_source = len(frontier_s) <= len(frontier_t)
        here, other = (from_source, from_target) if grow_source else (from_target, from_source)
        level = (depth_s if grow_source else depth_t) + 1
        layer: list[str] = []
        for node in (frontier_s if grow_source else frontier_t):
            for neighbour in adjacent[node]:
                if neighbour not in here and width(node, neighbour) != _UNUSABLE:
                    here[neighbour] = level
                    layer.append(neighbour)
        if grow_source:
            frontier_s, depth_s = layer, level
        else:
            frontier_t, depth_t = layer, level
        met = [other[node] for node in layer if node in other]
        if met:
            distance = level + min(met)
    # Every shortest path crosses the layer at `depth_s` from the source once; from each
    # node of it, the rest is known from the target side (distance - depth_s <= depth_t).
    middle = depth_s
    middle_nodes = [node for node, d in from_source.items()
                    if d == middle and from_target.get(node) == distance - middle]

    # 2. The shortest-path DAG: source half (by distance from the source, pruned to what
    # reaches the middle layer) and target half (by distance to the target).
    ahead: dict[str, list[str]] = {}          # node -> next nodes on some shortest path
    half: set[str] = set(middle_nodes)
    layer_nodes = list(middle_nodes)
    for d in range(middle, 0, -1):            # source half, backwards from the middle
        previous: set[str] = set()
        for node in layer_nodes:
            for neighbour in adjacent[node]:
                if from_source.get(neighbour) == d - 1 and width(neighbour, node) != _UNUSABLE:
                    ahead.setdefault(neighbour, []).append(node)
                    previous.add(neighbour)
        half |= previous
        layer_nodes = list(previous)
    target_half: list[list[str]] = [list(middle_nodes)]
    seen = set(middle_nodes)
    for d in range(distance - middle, 0, -1):   # target half, forwards from the middle
        following: set[str] = set()
        for node in target_half[-1]:
            for neighbour in adjacent[node]:
                if from_target.get(neighbour) == d - 1 and width(node, neighbour) != _UNUSABLE:
                    ahead.setdefault(node, []).append(neighbour)
                    following.add(neighbour)
        seen |= following
        target_half.append(list(following))

    # 3. Widest narrowest hop from each DAG node to the target, target first.
    best_to_target: dict[str, int] = {target: 1 << 62}
    order = [node for layer in reversed(target_half) for node in layer]
    by_distance: dict[int, list[str]] = {}
    for node in half:
        by_distance.setdefault(from_source[node], []).append(node)
    for d in range(middle - 1, -1, -1):
        order.extend(by_distance.get(d, ()))
    for node in order:
        if node == target:
            continue
        best_to_target[node] = max(min(width(node, nxt), best_to_target[nxt]) for nxt in ahead[node])
    bottleneck = best_to_target[source]

    # 4. The smallest path by names among the widest: greedily, every step keeps the width.
    path = [source]
    node = source
    while node != target:
        node = min(nxt for nxt in ahead[node] if width(node, nxt) >= bottleneck and best_to_target[nxt] >= bottleneck)
        path.append(node)
    return tuple(path)


def _bottleneck(book: CapacityBook, path: list[str], own: Aggregate | None) -> int:
    return min(min(book.residual((a, b), own), book.residual((b, a), own)) for a, b in zip(path, path[1:]))


def widest_path(topology: Topology, book: CapacityBook, source: str, target: str, at_most: int,
                own: Aggregate | None = None) -> tuple[tuple[str, ...], int] | None:
    """The open path that can reserve the most (up to ``at_most``), with that figure;
    among equally wide paths the fewest-hop one. None when no open path reserves anything.

    A binary search over the residual capacities the links offer, each step one
    :func:`constrained_path` search (so log2(distinct residuals) searches)."""
    widths = sorted({w for a, b in topology.graph.edges
                     if not book.blocked((a, b))
                     and (w := min(book.residual((a, b), own), book.residual((b, a), own), at_most)) > 0})
    best: tuple[tuple[str, ...], int] | None = None
    low, high = 0, len(widths) - 1
    while low <= high:
        middle = (low + high) // 2
        found = constrained_path(topology, book, source, target, widths[middle], own)
        if found is None:
            high = middle - 1
        else:
            best = (found, widths[middle])
            low = middle + 1
    return best


def hop_count(topology: Topology, source: str, target: str) -> int:
    """Hops of the shortest path between two switches in the whole topology, whatever is
    reserved or closed (a breadth-first search); a large number when they are not joined."""
    if source == target:
        return 0
    adjacent = topology.adjacency
    seen, frontier, hops = {source}, [source], 0
    while frontier:
        hops += 1
        following = []
        for here in frontier:
            for there in adjacent.get(here, ()):
                if there == target:
                    return hops
                if there not in seen:
                    seen.add(there)
                    following.append(there)
        frontier = following
    return 1 << 30
