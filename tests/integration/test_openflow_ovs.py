"""The app under `ryu-manager` against real Open vSwitch (userspace datapath).

Three bridges in a line, a host per site in its own namespace:

    h1a (10.0.1.1) ─┐                                          ┌─ h2a (10.0.2.1)
    h1b (10.0.1.2) ─┴ [s1] p10 ══════ p10 [s2] p11 ══════ p10 [s3] ┘
      site-a                       core                         site-b

The flows and meters the switches hold are compared with the plan of a shadow manager fed
the same requests; call media is captured on the middle link and at the egress and decoded
by tshark, independently of our own code.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from ryu_apps.config import build_manager, load_config
from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import COOKIE_PREFIX, CookieKind, FlowEntry, MeterEntry, cookie
from ryu_apps.core.store import MemoryLedger

from netlab import (RTPFLOW, Host, Lab, capture, decode, dump_flows, dump_meters, free_port, ovs_available, rest,
                    sh, start_controller, strong_token)

pytestmark = pytest.mark.integration
TOKEN = strong_token("ovs")
CALL = {"call_id": "ovs-call/1", "caller_community": "site-a", "callee_community": "site-b",
        "media": {"codec": "pcmu"}, "caller_media": {"ip": "10.0.1.1", "port": 40000},
        "callee_media": {"ip": "10.0.2.1", "port": 40002}}
IDLE_S = 6


class Net:
    def __init__(self, lab: Lab, config: Path, of_port: int, api_port: int, tmp: Path) -> None:
        self.lab, self.config, self.of_port, self.api_port, self.tmp = lab, config, of_port, api_port, tmp
        self.bridges: dict[str, str] = {}
        self.hosts: dict[str, Host] = {}
        self.controller: subprocess.Popen | None = None
        self.probes: list[subprocess.Popen] = []

    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        return rest(self.api_port, method, path, body, token=TOKEN)

    def table0(self, switch: str) -> Counter:
        """(cookie, priority) of our entries in table 0, as a multiset."""
        seen: Counter = Counter()
        for line in dump_flows(self.bridges[switch]):
            fields = dict(re.findall(r"(cookie|table|priority)=([0-9a-fx]+)", line))
            cookie = int(fields.get("cookie", "0"), 16)
            if fields.get("table", "0") == "0" and cookie & (0xFFFF << 48) == COOKIE_PREFIX:
                seen[(cookie, int(fields.get("priority", "32768")))] += 1
        return seen

    def keep_media_alive(self) -> None:
        """Probes both ways on the call's media, so its flows do not idle out between tests."""
        for host, flow in (("h1a", "10.0.2.1:40002"), ("h2a", "10.0.1.1:40000")):
            process = self.hosts[host].popen(sys.executable, str(RTPFLOW), "send", "--flow", flow, "--probe",
                                             "--pps", "4", "--duration", "600", stdout=subprocess.DEVNULL,
                                             start_new_session=True)
            self.lab.processes.append(process)
            self.probes.append(process)

    def stop_probes(self) -> None:
        for process in self.probes:
            self.lab.stop(process)
        self.probes.clear()

    def wait_call_state(self, call_id: str, state: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        body: object = None
        while time.monotonic() < deadline:
            status, body = self.api("GET", f"/calls/{call_id}")
            if status == 200 and isinstance(body, dict) and body["state"] == state:
                return body
            time.sleep(0.1)
        raise AssertionError(f"call {call_id} never reached {state}: last {body}")

    def media(self, sender: str, flows: list[str], receiver: str, ports: list[int], *, pps: float = 50,
              size: int = 160, dscp: int = 0, seconds: float = 3.0) -> dict:
        """Send from one host, receive on another; the receiver's report."""
        rx = self.hosts[receiver].popen(sys.executable, str(RTPFLOW), "recv", *sum((["--port", str(p)] for p in ports), []),
                                        "--duration", str(seconds + 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        time.sleep(0.5)
        self.hosts[sender].run(sys.executable, str(RTPFLOW), "send", *sum((["--flow", f] for f in flows), []),
                               "--pps", str(pps), "--size", str(size), "--dscp", str(dscp), "--duration", str(seconds),
                               timeout=seconds + 20)
        out, err = rx.communicate(timeout=seconds + 20)
        assert rx.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("ovs")
    of_port, api_port = free_port(), free_port()
    config = tmp / "mam.yaml"
    config.write_text(json.dumps({
        "topology": {
            "switches": [{"name": "s1", "dpid": 0xA1}, {"name": "s2", "dpid": 0xA2}, {"name": "s3", "dpid": 0xA3}],
            "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 20000, "reservable": 0.5},
                      {"a": "s2", "a_port": 11, "b": "s3", "b_port": 10, "capacity_kbps": 20000, "reservable": 0.5}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1, 2], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-b", "edge": "s3", "access_ports": [1, 2], "prefixes": ["10.0.2.0/24"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 2000}],
        "dataplane": {"class_mode": "tc", "call_idle_timeout_s": IDLE_S},
        "api": {"port": api_port, "token": TOKEN},
        "sip": {"enabled": False},
        "store": str(tmp / "ledger.sqlite"),
    }))
    lab = Lab()
    network = Net(lab, config, of_port, api_port, tmp)
    try:
        for index, name in enumerate(("s1", "s2", "s3"), start=1):
            network.bridges[name] = lab.bridge(name, 0xA0 + index, of_port)
        lab.link("s1", 10, "s2", 10)
        lab.link("s2", 11, "s3", 10)
        network.hosts["h1a"] = lab.host("h1a", "s1", 1, "10.0.1.1", "02:00:00:00:01:01")
        network.hosts["h1b"] = lab.host("h1b", "s1", 2, "10.0.1.2", "02:00:00:00:01:02")
        network.hosts["h2a"] = lab.host("h2a", "s3", 1, "10.0.2.1", "02:00:00:00:02:01")
        network.controller = start_controller(lab, config, of_port, api_port, tmp / "controller.log")
        for bridge in network.bridges.values():
            lab.wait_connected(bridge)
        # best effort first: ARP and ping across the core (this also teaches the app where terminals are)
        for source, target in (("h1a", "10.0.2.1"), ("h1b", "10.0.2.1")):
            network.hosts[source].run("ping", "-c", "2", "-W", "2", target, timeout=15, check=False)
        result = network.hosts["h1a"].run("ping", "-c", "2", "-W", "2", "10.0.2.1", timeout=15, check=False)
        assert result.returncode == 0, f"best-effort connectivity failed:\n{result.stdout}"
        yield network
    finally:
        log = tmp / "controller.log"
        lab.close()
        if log.exists():
            sys.stderr.write(log.read_text()[-3000:])


def shadow_plan(net: Net, calls: list[dict]) -> frozenset:
    """What the switches should hold: the same requests put to a manager of our own."""
    manager = build_manager(load_config(str(net.config)), MemoryLedger())
    for call in calls:
        decision = manager.admit(AdmissionRequest(call["call_id"], call["caller_community"],
                                                  call["callee_community"], MediaSpec(call["media"]["codec"])), 0.0)
        assert isinstance(decision, Admitted)
        manager.attach_media(call["call_id"], MediaEndpoint(**call["caller_media"]),
                             MediaEndpoint(**call["callee_media"]), 0.0)
    return manager.expected_plan()


def aggregate_tag(net: Net) -> int:
    status, aggregate = net.api("GET", "/aggregates/a-b")
    assert status == 200, aggregate
    return int(aggregate["tag"])


def expected_table0(plan: frozenset, switch: str) -> Counter:
    return Counter((e.cookie, e.priority) for e in plan
                   if isinstance(e, FlowEntry) and e.switch == switch and e.table == 0)


def test_switches_hold_the_aggregate_plan_before_any_call(net: Net) -> None:
    plan = shadow_plan(net, [])
    for switch in ("s1", "s2", "s3"):
        assert net.table0(switch) == expected_table0(plan, switch), switch
    meters = {e.switch: e for e in plan if isinstance(e, MeterEntry)}
    assert set(meters) == {"s1", "s3"}
    for switch, meter in meters.items():
        text = dump_meters(net.bridges[switch])
        assert f"meter={meter.meter_id} kbps" in text and f"rate={meter.rate_kbps}" in text, text
    assert "meter=" not in dump_meters(net.bridges["s2"])  # the core polices nothing, holds no call state


def test_admitted_call_is_confirmed_and_its_flows_match_the_plan(net: Net) -> None:
    status, body = net.api("POST", "/calls", CALL)
    assert status == 201, body
    call = net.wait_call_state("ovs-call/1", "active")  # barrier-confirmed
    net.keep_media_alive()
    plan = shadow_plan(net, [CALL])
    for switch in ("s1", "s2", "s3"):
        assert net.table0(switch) == expected_table0(plan, switch), switch
    s1 = "\n".join(dump_flows(net.bridges["s1"]))
    tag, vid = call["tag_to_callee"], 0x1000 | aggregate_tag(net)
    # RTP 40002 and its RTCP 40003 under one mask (dataplane.rtcp_match: masked)
    ingress = [line for line in s1.split("\n") if f"tp_dst={40002:#x}/0xfffe" in line]
    assert len(ingress) == 1 and "in_port=1," in ingress[0] and "meter:" in ingress[0], ingress  # terminal learned
    assert f"set_field:{tag}->mpls_label" in ingress[0] and f"set_field:{vid}->vlan_vid" in ingress[0]
    assert "set_field:46->ip_dscp" in ingress[0] and ingress[0].endswith("output:10")
    s3 = [line for line in dump_flows(net.bridges["s3"]) if f"mpls_label={tag}" in line]
    assert len(s3) == 1 and s3[0].endswith("actions=pop_vlan,pop_mpls:0x0800,output:1"), s3  # to h2a only
    # the core holds the aggregate only: the call added nothing there
    assert net.table0("s2") == expected_table0(shadow_plan(net, []), "s2")


def test_media_is_tagged_on_the_middle_link_and_untagged_at_the_egress(net: Net) -> None:
    status, call = net.api("GET", "/calls/ovs-call/1")
    assert status == 200, call
    status, aggregate = net.api("GET", "/aggregates/a-b")
    assert status == 200
    middle, egress = net.tmp / "middle.pcap", net.tmp / "egress.pcap"
    cap_middle = capture(f"{net.lab.prefix}s2p11", 6, middle)
    cap_egress = capture(net.hosts["h2a"].interface, 6, egress, namespace=net.hosts["h2a"].name)
    # RTP to 40002 and its RTCP to 40003 (one packet a second here, to be seen)
    report = net.media("h1a", ["10.0.2.1:40002:40000"], "h2a", [40002], seconds=3)
    rtcp = net.media("h1a", ["10.0.2.1:40003:40001"], "h2a", [40003], pps=2, seconds=2)
    cap_middle.communicate(timeout=20)
    cap_egress.communicate(timeout=20)
    assert report["packets"] >= 140 and report["loss_pct"] <= 1.0, report
    assert report["flows"]["40002"]["dscps"] == {"46": report["packets"]}, report  # marked EF by the edge
    assert rtcp["packets"] >= 3 and rtcp["flows"]["40003"]["dscps"] == {"46": rtcp["packets"]}, rtcp  # RTCP rides too
    tagged = decode(middle, "udp.dstport == 40002 && !icmp", "vlan.id", "mpls.label", "ip.dsfield.dscp")
    assert len(tagged) >= 140, tagged[:3]
    assert {tuple(row) for row in tagged} == {(str(aggregate["tag"]), str(call["tag_to_callee"]), "46")}
    delivered = decode(egress, "udp.dstport == 40002 && !icmp", "vlan.id", "mpls.label", "ip.dsfield.dscp", "eth.dst")
    assert len(delivered) >= 140
    assert {tuple(row) for row in delivered} == {("", "", "46", "02:00:00:00:02:01")}


def test_meter_holds_a_flow_above_its_rate_near_the_meter_rate(net: Net) -> None:
    # 5 Mbit/s of the call's own media against the aggregate's 2 Mbit/s meter at s1
    report = net.media("h1a", ["10.0.2.1:40002:40000"], "h2a", [40002], pps=600, size=1000, seconds=4)
    rates = report["kbps_per_second"][1:-1] or report["kbps_per_second"]
    held = statistics.median(rates)
    print(f"\nmeter 2000 kbit/s, offered ~4900 kbit/s (UDP payload), delivered median {held:.0f} kbit/s {rates}")
    stats = sh("ovs-ofctl", "-O", "OpenFlow13", "meter-stats", net.bridges["s1"]).stdout
    assert 1300 <= held <= 2400, (rates, stats, dump_meters(net.bridges["s1"]), dump_flows(net.bridges["s1"]))


def test_spoofed_ef_from_an_access_port_gets_best_effort(net: Net) -> None:
    # h1b is no party to any call: its EF marking must not survive the edge
    report = net.media("h1b", ["10.0.2.1:40010:40020"], "h2a", [40010], dscp=46, seconds=2)
    assert report["packets"] >= 90, report
    assert report["flows"]["40010"]["dscps"] == {"0": report["packets"]}, report


FORGE = """
import socket, struct, sys
vid, label, src, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
mac = lambda text: bytes.fromhex(text.replace(":", ""))
udp = struct.pack("!HHHH", 40000, 40002, 8 + 172, 0) + struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + bytes(160)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 46 << 2, 20 + len(udp), 0, 0, 64, 17, 0,
                 socket.inet_aton("10.0.1.1"), socket.inet_aton("10.0.2.1"))
frame = (mac("02:00:00:00:02:01") + mac(src) + struct.pack("!HH", 0x8100, (5 << 13) | vid)
         + struct.pack("!HI", 0x8847, (label << 12) | (1 << 8) | 64) + ip + udp)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[5], 0))
for _ in range(count):
    sock.send(frame)
"""


def test_forged_tags_from_an_access_port_are_dropped(net: Net) -> None:
    """A terminal sending frames that carry the aggregate's VLAN and a live call's label
    (pretending to be core traffic) is dropped at the edge; nothing reaches the callee."""
    status, call = net.api("GET", "/calls/ovs-call/1")
    assert status == 200, call
    before = _tagged_drops(net, "s1")
    h1b, h2a = net.hosts["h1b"], net.hosts["h2a"]
    rx = h2a.popen(sys.executable, str(RTPFLOW), "recv", "--port", "40002", "--duration", "3",
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    h1b.run(sys.executable, "-c", FORGE, str(aggregate_tag(net)), str(call["tag_to_callee"]), h1b.mac, "50",
            h1b.interface)
    out, _ = rx.communicate(timeout=20)
    assert json.loads(out)["packets"] == 0
    assert _tagged_drops(net, "s1") - before == 50


def _tagged_drops(net: Net, switch: str) -> int:
    """Packets counted by the edge's guards that drop tagged frames nobody planned (VLAN or MPLS)."""
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", net.bridges[switch], "table=0").stdout
    guards = [line for line in out.splitlines() if "priority=1500" in line]
    assert len(guards) == 2, out
    return sum(int(re.search(r"n_packets=(\d+)", line).group(1)) for line in guards)


def test_reconnect_removes_stale_entries_and_leaves_no_duplicates(net: Net) -> None:
    before = {switch: net.table0(switch) for switch in ("s1", "s2", "s3")}
    stale = COOKIE_PREFIX | (3 << 40) | 0x99
    sh("ovs-ofctl", "-O", "OpenFlow13", "add-flow", net.bridges["s2"],
       f"cookie={stale:#x},table=0,priority=2999,udp,tp_dst=9,actions=drop")
    assert net.table0("s2")[(stale, 2999)] == 1
    for bridge in net.bridges.values():
        sh("ovs-vsctl", "--timeout=10", "del-controller", bridge)
    for bridge in net.bridges.values():
        sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, f"tcp:127.0.0.1:{net.of_port}")
    for bridge in net.bridges.values():
        net.lab.wait_connected(bridge)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(net.table0(s) != before[s] for s in before):
        time.sleep(0.2)
    for switch in before:
        assert net.table0(switch) == before[switch], switch
        lines = dump_flows(net.bridges[switch])
        assert len(lines) == len(set(lines)), lines


def test_controller_restart_keeps_the_call_and_the_same_flows(net: Net) -> None:
    before = {switch: net.table0(switch) for switch in ("s1", "s2", "s3")}
    assert net.controller is not None
    net.lab.stop(net.controller)
    net.controller = start_controller(net.lab, net.config, net.of_port, net.api_port, net.tmp / "controller2.log")
    for bridge in net.bridges.values():
        net.lab.wait_connected(bridge)
    status, call = net.api("GET", "/calls/ovs-call/1")
    assert status == 200, call  # the SQLite ledger kept it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(net.table0(s) != before[s] for s in before):
        time.sleep(0.2)
    assert {s: net.table0(s) for s in before} == before


def removals_skipped(net: Net) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{net.api_port}/metrics", timeout=10) as response:
        found = re.search(r"^mam_openflow_removals_skipped_total (\S+)$", response.read().decode(), re.M)
    assert found, "no mam_openflow_removals_skipped_total in /metrics"
    return float(found.group(1))


def test_a_live_calls_ingress_entry_deleted_by_an_operator_comes_back(net: Net) -> None:
    """The flow-removed it sends reaches the valve (only ended calls' are dropped undecoded)."""
    _, call = net.api("GET", "/calls/ovs-call/1")
    assert isinstance(call, dict)
    ingress = f"tp_dst={40002:#x}/0xfffe"
    assert any(ingress in line for line in dump_flows(net.bridges["s1"]))
    value = cookie(CookieKind.CALL, call["serial"])
    assert any(c == value for c, _ in net.table0("s1"))
    # its UDP (ingress) entry only: the egress one matches MPLS
    sh("ovs-ofctl", "-O", "OpenFlow13", "del-flows", net.bridges["s1"], f"cookie={value:#x}/-1,table=0,udp")
    assert not any(ingress in line for line in dump_flows(net.bridges["s1"]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(ingress in line for line in dump_flows(net.bridges["s1"])):
        time.sleep(0.2)
    assert any(ingress in line for line in dump_flows(net.bridges["s1"])), "the deleted ingress entry stayed gone"
    assert net.wait_call_state("ovs-call/1", "active")


def test_an_ended_calls_flow_removed_messages_are_dropped_undecoded(net: Net) -> None:
    before = removals_skipped(net)
    other = dict(CALL, call_id="ovs-call/2", caller_media={"ip": "10.0.1.2", "port": 41000},
                 callee_media={"ip": "10.0.2.1", "port": 41002})
    status, body = net.api("POST", "/calls", other)
    assert status == 201, body
    net.wait_call_state("ovs-call/2", "active")
    status, body = net.api("DELETE", "/calls/ovs-call/2")
    assert status == 204, body
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and removals_skipped(net) < before + 2:
        time.sleep(0.2)
    assert removals_skipped(net) == before + 2      # one per edge: each direction's ingress entry
    assert net.wait_call_state("ovs-call/1", "active")


def test_idle_media_releases_the_call_and_its_bandwidth(net: Net) -> None:
    net.stop_probes()
    status, aggregate = net.api("GET", "/aggregates/a-b")
    assert aggregate["used_kbps"] > 0
    deadline = time.monotonic() + IDLE_S + 15
    while time.monotonic() < deadline:
        status, _ = net.api("GET", "/calls/ovs-call/1")
        if status == 404:
            break
        time.sleep(0.5)
    assert status == 404, "the call outlived its media"
    status, aggregate = net.api("GET", "/aggregates/a-b")
    assert aggregate["used_kbps"] == 0 and aggregate["calls"] == 0
    assert net.table0("s1") == expected_table0(shadow_plan(net, []), "s1")
