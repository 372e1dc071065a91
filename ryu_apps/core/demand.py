"""Aggregates as living reservations: they follow demand, give way when capacity
drops, and come back to their best path (the manager's half of issue 16).

A mixin of :class:`~.manager.MediaAggregationManager`; every method runs inside one of
the manager's transactions (the caller opens it), so a resize, a preemption or a move
is durable before anything of it is published, and undone whole when the ledger
refuses it.

The state of an aggregate, as the operator sees it (``docs/architecture.md``)::

    sized ──grow (a call would cross grow_at)──▶ sized (bigger)
      │  ◀─shrink (use under shrink_at for hold_s)─┘
      ├─capacity falls on a hop─▶ reduced (target_kbps kept; calls that no longer fit preempted)
      │                               └─capacity back─▶ sized (target restored, as far as it fits)
      ├─a hop fails─▶ moved (the fewest-hop open path that holds it, or the widest one, reduced)
      │                 └─the shorter path open and stable for reoptimize_hold_s─▶ sized (home again)
      └─a hop fails, no open path─▶ stranded ──path_down_grace_s──▶ its calls ended (path-down)

Timers are deadlines in the manager's :class:`~.lifecycle.Deadlines` keyed
``("shrink" | "schedule" | "reoptimize" | "stranded", aggregate id)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable

from .aggregate import Aggregate
from .calls import Call
from .errors import Conflict, NotFound, Unprocessable
from .flowplan import PlanDiff
from .network import Hop
from .paths import constrained_path, hop_count, widest_path
from .schedule import scheduled

if TYPE_CHECKING:
    from .journal import Journal
    from .changes import ReleasedCall
    from .manager import Counters, ManagerSettings
    from .network import Link, Topology
    from .reservations import Reservations


@dataclass(frozen=True)
class ResizeRecord:
    """The last time an aggregate's size or path changed by itself or by an operator."""

    at: float
    from_kbps: int
    to_kbps: int
    reason: str
    from_path: tuple[str, ...] = ()
    to_path: tuple[str, ...] = ()

    @property
    def direction(self) -> str:
        if self.to_kbps > self.from_kbps:
            return "grow"
        if self.to_kbps < self.from_kbps:
            return "shrink"
        return "move"


# Preemption causes: the text starts with "preempted" (front ends map it to RFC 4411
# ``Reason: preemption`` and the H.323 release reason); the metric label is the key.
PREEMPTED_CAPACITY = "capacity"
PREEMPTED_PATH_DOWN = "path-down"
PREEMPTED_PRIORITY = "priority"


def preemption_order(calls: Iterable[Call], priority_of: Callable[[Call], int]) -> list[Call]:
    """Who gives way first: the lowest level of service, then the pool of lowest
    priority, then the newest call. An emergency call is never chosen while a call of
    a lower level remains among ``calls``."""
    return sorted(calls, key=lambda c: (c.level, priority_of(c), -c.admitted_at, -c.serial))


def share_out(amount: int, room: dict[str, int]) -> dict[str, int]:
    """Take up to ``amount`` from pools with ``room`` each, in proportion to their room
    (largest remainders to the first ids), never more than a pool's room."""
    total = sum(max(0, r) for r in room.values())
    if amount <= 0 or total <= 0:
        return {}
    amount = min(amount, total)
    shares = {key: max(0, r) * amount // total for key, r in room.items()}
    left = amount - sum(shares.values())
    for key in sorted(room, key=lambda k: (-((max(0, room[k]) * amount) % total), k)):
        if left <= 0:
            break
        if shares[key] < room[key]:
            shares[key] += 1
            left -= 1
    return {key: share for key, share in shares.items() if share}


class DemandOperations:
    """Resizes, preemption on capacity loss, re-optimisation and schedules."""

    # provided by the manager
    topology: "Topology"
    settings: "ManagerSettings"
    counters: "Counters"
    _state: "Reservations"
    _journal: "Journal"
    _faults: "dict[Link, str]"
    _pending_notes: list[str]
    _last_resize: dict[str, ResizeRecord]
    _hop_counts: dict[tuple[str, str], int]
    _replace_aggregate: Callable[..., Aggregate]
    _release: Callable[..., "ReleasedCall"]
    _queue: Callable[[PlanDiff], None]
    path_fault: Callable[[Aggregate], "str | None"]

    # --- resizing ------------------------------------------------------------------------

    def _resize(self, old: Aggregate, size_kbps: int, path: tuple[str, ...], reason: str, now: float,
                *, target: int | None | type[KeepTarget] = None, shared: bool = True,
                note: str | None = None) -> Aggregate:
        """The pool with a new size and/or path (the caller checked it fits), recorded,
        counted and said. Meters are modified in place (OFPMC_MODIFY) and a moved path's
        entries are added before the old ones go (the valve stages a plan change)."""
        new_target = old.target_kbps if target is KeepTarget else target
        assert new_target is None or isinstance(new_target, int)
        if new_target is not None and new_target <= size_kbps:
            new_target = None
        new = replace(old, size_kbps=size_kbps, path=path, target_kbps=new_target)
        if new == old:
            return old
        self._replace_aggregate(old, new, shared=shared)
        record = ResizeRecord(now, old.size_kbps, size_kbps, reason, old.path, path)
        sizes = f"{old.size_kbps} to {size_kbps} kbit/s"
        if note is not None:
            self._pending_notes.append(note)
        elif path != old.path:
            self._pending_notes.append(f"aggregate {old.id} moved from {'-'.join(old.path)} to {'-'.join(path)}"
                                       + (f", {sizes}" if size_kbps != old.size_kbps else "") + f" ({reason})")
        elif size_kbps != old.size_kbps:
            self._pending_notes.append(f"aggregate {old.id} {'grew' if size_kbps > old.size_kbps else 'shrank'} "
                                       f"from {sizes} ({reason})")

        def done() -> None:
            self._last_resize[old.id] = record
            if record.direction != "move":
                self.counters.resizes[record.direction] = self.counters.resizes.get(record.direction, 0) + 1
        self._journal.after(done)
        self._watch(new, now)
        return new

    def _room(self, aggregate: Aggregate, path: tuple[str, ...] | None = None) -> int:
        """The most ``aggregate`` could reserve on ``path`` (its own path by default),
        counting its own reservation as free."""
        book = self._state.book
        route = aggregate.path if path is None else path
        hops = [hop for a, b in zip(route, route[1:]) for hop in ((a, b), (b, a))]
        if not hops:
            return 10 ** 12
        return min(book.residual(hop, aggregate) for hop in hops)

    # --- autosize ------------------------------------------------------------------------

    def _grow_for(self, aggregate: Aggregate, kbps: int, now: float) -> Aggregate:
        """Before a call of ``kbps`` lands on ``aggregate``: grow it by steps if the call
        would lift its use over ``grow_at`` and its path has room (else as it is)."""
        policy = aggregate.autosize
        if policy is None:
            return aggregate
        used = self._state.used[aggregate.id] + kbps
        sizes = policy.grow_sizes(aggregate.size_kbps, used)
        room = self._room(aggregate) if sizes else 0
        for size in sizes:
            if size <= room:
                return self._resize(aggregate, size, aggregate.path, f"autosize: {used} kbit/s would be over "
                                    f"{policy.grow_at:g} of {aggregate.size_kbps}", now, target=KeepTarget)
        return aggregate

    def _watch(self, aggregate: Aggregate, now: float) -> None:
        """Use changed: start or stop the shrink hold."""
        policy = aggregate.autosize
        if policy is None:
            return
        key = ("shrink", aggregate.id)
        low = policy.under_use(aggregate.size_kbps, self._state.used[aggregate.id])
        if not low:
            if self._state.deadlines.get(key) is not None:
                self._state.set_deadline(key, None)
        elif self._state.deadlines.get(key) is None:
            self._state.set_deadline(key, now + policy.hold_s)

    def _shrink_due(self, aggregate_id: str, now: float) -> None:
        aggregate = self._state.aggregates.get(aggregate_id)
        if aggregate is None or aggregate.autosize is None:
            return
        policy = aggregate.autosize
        size = policy.shrink_size(aggregate.size_kbps, self._state.used[aggregate_id])
        if size is None:
            return
        self._resize(aggregate, size, aggregate.path, f"autosize: use under {policy.shrink_at:g} of "
                     f"{aggregate.size_kbps} for {policy.hold_s:g} s", now, target=KeepTarget)

    # --- schedules -----------------------------------------------------------------------

    def _zone(self) -> dt.tzinfo:
        return self.settings.timezone

    def _arm_schedule(self, aggregate: Aggregate, now: float) -> None:
        _, upcoming = scheduled(aggregate.schedule, self._zone(), now)
        self._state.set_deadline(("schedule", aggregate.id), upcoming)

    def _schedule_due(self, aggregate_id: str, now: float) -> None:
        aggregate = self._state.aggregates.get(aggregate_id)
        if aggregate is None:
            return
        size, _ = scheduled(aggregate.schedule, self._zone(), now)
        self._arm_schedule(aggregate, now)
        if size is None:
            return
        if aggregate.autosize is not None:
            size = aggregate.autosize.clamp(size)
        used = self._state.used[aggregate.id]
        fits = max(used, min(size, self._room(aggregate)))
        if fits != size:
            self._pending_notes.append(f"aggregate {aggregate.id}: schedule asks {size} kbit/s, "
                                       f"{'its calls use ' + str(used) if fits == used else 'its path has room for ' + str(fits)}"
                                       f"; sized {fits}")
        if fits != aggregate.size_kbps:
            self._resize(aggregate, fits, aggregate.path, f"schedule: {size} kbit/s from now", now, target=None)

    # --- capacity lost and found ---------------------------------------------------------

    def _fit_capacity(self, now: float) -> None:
        """Links that now reserve less than their pools hold (a slower port, a lowered
        share): the pools on them shrink, free headroom first (lowest priority first),
        then calls are preempted in :func:`preemption_order` until what is reserved fits."""
        book = self._state.book
        for _ in range(4 * len(self._state.aggregates) + 4):
            over = sorted(hop for hop in self.topology.hops()
                          if not book.blocked(hop) and book.reserved(hop) > book.reservable(hop))
            if not over:
                return
            self._give_way(over[0], book.reserved(over[0]) - book.reservable(over[0]), now)

    def _give_way(self, hop: Hop, excess: int, now: float) -> None:
        state = self._state
        pools = sorted((a for a in state.aggregates.values() if hop in a.hop_set), key=lambda a: (a.priority, a.id))
        cut = {a.id: 0 for a in pools}
        for level in sorted({a.priority for a in pools}):      # headroom first, lowest priority first
            group = [a for a in pools if a.priority == level]
            for aggregate_id, take in share_out(excess, {a.id: a.size_kbps - state.used[a.id] for a in group}).items():
                cut[aggregate_id] += take
                excess -= take
        victims: list[Call] = []
        if excess > 0:
            priority = {a.id: a.priority for a in pools}
            for call in preemption_order((c for a in pools for c in state.calls_on[a.id].values()),
                                         lambda c: priority[c.aggregate_id]):
                if excess <= 0:
                    break
                victims.append(call)
                cut[call.aggregate_id] += min(call.kbps, excess)
                excess -= call.kbps
        reason = f"{hop[0]}->{hop[1]} can reserve {state.book.reservable(hop)} kbit/s"
        for call in victims:
            self._preempt(call, PREEMPTED_CAPACITY, reason, now)
        for aggregate in pools:
            if cut[aggregate.id] > 0:
                current = state.aggregates[aggregate.id]
                self._resize(current, current.size_kbps - cut[aggregate.id], current.path,
                             f"capacity: {reason}", now, target=current.wanted_kbps)

    def _preempt(self, call: Call, kind: str, reason: str, now: float, by: str | None = None) -> None:
        """End ``call`` to make room (``by``: the call that needed it, for its record)."""
        self._release(call, f"preempted: {kind}: {reason}", now, preempted_by=by)

        def count() -> None:
            self.counters.preempted += 1
            self.counters.preempted_by[kind] = self.counters.preempted_by.get(kind, 0) + 1
        self._journal.after(count)

    def _restore_reduced(self, now: float) -> None:
        """Pools a capacity drop reduced take back what they gave up, as far as it fits
        (higher priority first)."""
        for aggregate in sorted(self._state.aggregates.values(), key=lambda a: (-a.priority, a.id)):
            if aggregate.target_kbps is None or self.path_fault(aggregate) is not None:
                continue
            size = min(aggregate.target_kbps, self._room(aggregate))
            if size > aggregate.size_kbps:
                self._resize(aggregate, size, aggregate.path, "capacity back", now, target=aggregate.target_kbps)

    def _move_or_give_way(self, aggregate: Aggregate, fault: str, now: float) -> Aggregate | None:
        """``aggregate``'s path is closed and no open path holds all of it: move to the
        widest open path, shrunk to what it holds (its calls that no longer fit
        preempted); with no open path at all, None (the caller strands it)."""
        found = widest_path(self.topology, self._state.book, aggregate.path[0], aggregate.path[-1],
                            aggregate.size_kbps)
        if found is None:
            return None
        path, width = found
        used = self._state.used[aggregate.id]
        if used > width:
            over = used - width
            for call in preemption_order(self._state.calls_on[aggregate.id].values(), lambda c: aggregate.priority):
                if over <= 0:
                    break
                self._preempt(call, PREEMPTED_CAPACITY, f"path {'-'.join(path)} holds {width} kbit/s of "
                              f"aggregate {aggregate.id} ({fault})", now)
                over -= call.kbps
        return self._resize(self._state.aggregates[aggregate.id], width, path, f"moved, reduced: {fault}", now,
                            target=aggregate.wanted_kbps, shared=False)

    def _strand(self, aggregate: Aggregate, now: float) -> None:
        key = ("stranded", aggregate.id)
        if self._state.deadlines.get(key) is None and self._state.calls_on[aggregate.id]:
            self._state.set_deadline(key, now + self.settings.path_down_grace_s)

    def _stranded_due(self, aggregate_id: str, now: float) -> None:
        """The grace period ran out and the pool is still cut off: its calls end (their
        media has nowhere to go), with the fault as their cause."""
        aggregate = self._state.aggregates.get(aggregate_id)
        if aggregate is None:
            return
        fault = self.path_fault(aggregate)
        if fault is None:
            return
        calls = list(self._state.calls_on[aggregate_id].values())
        for call in preemption_order(calls, lambda c: aggregate.priority):
            self._preempt(call, PREEMPTED_PATH_DOWN, f"aggregate {aggregate_id}: {fault}", now)
        if calls:
            self._pending_notes.append(f"aggregate {aggregate_id}: {len(calls)} call(s) ended after "
                                       f"{self.settings.path_down_grace_s:g} s with no open path ({fault})")

    # --- re-optimisation -----------------------------------------------------------------

    def _fewest_hops(self, aggregate: Aggregate) -> int:
        """Hops of the shortest path between the pool's edges in the whole topology (cached:
        the topology is fixed); a pool already that short has nothing to gain (no search)."""
        ends = (aggregate.path[0], aggregate.path[-1])
        known = self._hop_counts.get(ends)
        if known is None:
            known = self._hop_counts[ends] = hop_count(self.topology, *ends)
        return known

    def _better_path(self, aggregate: Aggregate) -> tuple[str, ...] | None:
        """A path with fewer hops than ``aggregate``'s that holds what it wants (or at
        least its size), or None."""
        book = self._state.book
        for size in dict.fromkeys((aggregate.wanted_kbps, aggregate.size_kbps)):
            found = constrained_path(self.topology, book, aggregate.path[0], aggregate.path[-1], size, own=aggregate)
            if found is not None and len(found) < len(aggregate.path):
                return found
        return None

    def _plan_reoptimize(self, now: float, *, restart: bool) -> None:
        """Start the hold of each pool that a shorter path could take now; stop it where
        none can. ``restart``: the network changed, so "stable" starts again now."""
        if not self.settings.reoptimize:
            return
        for aggregate in self._state.aggregates.values():
            key = ("reoptimize", aggregate.id)
            wants = (not aggregate.pinned and len(aggregate.path) - 1 > self._fewest_hops(aggregate)
                     and self.path_fault(aggregate) is None and self._better_path(aggregate) is not None)
            if not wants:
                if self._state.deadlines.get(key) is not None:
                    self._state.set_deadline(key, None)
            elif restart or self._state.deadlines.get(key) is None:
                self._state.set_deadline(key, now + self.settings.reoptimize_hold_s)

    def _reoptimize_due(self, aggregate_id: str, now: float) -> None:
        aggregate = self._state.aggregates.get(aggregate_id)
        if aggregate is not None and not aggregate.pinned:
            self._move_home(aggregate, f"re-optimised: shorter path stable for "
                            f"{self.settings.reoptimize_hold_s:g} s", now)

    def _move_home(self, aggregate: Aggregate, reason: str, now: float) -> Aggregate | None:
        path = self._better_path(aggregate)
        if path is None:
            return None
        size = aggregate.size_kbps
        if aggregate.target_kbps is not None:
            size = max(size, min(aggregate.target_kbps, self._room(aggregate, path)))
        return self._resize(aggregate, size, path, reason, now, target=aggregate.target_kbps)

    def reoptimize_aggregate(self, aggregate_id: str, now: float) -> Aggregate:
        """Move ``aggregate_id`` to the fewest-hop path that holds it, now (an operator's
        request: no hold time). Unchanged when it is already on one."""
        aggregate = self._state.aggregates.get(aggregate_id)
        if aggregate is None:
            raise NotFound(f"no aggregate {aggregate_id!r}")
        if aggregate.pinned:
            raise Conflict(f"aggregate {aggregate_id!r} has a pinned path; change its path instead", field="path")
        fault = self.path_fault(aggregate)
        with self._transaction():
            if fault is not None:
                raise Unprocessable(f"aggregate {aggregate_id!r} is cut off ({fault}); it moves by itself as soon "
                                    "as an open path holds it")
            moved = self._move_home(aggregate, "re-optimised on request", now)
            self._state.set_deadline(("reoptimize", aggregate_id), None)
        return moved or aggregate

    # --- queries -------------------------------------------------------------------------

    def last_resize(self, aggregate_id: str) -> ResizeRecord | None:
        return self._last_resize.get(aggregate_id)

    def _arm(self, aggregate: Aggregate, now: float) -> None:
        """Timers of a pool just created, restored or reconfigured."""
        if aggregate.schedule:
            self._arm_schedule(aggregate, now)
        else:
            self._state.set_deadline(("schedule", aggregate.id), None)
        if aggregate.autosize is None:
            self._state.set_deadline(("shrink", aggregate.id), None)
        else:
            self._watch(aggregate, now)

    def _disarm(self, aggregate_id: str) -> None:
        for kind in ("shrink", "schedule", "reoptimize", "stranded"):
            if self._state.deadlines.get((kind, aggregate_id)) is not None:
                self._state.set_deadline((kind, aggregate_id), None)

    def _demand_timer(self, key: tuple[str, str], now: float) -> bool:
        """Run an aggregate's due timer; False when ``key`` is not one of them."""
        kind, aggregate_id = key
        handler = {"shrink": self._shrink_due, "schedule": self._schedule_due,
                   "reoptimize": self._reoptimize_due, "stranded": self._stranded_due}.get(kind)
        if handler is None:
            return False
        with self._transaction():
            handler(aggregate_id, now)
        return True

    # provided by the manager
    _transaction: Callable[[], ContextManager[None]]


class KeepTarget:
    """``_resize(target=KeepTarget)``: leave the pool's target as it is."""
