"""Call setups per second and added latency of the SIP proxy, measured with real SIPp.

    python benchmarks/bench_sip_proxy.py [--rates 250,500,1000,1500] [--seconds 5] [--profile]
                                         [--reference kamailio]

What runs (all on 127.0.0.1, this machine's 2 cores shared by everything):
* the standalone proxy as its own process (``python -m ryu_apps.signalling.sip --config``)
  with admission by the real manager in that process (one big pool, so no call is refused);
* a SIPp UAS (``tests/sipp/uas_answer.xml``: 180, 200 with SDP, ACK, BYE) as the callee;
* a SIPp UAC (``tests/sipp/uac_call.xml``: INVITE with SDP, ACK, BYE at once) at each rate.

A rate counts as sustained when every call succeeded (no failed call, no timeout) and
SIPp reached at least 95% of the rate asked. Latency the proxy adds is SIPp's INVITE->200
response time through the proxy minus the same without it (UAC straight to UAS), at a
modest rate, and the proxy's own INVITE processing time (receive to forward, measured in
the proxy). ``--profile`` runs the proxy under cProfile at one rate and prints where the
time goes. ``--reference kamailio`` runs Kamailio (Debian package) as a plain stateful
proxy with record-routing on the same machine, same scenarios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "tests" / "sipp"


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def site_yaml(port: int, uas_port: int) -> str:
    return f"""topology:
  switches: [{{name: s1, dpid: 1}}, {{name: s2, dpid: 2}}]
  links: [{{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: 400000000}}]
communities:
  - {{name: site-a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16], domains: [site-a.example]}}
  - {{name: site-b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16], domains: [site-b.example]}}
aggregates:
  - {{id: a-b, between: [site-a, site-b], size_kbps: 100000000}}
sip:
  listen: 127.0.0.1:{port}
  transports: [udp]
  routes: {{site-b.example: "127.0.0.1:{uas_port}"}}
"""


class Proxy:
    """Our proxy (or kamailio) as a subprocess; stopped by its PID only."""

    def __init__(self, workdir: Path, port: int, uas_port: int, *, profile: Path | None = None,
                 kind: str = "mam") -> None:
        self.workdir, self.port, self.kind = workdir, port, kind
        self.stats_file = workdir / f"stats-{port}.json"
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if kind == "kamailio":
            config = workdir / "kamailio.cfg"
            config.write_text(KAMAILIO_CFG.replace("@PORT@", str(port)).replace("@UAS@", str(uas_port)))
            command = [shutil.which("kamailio") or "kamailio", "-f", str(config), "-DD", "-E", "-n", "1",
                       "-m", "128", "-M", "16", "-w", str(workdir), "-Y", str(workdir)]
        else:
            config = workdir / "site.yaml"
            config.write_text(site_yaml(port, uas_port))
            command = [sys.executable]
            if profile is not None:
                command += ["-m", "cProfile", "-o", str(profile)]
            command += ["-m", "ryu_apps.signalling.sip", "--config", str(config), "--stats-file",
                        str(self.stats_file)]
        self.process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        time.sleep(1.0 if kind == "mam" else 1.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"{kind} proxy exited at start (code {self.process.returncode})")

    def stats(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        return json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return json.loads(self.stats_file.read_text()) if self.kind == "mam" and self.stats_file.exists() else {}


class Uas:
    def __init__(self, workdir: Path, port: int) -> None:
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / "uas_answer.xml"), "-i", "127.0.0.1", "-p", str(port),
             "-timeout", "600s", "-nostdin", "-buff_size", "4194304"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def run_uac(workdir: Path, target_port: int, rate: int, calls: int, *, rtt: bool = False) -> dict[str, Any]:
    """One SIPp UAC run; returns successes, failures, elapsed time and (with rtt) INVITE->200 times (ms)."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    inject = run_dir / "codecs.csv"
    inject.write_text("SEQUENTIAL\n0;PCMU;\n")
    command = ["sipp", "-sf", str(SCENARIOS / "uac_call.xml"), "-inf", str(inject), "-i", "127.0.0.1",
               "-p", str(free_port()), "-s", "bob", f"127.0.0.1:{target_port}", "-m", str(calls), "-r", str(rate),
               "-l", str(max(50, rate * 4)), "-d", "0", "-timeout", f"{int(calls / rate) + 30}s", "-timeout_error",
               "-trace_stat", "-fd", "1", "-nostdin", "-buff_size", "4194304", "-max_socket", "1"]
    if rtt:
        command += ["-trace_rtt", "-rtt_freq", "1"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            timeout=int(calls / rate) + 60)
    wall = time.monotonic() - started
    stat_files = sorted(run_dir.glob("uac_call_*_.csv"))
    row: dict[str, str] = {}
    if stat_files:
        rows = list(csv.reader(stat_files[0].open(), delimiter=";"))
        row = dict(zip(rows[0], rows[-1]))
    success = int(row.get("SuccessfulCall(C)", 0) or 0)
    failed = int(row.get("FailedCall(C)", 0) or 0)
    elapsed = _seconds(row.get("ElapsedTime(C)", "")) or wall
    times: list[float] = []
    for path in run_dir.glob("uac_call_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    times.append(float(parts[1]))
                except ValueError:
                    pass
    retrans = int(row.get("Retransmissions(C)", 0) or 0)
    return {"rate": rate, "calls": calls, "success": success, "failed": failed, "elapsed_s": elapsed, "retrans": retrans,
            "achieved": success / elapsed if elapsed else 0.0, "exit": result.returncode, "rtt_ms": times}


def _seconds(text: str) -> float:
    """SIPp's ``HH:MM:SS:mmmmmm`` elapsed time."""
    try:
        hours, minutes, seconds, micros = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(micros) / 1e6
    except ValueError:
        return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def sweep(workdir: Path, kind: str, rates: list[int], seconds: float) -> tuple[int, list[dict[str, Any]]]:
    port, uas_port = free_port(), free_port()
    uas = Uas(workdir, uas_port)
    try:
        proxy = Proxy(workdir, port, uas_port, kind=kind)
    except Exception:
        uas.stop()
        raise
    results = []
    best = 0
    try:
        for rate in rates:
            result = run_uac(workdir, port, rate, int(rate * seconds))
            ok = result["failed"] == 0 and result["exit"] == 0 and result["achieved"] >= 0.95 * rate
            result["sustained"] = ok
            results.append(result)
            print(f"  {kind:9s} asked {rate:5d}/s: {result['success']:6d} ok, {result['failed']:4d} failed, "
                  f"{result['achieved']:7.0f} setups/s in {result['elapsed_s']:.1f} s, {result['retrans']} UAC retransmissions"
                  f"{'' if ok else '  (not sustained)'}", flush=True)
            if ok:
                best = max(best, rate)
            else:
                break
            time.sleep(1.0)
    finally:
        stats = proxy.stop()
        uas.stop()
    if stats:
        lat = stats.get("invite_latency_us", {})
        print(f"  proxy counters: admitted {stats.get('admitted')}, rejected {stats.get('rejected')}, "
              f"retransmissions {stats.get('retransmissions')}, internal errors {stats.get('internal_errors')}; "
              f"INVITE processing p50 {lat.get('p50')} us, p99 {lat.get('p99')} us", flush=True)
    return best, results


def added_latency(workdir: Path, rate: int, calls: int) -> None:
    uas_port = free_port()
    uas = Uas(workdir, uas_port)
    try:
        direct = run_uac(workdir, uas_port, rate, calls, rtt=True)
        port = free_port()
        proxy = Proxy(workdir, port, uas_port)
        try:
            via = run_uac(workdir, port, rate, calls, rtt=True)
        finally:
            stats = proxy.stop()
    finally:
        uas.stop()
    d, v = direct["rtt_ms"], via["rtt_ms"]
    if not d or not v:
        print("  (no response times recorded)")
        return
    lat = stats.get("invite_latency_us", {})
    print(f"  SIPp (1 ms clock) INVITE->200 at {rate}/s, {calls} calls: direct p50 {percentile(d, .5):.3f} ms p99 {percentile(d, .99):.3f} ms;"
          f" through proxy p50 {percentile(v, .5):.3f} ms p99 {percentile(v, .99):.3f} ms")
    print(f"  added by the proxy (two hops: INVITE down, 180/200 up): p50 {percentile(v, .5) - percentile(d, .5):.3f} ms,"
          f" p99 {percentile(v, .99) - percentile(d, .99):.3f} ms; mean {statistics.mean(v) - statistics.mean(d):.3f} ms")
    print(f"  proxy's own INVITE processing (receive -> forwarded, incl. admission): p50 {lat.get('p50')} us, "
          f"p99 {lat.get('p99')} us ({lat.get('count')} INVITEs)")


def probe_latency(workdir: Path, count: int) -> None:
    """INVITE forwarding delay with microsecond resolution: a Python caller socket sends an
    INVITE to the proxy, a Python callee socket receives the forwarded INVITE (and answers
    486 so the call is released). Baseline: the same send/receive between the two sockets
    directly. One INVITE at a time, so this is the unloaded path."""
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(2)
    caller.setblocking(False)
    port = free_port()
    proxy = Proxy(workdir, port, callee.getsockname()[1])
    sdp = "v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    cport = caller.getsockname()[1]
    via_proxy: list[float] = []
    direct: list[float] = []
    try:
        for i in range(count + 50):
            invite = (f"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKp{i}\r\n"
                      f"Max-Forwards: 70\r\nFrom: <sip:alice@site-a.example>;tag=p{i}\r\nTo: <sip:bob@site-b.example>\r\n"
                      f"Call-ID: probe-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{cport}>\r\n"
                      f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
            started = time.perf_counter()
            caller.sendto(invite, ("127.0.0.1", port))
            data = callee.recv(65535)
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            caller.sendto(data, callee.getsockname())
            callee.recv(65535)
            baseline = time.perf_counter() - started
            if i >= 50:                    # warm-up excluded
                via_proxy.append(elapsed * 1e6)
                direct.append(baseline * 1e6)
            lines = data.decode().split("\r\n")
            keep = [l for l in lines if l.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")]
            busy = "SIP/2.0 486 Busy Here\r\n" + "\r\n".join(
                l + (";tag=b" if l.lower().startswith("to:") else "") for l in keep) + "\r\nContent-Length: 0\r\n\r\n"
            callee.sendto(busy.encode(), ("127.0.0.1", port))
            callee.recv(65535)             # the proxy's hop-by-hop ACK
            try:
                while True:
                    caller.recv(65535)     # 100 Trying, 486
            except BlockingIOError:
                pass
    finally:
        stats = proxy.stop()
        caller.close()
        callee.close()
    p50 = percentile(via_proxy, .5) - percentile(direct, .5)
    p99 = percentile(via_proxy, .99) - percentile(direct, .99)
    print(f"  INVITE in -> forwarded INVITE out, one at a time ({count} INVITEs, microsecond clock): through the proxy "
          f"p50 {percentile(via_proxy, .5):.0f} us p99 {percentile(via_proxy, .99):.0f} us; loopback alone p50 "
          f"{percentile(direct, .5):.0f} us p99 {percentile(direct, .99):.0f} us; added p50 {p50:.0f} us, p99 {p99:.0f} us"
          f" (released {stats.get('released')} of {stats.get('admitted')} admitted)")


def profile(workdir: Path, rate: int, seconds: float) -> None:
    port, uas_port = free_port(), free_port()
    out = workdir / "proxy.prof"
    uas = Uas(workdir, uas_port)
    try:
        proxy = Proxy(workdir, port, uas_port, profile=out)
    except Exception:
        uas.stop()
        raise
    try:
        result = run_uac(workdir, port, rate, int(rate * seconds))
    finally:
        proxy.stop()
        uas.stop()
    print(f"  profiled at {rate}/s: {result['success']} ok, {result['failed']} failed")
    if out.exists():
        stats = pstats.Stats(str(out))
        items = stats.stats.items()  # type: ignore[attr-defined]
        idle = sum(v[2] for (_, _, name), v in items if name == "<method 'poll' of 'select.epoll' objects>")
        total = stats.total_tt - idle  # type: ignore[attr-defined]
        rows = sorted(((k, v) for k, v in items if k[2] != "<method 'poll' of 'select.epoll' objects>"),
                      key=lambda kv: kv[1][2], reverse=True)[:18]
        groups: dict[str, float] = {}
        for (filename, _, _), value in items:
            if "signalling" in filename:
                group = "SIP proxy (ryu_apps/signalling)"
            elif "/core/" in filename or "service.py" in filename or "ipaddress" in filename:
                group = "admission (ryu_apps/core, service, ipaddress)"
            elif "asyncio" in filename or "selectors" in filename or filename == "~":
                group = "asyncio, sockets and builtins"
            else:
                group = "other"
            groups[group] = groups.get(group, 0.0) + value[2]
        groups["asyncio, sockets and builtins"] = groups.get("asyncio, sockets and builtins", 0.0) - idle
        print(f"  busy CPU in the proxy process {total:.2f} s (idle epoll wait {idle:.2f} s excluded; cProfile slows "
              f"everything ~2x); by part: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in
                                                         sorted(groups.items(), key=lambda kv: -kv[1])))
        print("  top functions by own time:")
        for (filename, line, name), (_, calls, tottime, cumtime, _) in rows:
            where = f"{Path(filename).name}:{line}" if line else filename
            print(f"    {tottime:6.2f} s {100 * tottime / total:5.1f}%  {calls:8d} calls  {name} ({where})")


KAMAILIO_CFG = """#!KAMAILIO
# Plain stateful proxy for the benchmark reference: record-route, tm relay, static next hop.
debug=0
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:@PORT@
loadmodule "pv.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 30000)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    t_check_trans();
    if (is_method("INVITE")) { record_route(); }
    $du = "sip:127.0.0.1:@UAS@";
    t_relay();
}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,750,1000,1250,1500,2000")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate step")
    parser.add_argument("--latency-rate", type=int, default=100)
    parser.add_argument("--latency-calls", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="also profile the proxy at --profile-rate")
    parser.add_argument("--profile-rate", type=int, default=500)
    parser.add_argument("--reference", choices=["kamailio", "none"], default="none",
                        help="also sweep Kamailio (apt install kamailio) as a plain stateful proxy")
    args = parser.parse_args([] if argv is None else argv)   # run_all.py calls main() with no arguments
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian package sip-tester)")
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp:
        workdir = Path(tmp)
        print(f"SIP proxy benchmark on {os.cpu_count()} cores (SIPp UAC + UAS + proxy share them); "
              f"{args.seconds:.0f} s per rate, calls INVITE/100/180/200/ACK/BYE/200 with zero hold")
        print("call setups per second (sustained = no failed call and >= 95% of the asked rate):")
        best, _ = sweep(workdir, "mam", rates, args.seconds)
        print(f"=> mam proxy + in-process admission: {best} call setups/s sustained with zero unexpected failures")
        if args.reference == "kamailio":
            ref, _ = sweep(workdir, "kamailio", rates, args.seconds)
            print(f"=> kamailio 5.6 (plain stateful proxy, 1 worker): {ref} call setups/s sustained")
        print("latency the proxy adds:")
        probe_latency(workdir, args.latency_calls)
        added_latency(workdir, args.latency_rate, args.latency_calls)
        if args.profile:
            print("where the proxy's time goes:")
            profile(workdir, args.profile_rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
