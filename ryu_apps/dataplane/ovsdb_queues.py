"""The guaranteed class on a port as an OVSDB ``linux-htb`` QoS (class_mode: ovsdb).

For Open vSwitch with the kernel datapath (and switches whose OVSDB honours queues),
where the flows' ``set_queue`` selects the queue: queue ``queue_id`` gets a min-rate of
the sum of the aggregates crossing the port, queue 0 (best effort) the rest; both may
borrow up to the link rate. Re-applying replaces the port's QoS row (the old one is
destroyed, its queues go with it), so nothing is left behind when the sums change.
The userspace datapath ignores these queues: use class_mode tc there.
"""

from __future__ import annotations

from .tc_classes import Runner, _run, run

VSCTL = ("ovs-vsctl", "--timeout=10")


def install_commands(interface: str, capacity_kbps: int, min_kbps: int, queue_id: int,
                     previous_qos: str | None) -> list[list[str]]:
    cap = max(capacity_kbps, 8) * 1000
    reserved = min(max(min_kbps, 8) * 1000, cap)
    command = [*VSCTL, "--", "set", "port", interface, "qos=@qos",
               "--", "--id=@qos", "create", "qos", "type=linux-htb", f"other-config:max-rate={cap}",
               "queues:0=@be", f"queues:{queue_id}=@reserved", "external-ids:owner=mam",
               "--", "--id=@be", "create", "queue", f"other-config:max-rate={cap}",
               "--", "--id=@reserved", "create", "queue", f"other-config:min-rate={reserved}",
               f"other-config:max-rate={cap}"]
    if previous_qos:
        command += ["--", "destroy", "qos", previous_qos]
    return [command]


def remove_commands(interface: str, previous_qos: str | None) -> list[list[str]]:
    command = [*VSCTL, "--", "clear", "port", interface, "qos"]
    if previous_qos:
        command += ["--", "destroy", "qos", previous_qos]
    return [command]


def current_qos(interface: str, runner: Runner | None = None) -> str | None:
    """The UUID of the port's QoS row if it is ours (external-ids:owner=mam), else None."""
    result = (runner or _run)([*VSCTL, "get", "port", interface, "qos"])
    uuid = result.stdout.strip() if result.returncode == 0 else ""
    if not uuid or uuid == "[]":
        return None
    owner = (runner or _run)([*VSCTL, "get", "qos", uuid, "external-ids:owner"])
    return uuid if owner.returncode == 0 and owner.stdout.strip().strip('"') == "mam" else None


def apply(interface: str, capacity_kbps: int, min_kbps: int, queue_id: int,
          runner: Runner | None = None) -> list[str]:
    return run(install_commands(interface, capacity_kbps, min_kbps, queue_id, current_qos(interface, runner)),
               runner)


def remove(interface: str, runner: Runner | None = None) -> list[str]:
    return run(remove_commands(interface, current_qos(interface, runner)), runner)

