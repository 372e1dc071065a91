"""A fake OpenFlow 1.3 network that the valve's messages (as data) are applied to.

It answers "where does this packet go, with which tags, DSCP, meters and queue?" by
running the packet through each switch's tables (priorities, masks, goto, meters,
set-queue, VLAN/MPLS push and pop, set-field) and following the configured links. It
speaks the protocol back: barrier replies, flow and meter statistics, port descriptions,
errors for messages a test makes a switch refuse, flow-removed when a flow idles out.
No framework: it runs under ryu's and os-ken's venvs alike. (FAUCET's fakeoftable
skips meters; this one adds, modifies, deletes and applies them, and deleting a meter
deletes the flows that use it, as OpenFlow says.)
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from ryu_apps.core.flowplan import (FlowEntry, MeterEntry, Output, PopMpls, PopVlan, PushMpls, PushVlan, SetField,
                                    SetQueue)
from ryu_apps.core.network import Topology
from ryu_apps.core.survey import PortInfo
from ryu_apps.openflow import events as ev
from ryu_apps.openflow import messages as m
from ryu_apps.openflow.actions import Send
from ryu_apps.openflow.reconcile import canonical

ETH_IPV4, ETH_MPLS, VID_PRESENT = 0x0800, 0x8847, 0x1000
CONTROLLER = 0xFFFFFFFD


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
    entry: FlowEntry
    packets: int = 0

    @property
    def key(self) -> tuple[int, int, Any]:
        return self.entry.table, self.entry.priority, canonical(self.entry.match)


@dataclass
class Hop:
    """What one switch did with the packet."""

    switch: str
    in_port: int
    out_ports: list[int]
    meters: list[int]
    queue: int | None
    packet: Packet


class FakeSwitch:
    def __init__(self, name: str, dpid: int, ports: dict[int, PortInfo]) -> None:
        self.name = name
        self.dpid = dpid
        self.ports = ports
        self.flows: dict[tuple[int, int, Any], Flow] = {}
        self.meters: dict[int, MeterEntry] = {}
        self.conn: int | None = None
        #: a test makes the switch refuse messages: message -> (type, code) or None
        self.refuse: Callable[[m.Message], tuple[int, int] | None] = lambda message: None
        self.packet_outs: list[m.PacketOut] = []
        self.received: list[m.Message] = []

    # --- messages -----------------------------------------------------------------

    def apply(self, send: Send) -> list[ev.Event]:
        """Apply one message; the events the switch sends back."""
        message, conn = send.message, send.conn
        self.received.append(message)
        refused = self.refuse(message)
        if refused is not None:
            return [ev.ErrorReply(conn, send.xid, *refused)]
        if isinstance(message, m.FlowAdd):
            entry = message.entry
            if entry.meter is not None and entry.meter not in self.meters:
                return [ev.ErrorReply(conn, send.xid, 12, 1)]        # meter-mod failed: unknown meter
            flow = Flow(entry)
            self.flows[flow.key] = flow
        elif isinstance(message, m.FlowDelete):
            flow = Flow(message.entry)
            held = self.flows.get(flow.key)
            if held is not None and held.entry.cookie == message.entry.cookie:
                del self.flows[flow.key]
        elif isinstance(message, m.MeterAdd):
            meter_id = message.entry.meter_id
            if message.modify and meter_id not in self.meters:
                return [ev.ErrorReply(conn, send.xid, 12, 7)]        # unknown meter
            if not message.modify and meter_id in self.meters:
                return [ev.ErrorReply(conn, send.xid, 12, 0)]        # meter exists
            self.meters[meter_id] = message.entry
        elif isinstance(message, m.MeterDelete):
            self.meters.pop(message.meter_id, None)
            # OpenFlow: deleting a meter deletes the flows that use it.
            self.flows = {k: f for k, f in self.flows.items() if f.entry.meter != message.meter_id}
        elif isinstance(message, m.Barrier):
            return [ev.BarrierReply(conn, send.xid)]
        elif isinstance(message, m.FlowStatsRequest):
            return [ev.FlowStatsReply(conn, send.xid, tuple(
                m.FlowStat(f.entry, f.packets) for f in self.flows.values() if _selected(f.entry, message)))]
        elif isinstance(message, m.MeterConfigRequest):
            return [ev.MeterConfigReply(conn, send.xid, tuple(self.meters.values()))]
        elif isinstance(message, m.PortDescRequest):
            return [ev.PortsDescribed(conn, dict(self.ports))]
        elif isinstance(message, m.PacketOut):
            self.packet_outs.append(message)
        else:
            raise AssertionError(f"fake switch cannot apply {message!r}")
        return []

    def idle_out(self, key: tuple[int, int, Any]) -> list[ev.Event]:
        """The flow idles out: removed, and a flow-removed if it asked for one."""
        flow = self.flows.pop(key)
        if not flow.entry.notify_removed or self.conn is None:
            return []
        entry = flow.entry
        return [ev.FlowRemoved(self.conn, entry.cookie, entry.table, entry.priority, entry.match,
                               ev.RemovedReason.IDLE, flow.packets)]

    # --- forwarding ---------------------------------------------------------------

    def process(self, packet: Packet) -> Hop:
        packet = copy.deepcopy(packet)
        hop = Hop(self.name, packet.in_port, [], [], None, packet)
        table = 0
        while True:
            flow = self.lookup(table, packet)
            if flow is None:
                return hop   # table miss: dropped (OpenFlow 1.3 default)
            flow.packets += 1
            entry = flow.entry
            if entry.meter is not None:
                assert entry.meter in self.meters, f"{self.name}: flow uses meter {entry.meter} that does not exist"
                hop.meters.append(entry.meter)
            for action in entry.actions:
                self._act(action, packet, hop)
            if entry.goto is None:
                return hop
            table = entry.goto

    def lookup(self, table: int, packet: Packet) -> Flow | None:
        candidates = [f for f in self.flows.values() if f.entry.table == table and _matches(f.entry.match, packet)]
        if not candidates:
            return None
        top = max(f.entry.priority for f in candidates)
        best = [f for f in candidates if f.entry.priority == top]
        assert len(best) == 1, f"{self.name}: {len(best)} overlapping flows at priority {top}"
        return best[0]

    def _act(self, action: Any, packet: Packet, hop: Hop) -> None:
        if isinstance(action, Output):
            hop.out_ports.append(action.port)
            hop.packet = copy.deepcopy(packet)
        elif isinstance(action, SetQueue):
            hop.queue = action.queue_id
        elif isinstance(action, PushVlan):
            packet.vlans.insert(0, (0, 0))
        elif isinstance(action, PopVlan):
            assert packet.vlans, "pop_vlan on an untagged packet"
            packet.vlans.pop(0)
        elif isinstance(action, PushMpls):
            if not packet.labels:
                assert packet.eth_type == ETH_IPV4
            packet.labels.insert(0, 0)
        elif isinstance(action, PopMpls):
            assert packet.labels, "pop_mpls on a packet without a label"
            packet.labels.pop(0)
            if not packet.labels:
                packet.eth_type = action.ethertype
        elif isinstance(action, SetField):
            name, value = action.field, action.value
            if name == "vlan_vid":
                assert packet.vlans, "set vlan_vid without a VLAN tag"
                packet.vlans[0] = (int(value) & 0xFFF, packet.vlans[0][1])
            elif name == "vlan_pcp":
                packet.vlans[0] = (packet.vlans[0][0], int(value))
            elif name == "mpls_label":
                assert packet.labels, "set mpls_label without a label"
                packet.labels[0] = int(value)
            elif name == "ip_dscp":
                assert not packet.labels and packet.eth_type == ETH_IPV4, "set ip_dscp on a non-IP packet"
                packet.ip_dscp = int(value)
            else:
                setattr(packet, name, value)
        else:
            raise AssertionError(f"fake switch cannot do {action!r}")

    # --- what it holds, comparable with a plan -------------------------------------

    def entries(self) -> set[FlowEntry]:
        return {f.entry for f in self.flows.values()}


def _selected(entry: FlowEntry, request: m.FlowStatsRequest) -> bool:
    if request.table is not None and entry.table != request.table:
        return False
    if entry.cookie & request.cookie_mask != request.cookie & request.cookie_mask:
        return False
    held = dict(canonical(entry.match))
    return all(held.get(name) == value for name, value in canonical(request.match))


def _matches(match: Any, packet: Packet) -> bool:
    for name, wanted in match:
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
    """Fake switches wired as the topology says; ``trace`` follows a packet across them.

    Messages the valve sends go through :meth:`transmit` (the shell's ``transmit``); what
    the switches answer waits in :attr:`inbox` until the test delivers it, in order or not.
    """

    def __init__(self, topology: Topology, extra_ports: int = 4) -> None:
        self.topology = topology
        self.switches: dict[str, FakeSwitch] = {}
        for switch in topology.switches:
            ports = {p: PortInfo(f"{switch.name}-eth{p}") for p in range(1, extra_ports + 1)}
            for link in topology.links:
                for end, port in ((link.a, link.a_port), (link.b, link.b_port)):
                    if end == switch.name:
                        ports[port] = PortInfo(f"{switch.name}-eth{port}")
            for community in topology.communities:
                if community.edge == switch.name:
                    for port in community.access_ports:
                        ports[port] = PortInfo(f"{switch.name}-eth{port}")
            self.switches[switch.name] = FakeSwitch(switch.name, switch.dpid, ports)
        self._by_conn: dict[int, FakeSwitch] = {}
        self._next_conn = 100
        self.inbox: list[ev.Event] = []
        self._peer: dict[tuple[str, int], tuple[str, int]] = {}
        for link in topology.links:
            self._peer[(link.a, link.a_port)] = (link.b, link.b_port)
            self._peer[(link.b, link.b_port)] = (link.a, link.a_port)

    # --- the control channel ---------------------------------------------------------

    def connect(self, name: str) -> ev.SwitchConnected:
        switch = self.switches[name]
        if switch.conn is not None:
            self._by_conn.pop(switch.conn, None)
        self._next_conn += 1
        switch.conn = self._next_conn
        self._by_conn[switch.conn] = switch
        return ev.SwitchConnected(switch.conn, switch.dpid)

    def disconnect(self, name: str) -> ev.SwitchGone:
        switch = self.switches[name]
        assert switch.conn is not None
        conn = switch.conn
        self._by_conn.pop(conn, None)
        switch.conn = None
        self.inbox = [e for e in self.inbox if getattr(e, "conn", None) != conn]   # lost with the connection
        return ev.SwitchGone(conn)

    def transmit(self, send: Send) -> bool:
        switch = self._by_conn.get(send.conn)
        if switch is None:
            return False
        self.inbox.extend(switch.apply(send))
        return True

    # --- the data plane ------------------------------------------------------------------

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
        flows = self.switches[switch].flows.values()
        if cookie_kind is None:
            return len(flows)
        return sum(1 for f in flows if (f.entry.cookie >> 40) & 0xFF == cookie_kind)
