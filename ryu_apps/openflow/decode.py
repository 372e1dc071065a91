"""Decode ryu's / os-ken's OpenFlow 1.3 message objects into the valve's plain values.

The counterpart of ``render.py``: the shell calls these on each framework event and hands
the result to the valve. Only attribute access on the messages and the datapath's
``ofproto`` constants; packet parsing uses the framework's packet library (``compat``).
"""

from __future__ import annotations

from typing import Any

from ..core.flowplan import (Action, FlowEntry, Match, MeterEntry, Output, PopMpls, PopVlan, PushMpls, PushVlan,
                             SetField, SetQueue)
from ..core.survey import PortInfo
from . import events as ev
from .messages import FlowStat


def match(ofp_match: Any) -> Match:
    return tuple((str(name), _plain(value)) for name, value in ofp_match.items())


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, bytes):
        return value.hex(":")
    return value


def action(ofp: Any, item: Any) -> Action:
    kind = type(item).__name__
    if kind == "OFPActionOutput":
        return Output(int(item.port))
    if kind == "OFPActionSetField":
        return SetField(str(item.key), _plain(item.value))
    if kind == "OFPActionPushVlan":
        return PushVlan(int(item.ethertype))
    if kind == "OFPActionPopVlan":
        return PopVlan()
    if kind == "OFPActionPushMpls":
        return PushMpls(int(item.ethertype))
    if kind == "OFPActionPopMpls":
        return PopMpls(int(item.ethertype))
    if kind == "OFPActionSetQueue":
        return SetQueue(int(item.queue_id))
    raise ValueError(f"an action the valve does not plan: {kind}")


def flow_entry(switch: str, stat: Any, ofp: Any) -> FlowEntry:
    """A flow-stats body entry as the plan would have written it."""
    meter: int | None = None
    goto: int | None = None
    actions: list[Action] = []
    for inst in stat.instructions:
        kind = type(inst).__name__
        if kind == "OFPInstructionMeter":
            meter = int(inst.meter_id)
        elif kind == "OFPInstructionActions":
            actions += [action(ofp, a) for a in inst.actions]
        elif kind == "OFPInstructionGotoTable":
            goto = int(inst.table_id)
    return FlowEntry(switch, int(stat.table_id), int(stat.priority), match(stat.match), tuple(actions),
                     int(stat.cookie), meter=meter, goto=goto, idle_timeout=int(stat.idle_timeout),
                     notify_removed=bool(stat.flags & ofp.OFPFF_SEND_FLOW_REM))


def flow_stats_reply(conn: int, switch: str, msg: Any) -> ev.FlowStatsReply:
    ofp = msg.datapath.ofproto
    flows = []
    for stat in msg.body:
        try:
            entry = flow_entry(switch, stat, ofp)
        except ValueError:          # not something we plan: compare it as an entry with no actions
            entry = FlowEntry(switch, int(stat.table_id), int(stat.priority), match(stat.match), (),
                              int(stat.cookie), idle_timeout=int(stat.idle_timeout))
        flows.append(FlowStat(entry, int(stat.packet_count), int(stat.hard_timeout)))
    return ev.FlowStatsReply(conn, int(msg.xid), tuple(flows), bool(msg.flags & ofp.OFPMPF_REPLY_MORE))


def meter_config_reply(conn: int, switch: str, msg: Any) -> ev.MeterConfigReply:
    ofp = msg.datapath.ofproto
    meters = []
    for config in msg.body:
        band = config.bands[0] if config.bands else None
        meters.append(MeterEntry(switch, int(config.meter_id), int(band.rate) if band else 0,
                                 int(band.burst_size) if band else 0))
    return ev.MeterConfigReply(conn, int(msg.xid), tuple(meters), bool(msg.flags & ofp.OFPMPF_REPLY_MORE))


def port_info(ofp: Any, port: Any) -> PortInfo:
    """OpenFlow 1.3 reports speeds in kbit/s (0: not reported)."""
    live = not (port.config & ofp.OFPPC_PORT_DOWN) and not (port.state & ofp.OFPPS_LINK_DOWN)
    return PortInfo(_text(port.name), int(port.curr_speed or 0), live)


def ports_described(conn: int, msg: Any) -> ev.PortsDescribed:
    ofp = msg.datapath.ofproto
    return ev.PortsDescribed(conn, {int(p.port_no): port_info(ofp, p) for p in msg.body if p.port_no < ofp.OFPP_MAX})


def port_changed(conn: int, msg: Any) -> ev.PortChanged | None:
    ofp = msg.datapath.ofproto
    if msg.desc.port_no >= ofp.OFPP_MAX:
        return None
    info = None if msg.reason == ofp.OFPPR_DELETE else port_info(ofp, msg.desc)
    return ev.PortChanged(conn, int(msg.desc.port_no), info, added=msg.reason in (ofp.OFPPR_ADD, ofp.OFPPR_MODIFY))


def flow_removed(conn: int, msg: Any) -> ev.FlowRemoved:
    ofp = msg.datapath.ofproto
    reason = {ofp.OFPRR_IDLE_TIMEOUT: ev.RemovedReason.IDLE, ofp.OFPRR_HARD_TIMEOUT: ev.RemovedReason.HARD,
              ofp.OFPRR_DELETE: ev.RemovedReason.DELETE}.get(msg.reason, ev.RemovedReason.OTHER)
    return ev.FlowRemoved(conn, int(msg.cookie), int(msg.table_id), int(msg.priority), match(msg.match), reason,
                          int(msg.packet_count))


def packet_in(conn: int, msg: Any, packet_lib: Any) -> ev.PacketIn | None:
    """``packet_lib``: an object with the framework's packet, ethernet, arp and ipv4 modules (``compat``)."""
    ofp = msg.datapath.ofproto
    pkt = packet_lib.packet.Packet(msg.data)
    eth = pkt.get_protocol(packet_lib.ethernet.ethernet)
    if eth is None:
        return None
    ip = None
    arp = pkt.get_protocol(packet_lib.arp.arp)
    if arp is not None:
        ip = arp.src_ip
    else:
        ipv4 = pkt.get_protocol(packet_lib.ipv4.ipv4)
        if ipv4 is not None:
            ip = ipv4.src
    buffer_id = None if msg.buffer_id == ofp.OFP_NO_BUFFER else int(msg.buffer_id)
    return ev.PacketIn(conn, int(msg.match["in_port"]), str(eth.src), str(eth.dst), int(eth.ethertype), ip,
                       buffer_id, bytes(msg.data) if buffer_id is None else b"")


def _text(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, (bytes, bytearray)) else str(name)
