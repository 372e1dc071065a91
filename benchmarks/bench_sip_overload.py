"""The SIP proxy under a flood of new calls: SIPp at 3x the rate it sustains, for 20 s.

    python benchmarks/bench_sip_overload.py [--target standalone|hub] [--sustainable N]
                                            [--factor 3] [--seconds 20] [--hold-ms 1000]

What runs (127.0.0.1, this machine's 2 cores shared by everything):
* the proxy: ``standalone`` is ``python -m ryu_apps.signalling.sip --config`` (asyncio, admission
  in that process); ``hub`` is the in-controller HubSipServer under the framework's hub
  (tests/apps/sip_hub_runner.py: ryu's eventlet in .venv, os-ken's native threads when run
  with .venv-osken/bin/python);
* a SIPp UAS (tests/sipp/uas_answer_txn.xml) and a SIPp UAC (tests/sipp/uac_overload_txn.xml:
  a refusal must be 503 with Retry-After and a Q.850 Reason, or the call fails);
* an OPTIONS prober (one every 100 ms, 1 s to answer).

First the sustainable rate (unless ``--sustainable``): 5 s steps with the same hold, the
highest with no failed call, no 503, >= 95% of the rate reached and setup p99 <= 200 ms. Then the flood at
``factor`` times that. Printed: calls admitted per second and 503s per second, INVITE->200
setup time (p50/p99, SIPp's 1 ms clock), OPTIONS answered and their p99, failed calls
(SIPp), and after the calls' hold: calls and pool usage left (both must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from fakes.sip_peer import probe_udp  # noqa: E402
from peers.procs import free_port, stop  # noqa: E402
from peers.sipp import Uas, UacResult, run_uac  # noqa: E402

POOL_KBPS = 10_000_000


def site_yaml(port: int, uas_port: int) -> str:
    return f"""topology:
  switches: [{{name: s1, dpid: 1}}, {{name: s2, dpid: 2}}]
  links: [{{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: {4 * POOL_KBPS}}}]
communities:
  - {{name: site-a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16], domains: [site-a.example]}}
  - {{name: site-b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16], domains: [site-b.example]}}
aggregates:
  - {{id: a-b, between: [site-a, site-b], size_kbps: {POOL_KBPS}}}
sip:
  listen: 127.0.0.1:{port}
  transports: [udp]
  routes: {{site-b.example: "127.0.0.1:{uas_port}"}}
"""


class Target:
    """The proxy under test, with a way to read its counters and the pool."""

    def __init__(self, kind: str, workdir: Path, uas_port: int) -> None:
        self.kind, self.workdir = kind, workdir
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        self.control: socket.socket | None = None
        if kind == "standalone":
            config = workdir / "site.yaml"
            config.write_text(site_yaml(self.port, uas_port))
            self.stats_file = workdir / "stats.json"
            self.process = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(config),
                                             "--stats-file", str(self.stats_file)], cwd=workdir, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                            start_new_session=True)
            assert self.process.stdout is not None and "listening" in self.process.stdout.readline()
        else:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "apps" / "sip_hub_runner.py"), "--callee-port", str(uas_port),
                 "--port", str(self.port), "--pool-kbps", str(POOL_KBPS), "--sip", "transports=[udp]"],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                start_new_session=True)
            assert self.process.stdout is not None
            ready = self.process.stdout.readline().split()
            if not ready or ready[0] != "READY":
                raise RuntimeError(f"the hub runner did not start: {ready}")
            self.hub = f"{ready[3]}/{ready[4]}"
            self.control = socket.create_connection(("127.0.0.1", int(ready[2])), timeout=30)
            self._stream = self.control.makefile("rw")

    def stats(self) -> dict[str, Any]:
        if self.control is not None:
            self._stream.write("stats\n")
            self._stream.flush()
            return json.loads(self._stream.readline())  # type: ignore[no-any-return]
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        return json.loads(self.stats_file.read_text())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.control is not None:
            try:
                self._stream.write("quit\n")
                self._stream.flush()
            except OSError:
                pass
            self.control.close()
        stop(self.process, 10)


class Prober:
    """OPTIONS to the proxy every 100 ms from another thread; answered or not within 1 s."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[bool, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            answered = probe_udp(self.port, 1.0)
            self.results.append((answered, time.monotonic() - started))
            self._stop.wait(0.1)

    def stop(self) -> tuple[int, int, float]:
        self._stop.set()
        self._thread.join(5)
        answered = [rtt for ok, rtt in self.results if ok]
        return len(answered), len(self.results), percentile(answered, 0.99) * 1000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def one_run(target: Target, workdir: Path, rate: int, seconds: float, hold_ms: int) -> UacResult:
    return run_uac(workdir, target.port, int(rate * seconds), rate=rate, scenario="uac_overload_txn.xml",
                   hold_ms=hold_ms, limit=max(100, int(rate * (hold_ms / 1000 + 4))), rtt=True,
                   timeout_s=int(seconds + hold_ms / 1000) + 60)


def sustainable(target: Target, workdir: Path, rates: list[int], hold_ms: int, max_p99_ms: float) -> int:
    best = 0
    for rate in rates:
        result = one_run(target, workdir, rate, 5.0, hold_ms)
        refused = result.total("503")
        p99 = percentile(result.setup_ms, 0.99)
        ok = result.failed == 0 and refused == 0 and result.success >= 0.95 * rate * 5 and p99 <= max_p99_ms
        why = f" {target.stats().get('overload_reasons')}" if refused else ""
        print(f"  {rate:5d} calls/s for 5 s: {result.success} ok, {result.failed} failed, {refused} refused 503{why}, "
              f"setup p99 {p99:.0f} ms{'' if ok else '  (not sustained)'}", flush=True)
        if not ok:
            break
        best = rate
        time.sleep(3 + hold_ms / 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["standalone", "hub"], default="standalone")
    parser.add_argument("--sustainable", type=int, default=0, help="skip the search: calls/s the proxy sustains")
    parser.add_argument("--rates", default="300,450,600,750,900,1050,1200,1400")
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--max-p99-ms", type=float, default=200.0,
                        help="a rate is sustained only with setup p99 (INVITE->200) at most this")
    args = parser.parse_args([] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as tmp:
        workdir = Path(tmp)
        uas_port = free_port()
        uas = Uas(workdir, uas_port, "uas_answer_txn.xml")
        target = Target(args.target, workdir, uas_port)
        try:
            name = args.target if args.target == "standalone" else f"hub ({target.hub})"
            print(f"SIP proxy overload, target {name}, on {os.cpu_count()} cores shared with SIPp; "
                  f"calls held {args.hold_ms} ms")
            rate = args.sustainable
            if not rate:
                print("sustainable rate (5 s steps):")
                rate = sustainable(target, workdir, [int(r) for r in args.rates.split(",")], args.hold_ms,
                                   args.max_p99_ms)
                if not rate:
                    print("not even the lowest rate was sustained")
                    return 1
                time.sleep(3 + args.hold_ms / 1000)
            flood = int(rate * args.factor)
            before = target.stats()
            prober = Prober(target.port)
            print(f"flood: {flood} calls/s offered ({args.factor:g} x {rate}) for {args.seconds:g} s ...", flush=True)
            result = one_run(target, workdir, flood, args.seconds, args.hold_ms)
            answered, probes, probe_p99 = prober.stop()
            time.sleep(args.hold_ms / 1000 + 3)                      # calls in progress end, timers run
            after = target.stats()
            elapsed = result.elapsed_s or args.seconds
            admitted = after["admitted"] - before["admitted"]
            refused = after["overload_rejected"] - before["overload_rejected"]
            setup = result.setup_ms
            print(f"  offered {flood}/s: admitted {admitted / elapsed:.0f}/s, refused 503 + Retry-After "
                  f"{refused / elapsed:.0f}/s (by limit: {after['overload_reasons']}), over {elapsed:.1f} s")
            print(f"  SIPp: {result.success} calls ended as expected (admitted and hung up, or refused with "
                  f"Retry-After), {result.failed} failed, {result.retransmissions} retransmissions")
            print(f"  setup INVITE->200 of admitted calls: p50 {percentile(setup, 0.5):.0f} ms, p99 "
                  f"{percentile(setup, 0.99):.0f} ms ({len(setup)} calls)")
            print(f"  OPTIONS during the flood: {answered}/{probes} answered ({100 * answered / max(1, probes):.1f}%),"
                  f" p99 {probe_p99:.0f} ms")
            left_calls = after.get("admitted_calls", after.get("active_calls"))
            print(f"  after the hold: {after['active_calls']} calls held by the proxy, {left_calls} by admission, "
                  f"pool {after.get('pool_used_kbps')} kbit/s in use; internal errors {after['internal_errors']}, "
                  f"shell faults {after.get('faults')}")
            if result.failed:
                reasons: dict[str, int] = {}
                for line in result.errors.splitlines():
                    if "Aborting call" in line or "failed" in line.lower() or "timeout" in line.lower():
                        key = line.split(":", 1)[-1].strip()[:90]
                        reasons[key] = reasons.get(key, 0) + 1
                print(f"  SIPp errors (tail of its log): {dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:4])}")
            leaks = after["active_calls"] or left_calls or after.get("pool_used_kbps")
            return 0 if result.failed == 0 and not leaks and answered == probes else 1
        finally:
            target.stop()
            uas.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
