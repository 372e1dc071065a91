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
5 ms (wall), all collections' time, calls/s, the process's RSS when the live calls reached
--live and at the end, and (after the timed part) what a full collection of everything,
frozen objects included, then finds: cyclic garbage that the schedule let through.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=15_000, help="calls held (at most ~21,000 fit the pools)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of the tree to compare with (e.g. main)")
    parser.add_argument("--settings", default="default,before,after")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)   # run_all passes its own
    wanted = [s for s in args.settings.split(",") if s != "before" or args.before is not None]
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
