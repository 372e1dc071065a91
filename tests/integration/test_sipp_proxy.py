"""Real SIPp through the proxy, with admission by the real media aggregation manager.

The proxy runs on an asyncio loop in a thread of this process (real UDP/TCP sockets on
127.0.0.1, random free ports) so the tests can read the manager's pool directly; one
test runs it as its own process (``python -m ryu_apps.signalling.sip --config``).
SIPp plays the callee (UAS) and the caller (UAC) with the scenarios in tests/sipp/.
Outcomes are counted from SIPp's ``-trace_counts`` file and compared with the proxy's
counters; every test ends with the pool back at zero.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.proxy_stats import ProxyStats
from ryu_apps.signalling.sip.standalone import SipServer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
REPO = Path(__file__).resolve().parents[2]
PCMU_KBPS = 91          # G.711 20 ms at Ethernet level with VLAN + MPLS tags (the default policy)
CODECS = {"pcmu": "0;PCMU;", "g729": "18;G729;", "g722": "9;G722;"}


def site_config(pool_kbps: int, port: int, uas_port: int, timer_c: float = 180.0) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"],
             "domains": ["site-a.example"]},
            {"name": "site-b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"],
             "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": pool_kbps}],
        "codecs": {"allowed": ["pcmu", "pcma", "g729"]},
        "sip": {"listen": f"127.0.0.1:{port}", "routes": {"site-b.example": f"127.0.0.1:{uas_port}"},
                "timer_c_s": timer_c},
    }


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class ThreadedProxy:
    """The standalone server's asyncio shell on a loop in a background thread."""

    def __init__(self, service: MamService, config: ProxyConfig) -> None:
        self.service = service
        self.server = SipServer(SipProxy(config, service, HashIds(b"integration")))
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.server.stop())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="sip-proxy", daemon=True)
        self.thread.start()
        assert started.wait(5), "proxy did not start"

    def stats(self) -> ProxyStats:
        future = asyncio.run_coroutine_threadsafe(self._stats(), self.loop)
        return future.result(5)

    async def _stats(self) -> ProxyStats:
        return self.server.proxy.stats.snapshot()

    def active_calls(self) -> int:
        return self.service.read(lambda m: len(m.calls()))

    def used_kbps(self) -> int:
        return self.service.read(lambda m: m.used_kbps("a-b"))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Sipp:
    """Runs SIPp processes in one working directory; kills only what it started."""

    def __init__(self, workdir: Path, proxy_port: int, uas_port: int) -> None:
        self.workdir = workdir
        self.proxy_port = proxy_port
        self.uas_port = uas_port
        self.uas: subprocess.Popen[bytes] | None = None

    def start_uas(self, scenario: str, transport: str = "u1") -> None:
        self.uas = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(self.uas_port), "-t", transport,
             "-timeout", "60s", "-trace_err", "-nostdin"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        assert self.uas.poll() is None, "the SIPp UAS did not start"

    def stop_uas(self) -> None:
        if self.uas is not None and self.uas.poll() is None:
            self.uas.send_signal(signal.SIGTERM)
            try:
                self.uas.wait(5)
            except subprocess.TimeoutExpired:
                self.uas.kill()
                self.uas.wait(5)
        self.uas = None

    def uac(self, scenario: str, calls: int, codecs: list[str], *, rate: int = 50, hold_ms: int = 0,
            limit: int | None = None, transport: str = "u1", timeout_s: int = 40) -> tuple[int, dict[str, int]]:
        """Run a UAC to completion. Returns SIPp's exit code and the received-message counts."""
        inject = self.workdir / f"codecs-{time.monotonic_ns()}.csv"
        inject.write_text("SEQUENTIAL\n" + "\n".join(CODECS[c] for c in codecs) + "\n")
        for old in self.workdir.glob("*_counts.csv"):
            old.unlink()
        command = ["sipp", "-sf", str(SCENARIOS / scenario), "-inf", str(inject), "-i", "127.0.0.1",
                   "-p", str(free_port()), "-t", transport, "-s", "bob", f"127.0.0.1:{self.proxy_port}",
                   "-m", str(calls), "-r", str(rate), "-l", str(limit or calls), "-d", str(hold_ms),
                   "-timeout", f"{timeout_s}s", "-timeout_error", "-trace_counts", "-trace_err", "-trace_stat",
                   "-nostdin"]
        result = subprocess.run(command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                timeout=timeout_s + 20)
        return result.returncode, received_counts(self.workdir)


def received_counts(workdir: Path) -> dict[str, int]:
    """``{"8_200": n, "4_503": n, ...}``: messages received per scenario step, from -trace_counts."""
    files = sorted(workdir.glob("*_counts.csv"))
    if not files:
        return {}
    rows = list(csv.reader(files[-1].open(), delimiter=";"))
    header, last = rows[0], rows[-1]
    counts: dict[str, int] = {}
    for name, value in zip(header, last):
        if name.endswith("_Recv") and value.strip().isdigit():
            counts[name[:-5]] = int(value)
    return counts


def total(counts: dict[str, int], response: str) -> int:
    return sum(v for k, v in counts.items() if k.split("_", 1)[1] == response)


def errors_of(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in workdir.glob("*_errors.log"))


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ThreadedProxy, Sipp]]:
    """Proxy + manager with a pool of ``pool_calls`` PCMU calls (param), SIPp around it."""
    pool_calls, timer_c = getattr(request, "param", (5, 180.0))
    port, uas_port = free_port(), free_port()
    config = parse_config(site_config(pool_calls * PCMU_KBPS, port, uas_port, timer_c))
    service = MamService(build_manager(config))
    proxy = ThreadedProxy(service, ProxyConfig.from_sip_config(config.sip))
    sipp = Sipp(tmp_path, port, uas_port)
    try:
        yield proxy, sipp
    finally:
        sipp.stop_uas()
        proxy.close()
    assert proxy.used_kbps() == 0 and proxy.active_calls() == 0, "pool usage must be back to zero"
    assert proxy.server.proxy.stats.internal_errors == 0


def settle(proxy: ThreadedProxy, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (proxy.active_calls() or proxy.used_kbps()):
        time.sleep(0.05)


def test_calls_admitted_until_the_pool_is_full_then_rejected_as_expected(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_answer.xml")
    rc, counts = sipp.uac("uac_call.xml", 12, ["pcmu"], rate=100, hold_ms=1500)
    assert rc == 0, errors_of(sipp.workdir)
    assert counts["8_200"] == 5 and counts["4_503"] == 7, counts
    stats = proxy.stats()
    assert stats.admitted == 5 and stats.rejected == {"pool-full": 7} and stats.released == 5
    assert stats.attached == 5
    settle(proxy)


def test_codec_mix_with_a_disallowed_codec_and_garbage_on_the_wire(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_answer.xml")
    stop = threading.Event()

    def garbage() -> None:          # malformed datagrams while calls are set up
        rng = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set():
                junk = rng.choice([b"INVITE sip:x SIP/2.0\r\nVia: bad\r\n\r\n", b"\x00" * 40, b"SIP/2.0 200\r\n",
                                   bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))])
                sock.sendto(junk, ("127.0.0.1", sipp.proxy_port))
                time.sleep(0.01)

    thread = threading.Thread(target=garbage, daemon=True)
    thread.start()
    try:
        # G.711 (91) + G.729 (35 kbit/s with tags) fit; G.722 is not allowed by the codec policy
        rc, counts = sipp.uac("uac_call.xml", 9, ["pcmu", "g729", "g722"], rate=50, hold_ms=300, limit=3)
    finally:
        stop.set()
        thread.join(5)
    assert rc == 0, errors_of(sipp.workdir)
    assert counts["8_200"] == 6 and counts["5_488"] == 3, counts
    stats = proxy.stats()
    assert stats.admitted == 6 and stats.rejected == {"codec-not-allowed": 3}
    assert stats.malformed > 0 and stats.internal_errors == 0
    settle(proxy)


def test_cancel_during_ringing_releases(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_ring.xml")
    rc, counts = sipp.uac("uac_cancel.xml", 5, ["pcmu"], rate=50)
    assert rc == 0, errors_of(sipp.workdir)
    assert total(counts, "487") == 5
    stats = proxy.stats()
    assert stats.admitted == 5 and stats.released == 5
    settle(proxy)


def test_bye_from_the_callee_releases(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_bye.xml")
    rc, counts = sipp.uac("uac_callee_bye.xml", 5, ["g729"], rate=50)
    assert rc == 0, errors_of(sipp.workdir)
    stats = proxy.stats()
    assert stats.admitted == 5 and stats.released == 5 and stats.attached == 5
    settle(proxy)


@pytest.mark.parametrize("lab", [(5, 1.0)], indirect=True)
def test_no_answer_is_cancelled_by_timer_c(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_ring.xml")
    rc, counts = sipp.uac("uac_noanswer.xml", 3, ["pcmu"], rate=50)
    assert rc == 0, errors_of(sipp.workdir)
    assert total(counts, "487") == 3
    stats = proxy.stats()
    assert stats.timer_c == 3 and stats.released == 3
    settle(proxy)


def test_caller_over_tcp_callee_over_udp(lab: tuple[ThreadedProxy, Sipp]) -> None:
    proxy, sipp = lab
    sipp.start_uas("uas_answer.xml")
    rc, counts = sipp.uac("uac_call.xml", 8, ["pcmu"], rate=50, hold_ms=1000, transport="t1")
    assert rc == 0, errors_of(sipp.workdir)
    assert counts["8_200"] == 5 and counts["4_503"] == 3, counts
    settle(proxy)


def test_standalone_process(tmp_path: Path) -> None:
    port, uas_port = free_port(), free_port()
    config_file = tmp_path / "site.yaml"
    config_file.write_text(yaml.safe_dump(site_config(3 * PCMU_KBPS, port, uas_port)))
    stats_file = tmp_path / "stats.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(config_file),
                                "--stats-file", str(stats_file)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sipp = Sipp(tmp_path, port, uas_port)
    try:
        assert process.stdout is not None and b"listening" in process.stdout.readline()
        sipp.start_uas("uas_answer.xml")
        rc, counts = sipp.uac("uac_call.xml", 6, ["pcmu"], rate=100, hold_ms=1000)
        assert rc == 0, errors_of(tmp_path)
        assert counts["8_200"] == 3 and counts["4_503"] == 3, counts
    finally:
        sipp.stop_uas()
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    stats = json.loads(stats_file.read_text())
    assert stats["admitted"] == 3 and stats["released"] == 3 and stats["active_calls"] == 0
    assert stats["rejected"] == {"pool-full": 3} and stats["internal_errors"] == 0


def autosized(pool_calls: tuple[int, int], port: int, uas_port: int) -> dict[str, Any]:
    document = site_config(pool_calls[0] * PCMU_KBPS, port, uas_port)
    document["aggregates"][0]["autosize"] = {"min_kbps": pool_calls[0] * PCMU_KBPS,
                                             "max_kbps": pool_calls[1] * PCMU_KBPS,
                                             "step_kbps": 2 * PCMU_KBPS, "grow_at": 0.9, "shrink_at": 0.3}
    return document


def test_a_burst_grows_an_autosized_pool_from_its_minimum_and_a_slower_link_preempts_with_a_reason(
        tmp_path: Path) -> None:
    """Issue 16 with real SIPp: a pool of 2 calls that may grow to 6 admits a burst of 6 calls
    (refusing the 7th and 8th: pool-full at max_kbps); then the link's port slows down so it
    reserves room for 3 calls only: exactly the 3 newest calls are preempted, and each party
    gets a BYE whose first Reason is RFC 4411 preemption (SIPp checks it); at a speed that
    holds no call the others follow. The pool ends empty, reduced, with its size as target."""
    from ryu_apps.core.survey import PortInfo
    port, uas_port = free_port(), free_port()
    config = parse_config(autosized((2, 6), port, uas_port))
    service = MamService(build_manager(config))
    proxy = ThreadedProxy(service, ProxyConfig.from_sip_config(config.sip))
    service.subscribe(proxy.server.on_changes)
    sipp = Sipp(tmp_path, port, uas_port)
    try:
        sipp.start_uas("uas_answer.xml")
        result: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: result.update(
            zip(("rc", "counts"), sipp.uac("uac_preempted.xml", 8, ["pcmu"], rate=20, timeout_s=60))))
        caller.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proxy.stats().rejected.get("pool-full", 0) < 2:
            time.sleep(0.1)
        assert proxy.active_calls() == 6 and service.read(lambda m: m.aggregate("a-b").size_kbps) == 6 * PCMU_KBPS, (
            proxy.stats(), errors_of(sipp.workdir))
        assert service.read(lambda m: m.counters.resizes) == {"grow": 2}
        admitted = [c.call_id for c in service.read(lambda m: m.calls("a-b"))]
        # the switches describe their ports; then s1's link port slows to 600 kbit/s: at the
        # configured share (50 %) the link may reserve 300 kbit/s, room for 3 calls
        for switch in ("s1", "s2"):
            service.observe(lambda survey: survey.ports_described(
                switch, {n: PortInfo(f"{switch}-eth{n}") for n in (1, 2)}))
        assert proxy.active_calls() == 6
        service.observe(lambda survey: survey.port_changed("s1", 1, PortInfo("s1-eth1", speed_kbps=600)))
        survivors = [c.call_id for c in service.read(lambda m: m.calls("a-b"))]
        assert survivors == admitted[:3]
        assert service.read(lambda m: (m.aggregate("a-b").size_kbps, m.aggregate("a-b").target_kbps)) == (
            300, 6 * PCMU_KBPS)
        service.observe(lambda survey: survey.port_changed("s1", 1, PortInfo("s1-eth1", speed_kbps=100)))
        caller.join(timeout=80)
        assert not caller.is_alive()
        assert result["rc"] == 0, errors_of(sipp.workdir)
        counts = result["counts"]
        assert (total(counts, "200"), total(counts, "BYE"), total(counts, "503")) == (6, 6, 2), counts
        assert service.read(lambda m: m.counters.preempted_by) == {"capacity": 6}
        settle(proxy)
    finally:
        sipp.stop_uas()
        proxy.close()
    assert proxy.used_kbps() == 0 and proxy.active_calls() == 0
    assert proxy.server.proxy.stats.internal_errors == 0
