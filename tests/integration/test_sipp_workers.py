"""``python -m ryu_apps.signalling.sip --config FILE --workers 2`` with real sockets and SIPp.

The owner process (admission) and its two workers run as processes of their own; the
tests read the pool from the owner's stats file (SIGUSR1 writes it) and stop, or kill,
only the processes they started, by PID: the owner, the worker PIDs it printed, SIPp.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from test_sipp_proxy import PCMU_KBPS, REPO, Sipp, errors_of, free_port, site_config

pytestmark = [pytest.mark.integration]
POOL_CALLS = 20


class Workers:
    """The owner and its workers, stopped by PID whatever happens."""

    def __init__(self, workdir: Path, pool_calls: int, reader: str = "owner") -> None:
        self.port, self.uas_port = free_port(), free_port()
        document = site_config(pool_calls * PCMU_KBPS, self.port, self.uas_port)
        document["sip"]["transports"] = ["udp"]
        config = workdir / "site.yaml"
        config.write_text(yaml.safe_dump(document))
        self.stats_file = workdir / "stats.json"
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(config), "--workers", "2",
             "--stats-file", str(self.stats_file), "--shared-reader", reader], cwd=workdir, env=env, stdout=subprocess.PIPE,
            stderr=(workdir / "owner.log").open("wb"), start_new_session=True)
        self.pids: set[int] = set()
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        match = re.search(r"pids ([\d, ]+), own ports ([\d, ]+);", line)
        assert match, (line, (workdir / "owner.log").read_text())
        self.worker_pids = [int(p) for p in match.group(1).split(",")]
        self.pids.update(self.worker_pids)
        self.sipp = Sipp(workdir, self.port, self.uas_port)

    def stats(self) -> dict[str, Any]:
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                try:
                    stats: dict[str, Any] = json.loads(self.stats_file.read_text())
                except ValueError:
                    continue
                self.pids.update(w["pid"] for w in stats["workers"] if w["pid"])
                return stats
            time.sleep(0.05)
        raise AssertionError("the owner wrote no stats")

    def until(self, check: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        stats = self.stats()
        while not check(stats) and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = self.stats()
        return stats

    def stop(self) -> dict[str, Any]:
        self.sipp.stop_uas()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for sig in (signal.SIGTERM, signal.SIGKILL):   # only the workers this owner started
            for pid in self.pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (OSError, ValueError):
            return {}


@pytest.fixture
def workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:
    lab = Workers(tmp_path, POOL_CALLS, getattr(request, "param", "owner"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.mark.parametrize("workers", ["owner", "workers"], indirect=True)
def test_calls_through_two_workers_complete_and_the_pool_returns_to_zero(workers: Workers) -> None:
    """Either reader of the public socket: the owner (default) or every worker."""
    workers.sipp.start_uas("uas_answer.xml")
    rc, counts = workers.sipp.uac("uac_call.xml", 200, ["pcmu"], rate=100, limit=POOL_CALLS)
    assert rc == 0, errors_of(workers.sipp.workdir)
    assert counts["8_200"] == 200, counts
    stats = workers.until(lambda s: s["pool_used_kbps"] == 0, 5)
    assert stats["pool_used_kbps"] == 0 and stats["admitted_calls"] == 0 and stats["active_calls"] == 0
    assert stats["owner"]["bad_frames"] == 0 and stats["owner"]["failed"] == 0
    final = workers.stop()
    assert final["admitted"] == 200 and final["released"] == 200 and final["internal_errors"] == 0
    per_worker = [json.loads(Path(f"{workers.stats_file}.worker{i}").read_text())["admitted"] for i in (0, 1)]
    assert min(per_worker) > 30, per_worker                              # both workers had calls


def test_killing_one_worker_leaves_the_others_calls_alone_and_never_oversubscribes(workers: Workers) -> None:
    sipp = workers.sipp
    sipp.start_uas("uas_answer.xml")
    first: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: first.update(zip(("rc", "counts"), sipp.uac(
        "uac_call.xml", 30, ["pcmu"], rate=30, hold_ms=4000, limit=30))))
    caller.start()
    stats = workers.until(lambda s: s["admitted_calls"] == POOL_CALLS and s.get("rejected", {}).get("pool-full") == 10
                          if "rejected" in s else s["admitted_calls"] == POOL_CALLS, 10)
    assert stats["admitted_calls"] == POOL_CALLS, stats
    time.sleep(0.5)                                                      # every 200 and ACK through
    held = {int(k): v for k, v in workers.stats()["held_by_worker"].items()}
    assert sum(held.values()) == POOL_CALLS and len(held) == 2, held
    victim = workers.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    stats = workers.until(lambda s: s["workers"][0]["deaths"] == 1, 5)
    # confirmed calls are kept (their parties still talk): nothing released, nothing admitted over
    assert stats["admitted_calls"] == POOL_CALLS and stats["pool_used_kbps"] == POOL_CALLS * PCMU_KBPS
    assert stats["owner"]["released_worker_lost"] == 0 and stats["owner"]["kept_for_restore"] == held[0]
    second = Sipp(sipp.workdir / "second", workers.port, workers.uas_port)   # its own counts file
    second.workdir.mkdir()
    rc, counts = second.uac("uac_call.xml", 5, ["pcmu"], rate=50)         # the pool is full: all refused
    assert counts.get("4_503") == 5, (counts, errors_of(second.workdir))
    caller.join(60)
    assert not caller.is_alive()
    completed = first["counts"].get("8_200", 0)
    assert completed >= held[1], (first, errors_of(sipp.workdir))        # the other worker's calls all ended well
    stats = workers.until(lambda s: s["pool_used_kbps"] == 0, 20)         # the successor BYEd out the rest
    assert stats["pool_used_kbps"] == 0 and stats["admitted_calls"] == 0, stats
    assert stats["workers"][0]["starts"] == 2 and stats["workers"][0]["pid"] != victim
    assert stats["owner"]["restored"] == held[0]


def test_without_the_owner_workers_refuse_new_calls_with_a_clear_reason(workers: Workers) -> None:
    workers.sipp.start_uas("uas_answer.xml")
    rc, counts = workers.sipp.uac("uac_call.xml", 4, ["pcmu"], rate=50)
    assert rc == 0 and counts["8_200"] == 4, (counts, errors_of(workers.sipp.workdir))
    workers.process.kill()                          # the owner dies; its workers live on, and say so
    workers.process.wait(5)
    time.sleep(2.0)
    rc, counts = workers.sipp.uac("uac_call.xml", 3, ["pcmu"], rate=50, timeout_s=10)
    assert counts.get("4_503") == 3, (counts, errors_of(workers.sipp.workdir))
    for pid in workers.worker_pids:                 # refused, not hung: both are still there
        os.kill(pid, 0)
