"""Paths for aggregates: shortest path over links with enough residual reservable capacity."""

from __future__ import annotations

import networkx as nx

from .aggregate import Aggregate, CapacityBook
from .network import Topology


def constrained_path(topology: Topology, book: CapacityBook, source: str, target: str, kbps: int,
                     own: Aggregate | None = None) -> tuple[str, ...] | None:
    """Fewest-hop path from ``source`` to ``target`` on which every hop, in both
    directions, is open (not blocked) and can still reserve ``kbps`` (counting ``own``'s reservation as free, so
    a resize never counts its own bandwidth twice). Ties go to the path with the most
    residual capacity at its narrowest hop, then by name. None when no path fits."""
    if source == target:
        return (source,)

    def usable(a: str, b: str) -> bool:
        if book.blocked((a, b)):
            return False
        return book.residual((a, b), own) >= kbps and book.residual((b, a), own) >= kbps

    view = nx.subgraph_view(topology.graph, filter_edge=usable)
    try:
        candidates = nx.all_shortest_paths(view, source, target)
        best = min(candidates, key=lambda path: (-_bottleneck(book, path, own), path))
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None
    return tuple(best)


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
