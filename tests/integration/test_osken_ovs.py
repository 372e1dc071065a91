"""The same app under os-ken's launcher (`mam-osken`, native-thread hub) against real Open
vSwitch: LLDP through os_ken.topology, best effort, a call confirmed by barrier with its
flows on the switches, and its release.

    h1 (10.0.1.1) ─ [s1] p10 ══════ p10 [s2] ─ h2 (10.0.2.1)

Runs in `.venv-osken` (marker ``osken``); under ryu the other integration tests cover it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from netlab import Lab, dump_flows, free_port, ovs_available, rest, strong_token, until, wait_listening

pytestmark = [pytest.mark.integration, pytest.mark.osken]
TOKEN = strong_token("osken")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    try:
        import os_ken  # noqa: F401
    except ImportError:
        pytest.skip("os-ken is not installed in this environment (it runs in .venv-osken)")
    launcher = Path(sys.executable).parent / "mam-osken"
    if not launcher.exists():
        pytest.skip(f"mam-osken is not installed in {launcher.parent}")
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("osken")
    of_port, api_port = free_port(), free_port()
    config = tmp / "mam.yaml"
    config.write_text(json.dumps({
        "topology": {"switches": [{"name": "s1", "dpid": 0xC1}, {"name": "s2", "dpid": 0xC2}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 20000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-b", "edge": "s2", "access_ports": [1], "prefixes": ["10.0.2.0/24"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 2000}],
        "dataplane": {"discovery": True, "class_mode": "none"},
        "api": {"port": api_port, "token": TOKEN},
        "sip": {"enabled": False},
    }))
    lab = Lab()
    log = tmp / "controller.log"
    try:
        bridges = {name: lab.bridge(name, dpid, of_port) for name, dpid in (("s1", 0xC1), ("s2", 0xC2))}
        lab.link("s1", 10, "s2", 10)
        hosts = {"h1": lab.host("h1", "s1", 1, "10.0.1.1", "02:00:00:00:0c:01"),
                 "h2": lab.host("h2", "s2", 1, "10.0.2.1", "02:00:00:00:0c:02")}
        env = dict(os.environ, MAM_CONFIG=str(config), MAM_FRAMEWORK="os_ken", PYTHONUNBUFFERED="1")
        process = lab.start([str(launcher), "--ofp-tcp-listen-port", str(of_port), "ryu_apps.mam_app"], env=env,
                            log=log)
        wait_listening(api_port, process)
        for bridge in bridges.values():
            lab.wait_connected(bridge)
        yield {"lab": lab, "bridges": bridges, "hosts": hosts, "api_port": api_port, "log": log}
    finally:
        lab.close()
        if log.exists():
            sys.stderr.write(log.read_text()[-3000:])


def api(net: dict[str, Any], method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    return rest(net["api_port"], method, path, body, token=TOKEN)


def test_osken_runs_the_app_lldp_best_effort_and_a_confirmed_call(net: dict[str, Any]) -> None:
    until("LLDP (os_ken.topology) verified s1-s2",
         lambda: api(net, "GET", "/topology")[1]["links"][0]["state"] == "verified")
    result = net["hosts"]["h1"].run("ping", "-c", "2", "-W", "2", "10.0.2.1", timeout=15, check=False)
    assert result.returncode == 0, result.stdout
    status, body = api(net, "POST", "/calls", {
        "call_id": "osken/1", "caller_community": "site-a", "callee_community": "site-b",
        "media": {"codec": "pcmu"}, "caller_media": {"ip": "10.0.1.1", "port": 41000},
        "callee_media": {"ip": "10.0.2.1", "port": 41002}})
    assert status == 201, body
    until("the call confirmed by barrier", lambda: api(net, "GET", "/calls/osken/1")[1]["state"] == "active")
    ingress = [line for line in dump_flows(net["bridges"]["s1"]) if "priority=3000" in line and "in_port=1," in line]
    # RTP 41002 and its RTCP under one mask (dataplane.rtcp_match: masked)
    assert len(ingress) == 1 and "nw_dst=10.0.2.1" in ingress[0] and f"tp_dst={41002:#x}/0xfffe" in ingress[0], ingress
    assert api(net, "DELETE", "/calls/osken/1")[0] == 204
    until("the call's flows removed", lambda: not [
        line for line in dump_flows(net["bridges"]["s1"]) if "priority=3000" in line and "in_port=1," in line])
