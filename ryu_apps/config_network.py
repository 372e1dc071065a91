"""The configuration of the network and its pools: topology, communities, aggregates,
codecs, the data plane, calls and call records (docs/configuration.md)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any, Iterable

from .config_fields import (ConfigError, Node, boolean, choice, dpid, integer, ip_address, kind_of, listing,
                            mac_address, number, ovsdb_address, prefix, string, string_or_int)
from .core import limits
from .core.admission import ServiceLevel
from .core.aggregate import ALL_LEVELS, EF
from .core.autosize import Autosize
from .core.codec import STANDARD_CODECS, Codec, CodecPolicy, Layer, MediaClass
from .core.errors import MamError
from .core.flowplan import PlanOptions
from .core.network import Community, Link, Switch, Terminal
from .core.schedule import ScheduleEntry, parse_schedule


@dataclass(frozen=True)
class AggregateSpec:
    id: str
    communities: tuple[str, str]
    size_kbps: int
    dscp: int = EF
    priority: int = 0
    levels: frozenset[ServiceLevel] = ALL_LEVELS
    preemption: bool = False
    path: tuple[str, ...] | None = None
    autosize: Autosize | None = None           # follow demand: docs/configuration.md#aggregates-that-follow-demand
    schedule: tuple[ScheduleEntry, ...] = ()   # time-of-day sizes, in the top-level timezone


@dataclass(frozen=True)
class DataplaneConfig:
    discovery: bool = False         # LLDP (ryu.topology) checks the configured links
    port_speeds: str = "limit"      # "limit": a slower port cuts a link's reservable share; "warn"
    reroute: bool = True            # move an aggregate off a link that goes down when another path fits
    reoptimize: bool = True         # a moved aggregate returns to a shorter path once it is back and stable ...
    reoptimize_hold_s: float = 60.0   # ... for this long
    path_down_grace_s: float = 10.0   # an aggregate with no open path ends its calls after this
    class_mode: str = "tc"          # "tc" (userspace OVS), "ovsdb" (set_queue honoured), "none"
    barrier_timeout_s: float = 5.0  # a call's flows (or their removal) not confirmed in this time: released
    max_terminals_per_port: int = 16
    media_idle: str = "both"        # idle media releases a call when "both" directions, "either", or "off"
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"   # class_mode ovsdb: unix:PATH or tcp:HOST:PORT


@dataclass(frozen=True)
class CallsConfig:
    attach_timeout_s: float = 240.0    # admitted but never given both media addresses: reclaimed


@dataclass(frozen=True)
class CdrConfig:
    """Call detail records (docs/operations.md)."""

    retention_days: float = 90.0       # records older than this are purged
    path: str | None = None            # SQLite file; default: the ledger's file, or cdr.sqlite beside an etcd config
    memory_limit: int = 100_000        # with no file at all: the newest this many are kept in memory


COMMUNITY_GATEWAY_KEYS = ("signalling", "profile")


def read_switch(value: Any, path: str) -> Switch:
    node = Node(value, path)
    switch = Switch(node.get("name", string), node.get("dpid", dpid))
    node.done()
    return switch


def read_link(value: Any, path: str) -> Link:
    node = Node(value, path)
    port = integer(*limits.SWITCH_PORT)
    a, a_port = node.get("a", string), node.get("a_port", port)
    b, b_port = node.get("b", string), node.get("b_port", port)
    capacity = node.get("capacity_kbps", integer(*limits.LINK_KBPS))
    share = node.get("reservable", number(0.0, 1.0), None)
    reservable = node.get("reservable_kbps", integer(0, limits.LINK_KBPS[1]), None)
    node.done()
    if share is not None and reservable is not None:
        raise ConfigError(node.key("reservable"), "give reservable (a share) or reservable_kbps, not both")
    if reservable is None:
        reservable = int(capacity * (0.5 if share is None else share))
    if reservable > capacity:
        raise ConfigError(node.key("reservable_kbps"), f"{reservable} exceeds capacity_kbps {capacity}")
    if a == b:
        raise ConfigError(node.key("b"), "a link joins two different switches")
    return Link(a, a_port, b, b_port, capacity, reservable)


def read_terminal(value: Any, path: str) -> Terminal:
    node = Node(value, path)
    terminal = Terminal(node.get("ip", ip_address), node.get("port", integer(*limits.SWITCH_PORT)), node.get("mac", mac_address, None))
    node.done()
    return terminal


def read_community(value: Any, path: str) -> Community:
    node = Node(value, path)
    community = Community(
        name=node.get("name", string),
        edge=node.get("edge", string),
        access_ports=node.get("access_ports", listing(integer(*limits.SWITCH_PORT), min_items=1)),
        prefixes=node.get("prefixes", listing(prefix, min_items=1)),
        domains=tuple(d.lower() for d in node.get("domains", listing(string), ())),
        terminals=node.get("terminals", listing(read_terminal), ()),
        e164_prefixes=node.get("e164_prefixes", listing(e164_prefix), ()),
    )
    node.used.update(COMMUNITY_GATEWAY_KEYS)    # read by the gateway section (config.py)
    node.done()
    return community


def read_levels(value: Any, path: str) -> frozenset[ServiceLevel]:
    def level(item: Any, item_path: str) -> ServiceLevel:
        try:
            return ServiceLevel.parse(string(item, item_path))
        except ValueError as error:
            raise ConfigError(item_path, str(error)) from None
    return frozenset(listing(level, min_items=1)(value, path))


def read_aggregate(value: Any, path: str) -> AggregateSpec:
    node = Node(value, path)
    between = node.get("between", listing(string, min_items=2))
    if len(between) != 2 or between[0] == between[1]:
        raise ConfigError(node.key("between"), "must name exactly two different communities")
    autosize = node.get("autosize", read_autosize, None)
    spec = AggregateSpec(
        id=node.get("id", string),
        communities=(between[0], between[1]),
        size_kbps=node.get("size_kbps", integer(*limits.SIZE_KBPS), ... if autosize is None else autosize.min_kbps),
        dscp=node.get("dscp", integer(*limits.DSCP), EF),
        priority=node.get("priority", integer(*limits.PRIORITY), 0),
        levels=node.get("levels", read_levels, ALL_LEVELS),
        preemption=node.get("preemption", boolean, False),
        path=node.get("path", listing(string, min_items=1), None),
        autosize=autosize,
        schedule=node.get("schedule", read_schedule, ()),
    )
    node.done()
    if autosize is not None and not autosize.min_kbps <= spec.size_kbps <= autosize.max_kbps:
        raise ConfigError(node.key("size_kbps"), f"{spec.size_kbps} is outside autosize's "
                                                 f"{autosize.min_kbps}..{autosize.max_kbps}")
    return spec


def read_autosize(value: Any, path: str) -> Autosize:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping, got {kind_of(value)}")
    try:
        return Autosize.from_dict(value)
    except MamError as error:
        raise ConfigError(path + (error.field or "").removeprefix("autosize"), error.message) from None


def read_schedule(value: Any, path: str) -> tuple[ScheduleEntry, ...]:
    try:
        return parse_schedule(value, path)
    except MamError as error:
        raise ConfigError(error.field or path, error.message) from None


def read_timezone(value: Any, path: str) -> dt.tzinfo:
    name = string(value, path)
    if name.upper() == "UTC":
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(path, f"unknown time zone {name!r} (an IANA name such as Europe/Paris, or UTC)") from None


def read_codec(value: Any, path: str) -> Codec:
    node = Node(value, path)
    codec = Codec(
        name=node.get("name", string).lower(),
        bitrate_bps=node.get("bitrate_bps", integer(1, 10 ** 8)),
        default_ptime_ms=node.get("ptime_ms", integer(*limits.PTIME_MS), 20),
        payload_type=node.get("payload_type", integer(0, 127), None),
        clock_rate=node.get("clock_rate", integer(1000, 192000), 8000),
        media_class=MediaClass(node.get("media_class", choice(*(m.value for m in MediaClass)), "voice")),
    )
    node.done()
    return codec


def read_policy(value: Any, path: str) -> CodecPolicy:
    node = Node(value, path)
    custom = node.get("custom", listing(read_codec), ())
    layer = Layer(node.get("layer", choice(*(l.value for l in Layer)), "ethernet"))
    tag_bytes = node.get("tag_bytes", integer(0, 64), None)
    rtcp_packet_bytes = node.get("rtcp_packet_bytes", integer(0, 1500), 128)
    codecs = {c.name: c for c in STANDARD_CODECS} | {c.name: c for c in custom}
    allowed = node.get("allowed", listing(string, min_items=1), None)
    node.done()
    if allowed is not None:
        for i, name in enumerate(allowed):
            if name.lower() not in codecs:
                raise ConfigError(f"{node.key('allowed')}[{i}]",
                                  f"unknown codec {name!r} (known: {', '.join(sorted(codecs))})")
    kwargs: dict[str, Any] = {"codecs": tuple(codecs.values()), "layer": layer, "rtcp_packet_bytes": rtcp_packet_bytes,
                              "allowed": None if allowed is None else frozenset(a.lower() for a in allowed)}
    if tag_bytes is not None:
        kwargs["tag_bytes"] = tag_bytes
    return CodecPolicy(**kwargs)


def read_dataplane(value: Any, path: str) -> tuple[DataplaneConfig, PlanOptions]:
    node = Node(value, path)
    config = DataplaneConfig(
        discovery=node.get("discovery", boolean, False),
        port_speeds=node.get("port_speeds", choice("limit", "warn"), "limit"),
        reroute=node.get("reroute", boolean, True),
        reoptimize=node.get("reoptimize", boolean, True),
        reoptimize_hold_s=node.get("reoptimize_hold_s", number(0.0, 86400.0), 60.0),
        path_down_grace_s=node.get("path_down_grace_s", number(0.0, 3600.0), 10.0),
        class_mode=node.get("class_mode", choice("tc", "ovsdb", "none"), "tc"),
        barrier_timeout_s=node.get("barrier_timeout_s", number(0.1, 60.0), 5.0),
        max_terminals_per_port=node.get("max_terminals_per_port", integer(0, 100_000), 16),
        media_idle=node.get("media_idle", choice("both", "either", "off"), "both"),
        ovsdb=node.get("ovsdb", ovsdb_address, DataplaneConfig.ovsdb),
    )
    plan = PlanOptions(
        pcp=node.get("pcp", integer(*limits.PCP), 5),
        use_set_queue=node.get("set_queue", boolean, False),
        queue_id=node.get("queue_id", integer(0, 0xFFFFFFFE), 1),
        call_idle_timeout_s=(node.get("call_idle_timeout_s", integer(0, 65535), 60)
                             * (config.media_idle != "off")),      # off: call flows never idle out
        meter_burst_ms=node.get("meter_burst_ms", integer(1, 10000), 100),
        rtcp_match=node.get("rtcp_match", choice("masked", "exact", "off"), "masked"),
    )
    node.done()
    return config, plan


def read_calls(value: Any, path: str) -> CallsConfig:
    node = Node(value, path)
    calls = CallsConfig(attach_timeout_s=node.get("attach_timeout_s", number(1.0, 86400.0), 240.0))
    node.done()
    return calls


def read_cdr(value: Any, path: str) -> CdrConfig:
    node = Node(value, path)
    cdr = CdrConfig(retention_days=node.get("retention_days", number(0.01, 36500.0), 90.0),
                    path=node.get("path", string, None),
                    memory_limit=node.get("memory_limit", integer(1, 100_000_000), 100_000))
    node.done()
    return cdr


def e164_prefix(value: Any, path: str) -> str:
    text = string_or_int(value, path).lstrip("+")
    if not text.isdigit() or len(text) > 15:
        raise ConfigError(path, f"expected the leading digits of E.164 numbers (up to 15), got {value!r}")
    return text


def check_references(switches: Iterable[Switch], links: Iterable[Link], communities: Iterable[Community],
                      aggregates: Iterable[AggregateSpec]) -> None:
    names: dict[str, int] = {}
    dpids: dict[int, int] = {}
    for i, switch in enumerate(switches):
        if switch.name in names:
            raise ConfigError(f"topology.switches[{i}].name", f"duplicate switch {switch.name!r}")
        if switch.dpid in dpids:
            raise ConfigError(f"topology.switches[{i}].dpid", f"dpid {switch.dpid} already used by another switch")
        names[switch.name], dpids[switch.dpid] = i, i
    used_ports: dict[tuple[str, int], str] = {}
    for i, link in enumerate(links):
        for end, port in (("a", link.a_port), ("b", link.b_port)):
            name = link.a if end == "a" else link.b
            if name not in names:
                raise ConfigError(f"topology.links[{i}].{end}", f"unknown switch {name!r}")
            where = f"topology.links[{i}].{end}_port"
            if (name, port) in used_ports:
                raise ConfigError(where, f"port {port} of {name} is already used by {used_ports[name, port]}")
            used_ports[name, port] = where
    seen: set[str] = set()
    for i, community in enumerate(communities):
        if community.name in seen:
            raise ConfigError(f"communities[{i}].name", f"duplicate community {community.name!r}")
        seen.add(community.name)
        if community.edge not in names:
            raise ConfigError(f"communities[{i}].edge", f"unknown switch {community.edge!r}")
        for j, port in enumerate(community.access_ports):
            if (community.edge, port) in used_ports:
                raise ConfigError(f"communities[{i}].access_ports[{j}]",
                                  f"port {port} of {community.edge} is a link port ({used_ports[community.edge, port]})")
        for j, terminal in enumerate(community.terminals):
            if terminal.port not in community.access_ports:
                raise ConfigError(f"communities[{i}].terminals[{j}].port", "not one of the community's access_ports")
    ids: set[str] = set()
    for i, aggregate in enumerate(aggregates):
        if aggregate.id in ids:
            raise ConfigError(f"aggregates[{i}].id", f"duplicate aggregate {aggregate.id!r}")
        ids.add(aggregate.id)
        for j, name in enumerate(aggregate.communities):
            if name not in seen:
                raise ConfigError(f"aggregates[{i}].between[{j}]", f"unknown community {name!r}")
