"""What the switches say, as plain values: the valve's input (besides plan changes).

The shell decodes each framework event into one of these (``decode.py``) and hands it to
the valve with ``now``. ``conn`` names one OpenFlow connection: a switch that reconnects
gets a new one, so a late event from its old connection is told apart and ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping

from ..core.flowplan import Match, MeterEntry
from ..core.survey import PortInfo
from .messages import FlowStat


class RemovedReason(str, enum.Enum):
    IDLE = "idle"           # the flow's idle timeout: no packet matched it for that long
    HARD = "hard"
    DELETE = "delete"       # a flow-mod deleted it (ours, or someone else's)
    OTHER = "other"


class Role(str, enum.Enum):
    """This controller's OpenFlow role for one switch. Only EQUAL and MASTER write."""

    EQUAL = "equal"
    MASTER = "master"
    SLAVE = "slave"

    @property
    def writes(self) -> bool:
        return self is not Role.SLAVE


@dataclass(frozen=True, slots=True)
class SwitchConnected:
    conn: int
    dpid: int


@dataclass(frozen=True, slots=True)
class SwitchGone:
    conn: int


@dataclass(frozen=True, slots=True)
class PortsDescribed:
    conn: int
    ports: Mapping[int, PortInfo]


@dataclass(frozen=True, slots=True)
class PortChanged:
    conn: int
    port: int
    info: PortInfo | None           # None: the port was deleted
    added: bool = False             # added (or modified): OVS resets a (re)added port's qdisc


@dataclass(frozen=True, slots=True)
class BarrierReply:
    conn: int
    xid: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    conn: int
    xid: int
    type: int
    code: int


@dataclass(frozen=True, slots=True)
class FlowRemoved:
    conn: int
    cookie: int
    table: int
    priority: int
    match: Match
    reason: RemovedReason
    packet_count: int = 0


@dataclass(frozen=True, slots=True)
class PacketIn:
    """A table miss sent to the controller, decoded: addresses as text, ``ip`` the
    sender's IPv4 address (ARP sender or IPv4 source) when the frame has one."""

    conn: int
    in_port: int
    eth_src: str
    eth_dst: str
    ethertype: int
    ip: str | None = None
    buffer_id: int | None = None
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class FlowStatsReply:
    conn: int
    xid: int
    flows: tuple[FlowStat, ...]
    more: bool = False              # another part of this reply follows


@dataclass(frozen=True, slots=True)
class MeterConfigReply:
    conn: int
    xid: int
    meters: tuple[MeterEntry, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """This controller's role for the switch changed (role reply, or a cluster decision)."""

    conn: int
    role: Role


@dataclass(frozen=True, slots=True)
class LinkHeard:
    """LLDP (ryu.topology / os_ken.topology): sent from src, received at dst."""

    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int
    up: bool = True                 # False: the link was lost


@dataclass(frozen=True, slots=True)
class LinkPortsChanged:
    """The survey's switch-to-switch ports changed (the shell asks it after an observation)."""

    ports: frozenset[tuple[str, int]]


Event = (SwitchConnected | SwitchGone | PortsDescribed | PortChanged | BarrierReply | ErrorReply | FlowRemoved
         | PacketIn | FlowStatsReply | MeterConfigReply | RoleChanged | LinkHeard | LinkPortsChanged)
