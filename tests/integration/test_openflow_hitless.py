"""Hitless controller restart and switch reconnect on real Open vSwitch (CI-sized).

Calls between two sites, one carrying live RTP both ways; the controller is killed with
SIGKILL and restarted (SQLite ledger), then every switch's controller connection is
restarted. Each time: every call is back (active), the switches hold exactly the entries
they held before (full match and actions; no stale entry, no duplicate), the reconcile
sent nothing, and the stream lost no packet and kept its EF marking throughout.
The same scenario at 500 calls is benchmarks/bench_reconcile.py.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from hitless import Hitless, compare, media_summary
from netlab import ovs_available

pytestmark = pytest.mark.integration
CALLS = 40


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hitless]:
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    scenario = Hitless(tmp_path_factory.mktemp("hitless"), CALLS)
    try:
        scenario.start()
        scenario.admit_all()
        yield scenario
    finally:
        scenario.close()


def test_classes_land_on_the_aggregates_ports(lab: Hitless) -> None:
    size = lab.api("GET", "/aggregates/a-b")[1]["size_kbps"]
    for interface, text in lab.classes().items():
        assert "qdisc htb 1: root" in text and text.count("flowid 1:10") == 2, (interface, text)
        assert f"class htb 1:10 parent 1:1 leaf 10: prio 0 rate {size // 1000}" in text, (interface, text)


def check(scenario: Hitless, before: dict, event: str) -> None:
    assert scenario.active_calls() == CALLS, f"after {event}"
    diff = compare(before, scenario.entries())
    for switch, found in diff.items():
        assert found["stale"] == [] and found["missing"] == [] and found["duplicates"] == [], (event, switch, found)
    for switch, changes in scenario.reconcile_entries().items():
        assert changes["added"] == 0 and changes["deleted"] == 0 and changes["meters"] == 0, (event, switch, changes)


def test_controller_kill_and_restart_loses_no_media_and_no_entry(lab: Hitless) -> None:
    before, classes = lab.entries(), lab.classes()
    receivers = lab.stream(seconds=14)
    timings = lab.kill_and_restart()
    summary = media_summary(lab.report(receivers, timeout=40))
    print(f"\nkill -9 + restart with {CALLS} calls: {timings}, media {summary}")
    check(lab, before, "restart")
    assert lab.classes() == classes          # applied again on connect: rates only, nothing set up anew
    assert summary["packets"] > 2000 and summary["lost"] == 0 and summary["not_ef"] == 0, summary


def test_switch_reconnect_loses_no_media_and_no_entry(lab: Hitless) -> None:
    before = lab.entries()
    receivers = lab.stream(seconds=8)
    timings = lab.reconnect()
    summary = media_summary(lab.report(receivers, timeout=30))
    print(f"\nreconnect with {CALLS} calls: {timings}, media {summary}")
    check(lab, before, "reconnect")
    assert summary["packets"] > 1000 and summary["lost"] == 0 and summary["not_ef"] == 0, summary


def test_a_spoofed_frame_from_another_access_port_moves_nothing(lab: Hitless) -> None:
    """hx, on s1's other access port, sends ARP and IPv4 frames with the calling phone's address:
    the calls' flows keep matching the phone's port and deliver only to it; the refusal is counted."""
    from hitless import refused_moves, spoof
    from netlab import until
    before = lab.entries()
    refused = refused_moves(lab)
    receivers = lab.stream(seconds=5)
    spoof(lab, "10.0.1.1")
    until("the refused move counted", lambda: refused_moves(lab) > refused, timeout=10)
    summary = media_summary(lab.report(receivers, timeout=30))
    print(f"\nspoofed ARP/IPv4 for 10.0.1.1 from s1:2: refused moves {refused} -> {refused_moves(lab)}, "
          f"media {summary}")
    diff = compare(before, lab.entries())
    for switch, found in diff.items():
        assert found["stale"] == [] and found["missing"] == [], (switch, found)
    s1 = [line for line in before["s1"] if "priority=3000" in line]
    assert s1 and all("in_port=1," in line for line in s1 if "nw_src=10.0.1.1" in line)
    assert all(line.endswith("output:1") for line in s1 if "pop_mpls" in line)    # delivered to the phone only
    status, location = lab.api("GET", "/calls/hitless/0")
    assert status == 200 and location["state"] == "active"
    assert summary["lost"] == 0 and summary["not_ef"] == 0 and summary["packets"] > 700, summary
