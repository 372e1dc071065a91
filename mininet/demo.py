#!/usr/bin/env python3
"""The demo: two enterprise sites, a reserved aggregate, SIPp calls, a best-effort flood,
and an H.323 site whose calls to the SIP site go through the gatekeeper and the gateway.

    make demo            (or: sudo .venv/bin/python mininet/demo.py [--seconds 15] [--out out])

1. brings up topology (a) (topologies/enterprise.py) plus an H.323 site (site-h, host h3a
   on s1) in Mininet with Open vSwitch in userspace, and the controller under
   `ryu-manager` with its SIP proxy, H.323 gatekeeper and SIP <-> H.323 gateway;
2. creates the aggregates site-a--site-b (2 Mbit/s on a 10 Mbit/s WAN) and site-h--site-b
   (450 kbit/s) over REST;
3. site-h's simulated H.323 terminal offers 5 calls to site-b's numbers (its pool holds 4,
   the 5th gets ARJ): the gatekeeper admits each and relays it to the gateway, which calls
   SIPp at site-b; then SIPp calls through the proxy until the pool is full: the excess gets 503;
4. sends RTP-sized media for every admitted call (from h1a and h3a) while a best-effort
   flood at twice the WAN capacity runs across the same WAN link;
5. lets the calls end (the pool returns to zero) and repeats the same media and flood
   without the reservation, for comparison;
6. prints a report and writes a PNG plot and the figures as JSON to the output folder.
Everything it starts it stops; everything it creates carries its run prefix and is removed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from emulation import Emulation, free_port, stop_process  # noqa: E402
from topologies import enterprise  # noqa: E402
from topologies.spec import CommunitySpec, HostSpec  # noqa: E402

POOL_KBPS = 2000
AGGREGATE = "site-a--site-b"
CALLS_OFFERED = 25            # 21 G.711 calls fit in 2 Mbit/s (91 kbit/s each at Ethernet level with tags)
FLOOD_FACTOR = 2.0            # best-effort flood at twice the WAN capacity
FLOOD_PACKET = 1200           # payload bytes of a flood packet
CALLER_PORT_BASE, FLOOD_PORT = 20000, 5001
H323_PORT_BASE = 24000        # H.323 callers' RTP ports (callees' at +1000)
# The H.323 site: a third community on s1 (behind the same WAN as site-a) whose terminals
# speak H.323; its calls to site-b's numbers are bridged to SIP by the gateway.
SITE_H_CALLS = 5              # offered from site-h; its pool holds 4
SITE_H_POOL_KBPS = 450        # 4 G.711 calls (91 kbit/s each) and headroom like site-a--site-b's
SITE_H_AGGREGATE = "site-h--site-b"
SITE_H_PORT_BASE = 26000      # its terminals' RTP ports (SIPp answers on 3xxxx for 2xxxx: 36000...)
SITE_H = CommunitySpec("site-h", "s1", ("10.0.3.0/24",), ("site-h.example",), (
    HostSpec("h3a", "10.0.3.1/8", "00:00:00:00:03:01", 3),), e164_prefixes=("33",), signalling="h323")
SPEC = replace(enterprise.SPEC, description="two SIP sites and an H.323 site across a 10 Mbit/s WAN", communities=(
    enterprise.SPEC.communities[0], replace(enterprise.SPEC.communities[1], e164_prefixes=("44",)), SITE_H))
RTPFLOW = HERE / "rtpflow.py"
SIPP = HERE / "sipp"


class Progress:
    def __init__(self, stream: Any = sys.stdout) -> None:
        self.start = time.monotonic()
        self.stream = stream

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=self.stream, flush=True)


def run_demo(workdir: Path, *, seconds: float = 15.0, calls: int = CALLS_OFFERED, pool_kbps: int = POOL_KBPS,
             say: Callable[[str], None] = print, h323_calls: int = 0, site_h_calls: int = SITE_H_CALLS
             ) -> dict[str, Any]:
    """Run both phases and return the figures (see `report`). ``h323_calls`` H.323 calls
    (simulated endpoints through the controller's gatekeeper) are placed before the SIP ones;
    ``site_h_calls`` from the H.323 site to site-b, bridged to SIPp by the gateway, too."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port, uas_port = free_port(), free_port()
    sip = {"enabled": True, "listen": f"127.0.0.1:{sip_port}", "transports": ["udp"],
           "routes": {"site-b.example": f"127.0.0.1:{uas_port}"}}
    wan = SPEC.link("s1", "s2")
    caller, callee = SPEC.host("h1a"), SPEC.host("h2a")
    flood_src, flood_dst = SPEC.host("h1b"), SPEC.host("h2b")
    figures: dict[str, Any] = {"pool_kbps": pool_kbps, "wan_kbps": int(wan.mbit * 1000),
                               "calls_offered": calls + h323_calls, "seconds": seconds,
                               "flood_kbps": int(wan.mbit * 1000 * FLOOD_FACTOR)}
    h323 = gateway = None
    if h323_calls or site_h_calls:
        h323 = {"enabled": True, "ras_listen": f"127.0.0.1:{free_port()}", "call_listen": f"127.0.0.1:{free_port()}"}
    if site_h_calls:     # the gatekeeper admits and relays to the gateway, which trusts it (docs/gateway.md)
        gateway = {"gateway": {"sip_listen": f"127.0.0.1:{free_port()}", "h323_listen": f"127.0.0.1:{free_port()}",
                               "pbx": {"site-b": f"127.0.0.1:{uas_port}"}, "trusted": ["127.0.0.1"]}}
    with Emulation(SPEC, workdir, sip=sip, aggregates=False, log=say, h323=h323, config_extra=gateway) as emu, \
            H323Calls(h323, h323_calls, caller.address, callee.address, say) as h323_held, \
            H323Site(h323, site_h_calls, SPEC.host("h3a").address, say) as site_h:
        pools = {AGGREGATE: ("site-a", pool_kbps), **({SITE_H_AGGREGATE: ("site-h", SITE_H_POOL_KBPS)}
                                                      if site_h_calls else {})}
        for aggregate_id, (community, size) in pools.items():
            status, body = emu.api("POST", "/aggregates", {"id": aggregate_id, "communities": [community, "site-b"],
                                                           "size_kbps": size})
            if status != 201:
                raise RuntimeError(f"creating the aggregate {aggregate_id} failed: {status} {body}")
            say(f"aggregate {aggregate_id}: {size} kbit/s reserved on path {' -> '.join(body['path'])}")
        emu.wait_classes("s1", 10)
        for host in ["h1a", "h3a"] if site_h_calls else ["h1a"]:
            ping = emu.host(host).cmd(f"ping -c 2 -W 2 {callee.address}")
            if " 0% packet loss" not in ping:
                raise RuntimeError(f"no best-effort connectivity from {host} to site-b:\n{ping}")

        (workdir / "uas.csv").write_text(f"SEQUENTIAL\n{callee.address};\n")
        uas = subprocess.Popen(["sipp", "-sf", str(SIPP / "uas_media.xml"), "-inf", str(workdir / "uas.csv"),
                                "-i", "127.0.0.1", "-p", str(uas_port), "-t", "u1", "-nostdin", "-trace_err",
                                "-trace_msg", "-message_file", str(workdir / "uas_messages.log")],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        h323_held.place()                 # --- H.323 calls through the gatekeeper (if any) ---------
        figures["h323_admitted"] = h323_held.connected
        site_h.place()                    # --- the H.323 site's calls, bridged to SIPp at site-b ----
        # --- calls through the SIP proxy ---------------------------------------------------
        (workdir / "uac.csv").write_text("SEQUENTIAL\n" + "".join(
            f"0;PCMU;{caller.address};{CALLER_PORT_BASE + 2 * i};\n" for i in range(calls)))
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
            stats = wait_for(lambda: _decided(emu, calls + h323_calls + site_h.attempted), 30,
                             "every call admitted or rejected")
            admitted = stats["admitted"] - site_h.admitted           # on site-a--site-b
            active = wait_for(lambda: _active_calls(emu, AGGREGATE, admitted), 20, "admitted calls' flows confirmed")
            aggregate = emu.api("GET", f"/aggregates/{AGGREGATE}")[1]
            figures.update(admitted=admitted, rejected=stats["rejected"].get("pool-full", 0) - site_h.refused,
                           used_kbps=aggregate["used_kbps"],
                           utilisation_pct=round(100.0 * aggregate["used_kbps"] / pool_kbps, 1))
            say(f"admitted {figures['admitted']}, rejected {figures['rejected']} with 503 (pool full): "
                f"{aggregate['used_kbps']} of {pool_kbps} kbit/s in use ({figures['utilisation_pct']} %)")
            pairs = [(c["caller_media"], c["callee_media"]) for c in active]
            figures["protocols"] = {p: sum(1 for c in active if c.get("protocol") == p) for p in ("sip", "h323")}
            groups = {"media": ("h1a", pairs)}
            if site_h_calls:
                site_h_active = wait_for(lambda: _active_calls(emu, SITE_H_AGGREGATE, site_h.admitted), 20,
                                         "the H.323 site's flows confirmed") if site_h.admitted else []
                groups["h323_site"] = ("h3a", [(c["caller_media"], c["callee_media"]) for c in site_h_active])
                site_h.used_kbps = emu.api("GET", f"/aggregates/{SITE_H_AGGREGATE}")[1]["used_kbps"]
                site_h.protocols = sorted({str(c.get("protocol")) for c in site_h_active})

            say(f"phase 1: media of {sum(len(p) for _, p in groups.values())} admitted calls + "
                f"{figures['flood_kbps'] / 1000:g} Mbit/s best-effort flood, {seconds:g} s")
            figures["reserved"] = media_phase(emu, groups, seconds, flood_src, flood_dst, figures["flood_kbps"])
            say(_phase_line("with the aggregate", figures["reserved"]))

            h323_held.hang_up()
            site_h.hang_up()
            say("waiting for the calls to end (SIPp sends BYE)")
            out = uac.communicate(timeout=seconds + 60)[1]
            figures["sipp_exit"] = uac.returncode
            if uac.returncode != 0:
                say(f"SIPp reported unexpected outcomes (exit {uac.returncode}): {out[-500:]}")
            for aggregate_id in pools:
                wait_for(lambda: emu.api("GET", f"/aggregates/{aggregate_id}")[1]["used_kbps"] == 0 or None, 20,
                         f"the pool {aggregate_id} back at zero")
            figures["used_after_kbps"] = emu.api("GET", f"/aggregates/{AGGREGATE}")[1]["used_kbps"]
            if site_h.connected:
                site_h.byes = _gateway_byes(workdir / "uas_messages.log", site_h.connected)
            say(f"all calls ended; pool in use: {figures['used_after_kbps']} kbit/s")
        finally:
            if uac.poll() is None:
                stop_process(uac.pid)
            stop_process(uas.pid)

        say(f"phase 2: the same media without reservation + the same flood, {seconds:g} s")
        figures["best_effort"] = media_phase(emu, groups, seconds, flood_src, flood_dst, figures["flood_kbps"])
        say(_phase_line("without reservation", figures["best_effort"]))
        if site_h_calls:
            figures["site_h"] = site_h.figures(figures["reserved"]["h323_site"], figures["best_effort"]["h323_site"],
                                               emu.api("GET", f"/aggregates/{SITE_H_AGGREGATE}")[1]["used_kbps"])
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
        sim = _simulator()
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


class H323Site:
    """The H.323 site's terminals: one simulated endpoint (tests/h323sim.py) registered at the
    controller's gatekeeper as 331001 dials site-b's numbers (44...). For each call the
    gatekeeper admits on site-h--site-b (ARQ/ACF) and, site-b speaking SIP, relays the Setup
    to the gateway, which calls SIPp at site-b (INVITE + SDP from the fastStart channels) and
    answers Connect with SIPp's media address. Signalling on loopback like SIPp's; the
    media addresses are h3a's, so the media crosses the switches from h3a."""

    def __init__(self, h323: dict[str, Any] | None, count: int, media_ip: str, say: Callable[[str], None]) -> None:
        self.count = count if h323 else 0
        self.ras = ("127.0.0.1", int(h323["ras_listen"].rsplit(":", 1)[1])) if h323 else ("", 0)
        self.media_ip, self.say = media_ip, say
        self.phone: Any = None
        self.calls: list[Any] = []
        self.attempted = self.admitted = self.refused = self.connected = self.disengaged = self.byes = 0
        self.used_kbps = 0
        self.protocols: list[str] = []

    def __enter__(self) -> "H323Site":
        return self

    def __exit__(self, *exc: Any) -> None:
        for call in self.calls:
            call.close()
        if self.phone is not None:
            self.phone.close()

    def place(self) -> None:
        if not self.count:
            return
        sim = _simulator()
        self.phone = sim.Phone("331001", self.ras, media_host=self.media_ip)
        if self.phone.register()[0] != "registrationConfirm":
            raise RuntimeError("the H.323 site's terminal could not register with the gatekeeper")
        for i in range(self.count):
            self.phone.rtp_port = SITE_H_PORT_BASE + 2 * i
            call = self.phone.place(f"44207946{i:04d}")
            self.attempted += 1
            if call.admission[0] != "admissionConfirm":          # the pool is full: ARJ
                self.refused += 1
                continue
            self.admitted += 1
            self.calls.append(call)
            if call.until(sim.CONNECT, timeout=10) is None:
                raise RuntimeError(f"H.323 site call {i + 1} not connected (gateway -> SIPp at site-b)")
            self.connected += 1
        self.say(f"H.323 site: {self.attempted} calls to site-b through the gatekeeper and the gateway, "
                 f"{self.admitted} admitted on {SITE_H_AGGREGATE}, {self.refused} refused (ARJ), "
                 f"{self.connected} connected (SIPp answered)")

    def hang_up(self) -> None:
        """ReleaseComplete (the gateway sends SIPp a BYE), then DRQ (the gatekeeper confirms)."""
        for call in self.calls:
            call.hang_up()
            if call.disengage()[0] == "disengageConfirm":
                self.disengaged += 1

    def figures(self, reserved: dict[str, Any], best_effort: dict[str, Any], used_after_kbps: int) -> dict[str, Any]:
        # completed: both legs ended normally: DRQ confirmed, and the gateway's BYE reached site-b
        return {"attempted": self.attempted, "admitted": self.admitted, "refused": self.refused,
                "connected": self.connected, "disengaged": self.disengaged, "byes_at_site_b": self.byes,
                "completed": min(self.disengaged, self.byes), "pool_kbps": SITE_H_POOL_KBPS,
                "used_kbps": self.used_kbps, "used_after_kbps": used_after_kbps, "protocols": self.protocols,
                "reserved": reserved, "best_effort": best_effort}


def _gateway_byes(log: Path, expected: int, timeout: float = 5.0) -> int:
    """Calls whose BYE from the gateway (the only BYEs with a Q.850 Reason) SIPp at site-b
    logged as received: distinct Call-IDs, waiting a little for SIPp to write them."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        calls = set()
        for message in re.split(r"^-{20,}.*$", text, flags=re.M):
            lines = [line.strip() for line in message.strip().splitlines()]
            if "message received" in "".join(lines[:1]) and any(l.startswith("BYE sip:") for l in lines[:3]) \
                    and any(l.lower().startswith("reason: q.850") for l in lines):
                calls |= {l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("call-id:")}
        if len(calls) >= expected or time.monotonic() > deadline:
            return len(calls)
        time.sleep(0.2)


def _simulator() -> Any:
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import h323sim
    return h323sim


Pairs = list[tuple[dict[str, Any], dict[str, Any]]]      # (caller_media, callee_media) of each call


def media_phase(emu: Emulation, groups: dict[str, tuple[str, Pairs]], seconds: float,
                flood_src: Any, flood_dst: Any, flood_kbps: int) -> dict[str, Any]:
    """Admitted-call media caller -> callee (h2a) while a flood crosses the same WAN; each
    group of calls ({name: (sending host, [(caller_media, callee_media)])}) has its own sender
    and receiver. The figures of the group ``media`` at the top level, the others' under their name."""
    callee = emu.host("h2a")
    flood_pps = flood_kbps * 1000 / ((FLOOD_PACKET + 28) * 8)
    receivers = {
        name: callee.popen([sys.executable, str(RTPFLOW), "recv", "--duration", str(seconds + 4), "--idle", "2",
                            *sum((["--port", str(b["port"])] for _, b in pairs), [])])
        for name, (_, pairs) in groups.items() if pairs}
    receivers["flood"] = emu.host(flood_dst.name).popen([
        sys.executable, str(RTPFLOW), "recv", "--port", str(FLOOD_PORT), "--duration", str(seconds + 4), "--idle", "2"])
    time.sleep(0.7)
    senders = {"flood_sender": emu.host(flood_src.name).popen([
        sys.executable, str(RTPFLOW), "send", "--flow", f"{flood_dst.address}:{FLOOD_PORT}", "--pps",
        f"{flood_pps:.0f}", "--size", str(FLOOD_PACKET), "--duration", str(seconds + 1.5)])}
    time.sleep(1.0)  # the WAN queue is full before the media starts
    for name, (host, pairs) in groups.items():
        if pairs:
            senders[f"{name}_sender"] = emu.host(host).popen([
                sys.executable, str(RTPFLOW), "send", "--pps", "50", "--size", "160", "--duration", str(seconds),
                *sum((["--flow", f"{b['ip']}:{b['port']}:{a['port']}"] for a, b in pairs), [])])
    results: dict[str, Any] = {}
    for name, process in (*senders.items(), *receivers.items()):
        out, _ = process.communicate(timeout=seconds + 30)
        lines = [line for line in (out or b"").decode().splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if lines else {}
    figures = {name: {"loss_pct": results.get(name, {}).get("loss_pct"),
                      "jitter_ms": results.get(name, {}).get("jitter_ms"),
                      "packets": results.get(name, {}).get("packets"),
                      "sent": results.get(f"{name}_sender", {}).get("sent"),
                      "kbps_per_second": results.get(name, {}).get("kbps_per_second", [])}
               for name in groups if name != "media"}
    return {
        "media_loss_pct": results.get("media", {}).get("loss_pct"),
        "media_jitter_ms": results.get("media", {}).get("jitter_ms"),
        "media_packets": results.get("media", {}).get("packets"),
        "media_kbps_per_second": results.get("media", {}).get("kbps_per_second", []),
        "flood_loss_pct": results["flood"].get("loss_pct"),
        "flood_kbps_per_second": results["flood"].get("kbps_per_second", []),
        "media_sent": results.get("media_sender", {}).get("sent"),
        "flood_sent": results["flood_sender"].get("sent"),
        **figures,
    }


def _decided(emu: Emulation, calls: int) -> dict[str, Any] | None:
    status, stats = emu.api("GET", "/stats")
    return stats if status == 200 and stats["admitted"] + sum(stats["rejected"].values()) >= calls else None


def _active_calls(emu: Emulation, aggregate: str, expected: int) -> list[dict[str, Any]] | None:
    status, body = emu.api("GET", f"/calls?aggregate={aggregate}")
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
    site_h = phase.get("h323_site")
    return (f"{label}: media loss {phase['media_loss_pct']} %, jitter {phase['media_jitter_ms']} ms; "
            + (f"H.323 site media loss {site_h['loss_pct']} %, jitter {site_h['jitter_ms']} ms; " if site_h else "")
            + f"flood loss {phase['flood_loss_pct']} %")


def site_h_line(site_h: dict[str, Any]) -> str:
    """The report's line for the H.323 site."""
    reserved, best = site_h["reserved"], site_h["best_effort"]
    return (f"  H.323 site site-h -> SIPp at site-b (gatekeeper + gateway, {site_h['pool_kbps']} kbit/s aggregate): "
            f"calls attempted {site_h['attempted']}, admitted {site_h['admitted']}, completed {site_h['completed']}; "
            f"media under the flood: loss {reserved['loss_pct']} %, jitter {reserved['jitter_ms']} ms "
            f"(without the aggregate: loss {best['loss_pct']} %)")


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
    if "site_h" in figures:
        lines += ["", site_h_line(figures["site_h"])]
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
