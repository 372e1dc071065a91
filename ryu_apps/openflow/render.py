"""Render the core's plan entries into OpenFlow 1.3 messages for one datapath.

Pure apart from the message classes: takes the datapath's ``ofproto`` / ``ofproto_parser``
(ryu's or os-ken's) and returns message objects; it sends nothing.
"""

from __future__ import annotations

from typing import Any

from ..core.flowplan import (COOKIE_PREFIX, COOKIE_PREFIX_MASK, Action, FlowEntry, MeterEntry, Output, PopMpls,
                             PopVlan, PushMpls, PushVlan, SetField, SetQueue)

ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF


def match(parser: Any, fields) -> Any:
    return parser.OFPMatch(**dict(fields))


def action(ofp: Any, parser: Any, item: Action) -> Any:
    if isinstance(item, Output):
        return parser.OFPActionOutput(item.port, ofp.OFPCML_NO_BUFFER)
    if isinstance(item, SetField):
        return parser.OFPActionSetField(**{item.field: item.value})
    if isinstance(item, PushVlan):
        return parser.OFPActionPushVlan(item.ethertype)
    if isinstance(item, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(item, PushMpls):
        return parser.OFPActionPushMpls(item.ethertype)
    if isinstance(item, PopMpls):
        return parser.OFPActionPopMpls(item.ethertype)
    if isinstance(item, SetQueue):
        return parser.OFPActionSetQueue(item.queue_id)
    raise TypeError(f"no OpenFlow rendering for {item!r}")


def instructions(ofp: Any, parser: Any, entry: FlowEntry) -> list[Any]:
    result: list[Any] = []
    if entry.meter is not None:
        result.append(parser.OFPInstructionMeter(entry.meter, ofp.OFPIT_METER))
    if entry.actions:
        result.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                   [action(ofp, parser, a) for a in entry.actions]))
    if entry.goto is not None:
        result.append(parser.OFPInstructionGotoTable(entry.goto))
    return result


def flow_add(datapath: Any, entry: FlowEntry) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    flags = ofp.OFPFF_SEND_FLOW_REM if entry.notify_removed else 0
    return parser.OFPFlowMod(
        datapath=datapath, cookie=entry.cookie, table_id=entry.table, command=ofp.OFPFC_ADD,
        idle_timeout=entry.idle_timeout, hard_timeout=0, priority=entry.priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=flags,
        match=match(parser, entry.match), instructions=instructions(ofp, parser, entry))


def flow_delete(datapath: Any, entry: FlowEntry) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath=datapath, cookie=entry.cookie, cookie_mask=ALL_ONES_64, table_id=entry.table,
        command=ofp.OFPFC_DELETE_STRICT, priority=entry.priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match(parser, entry.match))


def meter_mod(datapath: Any, entry: MeterEntry, *, add: bool = True, modify: bool = False) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    if not add:
        return parser.OFPMeterMod(datapath, command=ofp.OFPMC_DELETE, flags=0, meter_id=entry.meter_id)
    band = parser.OFPMeterBandDrop(rate=entry.rate_kbps, burst_size=entry.burst_kbits)
    return parser.OFPMeterMod(datapath, command=ofp.OFPMC_MODIFY if modify else ofp.OFPMC_ADD,
                              flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST, meter_id=entry.meter_id, bands=[band])


def delete_ours(datapath: Any) -> list[Any]:
    """Remove every flow carrying our cookie prefix and every meter: the clean slate a
    (re)connecting switch gets before its expected state."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return [
        parser.OFPFlowMod(datapath=datapath, cookie=COOKIE_PREFIX, cookie_mask=COOKIE_PREFIX_MASK,
                          table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE, buffer_id=ofp.OFP_NO_BUFFER,
                          out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch()),
        parser.OFPMeterMod(datapath, command=ofp.OFPMC_DELETE, flags=0, meter_id=ofp.OFPM_ALL),
    ]
