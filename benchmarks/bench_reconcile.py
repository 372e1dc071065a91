"""Hitless restart and reconnect on real Open vSwitch: what a controller kill -9 and a switch
reconnect cost the calls and their media.

    .venv/bin/python benchmarks/bench_reconcile.py [--calls 500] [--rounds 1]     (root, OVS)

Three userspace bridges in a line with namespace hosts (tests/integration/hitless.py),
``--calls`` calls admitted with their media over REST, one of them carrying RTP-like UDP
both ways at 100 packets/s. Then (1) the controller is killed with SIGKILL and started
again on its SQLite ledger, and (2) every bridge's controller connection is restarted
(OVS keeps its flows; the valve reads them and sends only the difference). Printed for
each: calls active afterwards, entries on the switches before and after compared as full
text (match and actions, no counters: stale, missing, duplicated), what the reconcile
sent, how long until every switch was reconciled, and the stream's lost packets, packets
that arrived without their EF marking, and its longest gap between two packets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from hitless import Hitless, compare, media_summary  # noqa: E402
from netlab import ovs_available  # noqa: E402


def _entries_line(diff: dict) -> str:
    parts = [f"{name}: {d['entries']} entries, stale {len(d['stale'])}, missing {len(d['missing'])}, "
             f"duplicated {len(d['duplicates'])}" for name, d in diff.items()]
    return "; ".join(parts)


def run(calls: int, rounds: int) -> None:
    scenario = Hitless(Path(tempfile.mkdtemp(prefix="bench-reconcile-")), calls)
    try:
        scenario.start()
        seconds = scenario.admit_all()
        print(f"{calls} calls admitted with media over REST and confirmed active in {seconds:.1f} s "
              f"({calls / seconds:.0f} calls/s)")
        for round_ in range(1, rounds + 1):
            for event in ("kill -9 + restart", "switch reconnect"):
                before = scenario.entries()
                receivers = scenario.stream(seconds=12)
                time.sleep(2)
                timings = (scenario.kill_and_restart() if event.startswith("kill") else scenario.reconnect())
                summary = media_summary(scenario.report(receivers, timeout=60))
                diff = compare(before, scenario.entries())
                sent = scenario.reconcile_entries()
                active = scenario.active_calls()
                timing = ", ".join(f"{k.replace('_s', '')} {v:.2f} s" for k, v in timings.items())
                own = scenario.reconcile_seconds()
                print(f"[{round_}] {event}: calls active {active}/{calls}; {timing}; connection -> difference sent "
                      + ", ".join(f"{s} {1000 * v:.0f} ms" for s, v in sorted(own.items())))
                print(f"    media (100 pps each way): {summary['packets']} packets, lost {summary['lost']}, "
                      f"without EF {summary['not_ef']}, longest gap {summary['max_gap_ms']:.1f} ms")
                print(f"    switches after vs before: {_entries_line(diff)}")
                print("    reconcile sent: " + "; ".join(
                    f"{s}: {c.get('unchanged', 0)} unchanged, {c.get('added', 0)} added, "
                    f"{c.get('deleted', 0)} deleted, {c.get('meters', 0)} meter changes" for s, c in sorted(sent.items())))
    finally:
        scenario.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv if argv is not None else [])
    reason = ovs_available()
    if reason:
        print(f"skipped: {reason}")
        return
    run(args.calls, args.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
