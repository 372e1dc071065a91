"""Per-hop classes through libraries against the real thing: OVSDB rows via ovsdbapp
(class_mode ovsdb) and Linux tc objects via pyroute2 (class_mode tc) on Open vSwitch ports.

One linux-htb QoS per port, min-rate = the reserved sum, updated or replaced (never leaked)
when the sum changes, removed with the last aggregate; the HTB classes and filters likewise.
"""

from __future__ import annotations

import pytest

from ryu_apps.core.flowplan import PortClass
from ryu_apps.dataplane.ovsdb_queues import OvsdbQueues
from ryu_apps.dataplane.tc_classes import TcClasses

from netlab import Lab, ovs_available, sh, strong_token

pytestmark = pytest.mark.integration


def ours(table: str) -> set[str]:
    out = sh("ovs-vsctl", "--timeout=10", "--columns=_uuid", "find", table, "external-ids:owner=mam").stdout
    return {line.split(":")[1].strip() for line in out.splitlines() if line.startswith("_uuid")}


def get(*args: str) -> str:
    return sh("ovs-vsctl", "--timeout=10", "get", *args).stdout.strip().strip('"')


def klass(min_kbps: int, queue_id: int = 1, dscps: tuple[int, ...] = (46,)) -> PortClass:
    return PortClass("q1", 5, queue_id, min_kbps, 10_000, dscps, 5)


@pytest.fixture
def lab():
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    try:
        lab.bridge("q1", 0xC1, None)
        lab.bridge("q2", 0xC2, None)
        yield lab
    finally:
        lab.close()


def test_ovsdb_queues_follow_the_reserved_sum_without_leaking_rows(lab: Lab) -> None:
    left, _ = lab.link("q1", 5, "q2", 5)
    before_qos, before_queues = ours("qos"), ours("queue")
    ovsdb = OvsdbQueues("unix:/var/run/openvswitch/db.sock")
    try:
        assert ovsdb.apply(left, klass(2_000)) == []
        qos = ovsdb.current_qos(left)
        assert qos is not None and ours("qos") - before_qos == {str(qos.uuid)}
        assert len(ours("queue") - before_queues) == 2
        assert get("queue", get("qos", str(qos.uuid), "queues:1"), "other-config:min-rate") == "2000000"
        assert get("qos", str(qos.uuid), "other-config:max-rate") == "10000000"
        assert ovsdb.apply(left, klass(3_500)) == []                     # an aggregate grew: in place
        assert ours("qos") - before_qos == {str(qos.uuid)} and len(ours("queue") - before_queues) == 2
        assert get("queue", get("qos", str(qos.uuid), "queues:1"), "other-config:min-rate") == "3500000"
        assert ovsdb.apply(left, klass(3_500, queue_id=2)) == []        # another queue id: replaced
        replaced = ovsdb.current_qos(left)
        assert replaced is not None and replaced.uuid != qos.uuid
        assert ours("qos") - before_qos == {str(replaced.uuid)} and len(ours("queue") - before_queues) == 2
        assert ovsdb.apply(left, None) == []
        assert ovsdb.current_qos(left) is None
        assert ours("qos") == before_qos and ours("queue") == before_queues
        assert ovsdb.apply("no-such-port", klass(1)) != []               # an error, not an exception
    finally:
        ovsdb.close()


def tc(*args: str) -> str:
    return sh("tc", *args).stdout


def test_tc_classes_land_are_updated_in_place_and_removed(lab: Lab) -> None:
    left, _ = lab.link("q1", 5, "q2", 5)
    classes = TcClasses()
    try:
        assert classes.apply(left, klass(2_000)) == []
        assert "rate 2Mbit ceil 10Mbit" in tc("class", "show", "dev", left)
        filters = tc("filter", "show", "dev", left)
        assert filters.count("flowid 1:10") == 2 and "match 00000000/00000000 at 0" in filters   # 802.1Q + EF
        handle_before = tc("qdisc", "show", "dev", left)
        assert classes.apply(left, klass(3_500)) == []                  # rates only: same qdiscs, same filters
        assert "rate 3500Kbit ceil 10Mbit" in tc("class", "show", "dev", left)
        assert tc("qdisc", "show", "dev", left) == handle_before
        assert tc("filter", "show", "dev", left).count("flowid 1:10") == 2
        assert classes.apply(left, klass(3_500, dscps=(34, 46))) == []  # another DSCP: set up again
        assert tc("filter", "show", "dev", left).count("flowid 1:10") == 3
        sh("tc", "qdisc", "del", "dev", left, "root")                   # what OVS does when it re-adds a port
        assert classes.apply(left, klass(3_500)) == []
        assert tc("filter", "show", "dev", left).count("flowid 1:10") == 2
        assert classes.apply(left, None) == []
        assert "htb" not in tc("qdisc", "show", "dev", left)
    finally:
        classes.close()


def test_the_app_under_ryu_manager_sets_ovsdb_queues_on_the_aggregates_ports(lab: Lab, tmp_path) -> None:
    """class_mode ovsdb in the running app (eventlet hub): ovsdbapp's connection works there and
    each port an aggregate leaves by gets a QoS of ours with the aggregate's rate as min-rate."""
    import json

    from netlab import free_port, start_controller, until
    left, right = lab.link("q1", 5, "q2", 5)
    of_port, api_port = free_port(), free_port()
    config = tmp_path / "mam.yaml"
    config.write_text(json.dumps({
        "topology": {"switches": [{"name": "q1", "dpid": 0xC1}, {"name": "q2", "dpid": 0xC2}],
                     "links": [{"a": "q1", "a_port": 5, "b": "q2", "b_port": 5, "capacity_kbps": 10000}]},
        "communities": [{"name": "a", "edge": "q1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
                        {"name": "b", "edge": "q2", "access_ports": [1], "prefixes": ["10.0.2.0/24"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 1500}],
        "dataplane": {"class_mode": "ovsdb", "set_queue": True, "ovsdb": "unix:/var/run/openvswitch/db.sock"},
        "api": {"port": api_port, "token": strong_token("ovsdb")}, "sip": {"enabled": False}}))
    for bridge in lab.bridges:
        sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, f"tcp:127.0.0.1:{of_port}")
    start_controller(lab, config, of_port, api_port, tmp_path / "controller.log")

    def min_rate(port: str) -> str | None:
        qos = sh("ovs-vsctl", "--timeout=10", "get", "port", port, "qos").stdout.strip()
        if qos in ("", "[]"):
            return None
        return get("queue", get("qos", qos, "queues:1"), "other-config:min-rate")

    until("both ends of the link have the aggregate's queue", lambda: min_rate(left) == min_rate(right) == "1500000",
          timeout=30, explain=lambda: f"({min_rate(left)}, {min_rate(right)}; "
                                      f"{(tmp_path / 'controller.log').read_text()[-1500:]})")
