"""Call setups per second end to end through the controller, with real switches.

    .venv/bin/python benchmarks/bench_e2e.py [--rates 100,200,...] [--seconds 6] [--hold-ms 2000]
                                             [--rounds 1] [--sip-workers 0,2]  (root, Open vSwitch, SIPp)

What a carrier runs: the controller as users run it (``ryu-manager ryu_apps.mam_app``) with
its SIP proxy on, three userspace Open vSwitch bridges in a line (e1 - c1 - e2; site-a
behind e1, site-b behind e2, one aggregate between them), a SIPp caller in site-a and a SIPp
callee in site-b on loopback. Every call's SDP names its own media port (the call's number),
so every call gets its own ingress and egress flows on both edges; calls hold for
``--hold-ms`` and are hung up by the caller.

For each rate (a sweep, stopped at the first rate not sustained) it prints the calls SIPp
completed, failed and the rate reached; the calls whose flows every switch confirmed
(barrier replies; the controller's ``mam_flow_install_seconds`` count) and those released
because they were not (``flow-install-failed``/timeouts, from the log); the controller's
flow-install histogram p50/p99 (bucket bounds) and its CPU per call. ``--sip-workers 0,2``
runs the sweep once per setting, alternating, in each round: 0 is the controller's
in-process SIP proxy, N >= 1 is ``sip.workers: N`` (N SIP worker processes, admission in
the controller); then the controller's CPU is its own process's, and the workers' is
printed beside it. A rate is sustained
when SIPp reports no failed call, exits 0, reaches >= 95 % of it, and every admitted call's
flows were confirmed. Printed, not asserted; the issue's goal is 1,000 setups/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from benchmarks.peers.procs import _stat, tree_cpu_seconds  # noqa: E402
from benchmarks.peers.sipp import SCENARIOS, Uas, run_uac  # noqa: E402

DEFAULT_RATES = "100,200,300,400,500,600,800,1000,1200"
LINE = ("e1", "c1", "e2")
CALLER_MEDIA, CALLEE_MEDIA = "127.1.0.5", "127.2.0.7"
TOKEN_LABEL = "bench-e2e"


def config(api_port: int, sip_port: int, uas_port: int, token: str, workers: int = 0,
           reader: str = "owner") -> dict:
    return {
        "topology": {
            "switches": [{"name": name, "dpid": 0xE0 + i} for i, name in enumerate(LINE)],
            "links": [{"a": a, "a_port": 20, "b": b, "b_port": 21, "capacity_kbps": 10_000_000, "reservable": 0.5}
                      for a, b in zip(LINE, LINE[1:])]},
        "communities": [
            {"name": "site-a", "edge": "e1", "access_ports": [1], "prefixes": ["127.1.0.0/16"],
             "domains": ["site-a.example"]},
            {"name": "site-b", "edge": "e2", "access_ports": [1], "prefixes": ["127.2.0.0/16"],
             "domains": ["site-b.example"]}],
        # 2 s hold at 1,200 calls/s: ~2,400 calls up at once, 91 kbit/s each (PCMU over Ethernet)
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 1_000_000}],
        "api": {"host": "127.0.0.1", "port": api_port, "token": token},
        "sip": {"listen": f"127.0.0.1:{sip_port}", "transports": ["udp"],
                "routes": {"site-b.example": f"127.0.0.1:{uas_port}"},
                **({"workers": workers, "shared_reader": reader} if workers else {})},
        "dataplane": {"class_mode": "none", "barrier_timeout_s": 5.0},
    }


def scenario(workdir: Path, name: str, media_ip: str) -> str:
    """The transaction-matching SIPp scenario with this side's media address and one media
    port per call (its number), so no two calls share flows."""
    text = (SCENARIOS / name).read_text()
    text = text.replace("[media_ip]", media_ip).replace("m=audio [media_port]", "m=audio [call_number]")
    path = workdir / name.replace(".xml", "-e2e.xml")
    path.write_text(text)
    return str(path)


def metrics(api_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=10) as response:
        return response.read().decode()


def install_histogram(text: str) -> tuple[int, list[tuple[float, int]]]:
    buckets = [(float(le), int(float(count))) for le, count in
               re.findall(r'mam_flow_install_seconds_bucket\{le="([0-9.e+-]+|\+Inf)"\} ([0-9.e+]+)', text)
               if le != "+Inf"]
    found = re.search(r"mam_flow_install_seconds_count ([0-9.e+]+)", text)
    return (int(float(found.group(1))) if found else 0), buckets


def quantile_bound(before: list[tuple[float, int]], after: list[tuple[float, int]], total: int,
                   quantile: float) -> float:
    """The smallest bucket bound holding ``quantile`` of the installs between two readings."""
    was = dict(before)
    for le, count in after:
        if count - was.get(le, 0) >= quantile * total:
            return le
    return float("inf")


def released_by_cause(log: Path) -> dict[str, int]:
    causes: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(r"released: ((?:flow-install|media-idle|barrier)[\w-]*)", line)
        if found:
            causes[found.group(1)] = causes.get(found.group(1), 0) + 1
    return causes


def profile_summary(raw: Path, top: int = 25) -> str:
    """py-spy's collapsed stacks: share of samples per function, inclusive and own, for the
    functions of this project and the framework (the call path's parts)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", re.sub(r" \(.*?/(?:site-packages|ryu_apps|lib/python3\.\d+)/", " (", f))
                  for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    out = [f"   py-spy: {total} samples of the controller (all threads, idle excluded)"]
    out += ["   inclusive: " + ", ".join(f"{name} {n * 100 / total:.0f}%" for name, n in
                                         sorted(inclusive.items(), key=lambda kv: -kv[1])[:top] if total)]
    out += ["   own: " + ", ".join(f"{name} {n * 100 / total:.1f}%" for name, n in
                                   sorted(own.items(), key=lambda kv: -kv[1])[:top] if total)]
    return "\n".join(out)


def own_cpu_seconds(pid: int) -> float:
    stat = _stat(pid)
    return 0.0 if stat is None else stat[1]


def wait_workers(log: Path, timeout: float = 30.0) -> str:
    """The controller's line naming its SIP workers, once it is logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"SIP proxy on .* worker processes, pids [\d, ]+", log.read_text(errors="replace"))
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise TimeoutError("the controller started no SIP workers")


def sweep(rates: list[int], seconds: float, hold_ms: int, profile_rate: int | None = None,
          workers: int = 0, reader: str = "owner") -> list[str]:
    from netlab import Lab, free_port, ovs_available, start_controller, strong_token
    reason = ovs_available()
    if reason:
        return [f"skipped: {reason}"]
    lines: list[str] = []
    lab = Lab()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = Path(tmp)
        of_port, api_port, sip_port, uas_port = free_port(), free_port(), free_port(), free_port()
        (workdir / "mam.yaml").write_text(json.dumps(config(api_port, sip_port, uas_port,
                                                            strong_token(TOKEN_LABEL), workers, reader)))
        log = workdir / "controller.log"
        try:
            bridges = [lab.bridge(name, 0xE0 + i, of_port) for i, name in enumerate(LINE)]
            for a, b in zip(LINE, LINE[1:]):
                lab.link(a, 20, b, 21)
            controller = start_controller(lab, workdir / "mam.yaml", of_port, api_port, log)
            for bridge in bridges:
                lab.wait_connected(bridge)
            if workers:
                print(f"   {wait_workers(log)}", flush=True)
            time.sleep(1.0)
            uas = Uas(workdir, uas_port, scenario(workdir, "uas_answer_txn.xml", CALLEE_MEDIA))
            caller = scenario(workdir, "uac_call_txn.xml", CALLER_MEDIA)
            try:
                for rate in rates:
                    calls = max(int(rate * seconds), 50)
                    installs_before, buckets_before = install_histogram(metrics(api_port))
                    causes_before = released_by_cause(log)
                    cpu_before = tree_cpu_seconds(controller.pid)
                    own_before = own_cpu_seconds(controller.pid)
                    spy = None
                    if rate == profile_rate:
                        spy = subprocess.Popen(
                            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(controller.pid),
                             "-d", str(int(seconds)), "-r", "200", "-f", "raw", "-o", str(workdir / "spy.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    result = run_uac(workdir, sip_port, calls, rate=rate, scenario=caller, hold_ms=hold_ms,
                                     limit=int(rate * (hold_ms / 1000 + 2)) + 100)
                    time.sleep(1.0)          # the last calls' removal barriers
                    if spy is not None:
                        spy.wait(timeout=60)
                    cpu = tree_cpu_seconds(controller.pid) - cpu_before
                    own = own_cpu_seconds(controller.pid) - own_before
                    installs_after, buckets_after = install_histogram(metrics(api_port))
                    installs = installs_after - installs_before
                    causes = {k: v - causes_before.get(k, 0) for k, v in released_by_cause(log).items()
                              if v - causes_before.get(k, 0)}
                    p50 = quantile_bound(buckets_before, buckets_after, installs, 0.5)
                    p99 = quantile_bound(buckets_before, buckets_after, installs, 0.99)
                    # SIPp's elapsed time ends with the last call's hold: the setup rate is over the rest
                    # the scenario ends a refused call (503, 488, 403, 404, 486...) successfully: count them
                    refused = sum(result.total(code) for code in ("503", "488", "580", "403", "404", "486"))
                    reached = (result.success - refused) / max(result.elapsed_s - hold_ms / 1000, 0.001)
                    sustained = (result.exit == 0 and result.failed == 0 and refused == 0
                                 and result.success >= 0.95 * calls and reached >= 0.95 * rate
                                 and installs >= result.success and not causes)
                    lines.append(
                        f"rate {rate:5d}/s: {result.success - refused:6d}/{calls} calls completed, {refused} refused, "
                        f"{result.failed} failed, "
                        f"{reached:7.1f} setups/s reached, exit {result.exit}, {result.retransmissions} "
                        f"retransmissions; flows confirmed for "
                        f"{installs} calls, released for the data plane: {causes or 'none'}; install p50 <= "
                        f"{p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms; controller CPU {own / max(calls, 1) * 1000:.2f}"
                        f" ms per call{cpu_of_workers(cpu - own, calls, workers)} -> "
                        f"{'sustained' if sustained else 'NOT sustained'}")
                    print(lines[-1], flush=True)
                    if spy is not None and (workdir / "spy.txt").exists():
                        print(profile_summary(workdir / "spy.txt"), flush=True)
                    if not sustained:
                        if result.errors:
                            print("   SIPp errors (tail):", result.errors[-600:].replace("\n", " | "))
                        break
                    time.sleep(hold_ms / 1000 + 1)
            finally:
                uas.stop()
        except BaseException:
            if log.exists():
                print("controller log (last lines):\n" + "\n".join(log.read_text().splitlines()[-20:]))
            raise
        finally:
            lab.close()
    return lines


def cpu_of_workers(seconds: float, calls: int, workers: int) -> str:
    return f" (+ {workers} SIP workers {seconds / max(calls, 1) * 1000:.2f} ms)" if workers else ""


def mode(setting: tuple[int, str]) -> str:
    workers, reader = setting
    if not workers:
        return "SIP in process"
    return f"sip.workers {workers}" + (", the workers read the public socket" if reader == "workers" else "")


def parse_setting(text: str) -> tuple[int, str]:
    """``N`` or ``N:workers`` (sip.shared_reader: workers)."""
    count, _, reader = text.partition(":")
    return int(count), reader or "owner"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default=DEFAULT_RATES)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each rate step")
    parser.add_argument("--hold-ms", type=int, default=2000, help="each call's hold time")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sip-workers", default="0", help="comma-separated sip.workers settings to alternate "
                        "in each round (0: the in-process proxy; N:workers: sip.shared_reader workers), e.g. 0,2")
    parser.add_argument("--profile-rate", type=int, help="profile the controller with py-spy (pip install "
                        "py-spy) during this rate's step; prints where its time goes")
    args = parser.parse_args([] if argv is None else argv)      # run_all.py calls main() with no arguments
    rates = [int(r) for r in args.rates.split(",")]
    settings = [parse_setting(w) for w in args.sip_workers.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: end to end through the controller "
          f"(ryu-manager, {len(LINE)} userspace OVS bridges), SIPp calls held {args.hold_ms} ms, "
          f"{args.seconds:g} s per rate; SIP: {'; '.join(mode(w) for w in settings)}, alternating; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    best: dict[tuple[int, str], list[int]] = {setting: [] for setting in settings}
    for round_number in range(1, args.rounds + 1):
        for setting in settings:
            print(f"round {round_number}, {mode(setting)}:", flush=True)
            lines = sweep(rates, args.seconds, args.hold_ms, args.profile_rate, *setting)
            held = [int(line.split("/s")[0].split()[-1]) for line in lines if line.endswith("-> sustained")]
            best[setting].append(max(held) if held else 0)
            print(f"round {round_number}, {mode(setting)}: highest sustained rate {best[setting][-1]} setups/s "
                  f"(goal >= 1,000); load average {os.getloadavg()[0]:.1f}", flush=True)
    for setting, figures in best.items():
        print(f"{mode(setting)}: highest sustained {min(figures)}-{max(figures)} setups/s over "
              f"{len(figures)} round(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
