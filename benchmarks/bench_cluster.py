"""Controllers sharing one etcd ledger: admissions per second through one and through two
controllers, p99 admission latency, and how long a call admitted on one controller takes
to show on the other.

    .venv/bin/python benchmarks/bench_cluster.py [calls per phase, default 4000] [--threads N, default 2]
        [--phases one,own,shared,visibility] [--profile DIR]

``--threads``: admitting threads per controller (admissions in flight at once: what group
commit gathers into one etcd transaction). ``--profile DIR``: each controller's threads
under cProfile, one ``.prof`` per controller in DIR (CPU figures then include its cost),
and etcd's CPU profile (pprof, 2 s per phase) in DIR, summarised: where etcd's CPU goes.

A real etcd (Debian etcd-server 3.4, one member, data directory on this machine's disk)
on free loopback ports. Each controller is its own process running the admission path
``ryu-manager ryu_apps.mam_app`` builds for ``store: etcd://...`` (MamService, manager,
SharedLedger, EtcdKV, the watch) on native threads, driven by two threads; no REST or
OpenFlow in the way. Phases, each on a fresh key prefix:

1. one controller, calls alternating over two pools;
2. two controllers at once, each on its own pool (site controllers);
3. two controllers at once on ONE pool (every admission contends for the same key);
4. visibility: one controller admits a call every 5 ms, the other records when each one
   reaches its memory (same host clock), counted from when the first was asked (so the
   delay includes the admission's own commit: an upper bound on the watch's part).

Every phase checks the arithmetic: both controllers' view of every pool equals 91 kbit/s
times the admitted calls. Goal (issue 15): >= 2,000 admissions/s in total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

# appended, not inserted: PYTHONPATH=<another checkout> measures that checkout's code (before/after;
# its benchmarks/peers too: what this driver needs beyond them is optional)
sys.path.append(os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.peers.cluster_node import Node  # noqa: E402
from benchmarks.peers.etcd import Etcd, etcd_available  # noqa: E402
from benchmarks.peers.procs import tree_cpu_seconds  # noqa: E402

PCMU_KBPS = 91
GOAL = 2000
#: The controllers' cluster.max_txn_ops, with etcd started with --max-txn-ops 4096 (Etcd's
#: default here): a group may hold 512 - 8 = 504 admissions (one key each, with a lane),
#: so more threads make larger groups (with etcd's default of 128: 120). Shipped default: 128.
MAX_TXN_OPS = 512


def config(url: str) -> str:
    sites = "abcd"
    return f"""topology:
  switches: [{{name: core, dpid: 100}}, {', '.join(f'{{name: e{s}, dpid: {i + 1}}}' for i, s in enumerate(sites))}]
  links: [{', '.join(f'{{a: e{s}, a_port: 1, b: core, b_port: {i + 1}, capacity_kbps: 100000000}}'
                     for i, s in enumerate(sites))}]
communities:
{chr(10).join(f'  - {{name: site-{s}, edge: e{s}, access_ports: [2], prefixes: [10.{i + 1}.0.0/16]}}'
              for i, s in enumerate(sites))}
aggregates:
  - {{id: a-b, between: [site-a, site-b], size_kbps: 40000000}}
  - {{id: c-d, between: [site-c, site-d], size_kbps: 40000000}}
store: {url}
cluster: {{max_txn_ops: {MAX_TXN_OPS}}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def check(nodes: list[Node], admitted: int, unsure: int = 0) -> None:
    """Every view holds the admitted calls (and at most ``unsure`` more: store-unavailable
    answers whose commit landed unseen), each pool's use their exact sum, serials unique."""
    views = [node.ask("view") for node in nodes]
    for view in views:
        assert admitted <= view["calls"] <= admitted + unsure, (view["calls"], admitted, unsure)
        assert sum(view["used"].values()) == PCMU_KBPS * view["calls"], (view["used"], view["calls"])
        assert len(set(view["serials"])) == view["calls"]
    assert all(v["used"] == views[0]["used"] for v in views)


THREADS = 2


def run(nodes: list[Node], pools: list[list[tuple[str, str]]], count: int) -> tuple[float, list[float], dict]:
    for node, own in zip(nodes, pools):
        node.conn.send(("admit", {"prefix": f"{node.process.pid}", "count": count, "threads": THREADS, "pools": own,
                                  "pace_s": 0.0}))
    results = []
    for node in nodes:
        if not node.conn.poll(900):
            raise TimeoutError("a controller did not finish its admissions")
        results.append(node.conn.recv()[1])
    seconds = max(r["seconds"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    outcomes: dict[str, int] = {"groups": sum(r.get("groups", (0, 0))[0] for r in results),
                                "commits refused": sum(r.get("refused", 0) for r in results)}
    for r in results:
        for key, n in r["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + n
    return seconds, latencies, outcomes


def phase(workdir: Path, etcd: Etcd, title: str, names: list[str], pools: list[list[tuple[str, str]]],
          count: int) -> float:
    prefix = "bench-" + "".join(c for c in title if c.isalnum())
    nodes = [Node.start(workdir, config(etcd.url(prefix)), name) for name in names]
    try:
        for node in nodes[1:]:          # every controller has heard of the pools the first one created
            node.ask("view")
        assert etcd.process is not None
        pids = [etcd.process.pid] + [node.process.pid for node in nodes]
        cpu_before = [tree_cpu_seconds(pid) for pid in pids]
        profiling = _profile_etcd(etcd, prefix)
        seconds, latencies, outcomes = run(nodes, pools, count)
        cpu = [tree_cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before)]
        groups = outcomes.pop("groups")
        refused = outcomes.pop("commits refused")
        total = sum(outcomes.values())
        admitted = outcomes.get("admitted", 0)
        import time
        time.sleep(0.5)
        check(nodes, admitted, outcomes.get("store-unavailable", 0))
        rate = total / seconds
        print(f"{title:<44} {rate:7.0f} admissions/s  p50 {pct(latencies, .5):5.2f} ms  "
              f"p99 {pct(latencies, .99):6.2f} ms  {admitted}/{total} admitted"
              + ("" if admitted == total else f" (refused: {dict((k, v) for k, v in outcomes.items() if k != 'admitted')})"),
              flush=True)
        print(f"{'':<44} CPU per admission: etcd {cpu[0] / total * 1000:.2f} ms, controllers "
              f"{sum(cpu[1:]) / total * 1000:.2f} ms (2 cores: ceiling ~{2 / (sum(cpu) / total):.0f}/s); "
              + (f"{groups} groups, {total / groups:.1f} admissions each" if groups else "no group commit")
              + f"; {refused} commits refused (another controller first)", flush=True)
        if profiling is not None:
            profiling.join()
            path = Path(PROFILE_DIR or ".") / f"etcd-{prefix}.pprof"
            if path.exists():
                from benchmarks.peers.pprof import ETCD, shares
                sampled, where = shares(path, ETCD)
                print(f"{'':<44} etcd's CPU (pprof, {sampled:.2f} s sampled): "
                      + ", ".join(f"{label} {share * 100:.0f} %" for label, share in where.items()), flush=True)
        return rate
    finally:
        for node in nodes:
            node.stop()


PROFILE_DIR: str | None = None


def _profile_etcd(etcd: Etcd, prefix: str) -> threading.Thread | None:
    """With --profile: etcd's CPU profile over the next 2 s, into DIR/etcd-<phase>.pprof."""
    if PROFILE_DIR is None:
        return None

    def fetch() -> None:
        url = f"http://{etcd.endpoint}/debug/pprof/profile?seconds=2"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                (Path(PROFILE_DIR or ".") / f"etcd-{prefix}.pprof").write_bytes(response.read())
        except OSError as error:
            print(f"etcd profile not taken: {error}", flush=True)
    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def visibility(workdir: Path, etcd: Etcd, count: int) -> None:
    nodes = [Node.start(workdir, config(etcd.url("bench-visibility")), name) for name in ("ctl-a", "ctl-b")]
    try:
        nodes[1].ask("view")
        result = nodes[0].ask("admit", prefix="v", count=count, threads=1, pools=[("site-a", "site-b")],
                              pace_s=0.005)
        import time
        time.sleep(1.0)
        seen = nodes[1].ask("seen")
        delays = [max(0.0, seen[c] - t) for c, t in result["stamps"].items() if c in seen]
        assert len(delays) == len(result["stamps"]), f"{len(result['stamps']) - len(delays)} calls never showed"
        check(nodes, len(delays))
        print(f"{'asked on one, applied on the other after':<44} p50 {pct(delays, .5):5.2f} ms  "
              f"p99 {pct(delays, .99):6.2f} ms  max {max(delays) * 1000:6.2f} ms  ({len(delays)} calls, "
              f"mean {statistics.mean(delays) * 1000:.2f} ms)", flush=True)
    finally:
        for node in nodes:
            node.stop()


def _checkout() -> str:
    """Which checkout's ryu_apps runs (PYTHONPATH chooses) and its commit."""
    import subprocess
    import ryu_apps
    root = os.path.dirname(os.path.dirname(os.path.abspath(ryu_apps.__file__)))
    head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, timeout=10).stdout.strip()
    return f"{root} at {head}{' + changes' if dirty else ''}"


def main(argv: list[str] | None = None) -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=4000, help="admissions per controller per phase")
    parser.add_argument("--threads", type=int, default=2, help="admitting threads per controller")
    parser.add_argument("--phases", default="one,own,shared,visibility")
    parser.add_argument("--profile", metavar="DIR", help="cProfile each controller into DIR")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    count, THREADS, phases = args.count, args.threads, set(args.phases.split(","))
    global PROFILE_DIR
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        os.environ["MAM_BENCH_PROFILE"] = PROFILE_DIR = os.path.abspath(args.profile)
    why = etcd_available()
    if why:
        print(f"skipped: {why}")
        return
    import datetime
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, \
            (Etcd(Path(tmp), extra=["--enable-pprof"]) if PROFILE_DIR else Etcd(Path(tmp))) as etcd:
        workdir = Path(tmp)
        print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}; "
              f"etcd 3.4 one member at {etcd.endpoint}, data on disk; {count} admissions per controller "
              f"per phase, {THREADS} threads each; code: {_checkout()}", flush=True)
        ab, cd = ("site-a", "site-b"), ("site-c", "site-d")
        one = own = shared = 0.0
        if "one" in phases:
            one = phase(workdir, etcd, "one controller, two pools", ["ctl-a"], [[ab, cd]], count)
        if "own" in phases:
            own = phase(workdir, etcd, "two controllers, each on its own pool", ["ctl-a", "ctl-b"], [[ab], [cd]],
                        count)
        if "shared" in phases:
            shared = phase(workdir, etcd, "two controllers on one pool", ["ctl-a", "ctl-b"], [[ab], [ab]], count)
        if "visibility" in phases:
            visibility(workdir, etcd, min(count, 500))
        print(f"goal >= {GOAL}/s in total: {'met' if max(one, own, shared) >= GOAL else 'NOT met'} "
              f"(one {one:.0f}/s, two on own pools {own:.0f}/s, two on one pool {shared:.0f}/s)", flush=True)


if __name__ == "__main__":
    main()
