"""OpenFlow 1.3 messages as data: what the valve asks a switch to do, and what it reads back.

The valve (``valve.py``) returns these, each with an xid it allocated; the shell renders
them with ``render.py`` into ryu's / os-ken's message classes and sends them. Replies
come back decoded (``decode.py``) into the records below, so the valve never touches a
framework object and its tests need no framework at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.flowplan import Entry, FlowEntry, Match, MeterEntry


@dataclass(frozen=True, slots=True)
class FlowAdd:
    """OFPFC_ADD: adds the entry, or replaces the one with the same table, priority and match."""

    entry: FlowEntry


@dataclass(frozen=True, slots=True)
class FlowDelete:
    """OFPFC_DELETE_STRICT of exactly this entry (table, priority, match, cookie)."""

    entry: FlowEntry


@dataclass(frozen=True, slots=True)
class MeterAdd:
    entry: MeterEntry
    modify: bool = False        # OFPMC_MODIFY of a meter the switch has


@dataclass(frozen=True, slots=True)
class MeterDelete:
    meter_id: int


@dataclass(frozen=True, slots=True)
class Barrier:
    pass


@dataclass(frozen=True, slots=True)
class FlowStatsRequest:
    """Flow statistics of the flows whose cookie matches ``cookie`` under ``cookie_mask``,
    in ``table`` (None: every table) and at least as specific as ``match``."""

    cookie: int
    cookie_mask: int
    table: int | None = None
    match: Match = ()


@dataclass(frozen=True, slots=True)
class MeterConfigRequest:
    """The configuration of every meter."""


@dataclass(frozen=True, slots=True)
class PortDescRequest:
    pass


@dataclass(frozen=True, slots=True)
class PacketOut:
    in_port: int
    ports: tuple[int, ...]
    buffer_id: int | None = None       # None: the packet's bytes are in ``data``
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RoleRequest:
    """OFPT_ROLE_REQUEST (for clusters): ``role`` is "master", "slave", "equal" or "nochange"."""

    role: str
    generation_id: int = 0


Message = (FlowAdd | FlowDelete | MeterAdd | MeterDelete | Barrier | FlowStatsRequest | MeterConfigRequest
           | PortDescRequest | PacketOut | RoleRequest)

#: Messages that change what a switch holds (a slave may not send them).
WRITES = (FlowAdd, FlowDelete, MeterAdd, MeterDelete)


@dataclass(frozen=True, slots=True)
class FlowStat:
    """One flow as a switch reports it: the entry (with ``switch`` set) and its counters."""

    entry: FlowEntry
    packet_count: int = 0
    hard_timeout: int = 0


def is_write(message: Message) -> bool:
    return isinstance(message, WRITES)


__all__ = ["Barrier", "Entry", "FlowAdd", "FlowDelete", "FlowStat", "FlowStatsRequest", "Message", "MeterAdd",
           "MeterConfigRequest", "MeterDelete", "PacketOut", "PortDescRequest", "RoleRequest", "is_write"]
