"""Changes other controllers committed to a shared ledger, applied to this manager.

Several managers may share one ledger (etcd, :mod:`ryu_apps.store.shared`). Each one
decides and commits its own mutations; what the others commit reaches it in commit
order, as the same :mod:`.store` writes, and :class:`Replica` applies them to memory:
pools, calls, tags and terminal locations become what the ledger holds, and the flow
plan follows (plan diffs and released calls are queued for ``drain()`` like the
manager's own, so this controller's switches get the flows of calls admitted
elsewhere). Nothing is written back: the ledger already holds these changes.

A call admitted elsewhere is held as stored except for its state: with both media
addresses it is ``active`` here (its flows are planned, as after a restart), otherwise
``admitted`` with the same attach deadline its admitting controller has (whichever
timer fires first releases it; the other controller's commit then finds it gone).
Install deadlines stay with the controller that attached the media. A call released
elsewhere is ``releasing`` here until this controller's switches confirm its flows
gone (or the release timeout passes), like a local release; a serial or tag that a
releasing call still holds here is let go when another controller reuses it (the
ledger freed it; the removal of the old flows was queued first).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from .aggregate import Aggregate
from .calls import Call, CallState
from .errors import Conflict
from .flowplan import PlanDiff, diff
from .locations import Location
from .store import DeleteAggregate, DeleteCall, PutAggregate, PutCall, Write

if TYPE_CHECKING:  # pragma: no cover
    from .manager import MediaAggregationManager

RELEASED_ELSEWHERE = "released by another controller"


class Replica:
    def __init__(self, manager: "MediaAggregationManager") -> None:
        self.manager = manager

    def apply(self, writes: Sequence[Write], now: float) -> None:
        for write in writes:
            if isinstance(write, PutCall):
                self._put_call(write.call, now)
            elif isinstance(write, DeleteCall):
                call = self.manager._state.calls.get(write.call_id)
                if call is not None:
                    self.manager._release(call, RELEASED_ELSEWHERE, now, count=False)
            elif isinstance(write, PutAggregate):
                self._put_aggregate(write.aggregate)
            elif isinstance(write, DeleteAggregate):
                self._delete_aggregate(write.aggregate_id, now)
            else:
                self._put_location(write.location)

    # --- calls ------------------------------------------------------------------------

    def _put_call(self, call: Call, now: float) -> None:
        manager, state = self.manager, self.manager._state
        old = state.calls.get(call.call_id)
        if old is not None and (old.serial, old.aggregate_id) != (call.serial, call.aggregate_id):
            manager._release(old, RELEASED_ELSEWHERE, now, count=False)   # another admission of the same id
            old = None
        if old is None:
            self._make_room(call)
            state.claim_call(call)
            held = call.moved_to(CallState.ACTIVE if call.media_attached else CallState.ADMITTED)
            state.add_call(held, durable=False)
            if not call.media_attached:
                state.set_deadline(call.serial, call.admitted_at + manager.settings.timers.attach_s)
            manager._queue(PlanDiff(add=tuple(manager._plans.call(held))))
            return
        media_changed = (old.caller_media, old.callee_media) != (call.caller_media, call.callee_media)
        target = old.state if not media_changed else (
            CallState.ACTIVE if call.media_attached else CallState.ADMITTED)
        before = manager._plans.call(old)
        current = old
        if current.state is CallState.ADMITTED and target is CallState.ACTIVE:   # through installing
            step = replace(call, state=CallState.INSTALLING)
            state.update_call(current, step, durable=False)
            current = step
        updated = replace(call, state=target)
        state.update_call(current, updated, durable=False)
        if target is CallState.ACTIVE and old.state is not CallState.ACTIVE:
            state.set_deadline(call.serial, None)
        manager._queue(diff(before, manager._plans.call(updated)))

    def _make_room(self, call: Call) -> None:
        """End the local releasing calls that still hold ``call``'s serial or tags."""
        state = self.manager._state
        caller_edge = self.manager._edge(call.caller_community)
        callee_edge = self.manager._edge(call.callee_community)
        wanted = {("serial", call.serial), (caller_edge, call.tag_to_caller), (callee_edge, call.tag_to_callee)}
        for holder in list(state.releasing.values()):
            held = {("serial", holder.serial), (self.manager._edge(holder.caller_community), holder.tag_to_caller),
                    (self.manager._edge(holder.callee_community), holder.tag_to_callee)}
            if held & wanted:
                state.end_release(holder.serial)
                state.set_deadline(holder.serial, None)
        for key, tag in wanted:
            pool = state.serials if key == "serial" else state.call_tags[key]
            if tag in pool:
                raise Conflict(f"the shared ledger gives call {call.call_id!r} {key} tag {tag}, which a live call "
                               "holds here: this controller's view is inconsistent")

    # --- aggregates -------------------------------------------------------------------

    def _put_aggregate(self, aggregate: Aggregate) -> None:
        manager, state = self.manager, self.manager._state
        old = state.aggregates.get(aggregate.id)
        if old is None:
            state.aggregate_tags.claim(aggregate.tag)
            before = manager._plans.shared()
            state.add_aggregate(aggregate, durable=False)
            manager._queue(diff(before, manager._plans.shared()))
            manager._queue(PlanDiff(add=tuple(manager._plans.aggregate(aggregate))))
        elif old != aggregate:
            if old.tag != aggregate.tag:
                raise Conflict(f"the shared ledger changed aggregate {aggregate.id!r}'s tag")
            manager._replace_aggregate(old, aggregate)

    def _delete_aggregate(self, aggregate_id: str, now: float) -> None:
        manager, state = self.manager, self.manager._state
        aggregate = state.aggregates.get(aggregate_id)
        if aggregate is None:
            return
        for call in list(state.calls_on[aggregate_id].values()):
            manager._release(call, "aggregate-deleted", now, count=False)
        before = manager._plans.shared()
        state.remove_aggregate(aggregate)
        manager._queue(PlanDiff(remove=tuple(manager._plans.aggregate(aggregate))))
        manager._queue(diff(before, manager._plans.shared()))

    # --- terminal locations -------------------------------------------------------------

    def _put_location(self, location: Location) -> None:
        manager, state = self.manager, self.manager._state
        if not manager.topology.has_community(location.community):
            return
        key = (location.community, location.ip)
        affected = [c for c in state.calls.values() if c.caller_media is not None and c.callee_media is not None and (
            (c.caller_community, c.caller_media.ip) == key or (c.callee_community, c.callee_media.ip) == key)]
        before = {e for c in affected for e in manager._plans.call(c)}
        state.set_location(location, durable=False)
        manager._queue(diff(before, {e for c in affected for e in manager._plans.call(c)}))
