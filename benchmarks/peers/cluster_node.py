"""One controller's admission path on a shared etcd ledger, as its own process, driven
through a pipe (benchmarks and integration tests): the same MamService, manager,
SharedLedger/EtcdKV and Replication that ``ryu-manager ryu_apps.mam_app`` builds for
``store: etcd://...``, on native threads, without OpenFlow or REST.

    node = Node.start(workdir, config_text, name)       # a spawned process
    node.ask("admit", prefix="a", count=1000, threads=2, pool="a-b")

With ``MAM_BENCH_PROFILE=DIR`` in the environment every thread of the controller (its
admitting threads, the watch, the applier) runs under cProfile and writes its profile to
``DIR/<name>-<pid>-<thread>.prof`` when it ends (the watch and the applier: at stop).
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def _serve(config_path: str, name: str, conn: Connection) -> None:
    from ryu_apps.cluster.replication import clustered, open_shared_ledger
    from ryu_apps.config import build_manager, load_config
    from ryu_apps.core.admission import AdmissionRequest, Admitted
    from ryu_apps.core.codec import MediaSpec
    from ryu_apps.core.store import PutCall
    from ryu_apps.service import MamService

    config = load_config(config_path)
    config = replace(config, cluster=replace(config.cluster, name=name))
    replication = open_shared_ledger(config, config.topology)
    config = clustered(config, replication.ledger.lane)
    service = MamService(build_manager(config, replication.ledger, now=time.time()))
    seen: dict[str, float] = {}
    take = replication.ledger.take_remote

    def take_and_stamp() -> Any:
        writes = take()
        now = time.time()
        for write in writes:
            if isinstance(write, PutCall) and write.call.call_id not in seen:
                seen[write.call.call_id] = now
        return writes
    replication.ledger.take_remote = take_and_stamp    # type: ignore[method-assign]

    profile_dir = os.environ.get("MAM_BENCH_PROFILE")

    def profiled(target: Any) -> Any:
        if not profile_dir:
            return target

        def run(*args: Any) -> Any:
            profile = cProfile.Profile()
            try:
                return profile.runcall(target, *args)
            finally:            # each thread writes its own when it ends (the watch's: at stop)
                profile.dump_stats(os.path.join(profile_dir, f"{name}-{os.getpid()}-{threading.get_ident()}.prof"))
        return run

    def spawn(target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=profiled(target), args=args, daemon=True)
        thread.start()
        return thread
    replication.start(service, spawn, time.sleep)
    conn.send(("ready", replication.ledger.revision))

    def admit(prefix: str, count: int, threads: int, pools: list[tuple[str, str]], pace_s: float,
              retries: int = 0) -> dict[str, Any]:
        """``retries``: a setup refused store-unavailable is sent again (same call id) up to
        this many times, as a client would: the same admission if it landed after all."""
        latencies: list[float] = []
        stamps: dict[str, float] = {}
        outcomes: dict[str, int] = {}
        lock = threading.Lock()

        def run(worker: int) -> None:
            for i in range(worker, count, threads):
                a, b = pools[i % len(pools)]
                call_id = f"{prefix}-{i}"
                asked = time.time()
                started = time.perf_counter()
                decision = service.admit(AdmissionRequest(call_id, a, b, MediaSpec("pcmu")))
                for _ in range(retries):
                    if isinstance(decision, Admitted) or decision.reason.value != "store-unavailable":
                        break
                    decision = service.admit(AdmissionRequest(call_id, a, b, MediaSpec("pcmu")))
                took = time.perf_counter() - started
                key = "admitted" if isinstance(decision, Admitted) else decision.reason.value
                with lock:
                    latencies.append(took)
                    stamps[call_id] = asked         # when it was asked: the delay includes the commit
                    outcomes[key] = outcomes.get(key, 0) + 1
                if pace_s:
                    time.sleep(pace_s)
        started = time.perf_counter()
        group = getattr(service, "group", None)
        groups_before = (group.groups, group.admissions) if group is not None else (0, 0)
        refused_before = getattr(replication.ledger, "refused", 0)
        workers = [threading.Thread(target=profiled(run), args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        groups = ((group.groups - groups_before[0], group.admissions - groups_before[1]) if group is not None
                  else (0, 0))
        return {"seconds": seconds, "latencies": latencies, "outcomes": outcomes, "stamps": stamps,
                "groups": groups, "refused": getattr(replication.ledger, "refused", 0) - refused_before}

    while True:
        command, args = conn.recv()
        if command == "stop":
            replication.stop()
            conn.send(("ok", None))
            return
        if command == "admit":
            conn.send(("ok", admit(**args)))
        elif command == "release":
            released = 0
            for call in service.read(lambda m: m.calls()):
                if call.call_id.startswith(args["prefix"]) and service.release(call.call_id) is not None:
                    released += 1
            conn.send(("ok", released))
        elif command == "view":
            conn.send(("ok", service.read(lambda m: {
                "used": {a.id: m.used_kbps(a.id) for a in m.aggregates()},
                "calls": len(m.calls()), "serials": sorted(c.serial for c in m.calls())})))
        elif command == "seen":
            conn.send(("ok", dict(seen)))


class Node:
    def __init__(self, process: Any, conn: Connection, revision: int) -> None:
        self.process, self.conn, self.revision = process, conn, revision

    @staticmethod
    def start(workdir: Path, config_text: str, name: str) -> "Node":
        path = workdir / f"{name}.yaml"
        path.write_text(config_text)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(str(path), name, theirs), daemon=True)
        process.start()
        deadline = time.monotonic() + 60
        while not ours.poll(0.2):
            if not process.is_alive() or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"controller {name} did not start (exit code {process.exitcode})")
        kind, revision = ours.recv()
        return Node(process, ours, revision)

    def ask(self, command: str, timeout: float = 600, **args: Any) -> Any:
        self.conn.send((command, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{command} took longer than {timeout} s")
        kind, value = self.conn.recv()
        return value

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)

    def stop(self) -> None:
        try:
            if self.process.is_alive():
                self.ask("stop", timeout=10)
        except (OSError, EOFError, TimeoutError):
            pass
        self.kill()
