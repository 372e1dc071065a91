"""Which per-hop class applier ``dataplane.class_mode`` asks for (see docs/openflow.md)."""

from __future__ import annotations

from typing import Any

from ..core.flowplan import PortClass


class NoClasses:
    """class_mode none: the switches' own configuration provides the class."""

    def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
        return []


def class_applier(dataplane: Any) -> Any:
    if dataplane.class_mode == "tc":
        from .tc_classes import TcClasses
        return TcClasses()
    if dataplane.class_mode == "ovsdb":
        from .ovsdb_queues import OvsdbQueues
        return OvsdbQueues(dataplane.ovsdb)
    return NoClasses()
