"""What the SIP proxy is told: its address, next hops, timers, emergency numbers, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ryu_apps.core.codec import MediaSpec

from .message import MAX_MESSAGE_BYTES
from .overload import OverloadLimits
from .routing import RouteTable
from .tcp_limits import TcpLimits
from .transaction import TimerSettings


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"                       # advertised in Via and Record-Route
    port: int = 5060
    routes: RouteTable = field(default_factory=RouteTable)
    timers: TimerSettings = field(default_factory=TimerSettings)
    emergency_numbers: frozenset[str] = frozenset({"911", "112"})
    emergency_namespaces: frozenset[str] = frozenset({"esnet", "wps", "ets"})
    max_message_bytes: int = MAX_MESSAGE_BYTES
    late_offer_media: MediaSpec = MediaSpec("pcmu")   # admitted for an INVITE without SDP
    bye_on_media_idle: bool = True                # BYE both parties of a call the proxy ends itself
    max_call_s: float = 14400.0                   # a call without RFC 4028 session timers ends after this
    control_timeout_s: float = 5.0                # REST mode: an INVITE waits this long for admission
    overload: OverloadLimits = field(default_factory=OverloadLimits)
    tcp: TcpLimits = field(default_factory=TcpLimits)

    @classmethod
    def from_sip_config(cls, sip: Any, **overrides: Any) -> "ProxyConfig":
        """From the configuration file's ``sip`` section (:class:`ryu_apps.config.SipConfig`):
        every field is settable there (tests/unit/test_sip_config.py keeps it so)."""
        overload, tcp = sip.overload, sip.tcp
        values: dict[str, Any] = dict(
            host=sip.advertise or sip.listen_host, port=sip.listen_port, routes=RouteTable.from_pairs(sip.routes),
            timers=TimerSettings(t1=sip.t1_s, t2=sip.t2_s, t4=sip.t4_s, timer_c=sip.timer_c_s),
            emergency_numbers=frozenset(sip.emergency_numbers),
            emergency_namespaces=frozenset(sip.emergency_namespaces), max_message_bytes=sip.max_message_bytes,
            late_offer_media=MediaSpec(sip.late_offer_codec, sip.late_offer_ptime_ms),
            bye_on_media_idle=sip.bye_on_media_idle, max_call_s=sip.max_call_s,
            control_timeout_s=sip.control_timeout_s,
            overload=OverloadLimits(max_queue_delay_s=overload.max_queue_delay_ms / 1000.0,
                                    max_transactions=overload.max_transactions,
                                    max_pending_admissions=overload.max_pending_admissions,
                                    retry_after_s=overload.retry_after_s, oc_validity_ms=overload.oc_validity_ms),
            tcp=TcpLimits(idle_timeout_s=tcp.idle_timeout_s, message_timeout_s=tcp.message_timeout_s,
                          max_connections=tcp.max_connections,
                          max_connections_per_source=tcp.max_connections_per_source))
        values.update(overrides)
        return cls(**values)
