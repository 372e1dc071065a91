"""Render the valve's messages (``messages.py``) into OpenFlow 1.3 message objects.

Takes the datapath's ``ofproto`` / ``ofproto_parser`` (ryu's or os-ken's) and returns
message objects with the valve's xid set; it sends nothing.
"""

from __future__ import annotations

from typing import Any

from ..core.flowplan import (Action, FlowEntry, Match, MeterEntry, Output, PopMpls, PopVlan, PushMpls, PushVlan,
                             SetField, SetQueue)
from . import messages as m

ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF
ROLES = {"nochange": "OFPCR_ROLE_NOCHANGE", "equal": "OFPCR_ROLE_EQUAL", "master": "OFPCR_ROLE_MASTER",
         "slave": "OFPCR_ROLE_SLAVE"}


def match(parser: Any, fields: Match) -> Any:
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


def meter_mod(datapath: Any, entry: MeterEntry, *, modify: bool = False) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    band = parser.OFPMeterBandDrop(rate=entry.rate_kbps, burst_size=entry.burst_kbits)
    return parser.OFPMeterMod(datapath, command=ofp.OFPMC_MODIFY if modify else ofp.OFPMC_ADD,
                              flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST, meter_id=entry.meter_id, bands=[band])


def meter_delete(datapath: Any, meter_id: int) -> Any:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPMeterMod(datapath, command=ofp.OFPMC_DELETE, flags=0, meter_id=meter_id)


def render(datapath: Any, message: m.Message) -> Any:
    """One valve message as the framework's message object (xid not yet set)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    if isinstance(message, m.FlowAdd):
        return flow_add(datapath, message.entry)
    if isinstance(message, m.FlowDelete):
        return flow_delete(datapath, message.entry)
    if isinstance(message, m.MeterAdd):
        return meter_mod(datapath, message.entry, modify=message.modify)
    if isinstance(message, m.MeterDelete):
        return meter_delete(datapath, message.meter_id)
    if isinstance(message, m.Barrier):
        return parser.OFPBarrierRequest(datapath)
    if isinstance(message, m.FlowStatsRequest):
        table = ofp.OFPTT_ALL if message.table is None else message.table
        return parser.OFPFlowStatsRequest(datapath, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY, message.cookie,
                                          message.cookie_mask, match(parser, message.match))
    if isinstance(message, m.MeterConfigRequest):
        return parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)
    if isinstance(message, m.PortDescRequest):
        return parser.OFPPortDescStatsRequest(datapath, 0)
    if isinstance(message, m.PacketOut):
        buffer_id = ofp.OFP_NO_BUFFER if message.buffer_id is None else message.buffer_id
        return parser.OFPPacketOut(datapath=datapath, buffer_id=buffer_id, in_port=message.in_port,
                                   actions=[parser.OFPActionOutput(port) for port in message.ports],
                                   data=message.data if message.buffer_id is None else None)
    if isinstance(message, m.RoleRequest):
        return parser.OFPRoleRequest(datapath, getattr(ofp, ROLES[message.role]), message.generation_id)
    raise TypeError(f"no OpenFlow rendering for {message!r}")


def render_with_xid(datapath: Any, message: m.Message, xid: int) -> Any:
    msg = render(datapath, message)
    msg.set_xid(xid)
    return msg
