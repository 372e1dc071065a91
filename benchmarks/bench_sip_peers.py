"""Call setups per second through three SIP servers on this machine, measured alternately in one run.

    python benchmarks/bench_sip_peers.py [--rounds 3] [--seconds 5] [--rates 250,500,...]
                                         [--peers reference,front-end,proxy,proxy-workers] [--workers 2]
                                         [--proxy-workers 2] [--baseline DIR]

Peers (each on free ports, started fresh for each sweep, stopped by PID):
  reference   Kamailio 5.6 as a stateful record-routing proxy, no admission
              (docs/examples/kamailio/kamailio-reference.cfg, 2 workers, -m 1024 -x tlsf)
  front-end   Kamailio 5.6 with the controller's admission (kamailio-mam.cfg): POST /calls per
              INVITE, PUT /calls/{id}/media per answer, DELETE per dialog end, against the
              controller's REST API and admission without OpenFlow (benchmarks/peers/rest_only.py)
  proxy       the project's standalone SIP proxy, admission in process
              (python -m ryu_apps.signalling.sip --config)
  proxy-workers  the same proxy as --proxy-workers worker processes plus one process owning
              admission (python -m ryu_apps.signalling.sip --config --workers N)
  baseline    the standalone proxy (as ``proxy``) run from the code in --baseline DIR, e.g. a
              detached worktree of main: before/after in one run, alternating like the rest
Callers and callees are SIPp (tests/sipp/uac_call_txn.xml, uas_answer_txn.xml: INVITE, 100,
180, 200 with SDP, ACK, BYE, 200, zero hold; transactions tolerate 180/200 reordering).

A rate is sustained when SIPp reports no failed call and no refused one (the scenario counts
a call refused with a Q.850 Reason, e.g. an overload 503, as successful: the pool here is
never full, so any refusal is overload), exits 0 and reaches >= 95 % of it.
For each peer and round: the highest sustained rate of the sweep (the sweep stops at the first
rate that is not), p99 INVITE->200 time at that rate (SIPp's 1 ms clock), and CPU per call
of the SIP server (+ controller) at that rate. The peers take turns within each round, so
load from other users of the machine spreads over all of them; the ratios project/Kamailio
are taken per round and reported as median and spread (min-max) over the rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.peers import kamailio as kamailio_peer  # noqa: E402
from benchmarks.peers.controller import Controller, StandaloneProxy  # noqa: E402
from benchmarks.peers.kamailio import FRONT_END, REFERENCE, Kamailio  # noqa: E402
from benchmarks.peers.procs import free_port  # noqa: E402
from benchmarks.peers.sipp import Uas, run_uac  # noqa: E402

REFUSALS = {"503", "488", "580", "403", "404", "486"}     # the scenario's refusal steps
DEFAULT_RATES = "250,500,750,1000,1500,2000,3000,4000,5000,6000,7000,8000"
PEERS = ("reference", "front-end", "proxy", "proxy-workers", "baseline")
LABELS = {"reference": "Kamailio reference proxy", "front-end": "Kamailio + controller admission",
          "proxy": "project standalone proxy", "proxy-workers": "project proxy, worker processes",
          "baseline": "standalone proxy, --baseline code"}


@dataclass
class Step:
    rate: int
    ok: bool
    success: int
    failed: int
    achieved: float
    p99_ms: float
    cpu_ms_per_call: float
    cpu_detail: str


@dataclass
class Sweep:
    peer: str
    steps: list[Step] = field(default_factory=list)

    @property
    def best(self) -> Step | None:
        sustained = [s for s in self.steps if s.ok]
        return sustained[-1] if sustained else None


class Running:
    """One peer up: its SIP port and how to read its CPU seconds (by part)."""

    def __init__(self, port: int, cpu: Callable[[], dict[str, float]], stop: Callable[[], None]) -> None:
        self.port, self.cpu, self.stop = port, cpu, stop


def start(peer: str, workdir: Path, uas_port: int, workers: int, proxy_workers: int = 2,
          baseline: Path | None = None) -> Running:
    port = free_port()
    next_hop = f"sip:127.0.0.1:{uas_port}"
    if peer == "reference":
        kam = Kamailio(REFERENCE, workdir, port, workers=workers, defines={"NEXT_HOP": f'"{next_hop}"'})
        return Running(port, lambda: {"kamailio": kam.cpu_seconds()}, kam.stop)
    if peer == "front-end":
        controller = Controller(workdir, 100_000_000, token="bench-" + secrets.token_hex(8))
        try:
            kam = Kamailio(FRONT_END, workdir, port, workers=workers, defines={
                "NEXT_HOP": f'"{next_hop}"', "MAM_HTTPCON": f'"mam=>{controller.url_with("bench")}"'})
        except Exception:
            controller.stop()
            raise

        def stop() -> None:
            kam.stop()
            controller.stop()
        return Running(port, lambda: {"kamailio": kam.cpu_seconds(), "controller": controller.cpu_seconds()}, stop)
    if peer == "baseline":
        if baseline is None:
            raise ValueError("the baseline peer needs --baseline DIR")
        proxy = StandaloneProxy(workdir, port, f"127.0.0.1:{uas_port}", repo=baseline)
        return Running(port, lambda: {"proxy": proxy.cpu_seconds()}, lambda: proxy.stop())
    proxy = StandaloneProxy(workdir, port, f"127.0.0.1:{uas_port}",
                            workers=proxy_workers if peer == "proxy-workers" else 0)
    return Running(port, lambda: {"proxy": proxy.cpu_seconds()}, lambda: proxy.stop())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def sweep(peer: str, workdir: Path, rates: list[int], seconds: float, workers: int, proxy_workers: int = 2,
          baseline: Path | None = None) -> Sweep:
    uas_port = free_port()
    uas = Uas(workdir, uas_port, "uas_answer_txn.xml")
    result = Sweep(peer)
    try:
        running = start(peer, workdir, uas_port, workers, proxy_workers, baseline)
    except Exception as error:
        uas.stop()
        print(f"  {peer}: could not start: {error}", flush=True)
        return result
    try:
        for rate in rates:
            before = running.cpu()
            run = run_uac(workdir, running.port, int(rate * seconds), rate=rate, rtt=True)
            after = running.cpu()
            used = {k: after[k] - before.get(k, 0.0) for k in after}
            per_call = 1000 * sum(used.values()) / run.success if run.success else float("nan")
            detail = ", ".join(f"{k} {1000 * v / run.success:.2f}" for k, v in used.items()) if run.success and \
                len(used) > 1 else ""
            # SIPp's scenario ends a refused call (503 with a Q.850 Reason) as a successful one;
            # with a pool no call fills, any refusal is the server's overload control: not sustained
            refused = sum(n for step_name, n in run.received.items() if step_name.split("_", 1)[-1] in REFUSALS)
            ok = run.failed == 0 and refused == 0 and run.exit == 0 and run.achieved >= 0.95 * rate
            step = Step(rate, ok, run.success, run.failed, run.achieved, percentile(run.setup_ms, 0.99), per_call,
                        detail)
            result.steps.append(step)
            print(f"  {peer:9s} {rate:5d}/s asked: {run.success:6d} ok {run.failed:5d} failed {refused:5d} refused "
                  f"{run.achieved:7.0f}/s, "
                  f"p99 setup {step.p99_ms:5.0f} ms, CPU {per_call:.3f} ms/call"
                  f"{f' ({detail})' if detail else ''}{'' if ok else '  <- not sustained'}", flush=True)
            if not ok:
                break
            time.sleep(0.5)
    finally:
        running.stop()
        uas.stop()
    return result


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (noise gate)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate step")
    parser.add_argument("--rates", default=DEFAULT_RATES)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--workers", type=int, default=2, help="Kamailio SIP worker processes")
    parser.add_argument("--proxy-workers", type=int, default=2, help="worker processes of the proxy-workers peer")
    parser.add_argument("--baseline", help="a tree whose standalone proxy runs as the baseline peer "
                                           "(e.g. a detached worktree of main)")
    args = parser.parse_args([] if argv is None else argv)      # run_all.py calls main() with no arguments
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian package sip-tester)")
        return 2
    why = kamailio_peer.available()
    if why:
        print(f"skipped: {why}")
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    if "baseline" in peers and not args.baseline:
        parser.error("the baseline peer needs --baseline DIR")
    baseline = Path(args.baseline).resolve() if args.baseline else None
    print(f"SIP peers on {platform.node()} ({os.cpu_count()} cores, {platform.platform()}), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; SIPp UAC + UAS share the cores; "
          f"{args.seconds:g} s per rate, {args.rounds} alternating rounds; Kamailio {args.workers} workers"
          + (f"; proxy-workers: --workers {args.proxy_workers}" if "proxy-workers" in peers else "")
          + (f"; baseline code: {baseline}" if baseline is not None and "baseline" in peers else ""))
    results: dict[str, list[Sweep]] = {p: [] for p in peers}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}:", flush=True)
            order = peers if round_no % 2 else list(reversed(peers))   # alternate who goes first
            for peer in order:
                results[peer].append(sweep(peer, Path(tmp), rates, args.seconds, args.workers, args.proxy_workers,
                                           baseline))
            if "reference" in peers:
                reference = results["reference"][-1].best
                ratios = [f"{p}/reference {results[p][-1].best.rate / reference.rate:.2f}"
                          f" ({results[p][-1].best.rate}/{reference.rate})"
                          for p in peers if p != "reference" and reference and results[p][-1].best]
                print(f"  round {round_no} ratios: {'; '.join(ratios) or 'n/a'}", flush=True)
    print("\nsummary: highest sustained rate (0 failed calls), p99 INVITE->200 and CPU per call at that rate,"
          " median (min-max) over rounds")
    for peer in peers:
        best = [s.best for s in results[peer]]
        rates_ok = [float(b.rate) for b in best if b]
        p99 = [b.p99_ms for b in best if b]
        cpu = [b.cpu_ms_per_call for b in best if b]
        print(f"  {LABELS[peer]:32s}: {spread(rates_ok)} setups/s; p99 {spread(p99)} ms; CPU {spread(cpu)} ms/call")
    if "reference" in peers:
        for peer in peers:
            if peer == "reference":
                continue
            ratios = [a.best.rate / r.best.rate for a, r in zip(results[peer], results["reference"])
                      if a.best and r.best]
            print(f"  ratio {peer}/reference (setups/s, per round): {spread(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
