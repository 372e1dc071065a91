"""Pool operations of the manager: create, resize, change, reconfigure and delete an
aggregate (a mixin of :class:`~.manager.MediaAggregationManager`).

Each runs as one of the manager's transactions: the pool's reservation on every hop of its
path, its meters and classes (and, when its path, class or tag changes, its calls' flows)
change together or not at all. Growing never counts the pool's own bandwidth twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import limits
from .admission import ServiceLevel
from .aggregate import ALL_LEVELS, EF, Aggregate
from .autosize import Autosize
from .demand import DemandOperations
from .errors import CapacityError, Conflict, InvalidRequest, Unprocessable
from .flowplan import PlanDiff, diff
from .network import Hop
from .paths import constrained_path
from .schedule import ScheduleEntry

if TYPE_CHECKING:
    from .planner import Planner


class Keep:
    """``reconfigure_aggregate(autosize=Keep)``: leave it as it is (None removes it)."""


class PoolOperations(DemandOperations):
    """What an operator (REST, mamctl, the configuration) does to aggregates."""

    # provided by the manager
    _plans: "Planner"
    _try_reroute: Callable[..., None]
    _edge: Callable[[str], str]
    aggregate: Callable[[str], Aggregate]

    def create_aggregate(self, aggregate_id: str, a: str, b: str, size_kbps: int, *, dscp: int = EF,
                         priority: int = 0, levels: Iterable[ServiceLevel] = ALL_LEVELS,
                         preemption: bool = False, path: Iterable[str] | None = None,
                         autosize: Autosize | None = None, schedule: Iterable[ScheduleEntry] = (),
                         now: float = 0.0) -> Aggregate:
        if aggregate_id in self._state.aggregates:
            raise Conflict(f"aggregate {aggregate_id!r} already exists", field="id")
        if not aggregate_id or len(aggregate_id) > limits.ID_LENGTH:
            raise InvalidRequest(f"must be 1 to {limits.ID_LENGTH} characters", field="id")
        limits.check("size_kbps", size_kbps, limits.SIZE_KBPS)
        limits.check("dscp", dscp, limits.DSCP)
        limits.check("priority", priority, limits.PRIORITY)
        levels = frozenset(levels)
        if not levels:
            raise InvalidRequest("must name at least one level of service", field="levels")
        _check_autosize(autosize, size_kbps)
        ends = (self.topology.community(a), self.topology.community(b))
        if a == b:
            raise InvalidRequest("an aggregate joins two different communities", field="communities")
        book = self._state.book
        if path is not None:
            route = tuple(path)
            self._validate_path(route, (a, b))
            for here, there in zip(route, route[1:]):
                fault = self._faults.get(self.topology.link(here, there))
                if fault is not None:
                    raise CapacityError(f"path {'-'.join(route)} cannot reserve now: {fault}", field="path")
            if not book.fits(_hops(route), size_kbps):
                raise CapacityError(f"path {'-'.join(route)} cannot reserve {size_kbps} kbit/s "
                                    f"({self._narrowest(route)})", field="path")
        else:
            found = constrained_path(self.topology, book, ends[0].edge, ends[1].edge, size_kbps)
            if found is None:
                raise CapacityError(f"no path from {ends[0].edge} to {ends[1].edge} can reserve "
                                    f"{size_kbps} kbit/s", field="size_kbps")
            route = found
        with self._transaction():
            tag = self._state.take_aggregate_tag()
            if tag is None:
                raise CapacityError("every aggregate tag is in use")
            aggregate = Aggregate(aggregate_id, (a, b), size_kbps, route, tag, dscp, priority, levels, preemption,
                                  autosize=autosize, schedule=tuple(sorted(schedule)), pinned=path is not None)
            before = self._plans.shared()
            self._state.add_aggregate(aggregate)
            self._queue(diff(before, self._plans.shared()))
            self._queue(PlanDiff(add=tuple(self._plans.aggregate(aggregate))))
            self._arm(aggregate, now)
        return aggregate

    def resize_aggregate(self, aggregate_id: str, size_kbps: int, now: float = 0.0) -> Aggregate:
        """Grow or shrink a pool. Its own reservation counts as free while a new path is
        sought, so growing never counts the pool's bandwidth twice. Shrinking below what
        admitted calls use is refused."""
        old = self.aggregate(aggregate_id)
        limits.check("size_kbps", size_kbps, limits.SIZE_KBPS)
        _check_autosize(old.autosize, size_kbps)
        used = self._state.used[aggregate_id]
        if size_kbps < used:
            raise Conflict(f"aggregate {aggregate_id!r} carries {used} kbit/s of calls; cannot shrink to "
                           f"{size_kbps}", field="size_kbps")
        book = self._state.book
        if book.fits(old.hops(), size_kbps, own=old):
            route = old.path
        else:
            found = constrained_path(self.topology, book, old.path[0], old.path[-1], size_kbps, own=old)
            if found is None:
                raise CapacityError(f"no path from {old.path[0]} to {old.path[-1]} can reserve {size_kbps} "
                                    f"kbit/s (now {old.size_kbps})", field="size_kbps")
            route = found
        with self._transaction():
            new = self._resize(old, size_kbps, route, "operator", now, target=None)
        self._try_reroute(now, report_stuck=False)
        return new

    def change_aggregate(self, aggregate_id: str, *, size_kbps: int | None = None,
                         autosize: Autosize | None | type[Keep] = Keep,
                         schedule: Iterable[ScheduleEntry] | None = None, path: Iterable[str] | None = None,
                         now: float = 0.0) -> Aggregate:
        """An operator's change of size, autosize policy, schedule and pinned path, all or
        nothing. A new policy without a size brings the size within the policy's range."""
        old = self.aggregate(aggregate_id)
        with self._transaction():
            if schedule is not None or path is not None:
                self.reconfigure_aggregate(aggregate_id, schedule=schedule, path=path, now=now)
            if autosize is Keep:
                if size_kbps is not None:
                    self.resize_aggregate(aggregate_id, size_kbps, now)
                return self.aggregate(aggregate_id)
            assert autosize is None or isinstance(autosize, Autosize)
            size = size_kbps if size_kbps is not None else (
                old.size_kbps if autosize is None else autosize.clamp(old.size_kbps))
            _check_autosize(autosize, size)
            self.reconfigure_aggregate(aggregate_id, autosize=None, now=now)   # the old policy checks nothing
            if size != old.size_kbps:
                self.resize_aggregate(aggregate_id, size, now)
            return self.reconfigure_aggregate(aggregate_id, autosize=autosize, now=now)

    def reconfigure_aggregate(self, aggregate_id: str, *, dscp: int | None = None, priority: int | None = None,
                              levels: Iterable[ServiceLevel] | None = None, preemption: bool | None = None,
                              path: Iterable[str] | None = None, autosize: Autosize | None | type[Keep] = Keep,
                              schedule: Iterable[ScheduleEntry] | None = None, now: float = 0.0) -> Aggregate:
        """Change a pool's class, priority, levels, preemption or pinned path in place (its
        tag and calls stay; the calls' flows follow a new DSCP or path)."""
        old = self.aggregate(aggregate_id)
        changes: dict[str, Any] = {}
        if dscp is not None:
            changes["dscp"] = limits.check("dscp", dscp, limits.DSCP)
        if priority is not None:
            changes["priority"] = limits.check("priority", priority, limits.PRIORITY)
        if levels is not None:
            changes["levels"] = frozenset(levels)
            if not changes["levels"]:
                raise InvalidRequest("must name at least one level of service", field="levels")
        if preemption is not None:
            changes["preemption"] = preemption
        if autosize is not Keep:
            assert autosize is None or isinstance(autosize, Autosize)
            _check_autosize(autosize, old.size_kbps)
            changes["autosize"] = autosize
        if schedule is not None:
            changes["schedule"] = tuple(sorted(schedule))
        if path is not None and tuple(path) != old.path:
            route = tuple(path)
            self._validate_path(route, old.communities)
            if not self._state.book.fits(_hops(route), old.size_kbps, own=old):
                raise CapacityError(f"path {'-'.join(route)} cannot reserve {old.size_kbps} kbit/s "
                                    f"({self._narrowest(route)})", field="path")
            changes["path"] = route
            changes["pinned"] = True
        new = replace(old, **changes)
        if new == old:
            return old
        with self._transaction():
            self._replace_aggregate(old, new)
            self._arm(new, now)
            return new

    def _replace_aggregate(self, old: Aggregate, new: Aggregate, *, shared: bool = True) -> Aggregate:
        """The same pool with a new size and/or path; its calls' flows follow. With
        ``shared`` False the caller queues the change to the entries all pools share
        (per-port classes, guards) itself, once for many pools."""
        shared_before = self._plans.shared() if shared else set()
        # a call's flows depend on its pool's path, class and tag, never its size: a resize in
        # place re-plans the pool's meters and classes only (O(1) in the calls it carries)
        calls_follow = (old.path, old.dscp, old.tag, old.communities) != (new.path, new.dscp, new.tag, new.communities)
        before = self._plans.aggregate(old) | (self._plans.calls_on(old.id) if calls_follow else set())
        self._state.replace_aggregate(old, new)
        after = self._plans.aggregate(new) | (self._plans.calls_on(new.id) if calls_follow else set())
        self._queue(diff(before, after))
        if shared:
            self._queue(diff(shared_before, self._plans.shared()))
        return new

    def delete_aggregate(self, aggregate_id: str, *, force: bool = False, now: float = 0.0) -> None:
        aggregate = self.aggregate(aggregate_id)
        calls = list(self._state.calls_on[aggregate_id].values())
        if calls and not force:
            raise Conflict(f"aggregate {aggregate_id!r} carries {len(calls)} call(s); release them first "
                           "or delete with force")
        with self._transaction():
            for call in calls:
                self._release(call, "aggregate-deleted", now)
            before = self._plans.shared()
            self._disarm(aggregate_id)
            self._state.remove_aggregate(aggregate)
            self._queue(PlanDiff(remove=tuple(self._plans.aggregate(aggregate))))
            self._queue(diff(before, self._plans.shared()))
        self._try_reroute(now, report_stuck=False)

    def _validate_path(self, path: tuple[str, ...], communities: tuple[str, str]) -> None:
        ends = (self._edge(communities[0]), self._edge(communities[1]))
        if not path or (path[0], path[-1]) != ends:
            raise InvalidRequest(f"must run from {ends[0]} to {ends[1]}", field="path")
        if len(set(path)) != len(path):
            raise InvalidRequest("must not visit a switch twice", field="path")
        for a, b in zip(path, path[1:]):
            if not self.topology.has_link(a, b):
                raise Unprocessable(f"no link between {a} and {b}", field="path")

    def _narrowest(self, path: tuple[str, ...]) -> str:
        book = self._state.book
        hop = min(_hops(path), key=book.residual)
        return f"{hop[0]}->{hop[1]} has {book.residual(hop)} kbit/s free"


def _check_autosize(policy: Autosize | None, size_kbps: int) -> None:
    if policy is not None and not policy.min_kbps <= size_kbps <= policy.max_kbps:
        raise InvalidRequest(f"{size_kbps} kbit/s is outside autosize's {policy.min_kbps}..{policy.max_kbps}",
                             field="size_kbps")


def _hops(path: tuple[str, ...]) -> list[Hop]:
    return [hop for a, b in zip(path, path[1:]) for hop in ((a, b), (b, a))]
