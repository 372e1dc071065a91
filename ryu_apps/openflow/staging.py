"""Make-before-break: a plan change as stages the valve sends one after another.

A change that both adds and takes away entries (an aggregate moved or resized, a call's
flows moved) is split so that no packet of an admitted call meets a switch without its
entry: first the entries that are new on their switch, then the entries changed in place
(the ingress switch-over; meters modified with OFPMC_MODIFY and port classes updated,
never deleted and re-added), then what is no longer needed. The valve sends each stage
once every switch confirmed the previous one with a barrier.
"""

from __future__ import annotations

from typing import Mapping

from ..core.flowplan import Entry, FlowEntry, MeterEntry, PlanDiff, PortClass
from .reconcile import FlowKey, flow_key


def make_before_break(plan: PlanDiff, flows: Mapping[str, Mapping[FlowKey, FlowEntry]],
                      meters: Mapping[str, Mapping[int, MeterEntry]],
                      classes: Mapping[tuple[str, int], PortClass]) -> list[PlanDiff]:
    """``plan`` as stages, given what the switches hold now (the valve's view); one stage
    when it only adds or only removes."""
    adds_new: list[Entry] = []
    changed_add: list[Entry] = []
    changed_remove: list[Entry] = []
    flow_adds = {e.key for e in plan.add if isinstance(e, FlowEntry)}
    meter_adds = {(e.switch, e.meter_id) for e in plan.add if isinstance(e, MeterEntry)}
    class_adds = {(e.switch, e.port, e.queue_id) for e in plan.add if isinstance(e, PortClass)}
    for entry in plan.add:
        if isinstance(entry, FlowEntry) and flow_key(entry) in flows.get(entry.switch, {}):
            changed_add.append(entry)
        elif isinstance(entry, MeterEntry) and entry.meter_id in meters.get(entry.switch, {}):
            changed_add.append(entry)
        elif isinstance(entry, PortClass) and (entry.switch, entry.port) in classes:
            changed_add.append(entry)
        else:
            adds_new.append(entry)
    gone: list[Entry] = []
    for entry in plan.remove:           # the old half of an entry changed in place goes with the new half
        if isinstance(entry, FlowEntry) and entry.key in flow_adds \
                or isinstance(entry, MeterEntry) and (entry.switch, entry.meter_id) in meter_adds \
                or isinstance(entry, PortClass) and (entry.switch, entry.port, entry.queue_id) in class_adds:
            changed_remove.append(entry)
        else:
            gone.append(entry)
    stages = [PlanDiff(add=tuple(adds_new)), PlanDiff(add=tuple(changed_add), remove=tuple(changed_remove)),
              PlanDiff(remove=tuple(gone))]
    stages = [stage for stage in stages if stage]
    if len(stages) < 2 or not gone and not changed_add:
        return [plan]
    return stages
