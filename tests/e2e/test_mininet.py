"""End to end in Mininet: the three topologies, the controller under `ryu-manager`, real media.

Quality under congestion (topology a) runs the demo itself, shorter; overlapping prefixes
(topology b) and path choice (topology c) admit calls over REST as an IP-PBX would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "mininet"), str(ROOT)]

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0, reason="Mininet needs root"),
              pytest.mark.skipif(shutil.which("ovs-vsctl") is None or shutil.which("mnexec") is None,
                                 reason="Open vSwitch and Mininet are not installed")]

RTPFLOW = ROOT / "mininet" / "rtpflow.py"


def media(emu: Any, sender: str, flows: list[str], receivers: dict[str, list[int]], seconds: float = 3) -> dict:
    """Send from one host; each receiving host's report."""
    listening = {name: emu.host(name).popen([sys.executable, str(RTPFLOW), "recv", "--duration", str(seconds + 3),
                                             *sum((["--port", str(p)] for p in ports), [])])
                 for name, ports in receivers.items()}
    time.sleep(0.7)
    out = emu.host(sender).popen([sys.executable, str(RTPFLOW), "send", "--duration", str(seconds),
                                  *sum((["--flow", f] for f in flows), [])]).communicate(timeout=seconds + 20)
    assert out is not None
    reports = {}
    for name, process in listening.items():
        stdout, stderr = process.communicate(timeout=seconds + 20)
        reports[name] = json.loads(stdout.decode().strip().splitlines()[-1])
    return reports


def admit(emu: Any, call_id: str, caller: str, callee: str, caller_media: tuple[str, int],
          callee_media: tuple[str, int]) -> dict:
    status, body = emu.api("POST", "/calls", {
        "call_id": call_id, "caller_community": caller, "callee_community": callee, "media": {"codec": "pcmu"},
        "caller_media": {"ip": caller_media[0], "port": caller_media[1]},
        "callee_media": {"ip": callee_media[0], "port": callee_media[1]}})
    assert status == 201, body
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, call = emu.api("GET", f"/calls/{call_id}")
        if call["state"] == "active":
            return call
        time.sleep(0.1)
    raise AssertionError(f"{call_id} flows never confirmed: {call}")


def test_admitted_media_keeps_its_quality_under_a_flood_and_loses_it_without_the_aggregate(tmp_path: Path) -> None:
    from demo import SITE_H_CALLS, run_demo, site_h_line
    figures = run_demo(tmp_path / "demo", seconds=8, calls=25, say=print, h323_calls=1)
    with_loss = figures["reserved"]["media_loss_pct"]
    without_loss = figures["best_effort"]["media_loss_pct"]
    print(f"\nadmitted-call media loss under a {figures['flood_kbps']} kbit/s flood: "
          f"{with_loss} % with the aggregate, {without_loss} % without")
    assert figures["admitted"] == figures["pool_kbps"] // 91           # G.711 at 91 kbit/s with tags
    # one H.323 call (fastStart G.711 through the gatekeeper) rides the same pool, its flows confirmed
    assert figures["h323_admitted"] == 1 and figures["protocols"] == {"h323": 1, "sip": figures["admitted"] - 1}
    assert figures["rejected"] == figures["calls_offered"] - figures["admitted"]
    assert figures["sipp_exit"] == 0                                     # every call as the scenario expects
    assert figures["used_kbps"] <= figures["pool_kbps"]
    assert figures["used_after_kbps"] == 0
    assert figures["reserved"]["media_packets"] >= 0.95 * figures["reserved"]["media_sent"]
    assert with_loss is not None and with_loss <= 1.0
    assert without_loss is not None and without_loss >= max(5.0, 5 * with_loss)
    # the H.323 site: its terminal registers at the gatekeeper, which admits each call on
    # site-h--site-b and relays it to the gateway, which bridges it to SIPp at site-b
    site_h = figures["site_h"]
    print(site_h_line(site_h))
    assert site_h["attempted"] == SITE_H_CALLS and site_h["admitted"] == site_h["pool_kbps"] // 91
    assert site_h["refused"] == site_h["attempted"] - site_h["admitted"]                    # ARJ, pool full
    assert site_h["connected"] == site_h["completed"] == site_h["admitted"]
    assert site_h["protocols"] == ["h323"] and site_h["used_kbps"] == 91 * site_h["admitted"]
    assert site_h["used_after_kbps"] == 0
    h_with, h_without = site_h["reserved"]["loss_pct"], site_h["best_effort"]["loss_pct"]
    assert site_h["reserved"]["packets"] >= 0.95 * site_h["reserved"]["sent"]
    assert h_with is not None and h_with <= 1.0
    assert h_without is not None and h_without >= max(5.0, 5 * h_with)


def test_overlapping_prefixes_reach_the_right_terminals(tmp_path: Path) -> None:
    from emulation import Emulation
    from topologies import carrier
    with Emulation(carrier.SPEC, tmp_path, log=print) as emu:
        emu.host("b1").cmd("ping -c 2 -W 2 10.1.0.1")
        # a1 (cust-a) and c1 (cust-c) share 10.1.0.1; b1 calls both, on different ports
        to_a = admit(emu, "b-to-a", "cust-b", "cust-a", ("10.2.0.1", 21000), ("10.1.0.1", 31000))
        to_c = admit(emu, "b-to-c", "cust-b", "cust-c", ("10.2.0.1", 21002), ("10.1.0.1", 31002))
        assert to_a["aggregate_id"] == "cust-b--cust-a" and to_c["aggregate_id"] == "cust-b--cust-c"
        reports = media(emu, "b1", ["10.1.0.1:31000:21000", "10.1.0.1:31002:21002"],
                        {"a1": [31000, 31002], "c1": [31000, 31002]})
        a1, c1 = reports["a1"]["flows"], reports["c1"]["flows"]
        print(f"\na1 received {a1['31000']['packets']} / {a1['31002']['packets']}, "
              f"c1 received {c1['31000']['packets']} / {c1['31002']['packets']} (ports 31000 / 31002)")
        assert a1["31000"]["packets"] >= 140 and a1["31002"]["packets"] == 0
        assert c1["31002"]["packets"] >= 140 and c1["31000"]["packets"] == 0
        assert a1["31000"]["dscps"] == {"46": a1["31000"]["packets"]}
        for call in ("b-to-a", "b-to-c"):
            assert emu.api("DELETE", f"/calls/{call}")[0] == 204
        for aggregate in ("cust-b--cust-a", "cust-b--cust-c"):
            assert emu.api("GET", f"/aggregates/{aggregate}")[1]["used_kbps"] == 0


def test_the_aggregate_path_avoids_a_link_without_enough_reservable_capacity(tmp_path: Path) -> None:
    from emulation import Emulation
    from topologies import mesh
    with Emulation(mesh.SPEC, tmp_path, log=print) as emu:
        status, aggregate = emu.api("GET", "/aggregates/site-x--site-y")
        assert status == 200
        path = aggregate["path"]
        hops = set(zip(path, path[1:])) | set(zip(path[1:], path))
        thin = mesh.SPEC.link(*mesh.THIN)
        print(f"\naggregate of {aggregate['size_kbps']} kbit/s takes {' -> '.join(path)}; the direct c1-c2 link "
              f"could reserve {int(thin.mbit * 1000 * thin.reservable)} kbit/s")
        assert mesh.THIN not in hops and len(path) == 5
        topology = emu.api("GET", "/topology")[1]
        direct = next(l for l in topology["links"] if {l["a"], l["b"]} == set(mesh.THIN))
        assert all(d["reserved_kbps"] == 0 for d in direct["directions"])
        via = path[2]  # c3 or c4: the core switch carries the aggregate, per aggregate only
        emu.host("x1").cmd("ping -c 2 -W 2 10.0.2.1")
        admit(emu, "x-to-y", "site-x", "site-y", ("10.0.1.1", 22000), ("10.0.2.1", 32000))
        reports = media(emu, "x1", ["10.0.2.1:32000:22000"], {"y1": [32000]})
        assert reports["y1"]["packets"] >= 140 and reports["y1"]["loss_pct"] <= 1.0
        flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", emu.bridge(via), "table=0"],
                               capture_output=True, text=True, timeout=20).stdout
        transit = [line for line in flows.splitlines() if "priority=2000" in line]
        assert len(transit) == 2, flows  # one per direction, whatever the calls
        assert sum(int(line.split("n_packets=")[1].split(",")[0]) for line in transit) >= 140
        # e1-c1 can reserve 50 Mbit/s and 5 are taken: a 46 Mbit/s pool is refused, nothing disturbed
        status, body = emu.api("POST", "/aggregates", {"id": "too-big", "communities": ["site-x", "site-y"],
                                                       "size_kbps": 46_000})
        assert status == 409, body
        assert emu.api("GET", "/calls/x-to-y")[0] == 200


def test_an_aggregate_moves_off_a_failed_link_and_its_call_keeps_flowing(tmp_path: Path) -> None:
    """LLDP verifies every link of the meshed core; a link of the aggregate's path fails; the
    aggregate moves to the other open path with its call, whose media keeps flowing."""
    from emulation import Emulation, run
    from topologies import mesh
    with Emulation(mesh.SPEC, tmp_path, dataplane={"class_mode": "tc", "discovery": True}, log=print) as emu:
        def links() -> dict[tuple[str, str], dict]:
            return {(l["a"], l["b"]): l for l in emu.api("GET", "/topology")[1]["links"]}

        def wait(what: str, check: Any, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if check():
                    return
                time.sleep(0.25)
            raise AssertionError(f"{what} within {timeout} s: {links()}\n{emu.controller_log()[-3000:]}")

        wait("every link verified by LLDP", lambda: {l["state"] for l in links().values()} == {"verified"})
        path = emu.api("GET", "/aggregates/site-x--site-y")[1]["path"]
        via = path[2]                                   # c3 or c4
        other = "c4" if via == "c3" else "c3"
        emu.host("x1").cmd("ping -c 2 -W 2 10.0.2.1")
        admit(emu, "x-to-y", "site-x", "site-y", ("10.0.1.1", 23000), ("10.0.2.1", 33000))
        assert media(emu, "x1", ["10.0.2.1:33000:23000"], {"y1": [33000]})["y1"]["loss_pct"] <= 1.0

        cut = mesh.SPEC.link("c1", via)
        port = cut.a_port if cut.a == "c1" else cut.b_port
        cut_at = time.monotonic()
        run("ip", "link", "set", emu.interface("c1", port), "down")      # the cable c1 - via is cut
        try:
            wait("the cut link down", lambda: links()[("c1", via)]["state"] == "down", timeout=15)
            wait("the aggregate moved", lambda: emu.api("GET", "/aggregates/site-x--site-y")[1]["path"] == [
                "e1", "c1", other, "c2", "e2"], timeout=15)
            print(f"\nc1-{via} down: aggregate moved from {'-'.join(path)} to e1-c1-{other}-c2-e2, seen over "
                  f"REST {time.monotonic() - cut_at:.2f} s after the cut (polled every 0.25 s)")
            assert emu.api("GET", "/calls/x-to-y")[1]["state"] == "active"
            report = media(emu, "x1", ["10.0.2.1:33000:23000"], {"y1": [33000]})["y1"]
            print(f"media after the move: {report['packets']} packets, loss {report['loss_pct']} %")
            assert report["packets"] >= 140 and report["loss_pct"] <= 1.0
            flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", emu.bridge(other), "table=0"],
                                   capture_output=True, text=True, timeout=20).stdout
            transit = [line for line in flows.splitlines() if "priority=2000" in line]
            assert sum(int(line.split("n_packets=")[1].split(",")[0]) for line in transit) >= 140, flows
            assert "moved from" in emu.controller_log()
        finally:
            run("ip", "link", "set", emu.interface("c1", port), "up")
        wait("the repaired link verified again", lambda: links()[("c1", via)]["state"] == "verified")
        # no flapping back: the pool stays where it is until the path has been stable for
        # dataplane.reoptimize_hold_s (60 s by default), the call too
        assert emu.api("GET", "/aggregates/site-x--site-y")[1]["path"] == ["e1", "c1", other, "c2", "e2"]
        assert emu.api("GET", "/calls/x-to-y")[0] == 200
        # moved back by the operator while the call's media flows: make-before-break, no loss
        # (re-optimisation has nothing to gain here: both paths have 4 hops); then grown and
        # shrunk in place (meters modified, never deleted): no loss either
        status, body = emu.api("POST", "/aggregates/site-x--site-y/reoptimize")
        assert status == 200 and body["moved"] is False, body
        for change in (lambda: emu.api("PATCH", "/aggregates/site-x--site-y", {"path": path}),
                       lambda: emu.api("PATCH", "/aggregates/site-x--site-y", {"size_kbps": 9000}),
                       lambda: emu.api("PATCH", "/aggregates/site-x--site-y", {"size_kbps": 3000})):
            report, body = media_during(emu, change)
            print(f"media while the pool became {'-'.join(body['path'])} / {body['size_kbps']} kbit/s: "
                  f"{report['packets']} packets, loss {report['loss_pct']} %")
            assert report["packets"] >= 140 and report["loss_pct"] <= 1.0, report
            meters = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", emu.bridge("e1")],
                                    capture_output=True, text=True, timeout=20).stdout
            assert f"rate={body['size_kbps']} " in meters, meters        # the ingress meter followed it
        pool = emu.api("GET", "/aggregates/site-x--site-y")[1]
        assert pool["path"] == path and pool["size_kbps"] == 3000 and pool["last_resize"]["reason"] == "operator"
        assert pool["pinned"] is True
        assert emu.api("GET", "/calls/x-to-y")[1]["state"] == "active"


def media_during(emu: Any, change: Any) -> tuple[dict, dict]:
    """The call x-to-y's media for 3 s, with ``change`` made 1 s in: (media report, its answer)."""
    import threading
    done: dict = {}
    sender = threading.Thread(target=lambda: done.update(media(emu, "x1", ["10.0.2.1:33000:23000"],
                                                                 {"y1": [33000]})))
    sender.start()
    time.sleep(1.7)                          # the receiver starts 0.7 s in, then 1 s of media
    status, body = change()
    assert status == 200, body
    sender.join(timeout=40)
    return done["y1"], body


def test_site_controllers_on_etcd_keep_calls_up_when_one_dies(tmp_path: Path) -> None:
    """Two controllers, one per site, on one etcd (docs/cluster.md): a call admitted at site A
    is carried in the reserved class; the site-A controller is killed with -9; the call's
    media keeps flowing and the survivor takes site A over and admits new calls."""
    from benchmarks.peers.etcd import Etcd, etcd_available
    from emulation import Emulation
    from ryu_apps.cli import Client
    from topologies import enterprise
    if etcd_available():
        pytest.skip(str(etcd_available()))
    roles = {"site-a": {"switches": ["s1", "s2"], "controllers": ["ctl-a", "ctl-b"]},
             "site-b": {"switches": ["s3"], "controllers": ["ctl-b", "ctl-a"]}}
    with Etcd(tmp_path) as etcd:
        def cluster(name: str) -> dict:
            return {"store": etcd.url(), "cluster": {"name": name, "lease_ttl_s": 1, "roles": roles}}
        with Emulation(enterprise.SPEC, tmp_path / "emu", log=print, config_extra=cluster("ctl-a")) as emu:
            b_port = emu.add_controller("ctl-b", cluster("ctl-b"))
            site_b = Client(f"http://127.0.0.1:{b_port}", emu.token, 10)
            b_log = tmp_path / "emu" / "controller-ctl-b.log"

            def until(what: str, check, timeout: float = 30) -> None:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if check():
                        return
                    time.sleep(0.2)
                raise AssertionError(f"{what} within {timeout} s\n{emu.controller_log()[-2000:]}\n"
                                     f"{b_log.read_text(errors='replace')[-2000:]}")
            until("ctl-b masters site B", lambda: "switch s3 reconciled" in b_log.read_text(errors="replace"))
            emu.host("h1a").cmd("ping -c 2 -W 2 10.0.2.1")
            call = admit(emu, "a-to-b", "site-a", "site-b", ("10.0.1.1", 22000), ("10.0.2.1", 32000))
            assert site_b.exchange("GET", "/calls/a-to-b")[1]["serial"] == call["serial"]   # one shared ledger
            before = media(emu, "h1a", ["10.0.2.1:32000:22000"], {"h2a": [32000]})["h2a"]["flows"]["32000"]
            assert before["packets"] >= 140 and before["dscps"] == {"46": before["packets"]}

            emu.kill_controller()                        # the site-A controller dies
            after = media(emu, "h1a", ["10.0.2.1:32000:22000"], {"h2a": [32000]})["h2a"]["flows"]["32000"]
            print(f"\nmedia of the call admitted at site A: {before['packets']} packets before, "
                  f"{after['packets']} after its controller was killed")
            assert after["packets"] >= 140 and after["dscps"] == {"46": after["packets"]}   # calls stay up
            until("ctl-b takes site A over", lambda: "switch s1 reconciled" in b_log.read_text(errors="replace"))
            status, body = site_b.exchange("POST", "/calls", {
                "call_id": "b-after", "caller_community": "site-a", "callee_community": "site-b",
                "media": {"codec": "pcmu"}, "caller_media": {"ip": "10.0.1.2", "port": 22002},
                "callee_media": {"ip": "10.0.2.2", "port": 32002}})
            assert status == 201, body
            until("the survivor installs the new call", lambda: site_b.exchange(
                "GET", "/calls/b-after")[1]["state"] == "active", 15)
            new = media(emu, "h1b", ["10.0.2.2:32002:22002"], {"h2b": [32002]})["h2b"]["flows"]["32002"]
            assert new["packets"] >= 140 and new["dscps"] == {"46": new["packets"]}
            assert site_b.exchange("GET", "/aggregates/site-a--site-b")[1]["used_kbps"] == 2 * 91
