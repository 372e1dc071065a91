"""Order a plan diff into the messages one switch must receive.

Removing a meter in OpenFlow also removes every flow that uses it, and re-adding a flow
with the same match and priority replaces it; so a diff that removes and re-adds the
same meter becomes one modify, and a flow re-added under the same key is only added.
Order: remove flows, remove meters, add or modify meters, add flows.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.flowplan import Entry, FlowEntry, MeterEntry, PlanDiff, PortClass


@dataclass(frozen=True)
class SwitchBatch:
    flow_removes: tuple[FlowEntry, ...] = ()
    meter_removes: tuple[MeterEntry, ...] = ()
    meter_adds: tuple[MeterEntry, ...] = ()
    meter_modifies: tuple[MeterEntry, ...] = ()
    flow_adds: tuple[FlowEntry, ...] = ()
    classes: tuple[PortClass, ...] = ()          # the port classes this switch should now have
    class_removes: tuple[PortClass, ...] = ()

    def __bool__(self) -> bool:
        return any((self.flow_removes, self.meter_removes, self.meter_adds, self.meter_modifies, self.flow_adds,
                    self.classes, self.class_removes))


def batches(plan: PlanDiff) -> dict[str, SwitchBatch]:
    switches = {e.switch for e in plan.add} | {e.switch for e in plan.remove}
    return {name: batch_for(plan.for_switch(name)) for name in sorted(switches)}


def batch_for(plan: PlanDiff) -> SwitchBatch:
    added_keys = {e.key for e in plan.add if isinstance(e, FlowEntry)}
    added_meters = {e.meter_id: e for e in plan.add if isinstance(e, MeterEntry)}
    removed_meters = {e.meter_id for e in plan.remove if isinstance(e, MeterEntry)}
    added_ports = {(e.port, e.queue_id) for e in plan.add if isinstance(e, PortClass)}
    return SwitchBatch(
        flow_removes=tuple(e for e in plan.remove if isinstance(e, FlowEntry) and e.key not in added_keys),
        meter_removes=tuple(e for e in plan.remove if isinstance(e, MeterEntry) and e.meter_id not in added_meters),
        meter_adds=tuple(e for e in added_meters.values() if e.meter_id not in removed_meters),
        meter_modifies=tuple(e for e in added_meters.values() if e.meter_id in removed_meters),
        flow_adds=tuple(e for e in plan.add if isinstance(e, FlowEntry)),
        classes=tuple(e for e in plan.add if isinstance(e, PortClass)),
        class_removes=tuple(e for e in plan.remove if isinstance(e, PortClass)
                            and (e.port, e.queue_id) not in added_ports),
    )


def full_state(entries: frozenset[Entry] | set[Entry], switch: str) -> SwitchBatch:
    """Everything a freshly cleaned switch must receive."""
    mine = [e for e in entries if e.switch == switch]
    return SwitchBatch(
        meter_adds=tuple(e for e in mine if isinstance(e, MeterEntry)),
        flow_adds=tuple(e for e in mine if isinstance(e, FlowEntry)),
        classes=tuple(e for e in mine if isinstance(e, PortClass)),
    )
