"""The configuration file: one YAML document, validated strictly.

Every error names the path of the offending key, e.g.
``communities[1].prefixes[0]: not an IP prefix: '10.0.0/33'``. Unknown keys are errors
(a typo never silently falls back to a default).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import yaml

from .config_fields import ConfigError as ConfigError
from .config_fields import Node as _Node
from .config_fields import boolean as _bool
from .config_fields import choice as _choice
from .config_fields import hostport as _hostport
from .config_fields import integer as _int
from .config_fields import ip_address as _ip
from .config_fields import listing as _list
from .config_fields import number as _number
from .config_fields import string as _str
from .config_fields import string_or_int as _str_or_int
from .config_interfaces import ApiConfig as ApiConfig
from .config_interfaces import OpenFlowConfig as OpenFlowConfig
from .config_interfaces import TlsConfig as TlsConfig
from .config_interfaces import read_api, read_openflow
from .config_network import AggregateSpec as AggregateSpec
from .config_network import CallsConfig as CallsConfig
from .config_network import CdrConfig as CdrConfig
from .config_network import DataplaneConfig as DataplaneConfig
from .config_network import (check_references, read_aggregate, read_calls, read_cdr, read_community,
                             read_dataplane, read_link, read_policy, read_switch, read_timezone)
from .core import limits
from .core.aggregate import EF
from .core.autosize import Autosize
from .core.codec import STANDARD_CODECS, CodecPolicy
from .core.errors import MamError
from .core.flowplan import PlanOptions
from .core.lifecycle import LifecycleTimers
from .core.locations import PortSecurity
from .core.manager import ManagerSettings, MediaAggregationManager
from .core.network import Community, Topology
from .core.schedule import ScheduleEntry
from .core.store import Ledger, LedgerConflict
from .signalling.gateway.front_end import WILDCARDS
from .signalling.gateway.profile import (BUILTIN_PROFILES, CommunitySignalling, DiversionForm, GatewayConfig,
                                         HeaderAction, HeaderRule, Identity, NumberForm, NumberPlan, Profile,
                                         SdpRules, Signalling)
from .store.url import EtcdUrl

T = TypeVar("T")


@dataclass(frozen=True)
class SipOverloadConfig:
    """``sip.overload``: over any of these, new INVITEs get 503 + Retry-After (docs/sip.md)."""

    max_queue_delay_ms: float = 100.0
    max_transactions: int = 200_000
    max_pending_admissions: int = 1_000
    retry_after_s: int = 5
    oc_validity_ms: int = 1_000


@dataclass(frozen=True)
class SipTcpConfig:
    """``sip.tcp``: connection limits and timeouts (docs/sip.md)."""

    idle_timeout_s: float = 300.0
    message_timeout_s: float = 10.0
    max_connections: int = 1024
    max_connections_per_source: int = 64


@dataclass(frozen=True)
class SipConfig:
    """The ``sip`` section: every field of the proxy's ``ProxyConfig`` (docs/configuration.md)."""

    enabled: bool = False
    listen_host: str = "127.0.0.1"
    listen_port: int = 5060
    advertise: str | None = None            # host in Via and Record-Route (default: listen host)
    transports: tuple[str, ...] = ("udp", "tcp")
    routes: tuple[tuple[str, str], ...] = ()
    emergency_numbers: tuple[str, ...] = ("911", "112")
    emergency_namespaces: tuple[str, ...] = ("esnet", "wps", "ets")
    timer_c_s: float = 180.0
    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    max_message_bytes: int = 65536
    late_offer_codec: str = "pcmu"
    late_offer_ptime_ms: int = 20
    bye_on_media_idle: bool = True
    max_call_s: float = 14400.0
    control_timeout_s: float = 5.0
    controller_poll_s: float = 5.0
    workers: int = 0                        # SIP worker processes (0: SIP in this process); UDP only
    shared_reader: str = "owner"            # with workers: who reads the public socket (owner | workers)
    overload: SipOverloadConfig = field(default_factory=SipOverloadConfig)
    tcp: SipTcpConfig = field(default_factory=SipTcpConfig)


@dataclass(frozen=True)
class H323Config:
    """The H.323 gatekeeper (docs/h323.md)."""

    enabled: bool = False
    ras_host: str = "127.0.0.1"
    ras_port: int = 1719
    call_host: str = "127.0.0.1"
    call_port: int = 1720
    gatekeeper_id: str = "mam-gk"
    registration_ttl_s: int = 300
    irq_interval_s: float = 30.0          # poll endpoints with calls this often (0: never)
    t303_s: float = 4.0                   # Setup forwarded, nothing heard from the callee
    t310_s: float = 30.0                  # CallProceeding heard, no Alerting/Connect
    t301_s: float = 180.0                 # Alerting heard, no Connect
    max_message_bytes: int = 16384


@dataclass(frozen=True)
class ClusterConfig:
    """Several controllers on one etcd ledger (docs/cluster.md)."""

    name: str | None = None            # this controller's name among them (default: host name and pid)
    timeout_s: float = 1.0             # one etcd request; no answer within it: store-unavailable
    lease_ttl_s: int = 2               # a dead controller's switches are taken over this long after it died
    max_txn_ops: int = 128             # etcd's --max-txn-ops: what one transaction may hold
    #: switch groups: (group, switches, controllers in order of preference); none: one group, any controller
    roles: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Config:
    topology: Topology
    settings: ManagerSettings
    aggregates: tuple[AggregateSpec, ...] = ()
    api: ApiConfig = field(default_factory=ApiConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    dataplane: DataplaneConfig = field(default_factory=DataplaneConfig)
    store_path: str | None = None
    calls: CallsConfig = field(default_factory=CallsConfig)
    h323: H323Config = field(default_factory=H323Config)
    openflow: OpenFlowConfig = field(default_factory=OpenFlowConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cdr: CdrConfig = field(default_factory=CdrConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)    # profiles:, communities' signalling

    @property
    def store_url(self) -> EtcdUrl | None:
        """The shared etcd ledger ``store:`` names, or None (SQLite file or memory)."""
        return EtcdUrl.parse(self.store_path) if self.store_path and self.store_path.startswith("etcd://") else None


# --- sections ---------------------------------------------------------------------------

def _store(value: Any, path: str) -> str:
    text = _str(value, path)
    if "://" in text:
        try:
            EtcdUrl.parse(text)
        except MamError as error:
            raise ConfigError(path, error.message) from None
    return text


def _cluster(value: Any, path: str) -> ClusterConfig:
    node = _Node(value, path)
    cluster = ClusterConfig(name=node.get("name", _str, None), timeout_s=node.get("timeout_s", _number(0.05, 30.0), 1.0),
                            lease_ttl_s=node.get("lease_ttl_s", _int(1, 600), 2),
                            max_txn_ops=node.get("max_txn_ops", _int(16, 1_000_000), 128),
                            roles=node.get("roles", _roles, ()))
    node.done()
    return cluster


def _roles(value: Any, path: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    groups = _Node(value, path)
    out = []
    for name in list(value):
        node = groups.get(str(name), lambda v, p: _Node(v, p))
        out.append((str(name), node.get("switches", _list(_str, min_items=1)),
                    node.get("controllers", _list(_str), ())))
        node.done()
    groups.done()
    return tuple(out)


def _sip(value: Any, path: str) -> SipConfig:
    node = _Node(value, path)
    listen = node.get("listen", _hostport, "127.0.0.1:5060")
    host, _, port = listen.rpartition(":")
    routes_node = node.get("routes", lambda v, p: _Node(v, p), None)
    routes: tuple[tuple[str, str], ...] = ()
    if routes_node is not None:
        routes = tuple((str(k).lower(), _hostport(v, routes_node.key(str(k)))) for k, v in routes_node.value.items())
    timers = node.get("timers", lambda v, p: _Node(v, p), None)
    late = node.get("late_offer_media", lambda v, p: _Node(v, p), None)
    default = SipConfig()
    sip = SipConfig(
        enabled=node.get("enabled", _bool, True),
        listen_host=host, listen_port=int(port),
        advertise=node.get("advertise", _str, None),
        transports=node.get("transports", _list(_choice("udp", "tcp"), min_items=1), ("udp", "tcp")),
        routes=routes,
        emergency_numbers=tuple(str(n) for n in node.get("emergency_numbers", _list(_str_or_int), ("911", "112"))),
        emergency_namespaces=tuple(n.lower() for n in node.get("emergency_namespaces", _list(_str),
                                                               default.emergency_namespaces)),
        timer_c_s=node.get("timer_c_s", _number(1.0, 3600.0), 180.0),
        t1_s=timers.get("t1_s", _number(0.01, 60.0), default.t1_s) if timers else default.t1_s,
        t2_s=timers.get("t2_s", _number(0.01, 600.0), default.t2_s) if timers else default.t2_s,
        t4_s=timers.get("t4_s", _number(0.0, 600.0), default.t4_s) if timers else default.t4_s,
        max_message_bytes=node.get("max_message_bytes", _int(1024, 2 ** 20), 65536),
        late_offer_codec=(late.get("codec", _str, default.late_offer_codec).lower() if late
                          else default.late_offer_codec),
        late_offer_ptime_ms=(late.get("ptime_ms", _int(*limits.PTIME_MS), default.late_offer_ptime_ms) if late
                             else default.late_offer_ptime_ms),
        bye_on_media_idle=node.get("bye_on_media_idle", _bool, True),
        max_call_s=node.get("max_call_s", _number(60.0, 7 * 86400.0), default.max_call_s),
        control_timeout_s=node.get("control_timeout_s", _number(0.1, 60.0), default.control_timeout_s),
        controller_poll_s=node.get("controller_poll_s", _number(0.1, 3600.0), default.controller_poll_s),
        workers=node.get("workers", _int(0, 64), default.workers),
        shared_reader=node.get("shared_reader", _choice("owner", "workers"), default.shared_reader),
        overload=node.get("overload", _sip_overload, default.overload),
        tcp=node.get("tcp", _sip_tcp, default.tcp),
    )
    for section in (timers, late):
        if section is not None:
            section.done()
    if sip.workers and "udp" not in sip.transports:
        raise ConfigError(node.key("workers"), f"{sip.workers} SIP workers serve UDP only: transports must "
                          f"include udp, got {list(sip.transports)}")
    if sip.t2_s < sip.t1_s:
        raise ConfigError(node.key("timers.t2_s"), f"must be at least t1_s ({sip.t1_s}), got {sip.t2_s}")
    node.done()
    return sip


def _sip_overload(value: Any, path: str) -> SipOverloadConfig:
    node = _Node(value, path)
    default = SipOverloadConfig()
    overload = SipOverloadConfig(
        max_queue_delay_ms=node.get("max_queue_delay_ms", _number(1.0, 60_000.0), default.max_queue_delay_ms),
        max_transactions=node.get("max_transactions", _int(10, 10_000_000), default.max_transactions),
        max_pending_admissions=node.get("max_pending_admissions", _int(1, 1_000_000), default.max_pending_admissions),
        retry_after_s=node.get("retry_after_s", _int(1, 3600), default.retry_after_s),
        oc_validity_ms=node.get("oc_validity_ms", _int(0, 86_400_000), default.oc_validity_ms))
    node.done()
    return overload


def _sip_tcp(value: Any, path: str) -> SipTcpConfig:
    node = _Node(value, path)
    default = SipTcpConfig()
    tcp = SipTcpConfig(
        idle_timeout_s=node.get("idle_timeout_s", _number(0.1, 86_400.0), default.idle_timeout_s),
        message_timeout_s=node.get("message_timeout_s", _number(0.1, 3600.0), default.message_timeout_s),
        max_connections=node.get("max_connections", _int(1, 1_000_000), default.max_connections),
        max_connections_per_source=node.get("max_connections_per_source", _int(1, 1_000_000),
                                            default.max_connections_per_source))
    node.done()
    return tcp


def _h323(value: Any, path: str) -> H323Config:
    node = _Node(value, path)
    ras = node.get("ras_listen", _hostport, "127.0.0.1:1719")
    call = node.get("call_listen", _hostport, "127.0.0.1:1720")
    h323 = H323Config(
        enabled=node.get("enabled", _bool, True),
        ras_host=ras.rpartition(":")[0].strip("[]"), ras_port=int(ras.rpartition(":")[2]),
        call_host=call.rpartition(":")[0].strip("[]"), call_port=int(call.rpartition(":")[2]),
        gatekeeper_id=node.get("gatekeeper_id", _gatekeeper_id, "mam-gk"),
        registration_ttl_s=node.get("registration_ttl_s", _int(10, 86400), 300),
        irq_interval_s=node.get("irq_interval_s", _number(0.0, 3600.0), 30.0),
        t303_s=node.get("t303_s", _number(0.5, 120.0), 4.0),
        t310_s=node.get("t310_s", _number(1.0, 600.0), 30.0),
        t301_s=node.get("t301_s", _number(1.0, 3600.0), 180.0),
        max_message_bytes=node.get("max_message_bytes", _int(512, 65535), 16384),
    )
    node.done()
    return h323


def _gatekeeper_id(value: Any, path: str) -> str:
    text = _str(value, path)
    if len(text) > 128:
        raise ConfigError(path, f"at most 128 characters (H.225.0 GatekeeperIdentifier), got {len(text)}")
    return text


# --- the gateway section (issue 18): profiles: and the communities' signalling/profile ------

_HEADER_NAME = re.compile(r"[A-Za-z0-9!%'*+._`~-]+")   # RFC 3261 token (``*`` for remove globs)


def _gateway(root: _Node, communities: tuple[Community, ...]) -> GatewayConfig:
    """``profiles:`` and each community's ``signalling`` and ``profile`` (checked against them)."""
    profiles_node = root.get("profiles", lambda v, p: _Node(v, p), None)
    profiles: list[Profile] = []
    if profiles_node is not None:
        for name in profiles_node.value:
            where = profiles_node.key(str(name))
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
                raise ConfigError(where, "a profile name is lower-case letters, digits, '.', '_' and '-'")
            if name in BUILTIN_PROFILES:
                raise ConfigError(where, f"{name!r} is a built-in profile; give yours another name")
            profiles_node.used.add(name)
            profiles.append(_profile(name, profiles_node.value[name], where))
        profiles_node.done()
    known = set(BUILTIN_PROFILES) | {p.name for p in profiles}
    raw = root.value.get("communities") or []
    entries: list[CommunitySignalling] = []
    for i, (community, item) in enumerate(zip(communities, raw)):
        path = f"communities[{i}]"
        signalling = Signalling(_choice(*(s.value for s in Signalling))(item["signalling"], f"{path}.signalling")
                                if item.get("signalling") is not None else "sip")
        profile = "generic"
        if item.get("profile") is not None:
            profile = _str(item["profile"], f"{path}.profile")
            if profile not in known:
                raise ConfigError(f"{path}.profile", f"unknown profile {profile!r} (known: {', '.join(sorted(known))})")
        entries.append(CommunitySignalling(community.name, signalling, profile))
    section = root.get("gateway", lambda v, p: _Node(v, p), None)
    if section is None:
        return GatewayConfig(tuple(BUILTIN_PROFILES.values()) + tuple(profiles), tuple(entries))
    sip_listen = section.get("sip_listen", _hostport, "127.0.0.1:5070")
    h323_listen = section.get("h323_listen", _hostport, "127.0.0.1:1730")
    pbx_node = section.get("pbx", lambda v, p: _Node(v, p), None)
    pbx: list[tuple[str, str, int]] = []
    names = {c.name for c in communities}
    if pbx_node is not None:
        for name in pbx_node.value:
            where = pbx_node.key(str(name))
            if name not in names:
                raise ConfigError(where, f"unknown community {name!r}")
            pbx_node.used.add(name)
            host, _, port = _hostport(pbx_node.value[name], where).rpartition(":")
            _ip(host.strip("[]"), where)                 # the gateway never resolves names
            pbx.append((str(name), host.strip("[]"), int(port)))
        pbx_node.done()
    gateway = GatewayConfig(
        tuple(BUILTIN_PROFILES.values()) + tuple(profiles), tuple(entries),
        enabled=section.get("enabled", _bool, True),
        sip_listen=(sip_listen.rpartition(":")[0].strip("[]"), int(sip_listen.rpartition(":")[2])),
        h323_listen=(h323_listen.rpartition(":")[0].strip("[]"), int(h323_listen.rpartition(":")[2])),
        pbx=tuple(pbx), no_answer_s=section.get("no_answer_s", _number(1.0, 3600.0), 180.0),
        h245_timeout_s=section.get("h245_timeout_s", _number(1.0, 120.0), 10.0),
        trusted=tuple(str(a) for a in section.get("trusted", _list(_ip), ())))
    section.done()
    return gateway


def _profile(name: str, value: Any, path: str) -> Profile:
    node = _Node(value, path)
    headers = node.get("headers", lambda v, p: _Node(v, p), None)
    inbound: tuple[HeaderRule, ...] = ()
    outbound: tuple[HeaderRule, ...] = ()
    if headers is not None:
        inbound = headers.get("inbound", _list(_header_rule), ())
        outbound = headers.get("outbound", _list(_header_rule), ())
        headers.done()
    profile = Profile(
        name=name,
        identity=Identity(node.get("identity", _choice(*(i.value for i in Identity)), "keep")),
        diversion=DiversionForm(node.get("diversion", _choice(*(d.value for d in DiversionForm)), "keep")),
        numbers=node.get("numbers", _number_plan, None),
        strip_topology=node.get("strip_topology", _bool, False),
        inbound=inbound, outbound=outbound,
        sdp=node.get("sdp", _sdp_rules, SdpRules()),
        dtmf=node.get("dtmf", _choice("rfc4733", "info"), "rfc4733"),
        session_timers=node.get("session_timers", _bool, True), min_se_s=node.get("min_se_s", _int(90, 86400), None),
        reliable_provisional=node.get("reliable_provisional", _bool, True),
    )
    if profile.min_se_s is not None and not profile.session_timers:
        raise ConfigError(node.key("min_se_s"), "a PBX without session timers (session_timers: false) has no Min-SE")
    node.done()
    return profile


def _header_name(value: Any, path: str, *, glob: bool = False) -> str:
    text = _str(value, path)
    if not _HEADER_NAME.fullmatch(text) or ("*" in text and not glob):
        raise ConfigError(path, f"not a SIP header name: {text!r}")
    return text.lower()


def _header_rule(value: Any, path: str) -> HeaderRule:
    node = _Node(value, path)
    action_text = node.get("action", _str)
    try:
        action = HeaderAction(action_text.lower())
    except ValueError:
        raise ConfigError(node.key("action"), f"unknown header action {action_text!r} "
                          f"(expected one of: {', '.join(a.value for a in HeaderAction)})") from None
    header = node.get("header", lambda v, p: _header_name(v, p, glob=action is HeaderAction.REMOVE))
    if header in ("via", "call-id", "cseq", "content-length", "route", "record-route"):
        raise ConfigError(node.key("header"), f"{header!r} carries routing or transaction state; "
                                              "rules may not change it")
    rule = HeaderRule(action, header)
    if action in (HeaderAction.ADD, HeaderAction.SET):
        rule = HeaderRule(action, header, value=node.get("value", _header_value))
    elif action is HeaderAction.RENAME:
        rule = HeaderRule(action, header, to=node.get("to", _header_name))
    elif action is HeaderAction.REPLACE:
        rule = HeaderRule(action, header, value=node.get("value", _replacement, ""),
                          match=node.get("match", _regex))
        if rule.match is not None and rule.value:
            try:
                rule.match.sub(rule.value, "")       # a group the pattern lacks fails here, not per call
            except (re.error, IndexError) as error:
                raise ConfigError(node.key("value"), f"bad replacement: {error}") from None
    node.done()
    return rule


def _header_value(value: Any, path: str) -> str:
    text = _str_or_int(value, path)
    if any(ch in text for ch in "\r\n\x00"):
        raise ConfigError(path, "a header value may not contain CR, LF or NUL")
    return text


def _replacement(value: Any, path: str) -> str:
    if not isinstance(value, str) or any(ch in value for ch in "\r\n\x00"):
        raise ConfigError(path, f"expected a string without CR, LF or NUL, got {value!r}")
    return value


def _regex(value: Any, path: str) -> re.Pattern[str]:
    text = _str(value, path)
    try:
        return re.compile(text)
    except re.error as error:
        raise ConfigError(path, f"bad regular expression {text!r}: {error}") from None


def _digits(low: int, high: int) -> Callable[[Any, str], str]:
    def convert(value: Any, path: str) -> str:
        text = _str_or_int(value, path).lstrip("+")
        if not text.isdigit() or not low <= len(text) <= high:
            raise ConfigError(path, f"expected {low} to {high} digits, got {value!r}")
        return text
    return convert


def _number_plan(value: Any, path: str) -> NumberPlan:
    node = _Node(value, path)
    plan = NumberPlan(
        country_code=node.get("country_code", _digits(1, 3)),
        national_prefix=node.get("national_prefix", _digits(0, 4), "0"),
        international_prefix=node.get("international_prefix", _digits(1, 4), "00"),
        form=NumberForm(node.get("form", _choice(*(f.value for f in NumberForm)), "keep")),
    )
    if plan.national_prefix == plan.international_prefix:
        raise ConfigError(node.key("national_prefix"), "must differ from the international prefix")
    node.done()
    return plan


def _sdp_rules(value: Any, path: str) -> SdpRules:
    node = _Node(value, path)
    known = {c.name for c in STANDARD_CODECS} | {"telephone-event", "cn", "g729a", "ilbc", "opus", "t38"}

    def codec(item: Any, item_path: str) -> str:
        name = _str(item, item_path).lower()
        if name not in known:
            raise ConfigError(item_path, f"unknown codec {name!r} (known: {', '.join(sorted(known))})")
        return name
    rules = SdpRules(
        codecs=node.get("codecs", _list(codec, min_items=1), ()),
        ptime_ms=node.get("ptime_ms", _int(*limits.PTIME_MS), None),
        telephone_event_pt=node.get("telephone_event_pt", _int(96, 127), None),
        disable_video=node.get("disable_video", _bool, False),
    )
    node.done()
    return rules


# --- entry points -----------------------------------------------------------------------

def parse_config(document: Any) -> Config:
    """Validate an already-loaded YAML document."""
    root = _Node(document, "")
    topo = root.get("topology", lambda v, p: _Node(v, p))
    switches = topo.get("switches", _list(read_switch, min_items=1))
    links = topo.get("links", _list(read_link), ())
    topo.done()
    communities = root.get("communities", _list(read_community), ())
    aggregates = root.get("aggregates", _list(read_aggregate), ())
    policy = root.get("codecs", read_policy, CodecPolicy())
    dataplane, plan = root.get("dataplane", read_dataplane, (DataplaneConfig(), PlanOptions()))
    calls = root.get("calls", read_calls, CallsConfig())
    api = root.get("api", read_api, ApiConfig())
    openflow = root.get("openflow", read_openflow, OpenFlowConfig())
    sip = root.get("sip", _sip, SipConfig())
    h323 = root.get("h323", _h323, H323Config())
    store = root.get("store", _store, None)
    cluster = root.get("cluster", _cluster, ClusterConfig())
    cdr = root.get("cdr", read_cdr, CdrConfig())
    gateway = _gateway(root, communities)
    timezone = root.get("timezone", read_timezone, dt.timezone.utc)
    root.done()

    check_references(switches, links, communities, aggregates)
    _check_roles(cluster, {s.name for s in switches})
    _check_gateway_addresses(gateway, sip, h323)
    try:
        topology = Topology(switches, links, communities)
    except MamError as error:
        raise ConfigError(error.field or "topology", error.message) from None
    timers = LifecycleTimers(attach_s=calls.attach_timeout_s, install_s=dataplane.barrier_timeout_s,
                             release_s=dataplane.barrier_timeout_s)
    settings = ManagerSettings(policy=policy, plan=plan,
                               reserved_dscps=tuple(sorted({EF} | {a.dscp for a in aggregates})),
                               reroute=dataplane.reroute, timers=timers,
                               port_security=PortSecurity(dataplane.max_terminals_per_port),
                               reoptimize=dataplane.reoptimize, reoptimize_hold_s=dataplane.reoptimize_hold_s,
                               path_down_grace_s=dataplane.path_down_grace_s, timezone=timezone)
    return Config(topology, settings, aggregates, api, sip, dataplane, store, calls, h323=h323, openflow=openflow,
                  cluster=cluster, cdr=cdr, gateway=gateway)


def _check_gateway_addresses(gateway: GatewayConfig, sip: SipConfig, h323: H323Config) -> None:
    """The gateway listens apart from the proxy and the gatekeeper the same file starts (the
    proxy routes the H.323 communities' domains to gateway.sip_listen: the same address
    would loop)."""
    if not gateway.enabled:
        return
    for key, (host, port), other, enabled in (
            ("sip_listen", gateway.sip_listen, (sip.listen_host, sip.listen_port, "sip.listen"), sip.enabled),
            ("h323_listen", gateway.h323_listen, (h323.call_host, h323.call_port, "h323.call_listen"), h323.enabled)):
        if enabled and port == other[1] and (host == other[0] or host in WILDCARDS or other[0] in WILDCARDS):
            raise ConfigError(f"gateway.{key}", f"{host}:{port} is the address of {other[2]} (give the gateway its own)")


def _check_roles(cluster: ClusterConfig, switches: set[str]) -> None:
    owner: dict[str, str] = {}
    for group, members, _ in cluster.roles:
        for i, name in enumerate(members):
            where = f"cluster.roles.{group}.switches[{i}]"
            if name not in switches:
                raise ConfigError(where, f"unknown switch {name!r}")
            if name in owner:
                raise ConfigError(where, f"switch {name} is already in group {owner[name]}")
            owner[name] = group


def load_config(path: str) -> Config:
    """Read and validate a configuration file."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError("", f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_config(document)


def build_manager(config: Config, ledger: Ledger | None = None, now: float = 0.0,
                  log: Callable[[str], None] | None = None, *, data_plane: bool = True) -> MediaAggregationManager:
    """A manager restored from ``ledger`` with the configured aggregates as configured.

    The configuration is the plan of record for the aggregates it lists: one missing from
    the ledger is created; one the ledger holds with another size, class, priority,
    levels, preemption or pinned path (changed over REST since) is brought back to the
    file's values, and ``log`` says so, except a size its calls no longer fit or no path
    can carry, which stays as stored (said too). One between other communities is an
    error naming the entry. Aggregates the file does not list (created over REST) stay.
    Capacity errors name the aggregate's config entry. ``data_plane=False``: a process that
    admits with no switch to tell; calls' flows are not drawn (``PlanOptions.call_flows``)."""
    say = log or (lambda text: None)
    settings = config.settings
    if not data_plane:
        settings = dataclasses.replace(settings, plan=dataclasses.replace(settings.plan, call_flows=False))
    manager = MediaAggregationManager(config.topology, settings, ledger, now)
    for i, spec in enumerate(config.aggregates):
        where = f"aggregates[{i}]"
        for _ in range(4):      # a LedgerConflict: another controller sharing the ledger changed the pools first
            try:
                stored = manager.aggregate(spec.id) if spec.id in {a.id for a in manager.aggregates()} else None
                if stored is None:
                    manager.create_aggregate(spec.id, *spec.communities, spec.size_kbps, dscp=spec.dscp,
                                             priority=spec.priority, levels=spec.levels,
                                             preemption=spec.preemption, path=spec.path,
                                             autosize=spec.autosize, schedule=spec.schedule, now=now)
                    break
                if set(stored.communities) != set(spec.communities):
                    raise ConfigError(f"{where}.between", f"the ledger holds aggregate {spec.id!r} between "
                                      f"{stored.communities[0]} and {stored.communities[1]} with "
                                      f"{len(manager.calls(spec.id))} call(s): delete it (mamctl aggregate delete "
                                      f"{spec.id} --force) or give this entry another id")
                _follow_the_file(manager, spec, stored, where, say)
                break
            except LedgerConflict:
                continue
            except MamError as error:
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError(f"{where}" + (f".{error.field}" if error.field else ""), error.message) from None
    manager.drain()
    return manager


def _follow_the_file(manager: MediaAggregationManager, spec: AggregateSpec, stored: Any, where: str,
                     say: Callable[[str], None]) -> None:
    """Bring a stored aggregate back to its configuration entry, saying what changed."""
    differences: dict[str, tuple[Any, Any]] = {name: (getattr(stored, name), wanted) for name, wanted in (
        ("dscp", spec.dscp), ("priority", spec.priority), ("levels", spec.levels), ("preemption", spec.preemption),
        ("autosize", spec.autosize), ("schedule", spec.schedule))
        if getattr(stored, name) != wanted}
    if spec.path is not None and tuple(spec.path) != stored.path:
        differences["path"] = (stored.path, tuple(spec.path))
    if differences:
        manager.reconfigure_aggregate(spec.id, **{name: wanted for name, (_, wanted) in differences.items()})
        say(f"{where}: aggregate {spec.id}: the configuration wins over the ledger for "
            + ", ".join(f"{name} ({_shown(had)} -> {_shown(wanted)})" for name, (had, wanted) in differences.items()))
    follows_demand = spec.autosize is not None or bool(spec.schedule) or stored.target_kbps is not None
    if stored.size_kbps != spec.size_kbps and follows_demand:
        say(f"{where}: aggregate {spec.id} keeps {stored.size_kbps} kbit/s from the ledger: its size follows "
            f"demand, schedule or capacity (configured {spec.size_kbps} is where it starts)")
    elif stored.size_kbps != spec.size_kbps:
        try:
            manager.resize_aggregate(spec.id, spec.size_kbps)
            say(f"{where}: aggregate {spec.id}: the configuration wins over the ledger for size_kbps "
                f"({stored.size_kbps} -> {spec.size_kbps})")
        except MamError as error:
            say(f"{where}: aggregate {spec.id} keeps {stored.size_kbps} kbit/s from the ledger, not the configured "
                f"{spec.size_kbps}: {error.message}")


def _shown(value: Any) -> str:
    if isinstance(value, frozenset):
        return ",".join(sorted(level.label for level in value))
    if isinstance(value, tuple) and all(isinstance(v, ScheduleEntry) for v in value):
        return ",".join(f"{entry.at}={entry.size_kbps}" for entry in value) or "none"
    if isinstance(value, tuple):
        return "-".join(value)
    if isinstance(value, Autosize):
        return ",".join(f"{key}={item}" for key, item in value.to_dict().items())
    return str(value)
