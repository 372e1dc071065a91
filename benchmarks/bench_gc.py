"""Garbage-collection stalls on the controller's call path, in process, with live calls held.

    .venv/bin/python benchmarks/bench_gc.py [--calls 100000] [--live 15000] [--rounds 2]
                                            [--before /path/to/a/checkout/of/main]

Each run is a fresh interpreter (the collector's settings are global) driving the core's
call path on bench_openflow.py's topology: admit + attach_media + drain, and for the call
admitted --live calls earlier release + flows confirmed removed + drain; the core's timers
run on a model clock (1,000 calls/s). The live calls grow to --live, then every call
admitted releases the oldest, --calls admitted in all. Every collection is timed through
``gc.callbacks``, wall clock (what the call path waits) and the thread's CPU time (the
collector's own work: the wall clock also counts the time this loaded machine gave the
CPU to someone else).

Settings, one run of each per round, alternating:
  default  CPython's own (700, 10, 10)
  before   ``ryu_apps/gc_tuning.py`` of the --before tree (its core too), as its controller
           applies it (``tune()``; its ``Sweeper`` too if it has one)
  after    this tree's ``gc_tuning``: ``tune()``, and a ``Sweeper`` driven by the loop's wall
           clock (the controller runs it on its own hub thread)

Printed per run: collections by generation, the longest (wall, and CPU), collections over
5 ms (wall; how many of them the process was preempted in, and how many took 5 ms of CPU),
all collections' time, calls/s, the process's RSS when the live calls reached --live and at
the end, and (after the timed part) what a full collection of everything, frozen objects
included, then finds: cyclic garbage that the schedule let through.

With --controller (root and Open vSwitch): the same for the real controller, ``ryu-manager
ryu_apps.mam_app`` on bench_openflow.py's six userspace bridges, before and after
alternating (PYTHONPATH at each tree): calls admitted with media over REST on one
keep-alive connection, released past --controller-live; every collection in the
controller timed by a ``sitecustomize`` probe (the same for both trees; its figures trail
by at most 0.25 s), and for a tree that has them the controller's own ``mam_gc_*`` metrics.

With --sip [--sip-rate 400] [--sip-seconds 30] [--sip-hold-ms 20000] (SIPp): the standalone
SIP proxy (``python -m ryu_apps.signalling.sip``, admission in process) between a SIPp caller
and callee, calls held --sip-hold-ms (rate x hold live calls at the peak), before and after
alternating, every collection timed by the same probe; SIPp's completed/failed calls and
retransmissions and the proxy's CPU per call beside them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATE = 1_000.0                    # model clock: calls admitted per second
WORKLOAD = r'''
import gc, json, resource, sys, time
sys.path[:0] = [ROOT, BENCH]
for name in [m for m in sys.modules if m.split(".")[0] == "ryu_apps"]:   # a .pth imported this venv's tree
    del sys.modules[name]
from ryu_apps import gc_tuning           # the tree under test first: bench_openflow puts its own on the path
from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.codec import MediaSpec
import bench_openflow as b
assert gc_tuning.__file__.startswith(ROOT), gc_tuning.__file__

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

manager = build_manager(parse_config(b.config()))
manager.drain()
sweeper = None
if SETTINGS == "default":
    gc.collect()
    gc.set_threshold(700, 10, 10)
else:
    gc_tuning.tune()
    sweeper = gc_tuning.Sweeper() if hasattr(gc_tuning, "Sweeper") else None
pauses = []
mark = [0.0, 0.0, 0]
def switches():     # involuntary context switches: the machine gave the CPU to another process
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
def timed(phase, info):
    if phase == "start":
        mark[:] = time.perf_counter(), time.thread_time(), switches()
    else:
        pauses.append((info["generation"], time.perf_counter() - mark[0], time.thread_time() - mark[1],
                       switches() - mark[2]))
gc.callbacks.append(timed)
serials = {}
grown = None
started = time.perf_counter()
next_sweep = started + (sweeper.interval_s if sweeper else 0.0)
for n in range(CALLS):
    now = n / RATE
    pair, caller, callee = b.media(n % 50_000)
    decision = manager.admit(AdmissionRequest(f"call-{n}", f"a{pair}", f"b{pair}", MediaSpec("pcmu")), now)
    assert isinstance(decision, Admitted), decision
    manager.attach_media(f"call-{n}", caller, callee, now)
    manager.drain()
    serials[n] = decision.serial
    if n >= LIVE:
        manager.release(f"call-{n - LIVE}", now)
        manager.drain()
        manager.flows_removed(serials.pop(n - LIVE), now)
        manager.drain()
    elif n == LIVE - 1:
        grown = rss_mib()
    if n % 100 == 0:
        manager.handle_timer(now)
    if sweeper is not None and time.perf_counter() >= next_sweep:
        next_sweep = time.perf_counter() + sweeper.sweep()
elapsed = time.perf_counter() - started
gc.callbacks.remove(timed)
end = rss_mib()
gc.unfreeze()
leaked = gc.collect()
print(json.dumps({"pauses": pauses, "elapsed": elapsed, "grown": grown, "end": end, "leaked": leaked,
                  "live_at": LIVE}))
'''


def run(settings: str, root: Path, calls: int, live: int) -> dict:
    code = (f"ROOT, BENCH, SETTINGS, CALLS, LIVE, RATE = {str(root)!r}, {str(ROOT / 'benchmarks')!r}, "
            f"{settings!r}, {calls}, {live}, {RATE}\n" + WORKLOAD)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{settings}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(label: str, result: dict, calls: int) -> str:
    pauses = result["pauses"]
    by_generation = [sum(1 for p in pauses if p[0] == g) for g in (0, 1, 2)]
    wall = max(pauses, key=lambda p: p[1], default=(0, 0.0, 0.0, 0))
    cpu = max(pauses, key=lambda p: p[2], default=(0, 0.0, 0.0, 0))
    over = [p for p in pauses if p[1] > 0.005]
    preempted = sum(1 for p in over if p[3] > 0)
    over_cpu = sum(1 for p in pauses if p[2] > 0.005)
    total = sum(p[1] for p in pauses)
    return (f"   {label:>8}: collections gen 0/1/2 {by_generation[0]:,}/{by_generation[1]:,}/{by_generation[2]:,}; "
            f"longest {wall[1] * 1000:.1f} ms wall (gen {wall[0]}, {wall[2] * 1000:.1f} ms CPU, preempted "
            f"{wall[3]}x), longest CPU {cpu[2] * 1000:.1f} ms (gen {cpu[0]}); over 5 ms wall {len(over)} "
            f"({preempted} preempted), over 5 ms CPU {over_cpu}; all {total * 1000:,.0f} ms of "
            f"{result['elapsed']:.1f} s ({calls / result['elapsed']:,.0f} calls/s); RSS {result['grown']:.0f} MiB "
            f"at {result['live_at']:,} live calls, {result['end']:.0f} MiB at the end; cyclic garbage left "
            f"{result['leaked']:,}")


PROBE = r'''
import gc, json, os, resource, time
_file, _state, _mark = os.environ["GC_PROBE"], {"count": [0, 0, 0], "longest": [0.0, 0.0, 0.0],
                                                "longest_cpu": [0.0, 0.0, 0.0], "over": 0, "over_preempted": 0,
                                                "over_cpu": 0, "seconds": 0.0}, [0.0, 0.0, 0, 0.0]
def _probe(phase, info):
    if os.path.exists(_file + ".reset"):        # the load starts: start-up's collections are not counted
        os.remove(_file + ".reset")
        for key, value in list(_state.items()):
            _state[key] = [0 * v for v in value] if isinstance(value, list) else 0 * value
    if phase == "start":
        _mark[:3] = time.perf_counter(), time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        return
    now = time.perf_counter()
    wall, cpu, g = now - _mark[0], time.thread_time() - _mark[1], info["generation"]
    _state["count"][g] += 1
    _state["seconds"] += wall
    _state["longest"][g] = max(_state["longest"][g], wall)
    _state["longest_cpu"][g] = max(_state["longest_cpu"][g], cpu)
    if wall > 0.005:
        _state["over"] += 1
        _state["over_preempted"] += resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw > _mark[2]
    _state["over_cpu"] += cpu > 0.005
    if now - _mark[3] > 0.25:
        _mark[3] = now
        with open(_file + ".tmp", "w") as out:
            out.write(json.dumps(_state))        # not json.dump: its streaming encoder makes cycles
        os.replace(_file + ".tmp", _file)
gc.callbacks.append(_probe)
def _final(sleep=time.sleep):     # a native thread (started before eventlet patches anything)
    while not os.path.exists(_file + ".final"):
        sleep(0.1)
    gc.callbacks.remove(_probe)
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()                   # cyclic garbage the schedule let through, frozen or not
    kinds = {}
    for thing in gc.garbage:
        kind = type(thing).__module__ + "." + type(thing).__qualname__
        kinds[kind] = kinds.get(kind, 0) + 1
    with open(_file + ".tmp", "w") as out:
        out.write(json.dumps([found, sorted(kinds.items(), key=lambda kv: -kv[1])[:6]]))
    os.replace(_file + ".tmp", _file + ".left")
import threading
threading.Thread(target=_final, daemon=True).start()
'''


def read_probe(work: Path) -> dict:
    """The probe's figures, then (it runs a full collection of everything) the cyclic garbage left."""
    probe = json.loads((work / "gc.json").read_text())
    (work / "gc.json.final").touch()
    for _ in range(100):
        if (work / "gc.json.left").exists():
            break
        time.sleep(0.1)
    probe["left"], probe["left_kinds"] = json.loads((work / "gc.json.left").read_text())
    return probe


def restore(saved: dict) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def controller(root: Path, calls: int, live: int) -> dict:
    """The real controller from ``root`` under REST churn: its collections, its RSS."""
    sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "benchmarks")]
    import bench_openflow as bench
    from netlab import Lab
    lab = Lab()
    with tempfile.TemporaryDirectory(prefix="bench-gc-") as tmp:
        work = Path(tmp)
        (work / "sitecustomize.py").write_text(PROBE)
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GC_PROBE")}
        os.environ.update(PYTHONPATH=f"{work}:{root}", GC_PROBE=str(work / "gc.json"))
        try:
            process, _, api_port = bench.start_line(lab, work)
            connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
            headers = {"Authorization": f"Bearer {bench.TOKEN}", "Content-Type": "application/json"}

            def request(method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
                connection.request(method, path, None if body is None else json.dumps(body), headers)
                response = connection.getresponse()
                return response.status, response.read()

            def rss() -> float:
                status = Path(f"/proc/{process.pid}/status").read_text()
                return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

            (work / "gc.json.reset").touch()
            latencies: list[float] = []
            grown = 0.0
            started = time.perf_counter()
            for n in range(calls):
                pair, caller, callee = bench.media(n % 50_000)
                t0 = time.perf_counter()
                status, raw = request("POST", "/mam/v1/calls", {
                    "call_id": f"gc-{n}", "caller_community": f"a{pair}", "callee_community": f"b{pair}",
                    "media": {"codec": "pcmu"}, "caller_media": {"ip": caller.ip, "port": caller.port},
                    "callee_media": {"ip": callee.ip, "port": callee.port}})
                latencies.append(time.perf_counter() - t0)
                assert status == 201, raw
                if n >= live:
                    status, raw = request("DELETE", f"/mam/v1/calls/gc-{n - live}")
                    assert status == 204, raw
                elif n == live - 1:
                    grown = rss()
            elapsed = time.perf_counter() - started
            time.sleep(1.0)
            status, raw = request("GET", "/metrics")
            metrics = {m[0] + m[1]: float(m[2]) for m in re.findall(r"^(mam_gc_[a-z_]+)(\{[^}]*\})? (\S+)$",
                                                                      raw.decode(), re.M)}
            end = rss()
            connection.close()
            probe = read_probe(work)
        except BaseException:
            bench.log_tail(work)
            raise
        finally:
            lab.close()
            restore(saved)
    latencies.sort()
    return {"probe": probe, "metrics": metrics, "elapsed": elapsed, "grown": grown, "end": end,
            "p99": latencies[int(len(latencies) * 0.99)], "max": latencies[-1]}


def controller_summary(label: str, result: dict, calls: int, live: int, verbose: bool = False) -> str:
    probe, metrics = result["probe"], result["metrics"]
    count, longest, cpu = probe["count"], probe["longest"], probe["longest_cpu"]
    worst = max(range(3), key=lambda g: longest[g])
    own = ""
    if metrics:
        maxima = [metrics.get('mam_gc_pause_max_seconds{generation="%d"}' % g, 0.0) * 1000 for g in range(3)]
        found = sum(v for k, v in metrics.items() if k.startswith("mam_gc_collected"))
        own = (f"; its own mam_gc_pause_max_seconds gen 0/1/2 {'/'.join(f'{m:.1f}' for m in maxima)} ms, "
               f"mam_gc_collected_objects_total {found:,.0f}")
    return (f"   {label:>8}: collections gen 0/1/2 {count[0]:,}/{count[1]:,}/{count[2]:,}; longest {longest[worst] * 1000:.1f} ms "
            f"wall (gen {worst}), longest CPU {max(cpu) * 1000:.1f} ms; over 5 ms wall {probe['over']} "
            f"({probe['over_preempted']} preempted), over 5 ms CPU {probe['over_cpu']}; all {probe['seconds'] * 1000:,.0f} ms "
            f"of {result['elapsed']:.1f} s ({calls / result['elapsed']:,.0f} calls/s; request p99 {result['p99'] * 1000:.1f} ms, "
            f"max {result['max'] * 1000:.1f} ms); RSS {result['grown']:.0f} MiB at {live:,} live calls, "
            f"{result['end']:.0f} MiB at the end; cyclic garbage left {probe['left']:,}{own}"
            + (f"\n             left: {', '.join(f'{n} {k}' for k, n in probe['left_kinds'])}" if verbose else ""))


def sip(root: Path, rate: int, seconds: int, hold_ms: int) -> dict:
    """The standalone SIP proxy from ``root`` (admission in process) under SIPp calls held
    ``hold_ms``: its collections (the ``sitecustomize`` probe), RSS, CPU, SIPp's verdict."""
    sys.path[:0] = [str(ROOT / "benchmarks")]
    from peers.procs import free_port
    from peers.controller import StandaloneProxy
    from peers.sipp import Uas, run_uac
    with tempfile.TemporaryDirectory(prefix="bench-gc-sip-") as tmp:
        work = Path(tmp)
        (work / "sitecustomize.py").write_text(PROBE)
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GC_PROBE")}
        os.environ.update(PYTHONPATH=str(work), GC_PROBE=str(work / "gc.json"))
        uas = Uas(work, free_port())
        try:
            with StandaloneProxy(work, free_port(), f"127.0.0.1:{uas.port}", repo=root) as proxy:
                (work / "gc.json.reset").touch()
                cpu = proxy.cpu_seconds()
                calls = rate * seconds
                uac = run_uac(work, proxy.port, calls, rate=rate, hold_ms=hold_ms,
                              limit=int(rate * (hold_ms / 1000 + 5)))
                cpu = proxy.cpu_seconds() - cpu
                status = Path(f"/proc/{proxy.process.pid}/status").read_text()
                rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
                time.sleep(0.5)
                probe = read_probe(work)
        finally:
            uas.stop()
            restore(saved)
    return {"probe": probe, "uac": uac, "cpu_ms": cpu * 1000 / max(1, uac.success), "rss": rss}


def sip_summary(label: str, result: dict) -> str:
    probe, uac = result["probe"], result["uac"]
    count, longest, cpu = probe["count"], probe["longest"], probe["longest_cpu"]
    worst = max(range(3), key=lambda g: longest[g])
    return (f"   {label:>8}: collections gen 0/1/2 {count[0]:,}/{count[1]:,}/{count[2]:,}; longest "
            f"{longest[worst] * 1000:.1f} ms wall (gen {worst}), longest CPU {max(cpu) * 1000:.1f} ms; over 5 ms "
            f"wall {probe['over']} ({probe['over_preempted']} preempted), over 5 ms CPU {probe['over_cpu']}; all "
            f"{probe['seconds'] * 1000:,.0f} ms; SIPp {uac.success:,}/{uac.calls:,} completed, {uac.failed:,} failed, "
            f"{uac.retransmissions:,} retransmissions, {uac.achieved:,.0f}/s; proxy CPU {result['cpu_ms']:.2f} ms "
            f"per call, RSS {result['rss']:.0f} MiB; cyclic garbage left {probe['left']:,} "
            f"({', '.join(f'{n} {k}' for k, n in probe['left_kinds'][:3])})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=15_000, help="calls held (at most ~21,000 fit the pools)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of the tree to compare with (e.g. main)")
    parser.add_argument("--settings", default="default,before,after")
    parser.add_argument("--controller", action="store_true", help="the real controller instead (root, OVS)")
    parser.add_argument("--controller-calls", type=int, default=20_000)
    parser.add_argument("--controller-live", type=int, default=10_000)
    parser.add_argument("--sip", action="store_true", help="the standalone SIP proxy under SIPp instead")
    parser.add_argument("--sip-rate", type=int, default=400)
    parser.add_argument("--sip-seconds", type=int, default=30)
    parser.add_argument("--sip-hold-ms", type=int, default=20_000)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)   # run_all passes its own
    wanted = [s for s in args.settings.split(",") if s != "before" or args.before is not None]
    if args.sip or args.controller:
        if args.sip:
            print(f"GC in the standalone SIP proxy (python -m ryu_apps.signalling.sip, admission in process): "
                  f"SIPp {args.sip_rate}/s for {args.sip_seconds} s, calls held {args.sip_hold_ms} ms; ", end="")
        else:
            print(f"GC in the controller (ryu-manager, 6 OVS bridges): {args.controller_live:,} live calls, "
                  f"{args.controller_calls:,} admitted with media over REST and (past {args.controller_live:,}) "
                  f"released; ", end="")
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for round_ in range(1, args.rounds + 1):
            print(f"  round {round_}")
            for settings in (s for s in wanted if s != "default"):
                root = args.before if settings == "before" else ROOT
                if args.sip:
                    line = sip_summary(settings, sip(root, args.sip_rate, args.sip_seconds, args.sip_hold_ms))
                else:
                    result = controller(root, args.controller_calls, args.controller_live)
                    line = controller_summary(settings, result, args.controller_calls, args.controller_live,
                                              verbose=True)
                print(line, flush=True)
        return
    print(f"GC on the core's call path: {args.live:,} live calls, {args.calls:,} admitted and (past "
          f"{args.live:,}) released, in process; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for round_ in range(1, args.rounds + 1):
        print(f"  round {round_}")
        for settings in wanted:
            root = args.before if settings == "before" else ROOT
            tree_settings = "default" if settings == "default" else "tuned"
            print(summary(settings, run(tree_settings, root, args.calls, args.live), args.calls), flush=True)


if __name__ == "__main__":
    main()
