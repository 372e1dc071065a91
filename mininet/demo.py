#!/usr/bin/env python3
"""The demo: two enterprise sites, a reserved aggregate, SIPp calls, a best-effort flood.

    make demo            (or: sudo .venv/bin/python mininet/demo.py [--seconds 15] [--out out])

1. brings up topology (a) (topologies/enterprise.py) in Mininet with Open vSwitch in
   userspace, and the controller under `ryu-manager` with its SIP proxy;
2. creates the aggregate between the two sites over REST (2 Mbit/s on a 10 Mbit/s WAN);
3. places SIPp calls through the proxy until the pool is full: the excess gets 503;
4. sends RTP-sized media for every admitted call while a best-effort flood at twice the
   WAN capacity runs across the same WAN link;
5. lets the calls end (the pool returns to zero) and repeats the same media and flood
   without the reservation, for comparison;
6. prints a report and writes a PNG plot and the figures as JSON to the output folder.
Everything it starts it stops; everything it creates carries its run prefix and is removed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from emulation import Emulation, free_port, stop_process  # noqa: E402
from topologies import enterprise  # noqa: E402

POOL_KBPS = 2000
AGGREGATE = "site-a--site-b"
CALLS_OFFERED = 25            # 21 G.711 calls fit in 2 Mbit/s (91 kbit/s each at Ethernet level with tags)
FLOOD_FACTOR = 2.0            # best-effort flood at twice the WAN capacity
FLOOD_PACKET = 1200           # payload bytes of a flood packet
CALLER_PORT_BASE, FLOOD_PORT = 20000, 5001
H323_PORT_BASE = 24000        # H.323 callers' RTP ports (callees' at +1000)
RTPFLOW = HERE / "rtpflow.py"
SIPP = HERE / "sipp"


class Progress:
    def __init__(self, stream: Any = sys.stdout) -> None:
        self.start = time.monotonic()
        self.stream = stream

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=self.stream, flush=True)


def run_demo(workdir: Path, *, seconds: float = 15.0, calls: int = CALLS_OFFERED, pool_kbps: int = POOL_KBPS,
             say: Callable[[str], None] = print, h323_calls: int = 0) -> dict[str, Any]:
    """Run both phases and return the figures (see `report`). ``h323_calls`` H.323 calls
    (simulated endpoints through the controller's gatekeeper) are placed before the SIP ones."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port, uas_port = free_port(), free_port()
    sip = {"enabled": True, "listen": f"127.0.0.1:{sip_port}", "transports": ["udp"],
           "routes": {"site-b.example": f"127.0.0.1:{uas_port}"}}
    wan = enterprise.SPEC.link("s1", "s2")
    caller, callee = enterprise.SPEC.host("h1a"), enterprise.SPEC.host("h2a")
    flood_src, flood_dst = enterprise.SPEC.host("h1b"), enterprise.SPEC.host("h2b")
    figures: dict[str, Any] = {"pool_kbps": pool_kbps, "wan_kbps": int(wan.mbit * 1000),
                               "calls_offered": calls + h323_calls, "seconds": seconds,
                               "flood_kbps": int(wan.mbit * 1000 * FLOOD_FACTOR)}
    uas: subprocess.Popen | None = None
    h323 = None
    if h323_calls:
        h323 = {"enabled": True, "ras_listen": f"127.0.0.1:{free_port()}", "call_listen": f"127.0.0.1:{free_port()}"}
    with Emulation(enterprise.SPEC, workdir, sip=sip, aggregates=False, log=say, h323=h323) as emu, \
            H323Calls(h323, h323_calls, caller.address, callee.address, say) as h323_held:
        status, body = emu.api("POST", "/aggregates", {"id": AGGREGATE, "communities": ["site-a", "site-b"],
                                                       "size_kbps": pool_kbps})
        if status != 201:
            raise RuntimeError(f"creating the aggregate failed: {status} {body}")
        say(f"aggregate {AGGREGATE}: {pool_kbps} kbit/s reserved on path {' -> '.join(body['path'])}")
        emu.wait_classes("s1", 10)
        ping = emu.host("h1a").cmd(f"ping -c 2 -W 2 {callee.address}")
        if " 0% packet loss" not in ping:
            raise RuntimeError(f"no best-effort connectivity between the sites:\n{ping}")

        h323_held.place()                 # --- H.323 calls through the gatekeeper (if any) ---------
        figures["h323_admitted"] = h323_held.connected
        # --- calls through the SIP proxy ---------------------------------------------------
        (workdir / "uas.csv").write_text(f"SEQUENTIAL\n{callee.address};\n")
        (workdir / "uac.csv").write_text("SEQUENTIAL\n" + "".join(
            f"0;PCMU;{caller.address};{CALLER_PORT_BASE + 2 * i};\n" for i in range(calls)))
        uas = subprocess.Popen(["sipp", "-sf", str(SIPP / "uas_media.xml"), "-inf", str(workdir / "uas.csv"),
                                "-i", "127.0.0.1", "-p", str(uas_port), "-t", "u1", "-nostdin", "-trace_err"],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        hold_ms = int((seconds + 12) * 1000)  # covers the media phase
        say(f"placing {calls} SIPp calls through the proxy (each held {hold_ms / 1000:.0f} s)")
        uac = subprocess.Popen(["sipp", "-sf", str(SIPP / "uac_media.xml"), "-inf", str(workdir / "uac.csv"),
                                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-s", "bob",
                                f"127.0.0.1:{sip_port}", "-m", str(calls), "-l", str(calls), "-r", "20",
                                "-d", str(hold_ms), "-timeout", f"{int(seconds * 2 + 60)}s", "-timeout_error",
                                "-trace_err", "-trace_counts", "-nostdin"],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        try:
            stats = wait_for(lambda: _decided(emu, calls + h323_calls), 30, "every call admitted or rejected")
            active = wait_for(lambda: _active_calls(emu, stats["admitted"]), 20, "admitted calls' flows confirmed")
            aggregate = emu.api("GET", f"/aggregates/{AGGREGATE}")[1]
            figures.update(admitted=stats["admitted"], rejected=stats["rejected"].get("pool-full", 0),
                           used_kbps=aggregate["used_kbps"],
                           utilisation_pct=round(100.0 * aggregate["used_kbps"] / pool_kbps, 1))
            say(f"admitted {figures['admitted']}, rejected {figures['rejected']} with 503 (pool full): "
                f"{aggregate['used_kbps']} of {pool_kbps} kbit/s in use ({figures['utilisation_pct']} %)")
            pairs = [(c["caller_media"], c["callee_media"]) for c in active]
            figures["protocols"] = {p: sum(1 for c in active if c.get("protocol") == p) for p in ("sip", "h323")}

            say(f"phase 1: media of {len(pairs)} admitted calls + {figures['flood_kbps'] / 1000:g} Mbit/s "
                f"best-effort flood, {seconds:g} s")
            figures["reserved"] = media_phase(emu, pairs, seconds, flood_src, flood_dst, figures["flood_kbps"])
            say(_phase_line("with the aggregate", figures["reserved"]))

            h323_held.hang_up()
            say("waiting for the calls to end (SIPp sends BYE)")
            out = uac.communicate(timeout=seconds + 60)[1]
            figures["sipp_exit"] = uac.returncode
            if uac.returncode != 0:
                say(f"SIPp reported unexpected outcomes (exit {uac.returncode}): {out[-500:]}")
            wait_for(lambda: emu.api("GET", f"/aggregates/{AGGREGATE}")[1]["used_kbps"] == 0 or None, 20,
                     "the pool back at zero")
            figures["used_after_kbps"] = emu.api("GET", f"/aggregates/{AGGREGATE}")[1]["used_kbps"]
            say(f"all calls ended; pool in use: {figures['used_after_kbps']} kbit/s")
        finally:
            if uac.poll() is None:
                stop_process(uac.pid)
        stop_process(uas.pid)

        say(f"phase 2: the same media without reservation + the same flood, {seconds:g} s")
        figures["best_effort"] = media_phase(emu, pairs, seconds, flood_src, flood_dst, figures["flood_kbps"])
        say(_phase_line("without reservation", figures["best_effort"]))
    return figures


class H323Calls:
    """H.323 calls held through the gatekeeper by simulated endpoints (tests/h323sim.py):
    alice@site-a.example calls bob@site-b.example; RAS and call signalling on loopback,
    media addresses (fastStart) on the Mininet hosts."""

    def __init__(self, h323: dict[str, Any] | None, count: int, caller_ip: str, callee_ip: str,
                 say: Callable[[str], None]) -> None:
        self.count = count if h323 else 0
        self.ras = ("127.0.0.1", int(h323["ras_listen"].rsplit(":", 1)[1])) if h323 else ("", 0)
        self.caller_ip, self.callee_ip, self.say = caller_ip, callee_ip, say
        self.phones: list[Any] = []
        self.held: list[tuple[Any, Any]] = []
        self.connected = 0

    def __enter__(self) -> "H323Calls":
        return self

    def __exit__(self, *exc: Any) -> None:
        for out, incoming in self.held:
            out.close()
            incoming.close()
        for phone in self.phones:
            phone.close()

    def place(self) -> None:
        if not self.count:
            return
        sys.path.insert(0, str(ROOT / "tests"))
        import h323sim as sim
        a = sim.Phone("alice@site-a.example", self.ras, alias_kind="h323-ID", media_host=self.caller_ip)
        b = sim.Phone("bob@site-b.example", self.ras, alias_kind="h323-ID", media_host=self.callee_ip)
        self.phones = [a, b]
        for phone in self.phones:
            if phone.register()[0] != "registrationConfirm":
                raise RuntimeError(f"{phone.alias} could not register with the gatekeeper")
        for i in range(self.count):
            a.rtp_port, b.rtp_port = H323_PORT_BASE + 2 * i, H323_PORT_BASE + 1000 + 2 * i
            out = a.place("bob@site-b.example", kind="h323-ID")
            if out.admission[0] != "admissionConfirm":
                raise RuntimeError(f"H.323 call refused: {out.admission}")
            incoming = b.accept()
            incoming.admit()
            incoming.answer()
            self.held.append((out, incoming))
            if out.until(sim.CONNECT) is None:
                raise RuntimeError("H.323 call not connected")
            self.connected += 1
        self.say(f"{self.connected} H.323 call(s) connected through the gatekeeper (fastStart G.711)")

    def hang_up(self) -> None:
        for out, incoming in self.held:
            out.hang_up()
            incoming.until(0x5A)


def media_phase(emu: Emulation, pairs: list[tuple[dict, dict]], seconds: float, flood_src: Any, flood_dst: Any,
                flood_kbps: int) -> dict[str, Any]:
    """Admitted-call media caller -> callee while a flood crosses the same WAN; both receivers' reports."""
    callee = emu.host("h2a")
    flood_pps = flood_kbps * 1000 / ((FLOOD_PACKET + 28) * 8)
    receivers = {
        "media": callee.popen([sys.executable, str(RTPFLOW), "recv", "--duration", str(seconds + 4), "--idle", "2",
                               *sum((["--port", str(b["port"])] for _, b in pairs), [])]),
        "flood": emu.host(flood_dst.name).popen([sys.executable, str(RTPFLOW), "recv", "--port", str(FLOOD_PORT),
                                                 "--duration", str(seconds + 4), "--idle", "2"]),
    }
    time.sleep(0.7)
    flood = emu.host(flood_src.name).popen([
        sys.executable, str(RTPFLOW), "send", "--flow", f"{flood_dst.address}:{FLOOD_PORT}", "--pps",
        f"{flood_pps:.0f}", "--size", str(FLOOD_PACKET), "--duration", str(seconds + 1.5)])
    time.sleep(1.0)  # the WAN queue is full before the media starts
    media = emu.host("h1a").popen([
        sys.executable, str(RTPFLOW), "send", "--pps", "50", "--size", "160", "--duration", str(seconds),
        *sum((["--flow", f"{b['ip']}:{b['port']}:{a['port']}"] for a, b in pairs), [])])
    results: dict[str, Any] = {}
    for name, process in (("media_sender", media), ("flood_sender", flood), *receivers.items()):
        out, _ = process.communicate(timeout=seconds + 30)
        lines = [line for line in (out or b"").decode().splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if lines else {}
    return {
        "media_loss_pct": results["media"].get("loss_pct"),
        "media_jitter_ms": results["media"].get("jitter_ms"),
        "media_packets": results["media"].get("packets"),
        "media_kbps_per_second": results["media"].get("kbps_per_second", []),
        "flood_loss_pct": results["flood"].get("loss_pct"),
        "flood_kbps_per_second": results["flood"].get("kbps_per_second", []),
        "media_sent": results["media_sender"].get("sent"),
        "flood_sent": results["flood_sender"].get("sent"),
    }


def _decided(emu: Emulation, calls: int) -> dict | None:
    status, stats = emu.api("GET", "/stats")
    return stats if status == 200 and stats["admitted"] + sum(stats["rejected"].values()) >= calls else None


def _active_calls(emu: Emulation, expected: int) -> list[dict] | None:
    status, body = emu.api("GET", f"/calls?aggregate={AGGREGATE}")
    calls = body["calls"] if status == 200 else []
    if len(calls) == expected and all(c["state"] == "active" for c in calls):
        return calls
    return None


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def _phase_line(label: str, phase: dict[str, Any]) -> str:
    return (f"{label}: media loss {phase['media_loss_pct']} %, jitter {phase['media_jitter_ms']} ms; "
            f"flood loss {phase['flood_loss_pct']} %")


def report(figures: dict[str, Any]) -> str:
    reserved, best = figures["reserved"], figures["best_effort"]
    rows = [
        ("", "with aggregate", "without"),
        ("admitted-call media loss", f"{reserved['media_loss_pct']} %", f"{best['media_loss_pct']} %"),
        ("admitted-call media jitter", f"{reserved['media_jitter_ms']} ms", f"{best['media_jitter_ms']} ms"),
        ("best-effort flood loss", f"{reserved['flood_loss_pct']} %", f"{best['flood_loss_pct']} %"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        "",
        "Media aggregation demo: site-a <-> site-b over a "
        f"{figures['wan_kbps'] / 1000:g} Mbit/s WAN, {figures['pool_kbps']} kbit/s aggregate",
        f"  calls offered {figures['calls_offered']}: admitted {figures['admitted']}, "
        f"rejected {figures['rejected']} (503, pool full)",
        f"  pool in use while the calls were up: {figures['used_kbps']} kbit/s ({figures['utilisation_pct']} %), "
        f"after they ended: {figures['used_after_kbps']} kbit/s",
        f"  best-effort flood: {figures['flood_kbps'] / 1000:g} Mbit/s (twice the WAN), {figures['seconds']:g} s per run",
        "",
    ] + [f"  {a:<{width}}  {b:>15}  {c:>12}" for a, b, c in rows]
    return "\n".join(lines)


def plot(figures: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (key, title) in zip(axes[:2], (("reserved", "with the aggregate"), ("best_effort", "without reservation"))):
        phase = figures[key]
        ax.plot(phase["media_kbps_per_second"], label="admitted-call media (received)", color="tab:green")
        ax.plot(phase["flood_kbps_per_second"], label="best-effort flood (received)", color="tab:red")
        ax.axhline(figures["wan_kbps"], color="grey", linestyle=":", label="WAN capacity")
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel("kbit/s")
        ax.legend(fontsize=8, loc="center right")
    labels = ["media\nwith", "media\nwithout", "flood\nwith", "flood\nwithout"]
    values = [figures["reserved"]["media_loss_pct"] or 0, figures["best_effort"]["media_loss_pct"] or 0,
              figures["reserved"]["flood_loss_pct"] or 0, figures["best_effort"]["flood_loss_pct"] or 0]
    bars = axes[2].bar(labels, values, color=["tab:green", "tab:olive", "tab:red", "tab:pink"])
    axes[2].bar_label(bars, fmt="%.1f %%")
    axes[2].set_title("packet loss per class")
    axes[2].set_ylabel("%")
    fig.suptitle(f"{figures['admitted']} admitted calls on a {figures['pool_kbps']} kbit/s aggregate, "
                 f"{figures['wan_kbps'] / 1000:g} Mbit/s WAN, {figures['flood_kbps'] / 1000:g} Mbit/s flood")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Media aggregation demo in Mininet (needs root).")
    parser.add_argument("--seconds", type=float, default=15.0, help="media per phase (default 15)")
    parser.add_argument("--calls", type=int, default=CALLS_OFFERED, help="calls offered (default 25)")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="output folder (default out/)")
    args = parser.parse_args(argv)
    say = Progress()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = args.out / f"demo-{stamp}"
    try:
        figures = run_demo(workdir, seconds=args.seconds, calls=args.calls, say=say)
    except Exception as error:
        say(f"demo failed: {error}")
        say(f"logs are in {workdir}")
        return 1
    (workdir / "figures.json").write_text(json.dumps(figures, indent=2))
    png = plot(figures, workdir / "demo.png")
    print(report(figures))
    print(f"\n  plot: {png or '(matplotlib not installed)'}\n  figures and logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
