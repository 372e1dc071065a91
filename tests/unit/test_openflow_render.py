"""render.py and decode.py against the installed framework (ryu in .venv, os-ken in .venv-osken).

A plan entry rendered into the framework's flow-mod, serialized to wire bytes and parsed
back as a switch's flow statistics would be, decodes into the same entry: the reconcile
compares like with like.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ryu_apps import compat
from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import FlowEntry, MeterEntry
from ryu_apps.openflow import decode, events as ev, messages as m
from ryu_apps.openflow.reconcile import same_flow, same_meter
from ryu_apps.openflow.render import render_with_xid

from test_openflow_valve import CONFIG

ofp, parser = compat.ofproto_v1_3, compat.ofproto_v1_3_parser


def datapath() -> Any:
    return SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)


def plan_entries() -> list[FlowEntry]:
    manager = build_manager(parse_config({**CONFIG, "communities": [
        {**CONFIG["communities"][0], "terminals": [{"ip": "10.0.0.3", "port": 4, "mac": "02:AA:00:00:00:01"}]},
        *CONFIG["communities"][1:]]}))
    manager.admit(AdmissionRequest("c", "a", "b", MediaSpec("pcmu")), 0.0)
    manager.attach_media("c", MediaEndpoint("10.0.0.3", 4000), MediaEndpoint("10.0.0.2", 5000), 0.0)
    manager.admit(AdmissionRequest("v6", "a", "b", MediaSpec("pcmu")), 0.0)
    manager.attach_media("v6", MediaEndpoint("FD00:0:0::0001", 4002), MediaEndpoint("fd00::2", 5003), 0.0)
    return [e for e in manager.expected_plan() if isinstance(e, FlowEntry)]


def as_switch_reports(flow_mod: Any) -> Any:
    """The flow-mod's match and instructions through wire bytes, as a flow-stats entry."""
    buf = bytearray()
    length = flow_mod.match.serialize(buf, 0)
    match = parser.OFPMatch.parser(bytes(buf), 0)
    instructions = []
    for inst in flow_mod.instructions:
        raw = bytearray()
        inst.serialize(raw, 0)
        instructions.append(parser.OFPInstruction.parser(bytes(raw), 0))
    assert length > 0
    return SimpleNamespace(table_id=flow_mod.table_id, priority=flow_mod.priority, match=match,
                           instructions=instructions, cookie=flow_mod.cookie, idle_timeout=flow_mod.idle_timeout,
                           hard_timeout=0, flags=flow_mod.flags, packet_count=7)


@pytest.mark.osken
def test_every_planned_entry_survives_render_wire_and_decode() -> None:
    entries = plan_entries()
    assert any(e.meter is not None for e in entries) and any(e.goto is not None for e in entries)
    assert any(isinstance(v, tuple) for e in entries for _, v in e.match)          # a masked field (RTP + RTCP)
    assert any(name == "ipv6_src" for e in entries for name, _ in e.match)          # an IPv6 call
    for entry in entries:
        flow_mod = render_with_xid(datapath(), m.FlowAdd(entry), 42)
        assert flow_mod.xid == 42
        flow_mod.serialize()                                   # the framework accepts it
        decoded = decode.flow_entry(entry.switch, as_switch_reports(flow_mod), ofp)
        assert same_flow(decoded, entry), (decoded, entry)


@pytest.mark.osken
def test_flow_stats_and_meter_config_replies_decode_with_their_more_flag() -> None:
    entry = plan_entries()[0]
    stats = as_switch_reports(render_with_xid(datapath(), m.FlowAdd(entry), 1))
    reply = decode.flow_stats_reply(5, entry.switch, SimpleNamespace(datapath=datapath(), xid=9, body=[stats],
                                                                     flags=ofp.OFPMPF_REPLY_MORE))
    assert reply.conn == 5 and reply.xid == 9 and reply.more and reply.flows[0].packet_count == 7
    band = parser.OFPMeterBandDrop(rate=2000, burst_size=200)
    config = SimpleNamespace(meter_id=4, bands=[band], flags=ofp.OFPMF_KBPS)
    meters = decode.meter_config_reply(5, "s1", SimpleNamespace(datapath=datapath(), xid=3, body=[config], flags=0))
    assert not meters.more and same_meter(meters.meters[0], MeterEntry("s1", 4, 2000, 200))


@pytest.mark.osken
def test_every_message_renders() -> None:
    entry = plan_entries()[0]
    for message in (m.FlowAdd(entry), m.FlowDelete(entry), m.MeterAdd(MeterEntry("s1", 4, 100, 10)),
                    m.MeterAdd(MeterEntry("s1", 4, 100, 10), modify=True), m.MeterDelete(4), m.Barrier(),
                    m.FlowStatsRequest(1, 2), m.FlowStatsRequest(1, 2, 0, (("in_port", 1),)),
                    m.MeterConfigRequest(), m.PortDescRequest(), m.PacketOut(1, (2, 3), None, b"\x00" * 60),
                    m.PacketOut(1, (2,), 77), m.RoleRequest("master", 3)):
        msg = render_with_xid(datapath(), message, 1000)
        msg.serialize()
        assert msg.xid == 1000


@pytest.mark.osken
def test_packet_in_and_flow_removed_decode_into_plain_values() -> None:
    pkt = compat.packet.Packet()
    pkt.add_protocol(compat.ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", ethertype=0x0806))
    pkt.add_protocol(compat.arp.arp(src_mac="02:00:00:00:00:01", src_ip="10.0.0.1", dst_ip="10.0.0.2"))
    pkt.serialize()
    msg = SimpleNamespace(datapath=datapath(), match={"in_port": 3}, data=bytes(pkt.data),
                          buffer_id=ofp.OFP_NO_BUFFER)
    event = decode.packet_in(8, msg, compat)
    assert event is not None
    assert (event.in_port, event.eth_src, event.ip, event.ethertype, event.buffer_id) == (
        3, "02:00:00:00:00:01", "10.0.0.1", 0x0806, None)
    removed = SimpleNamespace(datapath=datapath(), cookie=5, table_id=0, priority=3000,
                              match=parser.OFPMatch(in_port=1, ipv4_src="10.0.0.1", eth_type=0x0800),
                              reason=ofp.OFPRR_IDLE_TIMEOUT, packet_count=0)
    flow_removed = decode.flow_removed(8, removed)
    assert flow_removed.reason is ev.RemovedReason.IDLE and ("ipv4_src", "10.0.0.1") in flow_removed.match
