"""What the SIP proxy is told: its address, next hops, timers, emergency numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ryu_apps.core.codec import MediaSpec

from .message import MAX_MESSAGE_BYTES
from .routing import RouteTable
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

    @classmethod
    def from_sip_config(cls, sip: Any, **overrides: Any) -> "ProxyConfig":
        """From the configuration file's ``sip`` section (:class:`ryu_apps.config.SipConfig`)."""
        values: dict[str, Any] = dict(
            host=sip.listen_host, port=sip.listen_port, routes=RouteTable.from_pairs(sip.routes),
            timers=TimerSettings(timer_c=sip.timer_c_s), emergency_numbers=frozenset(sip.emergency_numbers),
            max_message_bytes=sip.max_message_bytes)
        values.update(overrides)
        return cls(**values)
