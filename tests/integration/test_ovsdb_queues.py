"""class_mode ovsdb against a real OVSDB: one linux-htb QoS per port, min-rate = the reserved sum,
replaced (not leaked) when the sum changes, removed with the last aggregate."""

from __future__ import annotations

import pytest

from ryu_apps.dataplane import ovsdb_queues

from netlab import Lab, ovs_available, sh

pytestmark = pytest.mark.integration


def ours() -> list[str]:
    out = sh("ovs-vsctl", "--timeout=10", "--columns=_uuid", "find", "qos", "external-ids:owner=mam").stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if line.startswith("_uuid")]


def test_queues_follow_the_reserved_sum_without_leaking_rows() -> None:
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    try:
        lab.bridge("q1", 0xC1, None)
        lab.bridge("q2", 0xC2, None)
        left, _ = lab.link("q1", 5, "q2", 5)
        before = set(ours())
        assert ovsdb_queues.apply(left, 10_000, 2_000, 1) == []
        qos = ovsdb_queues.current_qos(left)
        assert qos is not None and set(ours()) - before == {qos}
        queue = sh("ovs-vsctl", "--timeout=10", "get", "qos", qos, "queues:1").stdout.strip()
        assert sh("ovs-vsctl", "get", "queue", queue, "other-config:min-rate").stdout.strip('"\n') == "2000000"
        assert sh("ovs-vsctl", "get", "qos", qos, "other-config:max-rate").stdout.strip('"\n') == "10000000"
        assert ovsdb_queues.apply(left, 10_000, 3_500, 1) == []      # an aggregate grew
        replaced = ovsdb_queues.current_qos(left)
        assert replaced != qos and set(ours()) - before == {replaced}
        queue = sh("ovs-vsctl", "get", "qos", replaced, "queues:1").stdout.strip()
        assert sh("ovs-vsctl", "get", "queue", queue, "other-config:min-rate").stdout.strip('"\n') == "3500000"
        assert ovsdb_queues.remove(left) == []
        assert ovsdb_queues.current_qos(left) is None and set(ours()) == before
    finally:
        lab.close()
