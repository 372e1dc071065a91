"""Fuzz the SIP proxy over real sockets: 200,000 mutated datagrams and 2,000 TCP streams.

    python benchmarks/fuzz_sip_proxy.py [--target standalone|hub] [--datagrams 200000]
                                        [--streams 2000] [--rate 4000] [--seed 1]
                                        [--rss-bound-mib 32]

Needs root: it runs in a network namespace of its own with only ``lo`` (``unshare -n``),
so the addresses the mutations invent can reach nobody. Seeds: tests/sip_seeds/ (real
SIPp messages and messages written after real user agents); every header of every seed is
mutated (tests/fakes/sip_mutator.py), plus start lines, SDP bodies and bytes. An OPTIONS
probe every 1,000 datagrams (UDP and TCP by turns) must be answered. At the end: the
proxy's timers run out (short ones here: T1 100 ms, timer C 10 s), then a clean call goes
through and the pool must be back at 0; the proxy's RSS must be back under its size at
start plus ``--rss-bound-mib``. Printed: rate, probes answered, the core's counters,
shell faults, RSS at start, at peak and after, open transactions and calls after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from fakes.sip_fuzz import fuzz  # noqa: E402
from fakes.sip_peer import clean_call, udp_socket  # noqa: E402
from peers.procs import free_port, stop  # noqa: E402

SIP = """  timers: {t1_s: 0.1, t2_s: 1, t4_s: 1}
  timer_c_s: 10
  max_call_s: 60
  tcp: {message_timeout_s: 2, idle_timeout_s: 10}
"""


def site_yaml(port: int, callee_port: int) -> str:
    return f"""topology:
  switches: [{{name: s1, dpid: 1}}, {{name: s2, dpid: 2}}]
  links: [{{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: 40000000}}]
communities:
  - {{name: a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16], domains: [site-a.example]}}
  - {{name: b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16], domains: [site-b.example]}}
aggregates:
  - {{id: a-b, between: [a, b], size_kbps: 10000000}}
sip:
  listen: 127.0.0.1:{port}
  routes: {{site-b.example: "127.0.0.1:{callee_port}"}}
{SIP}"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Target:
    def __init__(self, kind: str, workdir: Path, callee_port: int) -> None:
        self.kind = kind
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        self.control = None
        if kind == "standalone":
            config = workdir / "site.yaml"
            config.write_text(site_yaml(self.port, callee_port))
            self.stats_file = workdir / "stats.json"
            self.process = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(config),
                                             "--stats-file", str(self.stats_file)], cwd=workdir, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert self.process.stdout is not None and "listening" in self.process.stdout.readline()
        else:
            command = [sys.executable, str(REPO / "tests" / "apps" / "sip_hub_runner.py"), "--callee-port",
                       str(callee_port), "--port", str(self.port), "--pool-kbps", "10000000",
                       "--sip", "timers={t1_s: 0.1, t2_s: 1, t4_s: 1}", "--sip", "timer_c_s=10",
                       "--sip", "max_call_s=60", "--sip", "tcp={message_timeout_s: 2, idle_timeout_s: 10}"]
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True)
            assert self.process.stdout is not None
            ready = self.process.stdout.readline().split()
            self.hub = f"{ready[3]}/{ready[4]}"
            self.control = socket.create_connection(("127.0.0.1", int(ready[2])), timeout=30)
            self._stream = self.control.makefile("rw")

    def stats(self) -> dict[str, Any]:
        if self.control is not None:
            self._stream.write("stats\n")
            self._stream.flush()
            return json.loads(self._stream.readline())  # type: ignore[no-any-return]
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        return json.loads(self.stats_file.read_text())  # type: ignore[no-any-return]

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def stop(self) -> None:
        if self.control is not None:
            try:
                self._stream.write("quit\n")
                self._stream.flush()
            except OSError:
                pass
            self.control.close()
        stop(self.process, 10)


def in_namespace(argv: list[str]) -> int:
    """Run this script again in a fresh network namespace with only lo (root needed)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        print("needs root and unshare/ip: the fuzz runs in a network namespace of its own")
        return 2
    script = " ".join([sys.executable, str(Path(__file__).resolve()), "--in-namespace", *argv])
    return subprocess.run(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {script}"],
                          timeout=3600).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["standalone", "hub"], default="standalone")
    parser.add_argument("--datagrams", type=int, default=200_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=4000.0, help="datagrams per second at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-bound-mib", type=float, default=32.0, help="allowed RSS growth after timers")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.in_namespace:
        return in_namespace(argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-sip-") as tmp:
        callee = udp_socket()
        target = Target(args.target, Path(tmp), callee.getsockname()[1])
        try:
            return run(args, target, callee)
        finally:
            target.stop()
            callee.close()


def run(args: argparse.Namespace, target: Target, callee: socket.socket) -> int:
    name = args.target if args.target == "standalone" else f"hub ({target.hub})"
    time.sleep(0.5)
    start_rss = target.rss_kib()
    peak = [start_rss]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.5):
            peak[0] = max(peak[0], target.rss_kib())
    threading.Thread(target=sample, daemon=True).start()
    print(f"SIP fuzz, target {name}: {args.datagrams} datagrams at <= {args.rate:g}/s and {args.streams} TCP "
          f"streams, seed {args.seed}, in a network namespace with only lo", flush=True)
    report = fuzz(target.port, datagrams=args.datagrams, streams=args.streams, seed=args.seed, rate=args.rate,
                  probe_every=1000, callee=callee,
                  progress=lambda text: print(f"  {text}", flush=True) if "000 datagrams" in text and
                  int(text.split()[0]) % 50000 == 0 else None)
    sampling.set()
    during = target.stats()
    deadline = time.monotonic() + 120                     # timers: B/F 6.4 s, C 10 s, calls 60 s, TCP idle 10 s
    while time.monotonic() < deadline:
        stats = target.stats()
        if not stats["active_calls"] and not sum(stats["transactions"]) and not stats.get("pool_used_kbps"):
            break
        time.sleep(1)
    after_timers = target.stats()
    rss_after = target.rss_kib()
    with udp_socket() as caller:
        callee.settimeout(0.2)
        try:
            while True:
                callee.recv(65535)
        except OSError:
            callee.settimeout(3)
        clean_call(target.port, caller, callee, "after-the-fuzz")
    time.sleep(0.5)
    final = target.stats()
    covered, headers = report.covered
    print(f"  sent {report.datagrams} datagrams and {report.streams} streams in {report.seconds:.0f} s "
          f"({report.datagrams / report.seconds:.0f} datagrams/s); {covered}/{headers} seed headers mutated")
    print(f"  OPTIONS probes answered: {report.answered}/{report.probes} "
          f"({100 * report.answered / max(1, report.probes):.1f}%)" +
          (f"; unanswered after {report.failed_probes[:5]}" if report.failed_probes else ""))
    print(f"  core: received {during['received']}, malformed {during['malformed']} (answered "
          f"{during['answered_malformed']}, dropped {during['dropped']}), stray {during['stray_responses']}, "
          f"admitted {during['admitted']}, overload-refused {during['overload_rejected']}, "
          f"internal errors {final['internal_errors']}")
    print(f"  shell faults: {final.get('faults')}; TCP: {final.get('tcp')}")
    print(f"  RSS: {start_rss / 1024:.1f} MiB at start, {peak[0] / 1024:.1f} MiB at peak, "
          f"{rss_after / 1024:.1f} MiB after the timers (bound: start + {args.rss_bound_mib:g} MiB)")
    print(f"  after the timers: {after_timers['active_calls']} calls, transactions {after_timers['transactions']}; "
          f"after a clean call: pool {final.get('pool_used_kbps')} kbit/s, "
          f"{final.get('admitted_calls', final['active_calls'])} calls")
    ok = (report.answered == report.probes and final["internal_errors"] == 0
          and rss_after <= start_rss + args.rss_bound_mib * 1024 and not final.get("pool_used_kbps")
          and not final["active_calls"])
    print("=> " + ("every probe answered, no internal error, memory back, pool at 0" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
