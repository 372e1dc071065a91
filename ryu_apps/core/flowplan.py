"""Flow plans as data: the meters, per-port classes and flow entries each switch must hold.

The core says *what* each switch holds; the OpenFlow shell only renders and sends.

Table 0 (``CLASSIFY``) holds everything the media aggregation manager owns:

* ingress edge, per call and direction: match the call's media (in_port, IPv4 source
  and destination, UDP destination port), mark the aggregate's DSCP, push the per-call
  tag (MPLS label) and the aggregate tag (VLAN VID, PCP), meter, output toward the core;
* core, per aggregate and direction: match in_port + VLAN VID, output. Never per call;
* egress edge, per call and direction: match in_port + VID + MPLS label, pop both,
  rewrite the destination MAC when the terminal's is configured, output to the terminal;
* guards: tagged frames nobody planned are dropped; packets from access ports already
  marked with a reserved DSCP are re-marked best effort (anti-theft);
* table-miss: go to table 1 (``FORWARD``), the best-effort forwarding the shell owns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from .aggregate import Aggregate
from .calls import Call
from .network import Community, Topology, parse_address

CLASSIFY = 0
FORWARD = 1

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_MPLS = 0x8847
IPPROTO_UDP = 17
VID_PRESENT = 0x1000
VID_NONE = 0x0000

PRIORITY_CALL = 3000
PRIORITY_TRANSIT = 2000
PRIORITY_TAG_GUARD = 1500
PRIORITY_DSCP_GUARD = 1000
PRIORITY_MISS = 0

#: Every cookie we set starts with "MA"; the shell deletes flows carrying it that no plan wants.
COOKIE_PREFIX = 0x4D41 << 48
COOKIE_PREFIX_MASK = 0xFFFF << 48


class CookieKind(enum.IntEnum):
    BASE = 1
    AGGREGATE = 2
    CALL = 3


def cookie(kind: CookieKind, number: int) -> int:
    return COOKIE_PREFIX | (int(kind) << 40) | (number & 0xFF_FFFF_FFFF)


def parse_cookie(value: int) -> tuple[CookieKind, int] | None:
    if value & COOKIE_PREFIX_MASK != COOKIE_PREFIX:
        return None
    try:
        kind = CookieKind((value >> 40) & 0xFF)
    except ValueError:
        return None
    return kind, value & 0xFF_FFFF_FFFF


# --- actions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    port: int


@dataclass(frozen=True)
class SetField:
    field: str
    value: int | str


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = ETH_VLAN


@dataclass(frozen=True)
class PopVlan:
    pass


@dataclass(frozen=True)
class PushMpls:
    ethertype: int = ETH_MPLS


@dataclass(frozen=True)
class PopMpls:
    ethertype: int = ETH_IPV4


@dataclass(frozen=True)
class SetQueue:
    queue_id: int


Action = Output | SetField | PushVlan | PopVlan | PushMpls | PopMpls | SetQueue
Match = tuple[tuple[str, "int | str | tuple[int, int]"], ...]


# --- entries -------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowEntry:
    """One OpenFlow 1.3 flow. Empty ``actions`` and no ``goto`` means drop."""

    switch: str
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    meter: int | None = None
    goto: int | None = None
    idle_timeout: int = 0
    notify_removed: bool = False

    @property
    def key(self) -> tuple[str, int, int, Match]:
        """What identifies the flow in the switch (OpenFlow strict match)."""
        return self.switch, self.table, self.priority, self.match


@dataclass(frozen=True)
class MeterEntry:
    switch: str
    meter_id: int
    rate_kbps: int
    burst_kbits: int


@dataclass(frozen=True)
class PortClass:
    """A guaranteed class on a switch's egress port for reserved traffic.

    Rendered as an OVSDB linux-htb queue (``queue_id``, min-rate) where ``set_queue`` is
    honoured, or as an HTB class selected by DSCP / VLAN PCP on the userspace datapath.
    """

    switch: str
    port: int
    queue_id: int
    min_kbps: int
    capacity_kbps: int
    dscps: tuple[int, ...]
    pcp: int


Entry = FlowEntry | MeterEntry | PortClass


@dataclass(frozen=True)
class PlanDiff:
    add: tuple[Entry, ...] = ()
    remove: tuple[Entry, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)

    def __add__(self, other: "PlanDiff") -> "PlanDiff":
        """This change, then ``other``, as one change (removes are applied before adds).
        An entry added here and removed there never reaches a switch."""
        added, removed = set(self.add), set(other.remove)
        return PlanDiff(tuple(e for e in self.add if e not in removed) + other.add,
                        self.remove + tuple(e for e in other.remove if e not in added))

    @staticmethod
    def chain(parts: Iterable["PlanDiff"]) -> "PlanDiff":
        """``parts[0] + parts[1] + ...`` in one pass (adding them pairwise costs the square
        of what accumulates): the same entries in the same order."""
        adds: list[Entry | None] = []
        where: dict[Entry, list[int]] = {}       # entry -> its positions in adds
        removes: list[Entry] = []
        for part in parts:
            cancelled: set[Entry] = set()
            for entry in part.remove:
                if entry in cancelled:
                    continue
                positions = where.pop(entry, None)
                if positions is None:
                    removes.append(entry)
                else:                            # added before, removed now: neither reaches a switch
                    for position in positions:
                        adds[position] = None
                    cancelled.add(entry)
            for entry in part.add:
                where.setdefault(entry, []).append(len(adds))
                adds.append(entry)
        return PlanDiff(tuple(e for e in adds if e is not None), tuple(removes))

    def for_switch(self, switch: str) -> "PlanDiff":
        return PlanDiff(tuple(e for e in self.add if e.switch == switch),
                        tuple(e for e in self.remove if e.switch == switch))


def diff(old: Iterable[Entry], new: Iterable[Entry]) -> PlanDiff:
    before = old if isinstance(old, (set, frozenset)) else set(old)
    after = new if isinstance(new, (set, frozenset)) else set(new)
    return PlanDiff(tuple(sorted(after - before, key=_order)), tuple(sorted(before - after, key=_order)))


def _order(entry: Entry) -> tuple[int, str, int, int, str, int]:
    """Classes first of all, meters before the flows that use them; then by switch and a
    total order of what identifies the entry (deterministic whatever the hash seed).
    Built from numbers and the match's plain repr: the dataclasses' own repr (the key this
    replaced) took half the time of a call's diff."""
    if type(entry) is FlowEntry:
        return 2, entry.switch, entry.table, entry.priority, repr(entry.match), entry.cookie
    if type(entry) is MeterEntry:
        return 1, entry.switch, entry.meter_id, entry.rate_kbps, "", entry.burst_kbits
    assert isinstance(entry, PortClass)
    return 0, entry.switch, entry.port, entry.queue_id, repr(entry.dscps), entry.min_kbps


@dataclass(frozen=True)
class PlanOptions:
    """How plans are drawn; set from configuration."""

    pcp: int = 5
    use_set_queue: bool = False
    queue_id: int = 1
    call_idle_timeout_s: int = 60
    meter_burst_ms: int = 100
    #: How a call's RTCP (RTP port + 1) is classified at the ingress edge: "masked" matches an
    #: even RTP port and the next one with one entry (udp_dst/0xfffe: Open vSwitch accepts the
    #: mask; OpenFlow 1.3 does not oblige a switch to), "exact" adds an entry for RTCP, "off"
    #: leaves RTCP to best effort.
    rtcp_match: str = "masked"
    #: False in a process that admits calls with no switch to tell (the standalone SIP proxy,
    #: its workers' owner, the standalone gatekeeper and gateway): calls' flows are not drawn,
    #: which is half of what an admission costs there (aggregates' entries still are).
    call_flows: bool = True


# --- builders ------------------------------------------------------------------------

def meter_id(aggregate: Aggregate, direction: int) -> int:
    """Meter of an aggregate at the ingress edge of ``direction`` (0: a->b, 1: b->a)."""
    return aggregate.tag * 2 + direction


def base_entries(topology: Topology, reserved_dscps: Iterable[int]) -> set[Entry]:
    """Per switch: table-miss to best effort, drop of unplanned tags, DSCP anti-theft."""
    entries: set[Entry] = set()
    base = cookie(CookieKind.BASE, 0)
    dscps = sorted(set(reserved_dscps))
    for switch in topology.switches:
        name = switch.name
        entries.add(FlowEntry(name, CLASSIFY, PRIORITY_MISS, (), (), base, goto=FORWARD))
        entries.add(FlowEntry(name, CLASSIFY, PRIORITY_TAG_GUARD,
                              (("vlan_vid", (VID_PRESENT, VID_PRESENT)),), (), base))
        entries.add(FlowEntry(name, CLASSIFY, PRIORITY_TAG_GUARD, (("eth_type", ETH_MPLS),), (), base))
    for community in topology.communities:
        for port in community.access_ports:
            for dscp in dscps:
                for eth_type in (ETH_IPV4, ETH_IPV6):
                    entries.add(FlowEntry(
                        community.edge, CLASSIFY, PRIORITY_DSCP_GUARD,
                        (("in_port", port), ("eth_type", eth_type), ("ip_dscp", dscp)),
                        (SetField("ip_dscp", 0),), base, goto=FORWARD))
    return entries


def aggregate_entries(aggregate: Aggregate, topology: Topology, options: PlanOptions) -> set[Entry]:
    """Ingress meters at both edges and transit flows at every core switch of the path."""
    entries: set[Entry] = set()
    agg_cookie = cookie(CookieKind.AGGREGATE, aggregate.tag)
    burst = max(aggregate.size_kbps * options.meter_burst_ms // 1000, 64)
    for direction, path in enumerate((aggregate.path, aggregate.path[::-1])):
        entries.add(MeterEntry(path[0], meter_id(aggregate, direction), aggregate.size_kbps, burst))
        for previous, here, following in zip(path, path[1:], path[2:]):
            actions: tuple[Action, ...] = (Output(topology.out_port(here, following)),)
            if options.use_set_queue:
                actions = (SetQueue(options.queue_id),) + actions
            entries.add(FlowEntry(
                here, CLASSIFY, PRIORITY_TRANSIT,
                (("in_port", topology.out_port(here, previous)), ("vlan_vid", VID_PRESENT | aggregate.tag)),
                actions, agg_cookie))
    return entries


def port_classes(aggregates: Iterable[Aggregate], topology: Topology, options: PlanOptions) -> set[Entry]:
    """One guaranteed class per egress port that aggregates cross, sized to their sum."""
    reserved: dict[tuple[str, str], int] = {}
    dscps: dict[tuple[str, str], set[int]] = {}
    for aggregate in aggregates:
        for hop in aggregate.hops():
            reserved[hop] = reserved.get(hop, 0) + aggregate.size_kbps
            dscps.setdefault(hop, set()).add(aggregate.dscp)
    return {
        PortClass(a, topology.out_port(a, b), options.queue_id, kbps, topology.link(a, b).capacity_kbps,
                  tuple(sorted(dscps[(a, b)])), options.pcp)
        for (a, b), kbps in reserved.items() if kbps > 0
    }


def port_class(hop: tuple[str, str], aggregates: Iterable[Aggregate], topology: Topology,
               options: PlanOptions) -> PortClass | None:
    """The class of one egress port (``hop``) for the aggregates that cross it (what
    :func:`port_classes` draws for that port), or None when they reserve nothing."""
    kbps, dscps = 0, set()
    for aggregate in aggregates:
        kbps += aggregate.size_kbps
        dscps.add(aggregate.dscp)
    if kbps <= 0:
        return None
    a, b = hop
    link = topology.link(a, b)
    return PortClass(a, link.port_on(a), options.queue_id, kbps, link.capacity_kbps, tuple(sorted(dscps)),
                     options.pcp)


def call_entries(call: Call, aggregate: Aggregate, topology: Topology, options: PlanOptions,
                 locations: Mapping[tuple[str, str], int] | None = None) -> set[Entry]:
    """The flows of one call with attached media: ingress and egress, both directions."""
    if call.caller_media is None or call.callee_media is None:
        return set()
    locations = locations or {}
    caller_side = 0 if aggregate.communities[0] == call.caller_community else 1
    forward = aggregate.path if caller_side == 0 else aggregate.path[::-1]
    legs = (
        # (path, direction, source community, source media, destination community, destination media, tag)
        (forward, caller_side, call.caller_community, call.caller_media,
         call.callee_community, call.callee_media, call.tag_to_callee),
        (forward[::-1], 1 - caller_side, call.callee_community, call.callee_media,
         call.caller_community, call.caller_media, call.tag_to_caller),
    )
    entries: set[Entry] = set()
    call_cookie = cookie(CookieKind.CALL, call.serial)
    for path, direction, src_name, src, dst_name, dst, tag in legs:
        src_community = topology.community(src_name)
        dst_community = topology.community(dst_name)
        src_port = _terminal_port(src_community, src.ip) or locations.get((src_name, src.ip))
        dst_ports = _delivery_ports(dst_community, dst.ip, locations)
        # A configured terminal MAC is written into the frame: with overlapping prefixes the
        # sender's ARP may have resolved the address to another community's terminal.
        deliver = _rewrite_mac(dst_community, dst.ip) + tuple(_output(p) for p in dst_ports)
        mark = _set_field("ip_dscp", aggregate.dscp)
        queue: tuple[Action, ...] = (_queue(options.queue_id),) if options.use_set_queue else ()
        ipv6 = ":" in src.ip
        eth_type = ETH_IPV6 if ipv6 else ETH_IPV4
        addresses = (("ipv6_src", src.ip), ("ipv6_dst", dst.ip)) if ipv6 else (("ipv4_src", src.ip),
                                                                              ("ipv4_dst", dst.ip))
        if len(path) == 1:  # both communities behind one edge switch: no tags needed
            actions: tuple[Action, ...] = (mark,) + queue + deliver
        else:
            actions = (mark, PUSH_MPLS, SetField("mpls_label", tag), PUSH_VLAN,
                       _set_field("vlan_vid", VID_PRESENT | aggregate.tag), _set_field("vlan_pcp", options.pcp)
                       ) + queue + (_output(topology.out_port(path[0], path[1])),)
            entries.add(FlowEntry(
                path[-1], CLASSIFY, PRIORITY_CALL,
                (("in_port", topology.out_port(path[-1], path[-2])), ("vlan_vid", VID_PRESENT | aggregate.tag),
                 ("eth_type", ETH_MPLS), ("mpls_label", tag)),
                (POP_VLAN, _pop_mpls(eth_type)) + deliver, call_cookie))
        for udp_dst in media_ports(dst.port, options.rtcp_match):
            # vlan_vid 0: untagged only, so a terminal cannot smuggle a forged tag in under a call's match.
            match: Match = ((("in_port", src_port),) if src_port is not None else ()) + (
                ("vlan_vid", VID_NONE), ("eth_type", eth_type), ("ip_proto", IPPROTO_UDP)) + addresses + (
                ("udp_dst", udp_dst),)
            entries.add(FlowEntry(path[0], CLASSIFY, PRIORITY_CALL, match, actions, call_cookie,
                                  meter=meter_id(aggregate, direction),
                                  idle_timeout=options.call_idle_timeout_s, notify_removed=True))
    return entries


# A call's actions are the same objects for every call of an aggregate but its label: each
# live call holds fewer objects the garbage collector scans (bench_gc.py). Keyed on numbers
# and names from the configuration (ports, DSCPs, aggregate tags, terminals' MACs): bounded.
PUSH_MPLS, PUSH_VLAN, POP_VLAN = PushMpls(), PushVlan(), PopVlan()
_output = lru_cache(maxsize=None)(Output)
_queue = lru_cache(maxsize=None)(SetQueue)
_pop_mpls = lru_cache(maxsize=None)(PopMpls)


@lru_cache(maxsize=None)
def _set_field(field: str, value: int | str) -> SetField:
    return SetField(field, value)


def media_ports(port: int, rtcp_match: str) -> tuple[int | tuple[int, int], ...]:
    """The udp_dst values that classify a stream to ``port`` and its RTCP (``port`` + 1)."""
    if rtcp_match == "masked" and port % 2 == 0:
        return ((port, 0xFFFE),)
    if rtcp_match == "exact" and port < 65535:
        return (port, port + 1)
    return (port,)


def _terminal_port(community: Community, ip: str) -> int | None:
    """A static binding wins over a learned location (see core/locations.py)."""
    return community.terminal_port_of(ip)


def _rewrite_mac(community: Community, ip: str) -> tuple[Action, ...]:
    address = parse_address(ip)      # raises ValueError on a bad address, whether or not terminals are known
    for terminal in community.terminals:
        if terminal.ip == address and terminal.mac:
            return (_set_field("eth_dst", terminal.mac),)
    return ()


def _delivery_ports(community: Community, ip: str, locations: Mapping[tuple[str, str], int]) -> Sequence[int]:
    """Where to deliver media for ``ip``: its known port, else every access port."""
    port = _terminal_port(community, ip) or locations.get((community.name, ip))
    return (port,) if port is not None else tuple(community.access_ports)
