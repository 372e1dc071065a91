"""Links as the switches report them, under `ryu-manager` with `dataplane.discovery: true`
against real Open vSwitch (userspace): ryu.topology's LLDP, port state and port speed.

Four bridges, cabled not quite as configured:

    h1 (10.0.1.1) ─ [s1] p10 ══════ p10 [s2] p11 ══════ p10 [s3] ─ h3 (10.0.3.1)
                     p12 ═══════════════════════════════ p12       (a cable the config does not list)
                                      p13 ══════ p10 [s4]         (the config says s3:13 - s4:10)
                                                     [s3] p13      a tap at 100 Mbit/s (config: 1 Gbit/s)

Expected: s1-s2 and s2-s3 verified by LLDP; s3-s4 miswired (its port s4:10 hears s2:13)
and too slow at s3:13; s1:12-s3:12 and s2:13-s4:10 reported unconfigured and kept out of flooding, so
best effort works across the physical loop; a port taken down closes s2-s3 to new calls
(409 path-down) without touching the admitted one, and calls pass again once it is back.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from typing import Any, Callable, Iterator

import pytest

from netlab import Host, Lab, dump_flows, free_port, ovs_available, rest, sh, start_controller, strong_token, until

pytestmark = pytest.mark.integration
TOKEN = strong_token("discovery")
H1_MAC = "02:00:00:00:01:01"


class Net:
    def __init__(self, lab: Lab, api_port: int) -> None:
        self.lab, self.api_port = lab, api_port
        self.bridges: dict[str, str] = {}
        self.hosts: dict[str, Host] = {}

    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        return rest(self.api_port, method, path, body, token=TOKEN)

    def links(self) -> dict[str, dict[str, Any]]:
        status, topology = self.api("GET", "/topology")
        assert status == 200, topology
        return {f"{link['a']}-{link['b']}": link for link in topology["links"]}

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        until(what, check, timeout, lambda: f"; topology now: {json.dumps(self.api('GET', '/topology')[1])}")

    def call(self, call_id: str, port: int) -> tuple[int, Any]:
        return self.api("POST", "/calls", {
            "call_id": call_id, "caller_community": "site-a", "callee_community": "site-c",
            "media": {"codec": "pcmu"}, "caller_media": {"ip": "10.0.1.1", "port": port},
            "callee_media": {"ip": "10.0.3.1", "port": port}})


def metrics(net: Net) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{net.api_port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("discovery")
    of_port, api_port = free_port(), free_port()
    config = tmp / "mam.yaml"
    config.write_text(json.dumps({
        "topology": {
            "switches": [{"name": f"s{i}", "dpid": 0xB0 + i} for i in range(1, 5)],
            "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 20000},
                      {"a": "s2", "a_port": 11, "b": "s3", "b_port": 10, "capacity_kbps": 20000},
                      {"a": "s3", "a_port": 13, "b": "s4", "b_port": 10, "capacity_kbps": 1000000,
                       "reservable": 0.5}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-c", "edge": "s3", "access_ports": [1], "prefixes": ["10.0.3.0/24"]}],
        "aggregates": [{"id": "a-c", "between": ["site-a", "site-c"], "size_kbps": 2000}],
        "dataplane": {"discovery": True, "class_mode": "none"},
        "api": {"port": api_port, "token": TOKEN},
        "sip": {"enabled": False},
    }))
    lab = Lab()
    network = Net(lab, api_port)
    log = tmp / "controller.log"
    try:
        for index in range(1, 5):
            network.bridges[f"s{index}"] = lab.bridge(f"s{index}", 0xB0 + index, of_port)
        lab.link("s1", 10, "s2", 10)
        lab.link("s2", 11, "s3", 10)
        lab.link("s1", 12, "s3", 12)
        lab.link("s2", 13, "s4", 10)
        lab.tap("s3", 13, speed_mbps=100)
        network.hosts["h1"] = lab.host("h1", "s1", 1, "10.0.1.1", H1_MAC)
        network.hosts["h3"] = lab.host("h3", "s3", 1, "10.0.3.1", "02:00:00:00:03:01")
        start_controller(lab, config, of_port, api_port, log)
        for bridge in network.bridges.values():
            lab.wait_connected(bridge)
        yield network
    finally:
        lab.close()
        if log.exists():
            sys.stderr.write(log.read_text()[-4000:])


def test_lldp_verifies_the_configured_links_and_finds_the_miswired_and_the_unconfigured(net: Net) -> None:
    net.wait_for("s1-s2 and s2-s3 verified, s3-s4 miswired", lambda: [
        link["state"] for link in net.links().values()] == ["verified", "verified", "miswired"])
    s3s4 = net.links()["s3-s4"]
    assert s3s4["detail"] in ("LLDP from s2:13 arrives at s4:10; configured s3:13-s4:10",
                              "LLDP from s4:10 arrives at s2:13; configured s3:13-s4:10")
    # the loop's cable, and the one that went into s2 instead of s3: neither is configured
    net.wait_for("the unconfigured links reported", lambda: net.api("GET", "/topology")[1]["discovery"] == {
        "enabled": True, "unconfigured_links": [{"a": "s1", "a_port": 12, "b": "s3", "b_port": 12},
                                                {"a": "s2", "a_port": 13, "b": "s4", "b_port": 10}]})
    status, topology = net.api("GET", "/topology")
    assert [s["connected"] for s in topology["switches"]] == [True] * 4
    assert 'mam_link_state{link="s3-s4",state="miswired"} 1' in metrics(net)
    assert "mam_links_unconfigured 2" in metrics(net)


def test_a_port_slower_than_the_configured_capacity_is_read_and_limits_the_link(net: Net) -> None:
    s3s4 = net.links()["s3-s4"]
    assert s3s4["speed_kbps"] == 100_000            # the tap's 100 Mbit/s, as OVS reports it
    assert s3s4["reservable_now_kbps"] == 50_000    # half (reservable: 0.5) of the real speed, not of 1 Gbit/s
    assert s3s4["problems"][0].startswith("capacity_kbps 1000000 exceeds the speed of port s3:13")
    s1s2 = net.links()["s1-s2"]
    assert s1s2["speed_kbps"] == 10_000_000 and s1s2["reservable_now_kbps"] == s1s2["reservable_kbps"] == 10_000


def test_best_effort_crosses_a_physical_loop_the_configuration_does_not_know(net: Net) -> None:
    net.wait_for("the unconfigured link found", lambda: net.api("GET", "/topology")[1]["discovery"][
        "unconfigured_links"] != [])
    result = net.hosts["h1"].run("ping", "-c", "3", "-i", "0.3", "-W", "2", "10.0.3.1", timeout=20, check=False)
    assert result.returncode == 0, result.stdout
    # s3 learned h1 behind its configured link to s2 (port 10), never behind the loop's port 12
    toward_h1 = [line for line in dump_flows(net.bridges["s3"]) if f"dl_dst={H1_MAC}" in line]
    assert toward_h1 and all("output:10" in line for line in toward_h1), toward_h1


def test_a_port_down_closes_the_path_to_new_calls_and_leaves_the_admitted_one(net: Net) -> None:
    net.wait_for("s2-s3 verified", lambda: net.links()["s2-s3"]["state"] == "verified")
    status, body = net.call("before/1", 40000)
    assert status == 201, body
    sh("ovs-ofctl", "-O", "OpenFlow13", "mod-port", net.bridges["s2"], "11", "down")
    try:
        net.wait_for("s2-s3 down", lambda: net.links()["s2-s3"]["state"] == "down", timeout=10)
        assert re.fullmatch(r"port s2:11 \(\w+\) is down", net.links()["s2-s3"]["detail"])
        status, body = net.call("during/1", 40010)
        assert status == 409 and body["error"]["reason"] == "path-down", body
        assert body["error"]["message"].startswith("aggregate a-c (path s1-s2-s3): link s2-s3 is down: port s2:11")
        status, calls = net.api("GET", "/calls")
        assert [c["call_id"] for c in calls["calls"]] == ["before/1"]
        assert 'mam_link_state{link="s2-s3",state="down"} 1' in metrics(net)
    finally:
        sh("ovs-ofctl", "-O", "OpenFlow13", "mod-port", net.bridges["s2"], "11", "up")
    net.wait_for("s2-s3 verified again", lambda: net.links()["s2-s3"]["state"] == "verified")
    status, body = net.call("after/1", 40020)
    assert status == 201, body
