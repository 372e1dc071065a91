"""``sip.workers: 2`` in the controller: ryu-manager, three userspace OVS bridges, SIPp.

The controller starts two SIP worker processes and answers their admission itself: a
call through a worker is admitted, its flows reach the switches, and BYE releases both;
a worker killed (SIGKILL, by its PID) mid-run is started again and the pool's arithmetic
holds (its confirmed calls are kept, never oversubscribed, and all end); SIGTERM to the
controller alone stops its workers. The tests kill only the processes they started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from benchmarks.bench_e2e import CALLER_MEDIA, LINE, config, scenario
from benchmarks.peers.sipp import Uas, UacResult, run_uac
from netlab import (Lab, dump_flows, free_port, ovs_available, rest, start_controller, strong_token, until,
                    wait_listening)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]
PCMU_KBPS = 91
POOL_CALLS = 12
TOKEN = strong_token("sip-workers")


def children(pid: int) -> list[int]:
    """The SIP workers of controller ``pid``: its children started with ``--worker-spec``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and b"--worker-spec" in command and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


class Controller:
    def __init__(self, workdir: Path, framework: str = "ryu") -> None:
        reason = ovs_available()
        if reason:
            pytest.skip(reason)
        self.workdir = workdir
        self.lab = Lab()
        of_port, self.api_port, self.sip_port, uas_port = free_port(), free_port(), free_port(), free_port()
        document = config(self.api_port, self.sip_port, uas_port, TOKEN)
        document["aggregates"][0]["size_kbps"] = POOL_CALLS * PCMU_KBPS
        document["sip"]["workers"] = 2
        (workdir / "mam.yaml").write_text(json.dumps(document))
        self.log = workdir / "controller.log"
        self.bridges = bridges = [self.lab.bridge(name, 0xE0 + i, of_port) for i, name in enumerate(LINE)]
        for a, b in zip(LINE, LINE[1:]):
            self.lab.link(a, 20, b, 21)
        if framework == "ryu":
            self.process = start_controller(self.lab, workdir / "mam.yaml", of_port, self.api_port, self.log)
        else:                                      # os-ken's launcher: the hub runs native threads
            env = dict(os.environ, MAM_CONFIG=str(workdir / "mam.yaml"), MAM_FRAMEWORK="os_ken",
                       PYTHONUNBUFFERED="1")
            self.process = self.lab.start([str(Path(sys.executable).parent / "mam-osken"), "--ofp-tcp-listen-port",
                                           str(of_port), "ryu_apps.mam_app"], env=env, log=self.log)
            wait_listening(self.api_port, self.process)
        for bridge in bridges:
            self.lab.wait_connected(bridge)
        until("two SIP workers started", lambda: len(children(self.process.pid)) == 2, 20, self.tail)
        self.uas = Uas(workdir, uas_port, scenario(workdir, "uas_answer_txn.xml", "127.2.0.7"))
        self.caller = scenario(workdir, "uac_call_txn.xml", CALLER_MEDIA)
        self.started: set[int] = set(children(self.process.pid))

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-25:]) if self.log.exists() else ""

    def workers(self) -> list[int]:
        pids = children(self.process.pid)
        self.started.update(pids)
        return pids

    def calls(self) -> list[dict[str, Any]]:
        status, body = rest(self.api_port, "GET", "/calls", token=TOKEN)
        assert status == 200 and isinstance(body, dict), (status, body)
        return list(body["calls"])

    def used_kbps(self) -> int:
        status, body = rest(self.api_port, "GET", "/aggregates/a-b", token=TOKEN)
        assert status == 200 and isinstance(body, dict), (status, body)
        return int(body["used_kbps"])

    def call(self, calls: int, rate: float, hold_ms: int, directory: str) -> UacResult:
        workdir = self.workdir / directory
        workdir.mkdir(exist_ok=True)
        return run_uac(workdir, self.sip_port, calls, rate=rate, scenario=self.caller, hold_ms=hold_ms,
                       limit=calls, timeout_s=60)

    def media_flows(self) -> list[str]:
        """The caller's edge's flows that match the caller's media address (the calls')."""
        return [flow for flow in dump_flows(self.bridges[0]) if CALLER_MEDIA in flow]

    def close(self) -> None:
        try:
            self.uas.stop()
        except Exception:  # noqa: BLE001
            pass
        self.lab.close()
        for pid in self.started:                  # only the workers this controller started, if still them
            try:
                if b"--worker-spec" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    lab = Controller(tmp_path)
    try:
        yield lab
    finally:
        lab.close()





def test_a_call_through_a_worker_is_admitted_its_flows_installed_and_released_on_bye(controller: Controller) -> None:
    one_call_through_a_worker(controller)


@pytest.mark.osken
def test_under_osken_a_call_through_a_worker_is_admitted_and_released(tmp_path: Path) -> None:
    """The same under os-ken's launcher, whose hub runs native threads (run in .venv-osken)."""
    if not (Path(sys.executable).parent / "mam-osken").exists() or os.environ.get("MAM_FRAMEWORK") != "os_ken":
        pytest.skip("runs in .venv-osken with MAM_FRAMEWORK=os_ken (make test)")
    lab = Controller(tmp_path, "os_ken")
    try:
        one_call_through_a_worker(lab)
    finally:
        lab.close()


def one_call_through_a_worker(controller: Controller) -> None:
    assert controller.media_flows() == []
    result: dict[str, UacResult] = {}
    caller = threading.Thread(target=lambda: result.update(one=controller.call(1, 1, 3000, "one")))
    caller.start()
    until("the call admitted", lambda: len(controller.calls()) == 1, 10, controller.tail)
    (call,) = controller.calls()
    assert controller.used_kbps() == PCMU_KBPS
    until("its flows on the caller's edge", lambda: len(controller.media_flows()) >= 1, 10,
          lambda: "\n".join(dump_flows(controller.bridges[0])))
    caller.join(30)
    uac = result["one"]
    assert uac.exit == 0 and uac.success == 1 and uac.failed == 0, uac.errors
    until("the call released by its BYE", lambda: controller.calls() == [] and controller.used_kbps() == 0, 10)
    until("its flows removed", lambda: controller.media_flows() == [], 10, lambda: "\n".join(controller.media_flows()))
    assert call["call_id"]
    assert "Traceback" not in controller.log.read_text(errors="replace"), controller.tail()


def test_a_worker_killed_mid_run_is_restarted_and_the_pool_arithmetic_holds(controller: Controller) -> None:
    first: dict[str, UacResult] = {}
    caller = threading.Thread(target=lambda: first.update(run=controller.call(POOL_CALLS + 4, 20, 5000, "first")))
    caller.start()
    until("the pool full", lambda: len(controller.calls()) == POOL_CALLS, 15, controller.tail)
    time.sleep(0.5)                                           # every 200 and ACK through: calls confirmed
    victim, other = controller.workers()
    os.kill(victim, signal.SIGKILL)
    until("the dead worker restarted", lambda: len(controller.workers()) == 2 and victim not in controller.workers(),
          10, controller.tail)
    # its confirmed calls are kept (their parties still talk): nothing released, nothing admitted over
    assert len(controller.calls()) == POOL_CALLS and controller.used_kbps() == POOL_CALLS * PCMU_KBPS
    full = controller.call(3, 10, 0, "full")                  # the pool is full: all refused
    assert full.total("503") == 3, (full.received, full.errors)
    caller.join(90)
    assert not caller.is_alive()
    run = first["run"]
    assert run.total("503") == 4, run.received               # the 4 over the pool, refused as before
    until("every call ended and the pool empty", lambda: controller.calls() == [] and controller.used_kbps() == 0,
          30, lambda: f"{controller.calls()} {controller.tail()}")
    after = controller.call(POOL_CALLS, 20, 0, "after")        # both workers serve new calls again
    assert after.exit == 0 and after.success == POOL_CALLS and after.failed == 0, after.errors
    until("the pool empty again", lambda: controller.used_kbps() == 0 and controller.media_flows() == [], 10)
    assert other in controller.workers()                      # the other worker was never touched
    settled = re.search(rf"SIP worker \d \(pid {victim}\) exited with -9: (\d+) calls being set up released, "
                        rf"(\d+) confirmed calls kept", controller.log.read_text(errors="replace"))
    assert settled and int(settled.group(1)) == 0 and int(settled.group(2)) >= 1, controller.tail()

    workers = controller.workers()
    os.kill(controller.process.pid, signal.SIGTERM)           # the controller alone, not its group
    controller.process.wait(15)
    until("its workers stopped", lambda: not any(Path(f"/proc/{pid}").exists() and
                                                 "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                                                 for pid in workers), 10)
