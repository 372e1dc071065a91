"""The guaranteed class on a port, as Linux tc commands (for Open vSwitch's userspace datapath).

On the userspace datapath ``set_queue`` has no effect, so the reserved traffic is put
into an HTB class by filters instead:

* every 802.1Q frame: on our links only aggregates carry VLAN tags (the edges drop tags
  arriving from access ports), so a tagged frame is reserved traffic;
* untagged IPv4 with a reserved DSCP (the last hop to a terminal, or a same-switch call).

Class 1:10 is guaranteed ``min_kbps`` (the sum of the aggregates crossing the port) and
may borrow up to the link rate; class 1:20 (default) gets the rest. Measured here: with
10 Mbit/s and 2 Mbit/s reserved under a 20 Mbit/s best-effort flood, reserved loss stays
near 0 (see docs/openflow.md). Open vSwitch deletes a port's root qdisc when the port is
added and when ovs-vswitchd restarts, so the app re-applies classes on every connect.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import Callable, Sequence

log = logging.getLogger(__name__)
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

RESERVED_CLASS = "1:10"
BEST_EFFORT_CLASS = "1:20"


@dataclass(frozen=True)
class ClassSpec:
    interface: str
    capacity_kbps: int
    min_kbps: int
    dscps: tuple[int, ...]


def install_commands(spec: ClassSpec) -> list[list[str]]:
    """Set the port up from scratch (whatever root qdisc it had is replaced)."""
    dev = spec.interface
    commands = [
        ["tc", "qdisc", "del", "dev", dev, "root"],  # may fail: nothing there yet
        ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "20"],
        *rate_commands(spec),
        # Short best-effort queue: a long one adds delay and, on the userspace datapath,
        # a full queue blocks OVS's shared send socket for every port.
        ["tc", "qdisc", "replace", "dev", dev, "parent", RESERVED_CLASS, "handle", "10:", "pfifo", "limit", "200"],
        ["tc", "qdisc", "replace", "dev", dev, "parent", BEST_EFFORT_CLASS, "handle", "20:", "pfifo", "limit", "30"],
        ["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "802.1q", "prio", "1",
         "u32", "match", "u32", "0", "0", "flowid", RESERVED_CLASS],
    ]
    for index, dscp in enumerate(sorted(set(spec.dscps)), start=1):
        commands.append(["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip",
                         "prio", str(1 + index), "u32", "match", "ip", "dsfield", hex(dscp << 2), "0xfc",
                         "flowid", RESERVED_CLASS])
    return commands


def rate_commands(spec: ClassSpec) -> list[list[str]]:
    """Only the rates: enough when the reserved sum changed on a port already set up."""
    dev = spec.interface
    cap = max(spec.capacity_kbps, 8)
    reserved = min(max(spec.min_kbps, 8), cap)
    rest = max(cap - reserved, 8)
    return [
        ["tc", "class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
         "rate", f"{cap}kbit", "ceil", f"{cap}kbit"],
        ["tc", "class", "replace", "dev", dev, "parent", "1:1", "classid", RESERVED_CLASS, "htb",
         "rate", f"{reserved}kbit", "ceil", f"{cap}kbit", "prio", "0"],
        ["tc", "class", "replace", "dev", dev, "parent", "1:1", "classid", BEST_EFFORT_CLASS, "htb",
         "rate", f"{rest}kbit", "ceil", f"{cap}kbit", "prio", "1"],
    ]


def remove_commands(interface: str) -> list[list[str]]:
    return [["tc", "qdisc", "del", "dev", interface, "root"]]


def run(commands: Sequence[Sequence[str]], runner: Runner | None = None) -> list[str]:
    """Run the commands; return the errors (an empty list when all succeeded)."""
    runner = runner or _run
    errors = []
    for command in commands:
        try:
            result = runner(command)
        except (OSError, subprocess.TimeoutExpired) as error:
            errors.append(f"{' '.join(command)}: {error}")
            continue
        if result.returncode != 0 and command[1:3] != ["qdisc", "del"]:
            errors.append(f"{' '.join(command)}: {result.stderr.strip() or result.returncode}")
    for error in errors:
        log.warning("tc: %s", error)
    return errors


def _run(command: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(command), capture_output=True, text=True, timeout=10)
