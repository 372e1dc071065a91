"""Hitless restart and reconnect on real Open vSwitch: the scenario shared by
tests/integration/test_openflow_hitless.py (CI-sized) and benchmarks/bench_reconcile.py.

    h1 (10.0.1.1) ─┐                                              ┌─ h2 (10.0.2.1)
    hx (10.0.1.66) ┴ [s1] p10 ══════ p10 [s2] p11 ══════ p10 [s3] ┘
       site-a                        core                           site-b

``N`` calls between h1 and h2 (distinct UDP ports), one of them carrying a live RTP-like
stream both ways; then the controller is killed with SIGKILL and started again (SQLite
ledger), or every bridge's controller connection is restarted (``ovs-appctl
bridge/reconnect``: OVS drops the connection and opens a new one to the same target,
keeping its flows, unlike del-controller on a fail-secure bridge). Measured: calls back, the
switches' entries before and after (full match and actions, no counters), what the
reconcile sent, and the stream's lost packets, packets that lost their EF marking, and
its longest gap. Everything is created under the lab's prefix and removed by name / PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab import RTPFLOW, Host, Lab, free_port, rest, sh, start_controller, strong_token, until

from ryu_apps.core.flowplan import COOKIE_PREFIX, COOKIE_PREFIX_MASK

TOKEN = strong_token("hitless")
SWITCHES = ("s1", "s2", "s3")
STREAM = ("10.0.1.1", 20000, "10.0.2.1", 40000)     # the live call's media: caller, callee


def config(api_port: int, store: Path, calls: int) -> dict[str, Any]:
    size = max(2_000, calls * 100 + 1_000)           # G.711 with tags is ~91 kbit/s a call
    capacity = 4 * size
    return {
        "topology": {
            "switches": [{"name": name, "dpid": 0xD0 + i} for i, name in enumerate(SWITCHES, start=1)],
            "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": capacity},
                      {"a": "s2", "a_port": 11, "b": "s3", "b_port": 10, "capacity_kbps": capacity}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1, 2], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-b", "edge": "s3", "access_ports": [1, 2], "prefixes": ["10.0.2.0/24"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": size}],
        "dataplane": {"class_mode": "tc", "call_idle_timeout_s": 600},
        "api": {"port": api_port, "token": TOKEN},
        "sip": {"enabled": False},
        "store": str(store),
    }


def call_body(i: int) -> dict[str, Any]:
    return {"call_id": f"hitless/{i}", "caller_community": "site-a", "callee_community": "site-b",
            "media": {"codec": "pcmu"},
            "caller_media": {"ip": STREAM[0], "port": STREAM[1] + 2 * i},
            "callee_media": {"ip": STREAM[2], "port": STREAM[3] + 2 * i}}


@dataclass
class Hitless:
    tmp: Path
    calls: int
    lab: Lab = field(default_factory=Lab)
    of_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    bridges: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    controller: subprocess.Popen | None = None
    restarts: int = 0

    # --- set up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.config_path = self.tmp / "mam.yaml"
        self.config_path.write_text(json.dumps(config(self.api_port, self.tmp / "ledger.sqlite", self.calls)))
        for index, name in enumerate(SWITCHES, start=1):
            bridge = self.bridges[name] = self.lab.bridge(name, 0xD0 + index, self.of_port)
            # reconnect within a second (OVS backs off up to 8 s by default)
            sh("ovs-vsctl", "--timeout=10", "set", "controller", bridge, "max_backoff=1000")
        self.lab.link("s1", 10, "s2", 10)
        self.lab.link("s2", 11, "s3", 10)
        self.hosts["h1"] = self.lab.host("h1", "s1", 1, "10.0.1.1", "02:00:00:00:0d:01")
        self.hosts["hx"] = self.lab.host("hx", "s1", 2, "10.0.1.66", "02:00:00:00:0d:66")
        self.hosts["h2"] = self.lab.host("h2", "s3", 1, "10.0.2.1", "02:00:00:00:0d:02")
        self.start_controller()
        for bridge in self.bridges.values():
            self.lab.wait_connected(bridge)
        self.wait_reconciled({name: 1 for name in SWITCHES})
        # best effort first: ARP teaches the controller where the phones are (persisted with the calls)
        result = self.hosts["h1"].run("ping", "-c", "3", "-W", "2", "10.0.2.1", timeout=20, check=False)
        if result.returncode != 0:
            raise AssertionError(f"best-effort connectivity failed:\n{result.stdout}")

    def start_controller(self) -> None:
        self.restarts += 1
        log = self.tmp / f"controller{self.restarts}.log"
        self.controller = start_controller(self.lab, self.config_path, self.of_port, self.api_port, log)

    def close(self) -> None:
        self.lab.close()

    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        return rest(self.api_port, method, path, body, token=TOKEN, timeout=30)

    def admit_all(self) -> float:
        """Admit every call with its media over REST; seconds until all are active."""
        started = time.monotonic()
        for i in range(self.calls):
            status, body = self.api("POST", "/calls", call_body(i))
            if status != 201:
                raise AssertionError(f"call {i}: {status} {body}")
        until(f"all {self.calls} calls active", lambda: self.active_calls() == self.calls, timeout=60,
              explain=lambda: f"(active: {self.active_calls()})")
        return time.monotonic() - started

    def active_calls(self) -> int:
        status, body = self.api("GET", "/calls")
        return sum(1 for c in body["calls"] if c["state"] == "active") if status == 200 else -1

    # --- observe -------------------------------------------------------------------------------

    def metrics(self) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/metrics",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())

    def reconciles(self) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            text = self.metrics()
        except OSError:
            return found
        for line in text.splitlines():
            if line.startswith("mam_switch_reconciles_total{"):
                name = line.split('switch="')[1].split('"')[0]
                found[name] = int(float(line.rsplit(" ", 1)[1]))
        return found

    def reconcile_entries(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for line in self.metrics().splitlines():
            if line.startswith("mam_switch_reconcile_entries{"):
                switch = line.split('switch="')[1].split('"')[0]
                change = line.split('change="')[1].split('"')[0]
                out.setdefault(switch, {})[change] = int(float(line.rsplit(" ", 1)[1]))
        return out

    def reconcile_seconds(self) -> dict[str, float]:
        """Each switch's last reconcile: from its connection to the difference sent (the valve's clock)."""
        out: dict[str, float] = {}
        for line in self.metrics().splitlines():
            if line.startswith("mam_switch_reconcile_seconds{"):
                out[line.split('switch="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        return out

    def wait_reconciled(self, want: dict[str, int], timeout: float = 60) -> None:
        until(f"switches reconciled {want}", lambda: all(self.reconciles().get(s, 0) >= n for s, n in want.items()),
              timeout=timeout, explain=lambda: f"(seen {self.reconciles()})")

    def entries(self) -> dict[str, Counter[str]]:
        """Every flow of ours and every meter, per bridge, as full text without counters."""
        held: dict[str, Counter[str]] = {}
        for name, bridge in self.bridges.items():
            out = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge, timeout=60).stdout
            lines: Counter[str] = Counter()
            for line in out.splitlines():
                line = line.strip()
                if not line.startswith("cookie="):
                    continue
                value = int(line.split(",")[0].split("=")[1].split()[0], 16)
                if value & COOKIE_PREFIX_MASK == COOKIE_PREFIX and "priority=100," not in line:   # not learned
                    lines[line] += 1
            meters = sh("ovs-ofctl", "-O", "OpenFlow13", "dump-meters", bridge, timeout=30).stdout
            lines.update(line.strip() for line in meters.splitlines()[1:] if line.strip())
            held[name] = lines
        return held

    def classes(self) -> dict[str, str]:
        """tc qdiscs and classes on the switch-to-switch ports (class_mode tc)."""
        out = {}
        for interface in (f"{self.lab.prefix}s1p10", f"{self.lab.prefix}s2p11", f"{self.lab.prefix}s3p10"):
            out[interface] = (sh("tc", "qdisc", "show", "dev", interface).stdout
                              + sh("tc", "class", "show", "dev", interface).stdout
                              + sh("tc", "filter", "show", "dev", interface).stdout)
        return out

    # --- media -----------------------------------------------------------------------------------

    def stream(self, seconds: float, pps: int = 100) -> list[subprocess.Popen]:
        """RTP both ways on the first call; returns the two receivers (read them with report())."""
        caller_ip, caller_port, callee_ip, callee_port = STREAM
        receivers = []
        for host, port in (("h2", callee_port), ("h1", caller_port)):
            receivers.append(self.hosts[host].popen(
                sys.executable, str(RTPFLOW), "recv", "--port", str(port), "--duration", str(seconds + 3),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True))
        time.sleep(0.5)
        # (the receivers hold the media ports; the flows match the destination port only)
        for host, flow in (("h1", f"{callee_ip}:{callee_port}:{caller_port + 5000}"),
                           ("h2", f"{caller_ip}:{caller_port}:{callee_port + 5000}")):
            sender = self.hosts[host].popen(sys.executable, str(RTPFLOW), "send", "--flow", flow, "--pps", str(pps),
                                            "--size", "160", "--duration", str(seconds), stdout=subprocess.DEVNULL,
                                            start_new_session=True)
            self.lab.processes.append(sender)
        for receiver in receivers:
            self.lab.processes.append(receiver)
        return receivers

    @staticmethod
    def report(receivers: list[subprocess.Popen], timeout: float) -> list[dict[str, Any]]:
        reports = []
        for receiver in receivers:
            out, _ = receiver.communicate(timeout=timeout)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports

    # --- the two events ---------------------------------------------------------------------------

    def kill_and_restart(self) -> dict[str, float]:
        """SIGKILL the controller, start it again; seconds until each stage."""
        assert self.controller is not None
        before = {name: 0 for name in SWITCHES}
        killed = time.monotonic()
        os.killpg(self.controller.pid, signal.SIGKILL)
        self.controller.wait(timeout=10)
        self.start_controller()
        listening = time.monotonic()
        self.wait_reconciled({name: before[name] + 1 for name in SWITCHES})
        done = time.monotonic()
        return {"restart_to_api_s": listening - killed, "kill_to_reconciled_s": done - killed,
                "api_to_reconciled_s": done - listening}

    def reconnect(self) -> dict[str, float]:
        """Every bridge drops its controller connection and opens a new one (flows kept)."""
        before = self.reconciles()
        started = time.monotonic()
        # Not a new target: the controller listens on 127.0.0.1 only (openflow.listen's
        # default), so a switch sent to 127.0.0.2 never came back.
        for bridge in self.bridges.values():
            sh("ovs-appctl", "--timeout=10", "bridge/reconnect", bridge)
        self.wait_reconciled({name: before.get(name, 0) + 1 for name in SWITCHES})
        return {"reconnect_to_reconciled_s": time.monotonic() - started}


def compare(before: dict[str, Counter[str]], after: dict[str, Counter[str]]) -> dict[str, Any]:
    """Stale (after, not before), missing (before, not after) and duplicated entries per bridge."""
    return {name: {"stale": sorted(set(after[name]) - set(before[name])),
                   "missing": sorted(set(before[name]) - set(after[name])),
                   "duplicates": sorted(line for line, n in after[name].items() if n > 1),
                   "entries": sum(after[name].values())}
            for name in before}


def media_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    flows = [next(iter(r["flows"].values())) for r in reports]
    return {"packets": sum(f["packets"] for f in flows), "lost": sum(f["lost"] for f in flows),
            "not_ef": sum(n for f in flows for d, n in f["dscps"].items() if d != "46"),
            "max_gap_ms": max(f["max_gap_ms"] for f in flows)}


SPOOF = """
import socket, struct, sys
mac = lambda text: bytes.fromhex(text.replace(":", ""))
me, victim_ip, interface = sys.argv[1], sys.argv[2], sys.argv[3]
ip4 = socket.inet_aton(victim_ip)
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac(me), ip4, b"\\xff" * 6, ip4)   # gratuitous reply
frames = [mac("ff:ff:ff:ff:ff:ff") + mac(me) + struct.pack("!H", 0x0806) + arp]
udp = struct.pack("!HHHH", 40000, 40000, 8 + 32, 0) + bytes(32)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, ip4, socket.inet_aton("10.0.2.1"))
frames.append(mac("02:00:00:00:0d:99") + mac(me) + struct.pack("!H", 0x0800) + ip + udp)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((interface, 0))
for _ in range(3):
    for frame in frames:
        sock.send(frame)
"""


def spoof(scenario: Hitless, victim_ip: str) -> None:
    """The host on the other access port claims the phone's address (ARP and IPv4, from its own MAC)."""
    attacker = scenario.hosts["hx"]
    attacker.run(sys.executable, "-c", SPOOF, attacker.mac, victim_ip, attacker.interface, timeout=20)


def refused_moves(scenario: Hitless) -> int:
    for line in scenario.metrics().splitlines():
        if line.startswith('mam_terminal_moves_total{verdict="refused-in-call"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0
