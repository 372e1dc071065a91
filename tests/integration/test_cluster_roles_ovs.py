"""Active/standby on real Open vSwitch: two ``ryu-manager`` controllers, one etcd, two
bridges connected to both controllers.

Exactly one controller is master of each bridge (OVS's own Controller.role column says
so); a call admitted through the standby's REST API gets its flows from the master; when
the master is killed with -9 the standby takes over once the master's lease expires, a
call admitted meanwhile gets its flows, the first call's flows stay where they were (the
takeover reconcile adds only what is missing and deletes nothing), and the survivor keeps
admitting.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from benchmarks.peers.etcd import Etcd, etcd_available
from benchmarks.peers.procs import free_port
from netlab import Lab, dump_flows, ovs_available, sh
from test_cluster_etcd import PCMU_KBPS, RyuController, until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(etcd_available() is not None, reason=str(etcd_available())),
              pytest.mark.skipif(ovs_available() is not None, reason=str(ovs_available()))]

LEASE_TTL_S = 1


def roles(bridge: str) -> dict[str, str]:
    """OVS's view: controller target -> role, for the connected controllers of ``bridge``."""
    out = sh("ovs-vsctl", "--timeout=5", "--format=csv", "--data=bare", "--no-headings", "--columns=target,role,"
             "is_connected", "list", "controller").stdout
    targets = sh("ovs-vsctl", "--timeout=5", "get-controller", bridge).stdout.split()
    found = {}
    for line in out.splitlines():
        target, role, connected = line.split(",")
        if target in targets and connected == "true":
            found[target] = role
    return found


def flows_for(bridge: str, ip: str) -> list[str]:
    return [f for f in dump_flows(bridge) if ip in f]


def call(call_id: str, caller_ip: str, callee_ip: str) -> dict:
    return {"call_id": call_id, "caller_community": "site-a", "callee_community": "site-b",
            "media": {"codec": "pcmu"}, "caller_media": {"ip": caller_ip, "port": 20000},
            "callee_media": {"ip": callee_ip, "port": 30000}}


def test_one_master_the_standby_takes_over_after_kill_9(tmp_path: Path):
    lab = Lab()
    with Etcd(tmp_path) as etcd:
        controllers = []
        try:
            extra = f"  lease_ttl_s: {LEASE_TTL_S}\n"
            ports = {name: free_port() for name in ("ctl-a", "ctl-b")}
            for name in ("ctl-a", "ctl-b"):
                controllers.append(RyuController(tmp_path, name, etcd, 20 * PCMU_KBPS, of_port=ports[name],
                                                 cluster_extra=extra))
            s1, s2 = lab.bridge("s1", 1, None), lab.bridge("s2", 2, None)
            lab.link("s1", 1, "s2", 1)
            targets = {name: f"tcp:127.0.0.1:{port}" for name, port in ports.items()}
            for bridge in (s1, s2):
                sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, *targets.values())

            def master(connected: int = 2) -> str | None:
                seen = [roles(b) for b in (s1, s2)]
                for name, target in targets.items():
                    if all(r.get(target) == "master" for r in seen) and all(
                            list(r.values()).count("master") == 1 and len(r) == connected for r in seen):
                        return name
                return None
            until("one controller masters both bridges, the other is slave", lambda: master() is not None, 30)
            leader = master()
            by_name = {c.name: c for c in controllers}
            standby = by_name["ctl-b" if leader == "ctl-a" else "ctl-a"]

            status, body = standby.rest("POST", "/calls", call("c1", "10.1.0.11", "10.2.0.11"))
            assert status == 201, body
            until("the master installs the call admitted on the standby",
                  lambda: flows_for(s1, "10.1.0.11") and flows_for(s2, "10.1.0.11"), 10)
            before = {b: flows_for(b, "10.1.0.11") for b in (s1, s2)}

            killed_at = time.monotonic()
            by_name[leader].kill()
            status, body = standby.rest("POST", "/calls", call("c2", "10.1.0.12", "10.2.0.12"))
            assert status == 201, body                      # admission never stopped
            until("the call admitted during the takeover gets its flows",
                  lambda: flows_for(s1, "10.1.0.12") and flows_for(s2, "10.1.0.12"), 15)
            took = time.monotonic() - killed_at
            print(f"kill -9 of the master -> the new master's flows on both bridges: {took:.2f} s")
            assert took < 3 * LEASE_TTL_S + 4               # lease + election + reconcile, with load to spare
            # OVS refreshes the role it shows every few seconds
            until("OVS shows the standby as master of both bridges", lambda: master(connected=1) == standby.name, 15)
            # the first call's flows were not touched: same entries, never deleted and re-added
            after = {b: flows_for(b, "10.1.0.11") for b in (s1, s2)}
            assert {b: [re.sub(r"duration=[^,]+, ", "", f) for f in fs] for b, fs in after.items()} == {
                b: [re.sub(r"duration=[^,]+, ", "", f) for f in fs] for b, fs in before.items()}
            log = standby.log.read_text(errors="replace")
            reconciles = re.findall(r"reconciled: (\d+) of ours held, (\d+) flows added or replaced, (\d+) deleted",
                                    log)
            assert reconciles and all(deleted == "0" for _, _, deleted in reconciles), reconciles
            assert all(int(added) <= 2 for _, added, _ in reconciles[-2:]), reconciles   # only c2's entries
            assert standby.rest("POST", "/calls", call("c3", "10.1.0.13", "10.2.0.13"))[0] == 201
            until("the survivor installs new calls", lambda: flows_for(s1, "10.1.0.13"), 10)
        except AssertionError:
            for c in controllers:
                print(c.name, c.explain())
            raise
        finally:
            for c in controllers:
                c.stop()
            lab.close()
