"""What the switches must hold, drawn from the reservations (see :mod:`.flowplan`)."""

from __future__ import annotations

from .aggregate import Aggregate
from .calls import Call
from .flowplan import Entry, PlanOptions, aggregate_entries, base_entries, call_entries, port_classes
from .network import Topology
from .reservations import Reservations


class Planner:
    def __init__(self, topology: Topology, options: PlanOptions, reserved_dscps: tuple[int, ...],
                 state: Reservations) -> None:
        self.topology, self.options, self.state = topology, options, state
        self._configured_dscps = frozenset(reserved_dscps)

    def call(self, call: Call) -> set[Entry]:
        """A live call's flows (none until both media addresses are known)."""
        if not call.media_attached:
            return set()
        return call_entries(call, self.state.aggregates[call.aggregate_id], self.topology, self.options,
                            self.state.locations)

    def calls_on(self, aggregate_id: str) -> set[Entry]:
        return {e for call in self.state.calls_on[aggregate_id].values() for e in self.call(call)}

    def aggregate(self, aggregate: Aggregate) -> set[Entry]:
        return aggregate_entries(aggregate, self.topology, self.options)

    def shared(self) -> set[Entry]:
        """Entries that depend on all aggregates together: per-port classes, guards."""
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
