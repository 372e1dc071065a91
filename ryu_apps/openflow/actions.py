"""What the valve asks the shell to do, as values.

* ``Send``: one OpenFlow message (``messages.py``) to one connection, with its xid;
* ``ApplyClass``: the per-hop class a port should have now (``None``: none), performed
  outside the service's lock by the class applier (``ryu_apps/dataplane``);
* reports to the core: flows installed / failed / removed by call serial, a call to
  release (media idle), a terminal heard on an access port (the core judges the move);
* observations for the survey: ports described or changed, a switch gone, LLDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..core.flowplan import PortClass
from ..core.survey import PortInfo
from .messages import Message


@dataclass(frozen=True, slots=True)
class Send:
    switch: str
    conn: int
    xid: int
    message: Message


@dataclass(frozen=True, slots=True)
class ApplyClass:
    switch: str
    port: int
    interface: str
    port_class: PortClass | None


@dataclass(frozen=True, slots=True)
class Installed:
    """Every switch confirmed the call's flows (``seconds`` from sending to the last reply)."""

    serial: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Failed:
    serial: int
    reason: str


@dataclass(frozen=True, slots=True)
class Removed:
    """Every switch confirmed the removal of a released call's flows (or had none)."""

    serial: int


@dataclass(frozen=True, slots=True)
class Release:
    serial: int
    cause: str


@dataclass(frozen=True, slots=True)
class LearnTerminal:
    community: str
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ObservePorts:
    switch: str
    ports: Mapping[int, PortInfo]


@dataclass(frozen=True, slots=True)
class ObservePort:
    switch: str
    port: int
    info: PortInfo | None


@dataclass(frozen=True, slots=True)
class ObserveSwitchGone:
    switch: str


@dataclass(frozen=True, slots=True)
class ObserveLink:
    src: tuple[str, int]
    dst: tuple[str, int]
    up: bool


Report = Installed | Failed | Removed | Release | LearnTerminal
Observation = ObservePorts | ObservePort | ObserveSwitchGone | ObserveLink
Action = Send | ApplyClass | Report | Observation
