"""A fake OpenFlow 1.3 network that real rendered messages are applied to.

It answers "where does this packet go, with which tags, DSCP, meters and queue?" by
running the packet through each switch's tables (priorities, masks, goto, meters,
set-queue, VLAN/MPLS push and pop, set-field) and following the configured links.
Messages are ryu's own OFPFlowMod / OFPMeterMod objects, as the app sends them.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_apps.core.network import Topology

ETH_IPV4, ETH_MPLS, VID_PRESENT = 0x0800, 0x8847, 0x1000
CONTROLLER = ofp.OFPP_CONTROLLER


@dataclass
class Packet:
    in_port: int = 0
    eth_src: str = "02:00:00:00:00:01"
    eth_dst: str = "02:00:00:00:00:02"
    eth_type: int = ETH_IPV4          # the payload's type below any VLAN / MPLS
    vlans: list[tuple[int, int]] = field(default_factory=list)   # (vid, pcp), outermost first
    labels: list[int] = field(default_factory=list)               # MPLS, top first
    ipv4_src: str = "10.0.0.1"
    ipv4_dst: str = "10.0.0.2"
    ip_proto: int = 17
    ip_dscp: int = 0
    udp_src: int = 4000
    udp_dst: int = 5000

    def field(self, name: str) -> Any:
        ip_visible = not self.labels and self.eth_type == ETH_IPV4
        if name == "in_port":
            return self.in_port
        if name == "eth_type":
            return ETH_MPLS if self.labels else self.eth_type
        if name == "vlan_vid":
            return (self.vlans[0][0] | VID_PRESENT) if self.vlans else 0
        if name == "vlan_pcp":
            return self.vlans[0][1] if self.vlans else None
        if name == "mpls_label":
            return self.labels[0] if self.labels else None
        if name in ("eth_src", "eth_dst"):
            return getattr(self, name)
        if not ip_visible:
            return None
        if name in ("ipv4_src", "ipv4_dst"):
            return int(ipaddress.ip_address(getattr(self, name)))
        if name in ("udp_src", "udp_dst") and self.ip_proto != 17:
            return None
        return getattr(self, name, None)


@dataclass
class Flow:
    table: int
    priority: int
    match: dict[str, Any]
    instructions: list[Any]
    cookie: int
    idle_timeout: int
    flags: int


@dataclass
class Hop:
    """What one switch did with the packet."""

    switch: str
    in_port: int
    out_ports: list[int]
    meters: list[int]
    queue: int | None
    packet: Packet
    dropped_by_meter: bool = False


class FakeDatapath:
    """Stands in for a connected datapath: ``send_msg`` applies the message."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, switch: "FakeSwitch", dpid: int) -> None:
        self.switch = switch
        self.id = dpid
        self._xid = 0
        self.barriers: list[int] = []
        self.sent: list[Any] = []

    def set_xid(self, msg: Any) -> None:
        self._xid += 1
        msg.set_xid(self._xid)

    def send_msg(self, msg: Any) -> None:
        if msg.xid is None:
            self.set_xid(msg)
        self.sent.append(msg)
        if isinstance(msg, parser.OFPBarrierRequest):
            self.barriers.append(msg.xid)
        else:
            self.switch.apply(msg)


class FakeSwitch:
    def __init__(self, name: str) -> None:
        self.name = name
        self.flows: list[Flow] = []
        self.meters: dict[int, tuple[int, int]] = {}   # id -> (rate kbps, burst)

    # --- messages -----------------------------------------------------------------

    def apply(self, msg: Any) -> None:
        if isinstance(msg, parser.OFPFlowMod):
            self._flow_mod(msg)
        elif isinstance(msg, parser.OFPMeterMod):
            self._meter_mod(msg)
        elif isinstance(msg, (parser.OFPPacketOut, parser.OFPPortDescStatsRequest)):
            pass
        else:
            raise AssertionError(f"fake switch cannot apply {type(msg).__name__}")

    def _flow_mod(self, msg: Any) -> None:
        match = dict(msg.match.items())
        if msg.command == ofp.OFPFC_ADD:
            for inst in msg.instructions:
                if isinstance(inst, parser.OFPInstructionMeter) and inst.meter_id not in self.meters:
                    raise AssertionError(f"{self.name}: flow uses meter {inst.meter_id} that does not exist")
            self.flows = [f for f in self.flows
                          if not (f.table == msg.table_id and f.priority == msg.priority and f.match == match)]
            self.flows.append(Flow(msg.table_id, msg.priority, match, list(msg.instructions), msg.cookie,
                                   msg.idle_timeout, msg.flags))
        elif msg.command == ofp.OFPFC_DELETE_STRICT:
            self.flows = [f for f in self.flows if not (
                f.table == msg.table_id and f.priority == msg.priority and f.match == match
                and (f.cookie & msg.cookie_mask) == (msg.cookie & msg.cookie_mask))]
        elif msg.command == ofp.OFPFC_DELETE:
            assert not match, "the fake supports only match-all deletes"
            self.flows = [f for f in self.flows if not (
                (msg.table_id in (ofp.OFPTT_ALL, f.table))
                and (f.cookie & msg.cookie_mask) == (msg.cookie & msg.cookie_mask))]
        else:
            raise AssertionError(f"unsupported flow-mod command {msg.command}")

    def _meter_mod(self, msg: Any) -> None:
        if msg.command == ofp.OFPMC_DELETE:
            ids = list(self.meters) if msg.meter_id == ofp.OFPM_ALL else [msg.meter_id]
            for meter_id in ids:
                self.meters.pop(meter_id, None)
                # OpenFlow: deleting a meter deletes the flows that use it.
                self.flows = [f for f in self.flows if meter_id not in _meters_of(f)]
            return
        assert msg.flags & ofp.OFPMF_KBPS, "meters are in kbit/s"
        band = msg.bands[0]
        if msg.command == ofp.OFPMC_ADD:
            assert msg.meter_id not in self.meters, f"{self.name}: meter {msg.meter_id} added twice"
        elif msg.command == ofp.OFPMC_MODIFY:
            assert msg.meter_id in self.meters, f"{self.name}: modify of missing meter {msg.meter_id}"
        self.meters[msg.meter_id] = (band.rate, band.burst_size)

    # --- forwarding ---------------------------------------------------------------

    def process(self, packet: Packet) -> Hop:
        packet = copy.deepcopy(packet)
        hop = Hop(self.name, packet.in_port, [], [], None, packet)
        table = 0
        while True:
            flow = self.lookup(table, packet)
            if flow is None:
                return hop   # table miss: dropped (OpenFlow 1.3 default)
            goto = None
            for inst in flow.instructions:
                if isinstance(inst, parser.OFPInstructionMeter):
                    hop.meters.append(inst.meter_id)
                elif isinstance(inst, parser.OFPInstructionActions):
                    for action in inst.actions:
                        self._act(action, packet, hop)
                elif isinstance(inst, parser.OFPInstructionGotoTable):
                    goto = inst.table_id
            if goto is None:
                return hop
            table = goto

    def lookup(self, table: int, packet: Packet) -> Flow | None:
        candidates = [f for f in self.flows if f.table == table and _matches(f.match, packet)]
        if not candidates:
            return None
        top = max(f.priority for f in candidates)
        best = [f for f in candidates if f.priority == top]
        assert len(best) == 1, f"{self.name}: {len(best)} overlapping flows at priority {top}"
        return best[0]

    def _act(self, action: Any, packet: Packet, hop: Hop) -> None:
        if isinstance(action, parser.OFPActionOutput):
            hop.out_ports.append(action.port)
            hop.packet = copy.deepcopy(packet)
        elif isinstance(action, parser.OFPActionSetQueue):
            hop.queue = action.queue_id
        elif isinstance(action, parser.OFPActionPushVlan):
            packet.vlans.insert(0, (0, 0))
        elif isinstance(action, parser.OFPActionPopVlan):
            assert packet.vlans, "pop_vlan on an untagged packet"
            packet.vlans.pop(0)
        elif isinstance(action, parser.OFPActionPushMpls):
            if not packet.labels:
                assert packet.eth_type == ETH_IPV4
            packet.labels.insert(0, 0)
        elif isinstance(action, parser.OFPActionPopMpls):
            assert packet.labels, "pop_mpls on a packet without a label"
            packet.labels.pop(0)
            if not packet.labels:
                packet.eth_type = action.ethertype
        elif isinstance(action, parser.OFPActionSetField):
            name, value = action.key, action.value
            if name == "vlan_vid":
                assert packet.vlans, "set vlan_vid without a VLAN tag"
                packet.vlans[0] = (value & 0xFFF, packet.vlans[0][1])
            elif name == "vlan_pcp":
                packet.vlans[0] = (packet.vlans[0][0], value)
            elif name == "mpls_label":
                assert packet.labels, "set mpls_label without a label"
                packet.labels[0] = value
            elif name == "ip_dscp":
                assert not packet.labels and packet.eth_type == ETH_IPV4, "set ip_dscp on a non-IP packet"
                packet.ip_dscp = value
            else:
                setattr(packet, name, value)
        else:
            raise AssertionError(f"fake switch cannot do {type(action).__name__}")


def _meters_of(flow: Flow) -> list[int]:
    return [i.meter_id for i in flow.instructions if isinstance(i, parser.OFPInstructionMeter)]


def _matches(match: dict[str, Any], packet: Packet) -> bool:
    for name, wanted in match.items():
        value = packet.field(name)
        if isinstance(wanted, tuple):
            wanted_value, mask = wanted
        else:
            wanted_value, mask = wanted, None
        if name in ("ipv4_src", "ipv4_dst") and isinstance(wanted_value, str):
            wanted_value = int(ipaddress.ip_address(wanted_value))
        if value is None:
            return False
        if mask is not None:
            if (value & mask) != (wanted_value & mask):
                return False
        elif value != wanted_value:
            return False
    return True


class FakeNetwork:
    """Fake switches wired as the topology says; ``trace`` follows a packet across them."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.switches = {s.name: FakeSwitch(s.name) for s in topology.switches}
        self.datapaths = {s.name: FakeDatapath(self.switches[s.name], s.dpid) for s in topology.switches}
        self._peer: dict[tuple[str, int], tuple[str, int]] = {}
        for link in topology.links:
            self._peer[(link.a, link.a_port)] = (link.b, link.b_port)
            self._peer[(link.b, link.b_port)] = (link.a, link.a_port)

    def trace(self, switch: str, packet: Packet, max_hops: int = 16) -> list[Hop]:
        hops = []
        queue = [(switch, packet)]
        while queue and len(hops) < max_hops:
            name, pkt = queue.pop(0)
            hop = self.switches[name].process(pkt)
            hops.append(hop)
            for port in hop.out_ports:
                peer = self._peer.get((name, port))
                if peer is not None:
                    forwarded = copy.deepcopy(hop.packet)
                    forwarded.in_port = peer[1]
                    queue.append((peer[0], forwarded))
        return hops

    def delivered(self, switch: str, packet: Packet) -> list[tuple[str, int, Packet]]:
        """Where the packet leaves the network (non-link ports, or the controller)."""
        result = []
        for hop in self.trace(switch, packet):
            for port in hop.out_ports:
                if (hop.switch, port) not in self._peer:
                    result.append((hop.switch, port, hop.packet))
        return result

    def flow_count(self, switch: str, cookie_kind: int | None = None) -> int:
        flows = self.switches[switch].flows
        if cookie_kind is None:
            return len(flows)
        return sum(1 for f in flows if (f.cookie >> 40) & 0xFF == cookie_kind)
