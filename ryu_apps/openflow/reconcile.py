"""Compare what a switch holds with what it should hold; the difference as a batch.

A (re)connecting switch is read (flow statistics by our cookie prefix, meter
configuration) and only the difference is sent: entries the plan wants and the switch
lacks or holds differently (full match, instructions, cookie, timeouts, flags) are added,
ours that no plan wants are deleted, meters are added, modified or deleted. Nothing
that already matches is touched, so media keeps flowing across a controller restart or
a reconnect (no wipe-and-reinstall).
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable, Mapping

from ..core.flowplan import Action, FlowEntry, Match, MeterEntry, SetField
from .batch import SwitchBatch
from .messages import FlowStat

FlowKey = tuple[int, int, Match]          # table, priority, canonical match


def canonical(match: Match) -> Match:
    """The match as a switch reports it, whatever order it was built or decoded in."""
    return tuple(sorted((name, _value(value)) for name, value in match))


def flow_key(entry: FlowEntry) -> FlowKey:
    return entry.table, entry.priority, canonical(entry.match)


def _value(value: int | str | tuple[int, int]) -> int | str | tuple[int, int]:
    if isinstance(value, str):
        text = value.lower()
        if ":" in text and "." not in text and len(text) != 17:      # IPv6 (a MAC has 17 characters)
            try:
                return ipaddress.IPv6Address(text).compressed
            except ValueError:
                return text
        return text
    return value


def _actions(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    return tuple(SetField(a.field, a.value.lower()) if isinstance(a, SetField) and isinstance(a.value, str) else a
                 for a in actions)


def same_flow(held: FlowEntry, wanted: FlowEntry) -> bool:
    """Everything but the order of match fields is the same (match, instructions, cookie,
    idle timeout, flow-removed flag)."""
    return (held.cookie == wanted.cookie and held.meter == wanted.meter and held.goto == wanted.goto
            and held.idle_timeout == wanted.idle_timeout and held.notify_removed == wanted.notify_removed
            and _actions(held.actions) == _actions(wanted.actions) and flow_key(held) == flow_key(wanted))


def same_meter(held: MeterEntry, wanted: MeterEntry) -> bool:
    return (held.meter_id, held.rate_kbps, held.burst_kbits) == (wanted.meter_id, wanted.rate_kbps,
                                                                  wanted.burst_kbits)


def reconcile(flows: Mapping[FlowKey, FlowEntry], meters: Mapping[int, MeterEntry], held_flows: Iterable[FlowStat],
              held_meters: Iterable[MeterEntry], keep: Callable[[FlowEntry], bool] = lambda entry: False
              ) -> SwitchBatch:
    """The messages that turn what the switch holds into ``flows`` + ``meters``.

    ``held_flows`` are the switch's flows with our cookie prefix; ``keep`` says which of
    them no plan lists but that may stay (soft state such as learned best-effort entries)."""
    held: dict[FlowKey, FlowEntry] = {}
    for stat in held_flows:
        held[flow_key(stat.entry)] = stat.entry
    flow_removes = tuple(entry for key, entry in held.items() if key not in flows and not keep(entry))
    flow_adds = tuple(entry for key, entry in flows.items() if key not in held or not same_flow(held[key], entry))
    held_by_id = {meter.meter_id: meter for meter in held_meters}
    meter_removes = tuple(meter for meter_id, meter in held_by_id.items() if meter_id not in meters)
    meter_adds = tuple(meter for meter_id, meter in meters.items() if meter_id not in held_by_id)
    meter_modifies = tuple(meter for meter_id, meter in meters.items()
                           if meter_id in held_by_id and not same_meter(held_by_id[meter_id], meter))
    return SwitchBatch(flow_removes=flow_removes, meter_removes=meter_removes, meter_adds=meter_adds,
                       meter_modifies=meter_modifies, flow_adds=flow_adds)
