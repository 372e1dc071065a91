"""Aggregates (QoS resource pools) and the per-link book of what they reserve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Iterable, Iterator, Mapping

from .admission import ServiceLevel
from .autosize import Autosize
from .network import Hop, Link, Topology
from .schedule import ScheduleEntry

EF = 46
ALL_LEVELS = frozenset(ServiceLevel)


@dataclass(frozen=True)
class Aggregate:
    """A bandwidth pool reserved between two communities along a path, before any call.

    ``size_kbps`` is reserved in each direction on every hop of ``path`` (from the edge
    of ``communities[0]`` to the edge of ``communities[1]``). ``tag`` is the aggregate
    tag (VLAN VID) the core forwards on; ``dscp`` the per-hop class it is marked with.
    """

    id: str
    communities: tuple[str, str]
    size_kbps: int
    path: tuple[str, ...]
    tag: int
    dscp: int = EF
    priority: int = 0
    levels: frozenset[ServiceLevel] = ALL_LEVELS
    preemption: bool = False
    autosize: Autosize | None = None            # follow demand (see :mod:`.autosize`)
    schedule: tuple[ScheduleEntry, ...] = ()    # time-of-day sizes (see :mod:`.schedule`)
    pinned: bool = False                        # its path was given: never re-optimised by itself
    target_kbps: int | None = None              # the size it gave up when capacity fell, to take back

    @property
    def wanted_kbps(self) -> int:
        """The size the pool is meant to have: its own, or the one a capacity drop took."""
        return self.size_kbps if self.target_kbps is None else max(self.size_kbps, self.target_kbps)

    def hops(self) -> Iterator[Hop]:
        for here, there in zip(self.path, self.path[1:]):
            yield here, there
            yield there, here

    @cached_property
    def hop_set(self) -> frozenset[Hop]:
        return frozenset(self.hops())

    def joins(self, a: str, b: str) -> bool:
        return {a, b} == set(self.communities) if a != b else self.communities == (a, a)

    def resized(self, size_kbps: int, path: tuple[str, ...]) -> "Aggregate":
        return replace(self, size_kbps=size_kbps, path=path)


class CapacityBook:
    """Reserved kbit/s per link direction; never more than the link's reservable share.

    What the network shows may lower that share (a port slower than the configured
    capacity: ``limits``) or close a link to new reservations (down or miswired:
    ``blocked``). Reservations already made stay where they are."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._reserved: dict[Hop, int] = {hop: 0 for hop in topology.hops()}
        self._limits: dict[Hop, int] = {}
        self._blocked: set[Hop] = set()

    def set_conditions(self, limits: Mapping[Link, int], blocked: Iterable[Link]) -> None:
        self._limits = {hop: kbps for link, kbps in limits.items() for hop in link.hops()}
        self._blocked = {hop for link in blocked for hop in link.hops()}

    def reservable(self, hop: Hop) -> int:
        """The link's reservable share in this direction, as the network allows it now."""
        configured = self.topology.reservable(hop)
        return min(configured, self._limits.get(hop, configured))

    def blocked(self, hop: Hop) -> bool:
        return hop in self._blocked

    def reserved(self, hop: Hop) -> int:
        return self._reserved[hop]

    def residual(self, hop: Hop, own: Aggregate | None = None) -> int:
        """What is still reservable on ``hop``, counting ``own``'s reservation as free
        (nothing on a blocked hop)."""
        if hop in self._blocked:
            return 0
        free = self.reservable(hop) - self._reserved[hop]
        if own is not None and hop in own.hop_set:
            free += own.size_kbps
        return free

    def fits(self, hops: Iterable[Hop], kbps: int, own: Aggregate | None = None) -> bool:
        return all(self.residual(hop, own) >= kbps for hop in hops)

    def add(self, aggregate: Aggregate) -> None:
        for hop in aggregate.hops():
            self._reserved[hop] += aggregate.size_kbps

    def remove(self, aggregate: Aggregate) -> None:
        for hop in aggregate.hops():
            self._reserved[hop] -= aggregate.size_kbps

    def snapshot(self) -> Mapping[Hop, int]:
        return dict(self._reserved)
