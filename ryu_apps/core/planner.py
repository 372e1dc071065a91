"""What the switches must hold, drawn from the reservations (see :mod:`.flowplan`)."""

from __future__ import annotations

from .aggregate import Aggregate
from .calls import Call
from .flowplan import (Entry, PlanOptions, aggregate_entries, base_entries, call_entries, port_class,
                       port_classes)
from .network import Hop, Topology
from .reservations import Reservations


class Planner:
    def __init__(self, topology: Topology, options: PlanOptions, reserved_dscps: tuple[int, ...],
                 state: Reservations) -> None:
        self.topology, self.options, self.state = topology, options, state
        self._configured_dscps = frozenset(reserved_dscps)
        # The shared entries, kept up to date from what changed since the last look
        # (see `shared`): aggregates as last seen, what each hop carries, the port classes.
        self._seen: dict[str, Aggregate] = {}
        self._on_hop: dict[Hop, dict[str, Aggregate]] = {}
        self._class_of: dict[Hop, Entry] = {}
        self._classes: set[Entry] = set()
        self._dscps: dict[int, int] = {}                 # DSCP -> aggregates marking it
        self._base: dict[frozenset[int], frozenset[Entry]] = {}

    def call(self, call: Call) -> set[Entry]:
        """A live call's flows (none until both media addresses are known). Drawn afresh
        each time: remembering them per call was measured slower (bench_openflow part A,
        2.3 s -> 3.6-4.1 s for 10,000 calls): the retained entries lengthen every garbage
        collection more than drawing four entries costs."""
        if not call.media_attached or not self.options.call_flows:
            return set()
        return call_entries(call, self.state.aggregates[call.aggregate_id], self.topology, self.options,
                            self.state.locations)

    def calls_on(self, aggregate_id: str) -> set[Entry]:
        return {e for call in self.state.calls_on[aggregate_id].values() for e in self.call(call)}

    def aggregate(self, aggregate: Aggregate) -> set[Entry]:
        return aggregate_entries(aggregate, self.topology, self.options)

    def shared(self) -> set[Entry]:
        """Entries that depend on all aggregates together: per-port classes, guards.

        Equal to ``port_classes(all aggregates) | base_entries(DSCPs)``, but only the
        ports of aggregates that came, went or changed since the last call are redrawn,
        and the guards are drawn once per set of reserved DSCPs: a mutation's
        before/after pair costs what it touches, not the size of the network."""
        self._catch_up()
        dscps = self._configured_dscps.union(self._dscps)
        base = self._base.get(dscps)
        if base is None:
            if len(self._base) > 64:            # DSCP sets come and go: keep a few
                self._base.clear()
            base = self._base[dscps] = frozenset(base_entries(self.topology, dscps))
        return self._classes | base

    def _catch_up(self) -> None:
        current, seen = self.state.aggregates, self._seen
        if len(current) == len(seen) and all(seen.get(key) is value for key, value in current.items()):
            return
        touched: set[Hop] = set()
        for key, old in list(seen.items()):
            if current.get(key) is not old:
                self._forget(old, touched)
        for key, new in current.items():
            if seen.get(key) is not new:
                self._learn(new, touched)
        for hop in touched:
            previous = self._class_of.pop(hop, None)
            if previous is not None:
                self._classes.discard(previous)
            on_hop = self._on_hop.get(hop)
            if on_hop:
                entry = port_class(hop, on_hop.values(), self.topology, self.options)
                if entry is not None:
                    self._class_of[hop] = entry
                    self._classes.add(entry)

    def _forget(self, aggregate: Aggregate, touched: set[Hop]) -> None:
        del self._seen[aggregate.id]
        for hop in aggregate.hop_set:
            on_hop = self._on_hop[hop]
            del on_hop[aggregate.id]
            if not on_hop:
                del self._on_hop[hop]
            touched.add(hop)
        left = self._dscps[aggregate.dscp] - 1
        if left:
            self._dscps[aggregate.dscp] = left
        else:
            del self._dscps[aggregate.dscp]

    def _learn(self, aggregate: Aggregate, touched: set[Hop]) -> None:
        self._seen[aggregate.id] = aggregate
        for hop in aggregate.hop_set:
            self._on_hop.setdefault(hop, {})[aggregate.id] = aggregate
            touched.add(hop)
        self._dscps[aggregate.dscp] = self._dscps.get(aggregate.dscp, 0) + 1

    def shared_from_scratch(self) -> set[Entry]:
        """:meth:`shared` drawn from nothing (what the cache must always equal)."""
        aggregates = self.state.aggregates.values()
        return (port_classes(aggregates, self.topology, self.options)
                | base_entries(self.topology, self._configured_dscps | {a.dscp for a in aggregates}))

    def expected(self) -> frozenset[Entry]:
        """Everything the switches should hold now."""
        entries = self.shared()
        for aggregate in self.state.aggregates.values():
            entries |= self.aggregate(aggregate)
        for call in self.state.calls.values():
            entries |= self.call(call)
        return frozenset(entries)
