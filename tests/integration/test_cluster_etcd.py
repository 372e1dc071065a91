"""Several controllers on one real etcd (Debian etcd-server), on free loopback ports with
a temporary data directory, stopped by PID.

* Two controllers admit from threads at once onto one pool: exactly as many calls as fit
  are admitted, never one more, and every view (both controllers, the store) agrees.
* Sixteen threads on each of two controllers admit at once onto two pools, so admissions
  are committed in groups (one etcd transaction each, under etcd's default --max-txn-ops):
  each pool holds exactly as many calls as fit, its use is their exact sum, every serial
  once, and a setup retried after ``store-unavailable`` is the same admission.
* etcd is killed and restarted under a running ``ryu-manager``: admission answers 503
  store-unavailable, admitted calls stay, a release asked for meanwhile is recorded once
  the store is back, and admission resumes by itself.
* A controller killed with -9 and restarted rebuilds its view from the store, including
  what the other controller admitted meanwhile; a retried setup on the other controller
  is the same admission.
* Stopping the store client ends its watch at once (the thread reading etcd's stream is
  not left blocked on a quiet prefix).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from benchmarks.peers.cluster_node import Node
from benchmarks.peers.controller import two_sites
from benchmarks.peers.etcd import Etcd, etcd_available
from benchmarks.peers.procs import free_port, stop, wait_tcp

pytestmark = [pytest.mark.integration, pytest.mark.skipif(etcd_available() is not None, reason=str(etcd_available()))]

PCMU_KBPS = 91
REPO = Path(__file__).resolve().parents[2]
#: ryu-manager in the ryu venv, the os-ken launcher in .venv-osken (make test runs osken-marked tests there)
LAUNCHER = next(p for p in (Path(sys.executable).parent / "ryu-manager", Path(sys.executable).parent / "mam-osken")
                if p.exists() or p.name == "mam-osken")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    with Etcd(tmp_path) as server:
        yield server


class RyuController:
    """``ryu-manager ryu_apps.mam_app`` with ``store: etcd://...`` and REST on a free port."""

    def __init__(self, workdir: Path, name: str, etcd: Etcd, pool_kbps: int, api_port: int | None = None,
                 of_port: int | None = None, cluster_extra: str = "") -> None:
        self.name, self.workdir = name, workdir
        self.api_port = api_port or free_port()
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(two_sites(pool_kbps, api_port=self.api_port)
                               + f"store: {etcd.url()}\ncluster:\n  name: {name}\n{cluster_extra}")
        self.log = workdir / f"{name}.log"
        env = dict(os.environ, MAM_CONFIG=str(self.config), PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(LAUNCHER),
                                             "--ofp-tcp-listen-port", str(of_port or free_port()),
                                             "ryu_apps.mam_app"],
                                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            wait_tcp(self.api_port, self.process)
        except Exception:
            self.stop()
            raise

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/mam/v1{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def admit(self, call_id: str) -> tuple[int, Any]:
        return self.rest("POST", "/calls", {"call_id": call_id, "caller_community": "site-a",
                                            "callee_community": "site-b", "media": {"codec": "pcmu"}})

    def pool(self) -> tuple[int, int]:
        status, body = self.rest("GET", "/aggregates/a-b")
        assert status == 200, body
        return body["used_kbps"], body["calls"]

    def call_ids(self) -> set[str]:
        return {c["call_id"] for c in self.rest("GET", "/calls")[1]["calls"]}

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop(self.process)

    def explain(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def until(what: str, check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout:g} s")


def admit_at_once(nodes: list[Node], threads: int, pools: list[tuple[str, str]],
                  retries: int = 0) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """1000 setups on each node at once; the outcomes summed, and each node's result."""
    for node in nodes:
        node.conn.send(("admit", {"prefix": node.process.name, "count": 1000, "threads": threads,
                                  "pools": pools, "pace_s": 0.0, "retries": retries}))
    results = [node.conn.recv()[1] for node in nodes if node.conn.poll(600)]
    assert len(results) == len(nodes)
    outcomes: dict[str, int] = {}
    for result in results:
        for key, n in result["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + n
    return outcomes, results


def test_two_controllers_admitting_at_once_fill_one_pool_exactly(tmp_path, etcd):
    fits = 1500
    config = two_sites(fits * PCMU_KBPS) + f"store: {etcd.url()}\n"
    nodes = [Node.start(tmp_path, config, name) for name in ("ctl-a", "ctl-b")]
    try:
        nodes[1].ask("view")
        # 2 x 1000 setups from two threads each, at once, for 1500 places
        outcomes, _ = admit_at_once(nodes, threads=2, pools=[("site-a", "site-b")])
        assert outcomes["admitted"] == fits, outcomes        # never one more, and nothing lost to contention
        assert set(outcomes) <= {"admitted", "pool-full", "store-unavailable"}
        time.sleep(0.5)
        views = [node.ask("view") for node in nodes]
        for view in views:
            assert view["used"] == {"a-b": fits * PCMU_KBPS} and view["calls"] == fits
            assert len(set(view["serials"])) == fits
        assert views[0]["serials"] == views[1]["serials"]
    finally:
        for node in nodes:
            node.stop()


def test_group_commit_from_many_threads_on_two_controllers_is_exact(tmp_path):
    with Etcd(tmp_path, max_txn_ops=128) as etcd:       # etcd's default: every group must fit in it
        fits = 700                                        # per pool; 2 x 1000 setups on each
        config = f"""topology:
  switches: [{{name: s1, dpid: 1}}, {{name: s2, dpid: 2}}]
  links: [{{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: 10000000}}]
communities:
  - {{name: site-a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16]}}
  - {{name: site-b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16]}}
  - {{name: site-c, edge: s2, access_ports: [3], prefixes: [10.3.0.0/16]}}
aggregates:
  - {{id: a-b, between: [site-a, site-b], size_kbps: {fits * PCMU_KBPS}}}
  - {{id: a-c, between: [site-a, site-c], size_kbps: {fits * PCMU_KBPS}}}
store: {etcd.url()}
"""
        nodes = [Node.start(tmp_path, config, name) for name in ("ctl-a", "ctl-b")]
        try:
            nodes[1].ask("view")
            pools = [("site-a", "site-b"), ("site-a", "site-c")]
            outcomes, results = admit_at_once(nodes, threads=16, pools=pools, retries=20)
            assert outcomes == {"admitted": 2 * fits, "pool-full": 2000 - 2 * fits}, outcomes
            groups, admissions = (sum(r["groups"][i] for r in results) for i in (0, 1))
            assert admissions >= 2000 and admissions / groups > 2, (groups, admissions)   # several per transaction
            time.sleep(0.5)
            views = [node.ask("view") for node in nodes]
            for view in views:
                assert view["used"] == {"a-b": fits * PCMU_KBPS, "a-c": fits * PCMU_KBPS}, view["used"]
                assert view["calls"] == 2 * fits and len(set(view["serials"])) == 2 * fits
            assert views[0]["serials"] == views[1]["serials"]
            from ryu_apps.store.etcd import b64, prefix_end, unb64
            from ryu_apps.store.shared import SHARE_OFFSET
            query = {"key": b64("/mam/used-by/"), "range_end": b64(prefix_end("/mam/used-by/"))}
            with urllib.request.urlopen(urllib.request.Request(f"http://{etcd.endpoint}/v3/kv/range",
                                                               data=json.dumps(query).encode()), timeout=5) as answer:
                stored = json.loads(answer.read())
            use: dict[str, int] = {}                 # the store too: each pool's shares (one per controller) add up
            for kv in stored["kvs"]:
                pool = unb64(kv["key"]).split("/")[3]
                use[pool] = use.get(pool, 0) + int(unb64(kv["value"])) - SHARE_OFFSET
            assert use == {"a-b": fits * PCMU_KBPS, "a-c": fits * PCMU_KBPS}, use
        finally:
            for node in nodes:
                node.stop()


@pytest.mark.osken
def test_etcd_down_refuses_with_503_keeps_calls_and_resumes(tmp_path, etcd):
    a = RyuController(tmp_path, "ctl-a", etcd, 10 * PCMU_KBPS)
    b = RyuController(tmp_path, "ctl-b", etcd, 10 * PCMU_KBPS)
    try:
        for i in range(3):
            assert a.admit(f"c{i}")[0] == 201
        until("ctl-b sees ctl-a's calls", lambda: b.pool() == (3 * PCMU_KBPS, 3))
        etcd.kill()
        status, body = a.admit("down-1")
        assert status == 503 and body["error"]["reason"] == "store-unavailable", body
        assert b.admit("down-2")[0] == 503
        assert a.call_ids() == {"c0", "c1", "c2"} and b.pool() == (3 * PCMU_KBPS, 3)   # admitted calls untouched
        assert a.rest("DELETE", "/calls/c0")[0] in (202, 204, 503)   # cannot be recorded yet: kept, retried
        assert "c0" in b.call_ids()
        etcd.start()
        until("the release asked for while etcd was down is recorded", lambda: b.call_ids() == {"c1", "c2"},
              timeout=15)
        until("admission resumes by itself", lambda: a.admit("back-1")[0] == 201, timeout=15)
        assert b.admit("back-1")[0] == 201                  # a retried setup on the other controller: same call
        until("both controllers agree", lambda: a.pool() == b.pool() == (3 * PCMU_KBPS, 3))
        assert a.call_ids() == b.call_ids() == {"c1", "c2", "back-1"}
    except AssertionError:
        print(a.explain(), b.explain())
        raise
    finally:
        a.stop()
        b.stop()


def test_a_controller_killed_and_restarted_rebuilds_from_the_store(tmp_path, etcd):
    a = RyuController(tmp_path, "ctl-a", etcd, 20 * PCMU_KBPS)
    b = RyuController(tmp_path, "ctl-b", etcd, 20 * PCMU_KBPS)
    acknowledged: set[str] = set()
    stop_load = threading.Event()

    def load(controller: RyuController, prefix: str) -> None:
        i = 0
        while not stop_load.is_set() and i < 12:
            try:
                status, _ = controller.admit(f"{prefix}{i}")
            except OSError:
                return                                   # the controller is gone
            if status == 201:
                acknowledged.add(f"{prefix}{i}")
            i += 1
            time.sleep(0.02)
    try:
        threads = [threading.Thread(target=load, args=(a, "a")), threading.Thread(target=load, args=(b, "b"))]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        a.kill()                                         # kill -9 under load
        for thread in threads:
            thread.join(30)
        stored = b.call_ids()
        assert acknowledged <= stored                    # nothing acknowledged is lost
        assert all(i.startswith(("a", "b")) for i in stored) and len(stored) <= 20
        assert b.pool() == (PCMU_KBPS * len(stored), len(stored))
        assert b.admit("b-after")[0] == 201              # the survivor admits
        restarted = RyuController(tmp_path, "ctl-a", etcd, 20 * PCMU_KBPS, api_port=a.api_port)
        try:
            assert restarted.call_ids() == stored | {"b-after"}    # its view rebuilt from the store
            status, body = restarted.admit("b-after")              # a retry elsewhere: the same admission
            assert status == 201 and body["call"]["serial"] == b.rest("GET", "/calls/b-after")[1]["serial"]
            assert restarted.admit("a-after")[0] == 201
            until("both see the new call", lambda: "a-after" in b.call_ids())
            assert restarted.pool() == b.pool() == (PCMU_KBPS * (len(stored) + 2), len(stored) + 2)
        finally:
            restarted.stop()
    except AssertionError:
        print(a.explain(), b.explain())
        raise
    finally:
        stop_load.set()
        a.stop()
        b.stop()


def test_stopping_the_store_client_ends_its_watch_at_once(etcd):
    # The watch thread blocks reading etcd's stream; stop() used to wait on that read for ever
    # (on a quiet prefix nothing ever arrives), so a controller or benchmark node never stopped.
    from ryu_apps.store.etcd import EtcdKV
    from ryu_apps.store.url import EtcdUrl

    class Quiet:
        prefix, revision, watched = "quiet/", 0, 0

        def feed(self, events) -> None:
            raise AssertionError("nothing is written under this prefix")

        def compacted(self, revision) -> None:
            pass

    kv = EtcdKV(EtcdUrl.parse(etcd.url("quiet")), timeout=1.0)
    watch = threading.Thread(target=kv.watch_forever, args=(Quiet(), time.sleep), daemon=True)
    watch.start()
    until("the watch stream is open", lambda: bool(kv._streams), timeout=10)
    stopped = threading.Thread(target=kv.stop, daemon=True)
    started = time.monotonic()
    stopped.start()
    stopped.join(5)
    watch.join(5)
    assert not stopped.is_alive() and not watch.is_alive(), "stop() or the watch thread still blocked after 5 s"
    assert time.monotonic() - started < 2
