"""What is reserved and admitted now: the manager's in-memory state, changed only
through primitives that journal their inverse and their ledger write.

The manager decides; this module keeps the indexes consistent (pools by community
pair, calls by id, serial and aggregate, bandwidth in use, the per-link book, the tag
allocators, terminal locations, the lifecycle deadlines) and makes every change
undoable (:class:`~.journal.Journal`) and durable (:mod:`~.store` writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .aggregate import Aggregate, CapacityBook
from .calls import Call, CallState
from .journal import Journal
from .lifecycle import Deadlines, check_transition
from .locations import Location
from .network import Topology
from .store import DeleteAggregate, DeleteCall, PutAggregate, PutCall, PutLocation
from .tags import TagAllocator, lane_range

AGGREGATE_TAGS = (2, 4094)        # VLAN VIDs
CALL_TAGS = (16, 1_048_575)       # MPLS labels (0-15 are reserved)
CALL_SERIALS = (1, 0xFF_FFFF_FFFF)


@dataclass(frozen=True)
class CallTags:
    serial: int
    to_caller: int
    to_callee: int


class Reservations:
    def __init__(self, topology: Topology, journal: Journal, lane: tuple[int, int] = (0, 1)) -> None:
        self.topology = topology
        self.journal = journal
        self.book = CapacityBook(topology)
        self.aggregates: dict[str, Aggregate] = {}
        self.by_pair: dict[frozenset[str], list[Aggregate]] = {}
        self.used: dict[str, int] = {}
        self.calls: dict[str, Call] = {}                    # live calls (admitted .. active) by id
        self.calls_on: dict[str, dict[str, Call]] = {}      # aggregate id -> call id -> call
        self.by_serial: dict[int, Call] = {}                # live and releasing calls
        self.releasing: dict[int, Call] = {}
        self.locations: dict[tuple[str, str], int] = {}     # (community, ip) -> access port
        self.deadlines = Deadlines()
        self.aggregate_tags = TagAllocator(*AGGREGATE_TAGS, start=lane_range(*AGGREGATE_TAGS, lane)[0])
        # a call's numbers stay in this controller's lane (a shared ledger's, see tags.py)
        self.call_tags = {s.name: TagAllocator(*CALL_TAGS, *lane_range(*CALL_TAGS, lane)) for s in topology.switches}
        self.serials = TagAllocator(*CALL_SERIALS, *lane_range(*CALL_SERIALS, lane))

    def _undo(self, inverse: Callable[[], Any]) -> None:
        self.journal.undo(inverse)

    # --- aggregates -------------------------------------------------------------------

    def add_aggregate(self, aggregate: Aggregate, *, durable: bool = True) -> None:
        self.book.add(aggregate)
        self.aggregates[aggregate.id] = aggregate
        self.used[aggregate.id] = 0
        self.calls_on[aggregate.id] = {}
        self._index_pair(None, aggregate)
        self._undo(lambda: self._drop_aggregate(aggregate))
        if durable:
            self.journal.write(PutAggregate(aggregate))

    def remove_aggregate(self, aggregate: Aggregate) -> None:
        assert not self.calls_on[aggregate.id], "release an aggregate's calls before removing it"
        self._drop_aggregate(aggregate)
        self.aggregate_tags.release(aggregate.tag)
        self._undo(lambda: self.aggregate_tags.claim(aggregate.tag))
        self._undo(lambda: self.add_aggregate(aggregate, durable=False))
        self.journal.write(DeleteAggregate(aggregate.id))

    def _drop_aggregate(self, aggregate: Aggregate) -> None:
        self.book.remove(aggregate)
        del self.aggregates[aggregate.id], self.used[aggregate.id], self.calls_on[aggregate.id]
        self._index_pair(aggregate, None)

    def replace_aggregate(self, old: Aggregate, new: Aggregate) -> None:
        """The same pool with another size or path (its calls stay on it)."""
        assert old.id == new.id and self.aggregates[old.id] == old
        self._swap_aggregate(old, new)
        self._undo(lambda: self._swap_aggregate(new, old))
        self.journal.write(PutAggregate(new))

    def _swap_aggregate(self, old: Aggregate, new: Aggregate) -> None:
        self.book.remove(old)
        self.book.add(new)
        self.aggregates[new.id] = new
        self._index_pair(old, new)

    def take_aggregate_tag(self) -> int | None:
        tag = self.aggregate_tags.allocate()
        if tag is not None:
            self._undo(lambda: self.aggregate_tags.release(tag))
        return tag

    def _index_pair(self, old: Aggregate | None, new: Aggregate | None) -> None:
        """Keep ``by_pair`` (pools per community pair, highest priority first, then by id)
        up to date for one pool that came, went or changed: only its pair's list is
        rebuilt (as a new list: a reader may hold the old one)."""
        if old is not None:
            pair = frozenset(old.communities)
            group = [a for a in self.by_pair.get(pair, ()) if a.id != old.id]
            if group:
                self.by_pair[pair] = group
            else:
                self.by_pair.pop(pair, None)
        if new is not None:
            pair = frozenset(new.communities)
            group = [a for a in self.by_pair.get(pair, ()) if a.id != new.id] + [new]
            group.sort(key=lambda a: (-a.priority, a.id))
            self.by_pair[pair] = group

    # --- calls ------------------------------------------------------------------------

    def take_call_tags(self, caller_edge: str, callee_edge: str) -> CallTags | None:
        """A serial and the two per-call tags, or None (and nothing taken) when one runs out."""
        taken: list[tuple[TagAllocator, int]] = []
        for pool in (self.serials, self.call_tags[caller_edge], self.call_tags[callee_edge]):
            tag = pool.allocate()
            if tag is None:
                for owner, value in taken:
                    owner.release(value)
                return None
            taken.append((pool, tag))
        for owner, value in taken:
            self._undo(_releaser(owner, value))
        return CallTags(taken[0][1], taken[1][1], taken[2][1])

    def add_call(self, call: Call, *, durable: bool = True) -> None:
        """A live call (admitted .. active): its bandwidth counts against its pool."""
        self._index_call(call)
        self._adjust_used(call.aggregate_id, call.kbps)
        self._undo(lambda: self._unindex_call(call))
        if durable:
            self.journal.write(PutCall(call))

    def update_call(self, old: Call, new: Call, *, durable: bool = True) -> None:
        """The same live call with other media, state or dialog (same pool and tags)."""
        assert old.serial == new.serial and old.aggregate_id == new.aggregate_id
        if old.state is not new.state:
            check_transition(old.state, new.state)
        self._index_call(new)
        self._adjust_used(new.aggregate_id, new.kbps - old.kbps)
        self._undo(lambda: self._index_call(old))
        if durable:
            self.journal.write(PutCall(new))

    def start_release(self, call: Call) -> Call:
        """live -> releasing: the bandwidth is free now; serial and tags stay held."""
        releasing = call.moved_to(CallState.RELEASING)
        check_transition(call.state, releasing.state)
        self._unindex_call(call)
        self._adjust_used(call.aggregate_id, -call.kbps)
        self.by_serial[call.serial] = self.releasing[call.serial] = releasing
        self._undo(lambda: self._unrelease(call))
        self.journal.write(DeleteCall(call.call_id))
        return releasing

    def _unrelease(self, call: Call) -> None:
        del self.releasing[call.serial]
        self._index_call(call)

    def end_release(self, serial: int) -> Call | None:
        """releasing -> ended: the serial and tags may be handed out again."""
        call = self.releasing.pop(serial, None)
        if call is None:
            return None
        del self.by_serial[serial]
        edges = (self._edge(call.caller_community), self._edge(call.callee_community))
        self.serials.release(serial)
        self.call_tags[edges[0]].release(call.tag_to_caller)
        self.call_tags[edges[1]].release(call.tag_to_callee)

        def undo() -> None:
            self.serials.claim(serial)
            self.call_tags[edges[0]].claim(call.tag_to_caller)
            self.call_tags[edges[1]].claim(call.tag_to_callee)
            self.by_serial[serial] = self.releasing[serial] = call
        self._undo(undo)
        return call

    def claim_call(self, call: Call) -> None:
        """A call restored from the ledger keeps its serial and tags."""
        self.serials.claim(call.serial)
        self.call_tags[self._edge(call.caller_community)].claim(call.tag_to_caller)
        self.call_tags[self._edge(call.callee_community)].claim(call.tag_to_callee)

    def _index_call(self, call: Call) -> None:
        self.calls[call.call_id] = call
        self.calls_on[call.aggregate_id][call.call_id] = call
        self.by_serial[call.serial] = call

    def _unindex_call(self, call: Call) -> None:
        del self.calls[call.call_id], self.calls_on[call.aggregate_id][call.call_id]
        del self.by_serial[call.serial]

    def _adjust_used(self, aggregate_id: str, kbps: int) -> None:
        if kbps:
            self.used[aggregate_id] += kbps
            self._undo(lambda: self.used.__setitem__(aggregate_id, self.used[aggregate_id] - kbps))

    # --- locations and deadlines --------------------------------------------------------

    def set_location(self, location: Location, *, durable: bool = True) -> None:
        key = (location.community, location.ip)
        previous = self.locations.get(key)
        self.locations[key] = location.port
        self._undo(lambda: self.locations.pop(key) if previous is None else
                   self.locations.__setitem__(key, previous))
        if durable:
            self.journal.write(PutLocation(location))

    def set_deadline(self, key: object, at: float | None) -> None:
        previous = self.deadlines.set(key, at)
        if previous != at:
            self._undo(lambda: self.deadlines.set(key, previous))

    # --- views --------------------------------------------------------------------------

    def _edge(self, community: str) -> str:
        return self.topology.community(community).edge

    def snapshot(self) -> dict[str, Any]:
        """Everything a rollback must restore, as comparable values (for tests)."""
        return {
            "aggregates": dict(self.aggregates), "used": dict(self.used), "calls": dict(self.calls),
            "calls_on": {k: dict(v) for k, v in self.calls_on.items()}, "by_serial": dict(self.by_serial),
            "releasing": dict(self.releasing), "locations": dict(self.locations),
            "book": dict(self.book.snapshot()),
            "pairs": {k: list(v) for k, v in self.by_pair.items()},
            "aggregate_tags": set(self.aggregate_tags._live), "serials": set(self.serials._live),
            "call_tags": {k: set(v._live) for k, v in self.call_tags.items()},
            "deadlines": {k: self.deadlines.get(k) for k in list(self.deadlines._at)},
        }


def _releaser(owner: TagAllocator, tag: int) -> Callable[[], None]:
    return lambda: owner.release(tag)
