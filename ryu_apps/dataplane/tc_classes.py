"""The guaranteed class on a port as Linux tc objects, over netlink (pyroute2).

For Open vSwitch's userspace datapath, where ``set_queue`` has no effect: the reserved
traffic is put into an HTB class by filters instead:

* every 802.1Q frame: on our links only aggregates carry VLAN tags (the edges drop tags
  arriving from access ports), so a tagged frame is reserved traffic;
* untagged IPv4 with a reserved DSCP (the last hop to a terminal, or a same-switch call).

Class 1:10 is guaranteed ``min_kbps`` (the sum of the aggregates crossing the port) and
may borrow up to the link rate; class 1:20 (default) gets the rest, with a short queue (a
long one adds delay and, on the userspace datapath, a full queue blocks OVS's shared send
socket for every port). Open vSwitch deletes a port's root qdisc when it adds the port
and when ovs-vswitchd restarts, so :meth:`TcClasses.apply` checks what the port has:
a port already set up by us gets only its rates changed (nothing is dropped, nothing
leaks); anything else is set up from scratch. Netlink, not a ``tc`` subprocess: one
class update costs well under a millisecond.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ..core.flowplan import PortClass

log = logging.getLogger(__name__)

ROOT = 0x10000                # 1:
PARENT = 0x10001              # 1:1
RESERVED_CLASS = 0x10010      # 1:10
BEST_EFFORT_CLASS = 0x10020   # 1:20
ETH_P_8021Q = 0x8100
ETH_P_IP = 0x0800
RESERVED_QUEUE = 200          # packets
BEST_EFFORT_QUEUE = 30


@dataclass(frozen=True)
class ClassSpec:
    capacity_kbps: int
    min_kbps: int
    dscps: tuple[int, ...]

    @classmethod
    def of(cls, port_class: PortClass) -> "ClassSpec":
        return cls(port_class.capacity_kbps, port_class.min_kbps, tuple(sorted(set(port_class.dscps))))

    def rates(self) -> tuple[int, int, int]:
        """(link, reserved, best effort) in kbit/s."""
        cap = max(self.capacity_kbps, 8)
        reserved = min(max(self.min_kbps, 8), cap)
        return cap, reserved, max(cap - reserved, 8)


class TcClasses:
    """Applies classes to interfaces in one network namespace (the default: this one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self._lock = threading.Lock()

    def _netlink(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute, NetNS  # type: ignore[import-untyped]
            self._ipr = NetNS(self.netns) if self.netns else IPRoute()
        return self._ipr

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
        with self._lock:
            try:
                ipr = self._netlink()
                found = ipr.link_lookup(ifname=interface)
                if not found:
                    return [f"no interface {interface}"]
                index = found[0]
                if port_class is None:
                    if self._ours(ipr, index):
                        ipr.tc("del", index=index, handle=ROOT, parent=0xFFFFFFFF)
                    return []
                spec = ClassSpec.of(port_class)
                if self._ours(ipr, index) and self._complete(ipr, index, spec):
                    self._rates(ipr, index, spec, "change-class")
                else:
                    self._install(ipr, index, spec)
                return []
            except Exception as error:  # netlink errors name what failed; the shell logs them
                self._drop_connection()
                return [f"{interface}: {error}"]

    def _drop_connection(self) -> None:
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception:
                pass
            self._ipr = None

    @staticmethod
    def _ours(ipr: Any, index: int) -> bool:
        for qdisc in ipr.get_qdiscs(index):
            if qdisc["parent"] == 0xFFFFFFFF:
                return bool(qdisc.get_attr("TCA_KIND") == "htb" and qdisc["handle"] == ROOT)
        return False

    @staticmethod
    def _complete(ipr: Any, index: int, spec: ClassSpec) -> bool:
        """Our classes are there and the filters match the DSCPs (one per DSCP, one for 802.1Q)."""
        handles = {c["handle"] for c in ipr.get_classes(index)}
        if not {PARENT, RESERVED_CLASS, BEST_EFFORT_CLASS} <= handles:
            return False
        prios = {f["info"] >> 16 for f in ipr.get_filters(index, parent=ROOT)}
        return prios == set(range(1, 2 + len(spec.dscps)))

    @staticmethod
    def _rates(ipr: Any, index: int, spec: ClassSpec, command: str) -> None:
        cap, reserved, rest = spec.rates()
        ipr.tc(command, "htb", index, handle=PARENT, parent=ROOT, rate=f"{cap}kbit", ceil=f"{cap}kbit")
        ipr.tc(command, "htb", index, handle=RESERVED_CLASS, parent=PARENT, rate=f"{reserved}kbit",
               ceil=f"{cap}kbit", prio=0)
        ipr.tc(command, "htb", index, handle=BEST_EFFORT_CLASS, parent=PARENT, rate=f"{rest}kbit",
               ceil=f"{cap}kbit", prio=1)

    def _install(self, ipr: Any, index: int, spec: ClassSpec) -> None:
        """From scratch: whatever root qdisc the port had is replaced."""
        for qdisc in ipr.get_qdiscs(index):
            if qdisc["parent"] == 0xFFFFFFFF and qdisc["handle"] != 0:
                ipr.tc("del", index=index, handle=qdisc["handle"], parent=0xFFFFFFFF)
        ipr.tc("add", "htb", index, handle=ROOT, default=0x20)
        self._rates(ipr, index, spec, "add-class")
        ipr.tc("add", "pfifo", index, handle=0x100000, parent=RESERVED_CLASS, limit=RESERVED_QUEUE)
        ipr.tc("add", "pfifo", index, handle=0x200000, parent=BEST_EFFORT_CLASS, limit=BEST_EFFORT_QUEUE)
        ipr.tc("add-filter", "u32", index, parent=ROOT, prio=1, protocol=ETH_P_8021Q, target=RESERVED_CLASS,
               keys=["0x0/0x0+0"])
        for prio, dscp in enumerate(spec.dscps, start=2):
            ipr.tc("add-filter", "u32", index, parent=ROOT, prio=prio, protocol=ETH_P_IP, target=RESERVED_CLASS,
                   keys=[f"0x{dscp << 18:08x}/0x00fc0000+0"])
