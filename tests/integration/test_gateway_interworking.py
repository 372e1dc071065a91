"""The SIP <-> H.323 gateway as its own process, between the H.323 endpoint simulator and
SIPp, both directions, on loopback; tcpdump captures both legs and tshark decodes them.

site-h (H.323, its PBX on 127.0.0.4, numbers 33...) and site-s (SIP, its PBX on
127.0.0.5, numbers 44...) share one aggregate; every test ends with the pool at 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import h323sim as sim
from h323lab import Capture, capture_available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "sipp"
H_HOST, S_HOST = "127.0.0.4", "127.0.0.5"
H_RTP = (H_HOST, 40000)


def free_port(kind: int, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Lab:
    def __init__(self, workdir: Path, pool_kbps: int = 1000, gatekeeper: bool = False,
                 config_override: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.sip_port, self.h323_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        self.uas_port = free_port(socket.SOCK_DGRAM, S_HOST)
        self.phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)     # the H.323 PBX's listener
        self.phone.bind((H_HOST, 0))
        self.phone.listen(4)
        config = {
            "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                         "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
            "communities": [
                {"name": "site-h", "edge": "s1", "access_ports": [2], "prefixes": [f"{H_HOST}/32"],
                 "e164_prefixes": ["33"], "signalling": "h323"},
                {"name": "site-s", "edge": "s2", "access_ports": [2], "prefixes": [f"{S_HOST}/32"],
                 "e164_prefixes": ["44"], "domains": ["site-s.example"], "signalling": "sip"}],
            "aggregates": [{"id": "h-s", "between": ["site-h", "site-s"], "size_kbps": pool_kbps}],
            "codecs": {"allowed": ["pcmu", "pcma", "g729"]},
            "sip": {"enabled": False},
            "gateway": {"sip_listen": f"127.0.0.1:{self.sip_port}", "h323_listen": f"127.0.0.1:{self.h323_port}",
                        "pbx": {"site-s": f"{S_HOST}:{self.uas_port}",
                                "site-h": f"{H_HOST}:{self.phone.getsockname()[1]}"}},
        }
        if config_override is not None:      # the same ports, another document (the caller's edits)
            config = config_override
            self.sip_port = int(config["gateway"]["sip_listen"].rpartition(":")[2])
            self.h323_port = int(config["gateway"]["h323_listen"].rpartition(":")[2])
            self.uas_port = int(config["gateway"]["pbx"]["site-s"].rpartition(":")[2])
            self.phone.close()
            self.phone = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.phone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.phone.bind((H_HOST, int(config["gateway"]["pbx"]["site-h"].rpartition(":")[2])))
            self.phone.listen(4)
        self.gk: subprocess.Popen[str] | None = None
        if gatekeeper:                       # the MAM gatekeeper routes calls to site-s to the gateway
            self.ras_port, self.call_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
            config["h323"] = {"ras_listen": f"127.0.0.1:{self.ras_port}", "call_listen": f"127.0.0.1:{self.call_port}"}
            config["gateway"]["trusted"] = ["127.0.0.1"]
        path = workdir / "site.yaml"
        path.write_text(yaml.safe_dump(config))
        if gatekeeper:
            self.gk_stats = workdir / "gk.json"
            self.gk = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.h323", "--config", str(path),
                                        "--stats-file", str(self.gk_stats)], cwd=REPO, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
            assert self.gk.stdout is not None
            assert self.gk.stdout.readline().startswith("H.323 gatekeeper")
        self.stats_file = workdir / "stats.json"
        self.log = (workdir / "gateway.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.gateway", "--config", str(path),
                                      "--stats-file", str(self.stats_file), "--log-level", "INFO"],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("gateway:"), (line, (workdir / "gateway.log").read_text())
        self.uas: subprocess.Popen[bytes] | None = None

    def stats(self) -> dict[str, Any]:
        before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                return dict(json.loads(self.stats_file.read_text()))
            time.sleep(0.02)
        raise AssertionError("no stats")

    def settle(self) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            stats = self.stats()
            if (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0) or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)

    def start_uas(self, scenario: str) -> None:
        self.uas = subprocess.Popen(["sipp", "-sf", str(SCENARIOS / scenario), "-i", S_HOST, "-p", str(self.uas_port),
                                     "-t", "u1", "-m", "1", "-timeout", "20s", "-trace_msg", "-message_file",
                                     str(self.workdir / "uas.log"), "-nostdin"],
                                    cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def wait_uas(self) -> int:
        assert self.uas is not None
        return self.uas.wait(20)

    def gk_report(self) -> dict[str, Any]:
        assert self.gk is not None
        before = self.gk_stats.stat().st_mtime_ns if self.gk_stats.exists() else 0
        self.gk.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.gk_stats.exists() and self.gk_stats.stat().st_mtime_ns != before:
                return dict(json.loads(self.gk_stats.read_text()))
            time.sleep(0.02)
        raise AssertionError("no gatekeeper stats")

    def gk_settle(self) -> dict[str, Any]:
        """The gatekeeper's report once it holds no call (or after 5 s)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.gk_report()["admitted_calls"]:
            time.sleep(0.1)
        return self.gk_report()

    def close(self) -> None:
        if self.gk is not None and self.gk.poll() is None:
            self.gk.send_signal(signal.SIGTERM)
            try:
                self.gk.wait(10)
            except subprocess.TimeoutExpired:
                self.gk.kill()
                self.gk.wait(5)
        if self.gk is not None and self.gk.stdout is not None:
            self.gk.stdout.close()
        if self.uas is not None and self.uas.poll() is None:
            self.uas.terminate()
            self.uas.wait(5)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
        self.phone.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def h323_call(lab: Lab, number: str = "442079460000") -> tuple[socket.socket, bytes, int]:
    guid, crv = sim.new_guid(), 321
    sock = socket.create_connection(("127.0.0.1", lab.h323_port), timeout=5, source_address=(H_HOST, 0))
    fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=None, rtcp=(H_HOST, H_RTP[1] + 1)),
            sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=H_RTP, rtcp=(H_HOST, H_RTP[1] + 1))]
    sock.sendall(sim.q931(sim.SETUP, crv, False, sim.setup_body(guid, [("dialledDigits", number)],
                                                               [("dialledDigits", "331234")], fast, (H_HOST, 1720)),
                          called=number))
    return sock, guid, crv


def test_h323_caller_to_sip_callee_answered_then_h323_hangs_up(lab: Lab) -> None:
    lab.start_uas("uas_answer.xml")
    sock, guid, crv = h323_call(lab)
    seen = []
    while True:
        message = sim.read_tpkt(sock, 5)
        assert message is not None, seen
        seen.append(message["type"])
        if message["type"] == sim.CONNECT:
            break
    assert seen[0] == sim.CALL_PROCEEDING and sim.ALERTING in seen
    fast = sim.body_of(message)[1]["fastStart"]
    forward = sim.dec("olc", fast[0])["forwardLogicalChannelParameters"]
    media = forward["multiplexParameters"][1]["mediaChannel"][1][1]
    assert socket.inet_ntoa(media["network"]) == S_HOST and forward["dataType"][1][0] == "g711Ulaw64k"
    busy = lab.stats()
    assert busy["admitted_calls"] == 1 and busy["pools_kbps"]["h-s"] > 0
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0                      # SIPp got its BYE and answered it
    sock.close()
    invite = (lab.workdir / "uas.log").read_text()
    assert "INVITE sip:+442079460000@site-s.example SIP/2.0" in invite
    assert "Reason: Q.850;cause=16" in invite       # on the BYE
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["internal_errors"] == 0


def test_h323_caller_to_busy_sip_callee_gets_cause_17(lab: Lab) -> None:
    lab.start_uas("uas_busy_txn.xml")
    sock, _, _ = h323_call(lab)
    message = None
    while True:
        message = sim.read_tpkt(sock, 5)
        assert message is not None
        if message["type"] == sim.RELEASE_COMPLETE:
            break
    assert message["cause"] == 17
    assert lab.wait_uas() == 0
    sock.close()
    assert lab.settle()["pools_kbps"]["h-s"] == 0


def serve_h323_callee(lab: Lab, *, busy: bool = False, ring_only: bool = False) -> dict[str, Any]:
    """The H.323 PBX: take the gateway's Setup, ring and answer (or refuse busy, or only ring)."""
    lab.phone.settimeout(5)
    conn, _ = lab.phone.accept()
    setup = sim.read_tpkt(conn, 5)
    assert setup is not None and setup["type"] == sim.SETUP
    guid = sim.body_of(setup)[1]["callIdentifier"]["guid"]
    if busy:
        conn.sendall(sim.q931(sim.RELEASE_COMPLETE, setup["crv"], True, sim.release_body(guid), cause=17))
        return {"conn": conn, "setup": setup}
    fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=H_RTP, rtcp=(H_HOST, H_RTP[1] + 1)),
            sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=None, rtcp=(H_HOST, H_RTP[1] + 1))]
    conn.sendall(sim.q931(sim.ALERTING, setup["crv"], True, sim.answer_body("alerting", guid)))
    if ring_only:
        return {"conn": conn, "setup": setup}
    conn.sendall(sim.q931(sim.CONNECT, setup["crv"], True, sim.answer_body("connect", guid, fast)))
    return {"conn": conn, "setup": setup}


def sipp_uac(lab: Lab, scenario: str, hold_ms: int = 500,
             target_port: int | None = None) -> subprocess.CompletedProcess[bytes]:
    inject = lab.workdir / "codecs.csv"
    inject.write_text("SEQUENTIAL\n0;PCMU;\n")
    return subprocess.run(["sipp", "-sf", str(SCENARIOS / scenario), "-inf", str(inject), "-i", S_HOST,
                           "-p", str(free_port(socket.SOCK_DGRAM, S_HOST)), "-t", "u1", "-s", "331234",
                           f"127.0.0.1:{target_port or lab.sip_port}", "-m", "1", "-d", str(hold_ms),
                           "-timeout", "20s",
                           "-timeout_error", "-trace_msg", "-message_file", str(lab.workdir / "uac.log"),
                           "-nostdin"], cwd=lab.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=40)


def test_sip_caller_to_h323_callee_answered_then_sip_hangs_up(lab: Lab) -> None:
    import threading
    served: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: served.update(serve_h323_callee(lab)))
    thread.start()
    result = sipp_uac(lab, "uac_call.xml")
    thread.join(10)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    release = sim.read_tpkt(served["conn"], 5)          # the SIP caller's BYE
    assert release is not None and release["type"] == sim.RELEASE_COMPLETE and release["cause"] == 16
    served["conn"].close()
    fields = sim.body_of(served["setup"])[1]
    assert fields["destinationAddress"] == [("dialledDigits", "331234")]
    received = (lab.workdir / "uac.log").read_text()
    assert f"c=IN IP4 {H_HOST}" in received and "m=audio 40000 RTP/AVP 0" in received
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1


def test_dtmf_both_ways_h245_user_input_and_sip_info(lab: Lab) -> None:
    import threading
    lab.start_uas("uas_info.xml")                       # H.323 -> SIP: userInputIndication -> INFO
    sock, guid, crv = h323_call(lab)
    while (message := sim.read_tpkt(sock, 5)) is not None and message["type"] != sim.CONNECT:
        pass
    uii = sim.enc("h245", ("indication", ("userInput", ("signal", {"signalType": "5", "duration": 160}))))
    sock.sendall(sim.q931(0x62, crv, False, ("facility", {"protocolIdentifier": sim.PID,
                                                          "reason": ("transportedInformation", 0),
                                                          "callIdentifier": {"guid": guid}}),
                          extra_pdu={"h245Tunnelling": True, "h245Control": [uii]}))
    time.sleep(0.3)
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0                          # SIPp checked Signal=5 in the INFO
    sock.close()
    served: dict[str, Any] = {}                         # SIP -> H.323: INFO -> userInputIndication
    thread = threading.Thread(target=lambda: served.update(serve_h323_callee(lab)))
    thread.start()
    result = sipp_uac(lab, "uac_info.xml")
    thread.join(10)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    facility = sim.read_tpkt(served["conn"], 5)
    assert facility is not None and facility["type"] == 0x62
    (control,) = facility["uu"]["h323-uu-pdu"]["h245Control"]
    assert sim.dec("h245", control) == ("indication", ("userInput", ("signal", {"signalType": "5",
                                                                                "duration": 160})))
    assert sim.read_tpkt(served["conn"], 5)["type"] == sim.RELEASE_COMPLETE
    served["conn"].close()
    stats = lab.settle()
    assert stats["dtmf-h323-to-sip"] == 1 and stats["dtmf-sip-to-h323"] == 1 and stats["pools_kbps"]["h-s"] == 0


def answer_481(port: int, stop: threading.Event) -> None:
    """A SIP sink on ``port``: every request but ACK gets 481 (the transaction ends there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((S_HOST, port))
        sink.settimeout(0.1)
        while not stop.is_set():
            try:
                data, peer = sink.recvfrom(65535)
            except socket.timeout:
                continue
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if not head or head[0].startswith(b"SIP/2.0") or head[0].startswith(b"ACK "):
                continue
            keep = [line for line in head[1:] if line.split(b":", 1)[0].strip().lower() in (
                b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
            keep = [line + b";tag=sink" if line.lower().startswith((b"to:", b"t:")) and b"tag=" not in line
                    else line for line in keep]
            sink.sendto(b"\r\n".join([b"SIP/2.0 481 Call/Transaction Does Not Exist", *keep,
                                        b"Content-Length: 0", b"", b""]), peer)


def test_mutated_input_on_both_ports_stops_nothing_and_a_clean_call_follows(lab: Lab) -> None:
    """2,000 mutated SIP datagrams and 150 mutated H.225 streams at the gateway process;
    then a clean H.323 -> SIP call is answered and released, with no internal error."""
    import random
    rng = random.Random(1818)
    guid = sim.new_guid()
    fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=None, rtcp=(H_HOST, 40001)),
            sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=H_RTP, rtcp=(H_HOST, 40001))]
    h323_seeds = [sim.q931(sim.SETUP, 9, False, sim.setup_body(guid, [("dialledDigits", "4420")],
                                                              [("dialledDigits", "331")], fast, (H_HOST, 1720)),
                           called="4420"),
                  sim.q931(sim.RELEASE_COMPLETE, 9, False, sim.release_body(guid), cause=16)]
    sdp = f"v=0\r\no=- 1 1 IN IP4 {S_HOST}\r\ns=-\r\nc=IN IP4 {S_HOST}\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n"
    sip_seed = (f"INVITE sip:99999@site-h.example SIP/2.0\r\nVia: SIP/2.0/UDP {S_HOST}:5060;branch=z9hG4bKf\r\n"
                f"From: <sip:4420@site-s.example>;tag=f\r\nTo: <sip:99999@site-h.example>\r\nCall-ID: fz\r\n"
                f"CSeq: 1 INVITE\r\nContact: <sip:f@{S_HOST}>\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()

    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(out))
            roll = rng.random()
            if roll < 0.5:
                out[at] = rng.randrange(256)
            elif roll < 0.75:
                del out[at:at + rng.randint(1, 30)]
            else:
                out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
            if not out:
                out = bytearray(b"\x00")
        return bytes(out)
    # Some mutated Setups still decode into real calls toward the SIP callee's port: a sink
    # there ends each with 481 (and its CANCEL too), so none is left retransmitting into the
    # one-call SIPp UAS that takes the clean call afterwards.
    stop_sink = threading.Event()
    sink = threading.Thread(target=answer_481, args=(lab.uas_port, stop_sink), daemon=True)
    sink.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((S_HOST, 0))
        for i in range(2000):
            udp.sendto(mutate(sip_seed), ("127.0.0.1", lab.sip_port))
            if i % 200 == 0:
                time.sleep(0.01)
    for _ in range(150):
        try:
            with socket.create_connection(("127.0.0.1", lab.h323_port), timeout=2, source_address=(H_HOST, 0)) as s:
                s.sendall(mutate(rng.choice(h323_seeds)))
        except OSError:
            pass
    lab.settle()                     # the fuzzed calls the gateway set up have ended
    time.sleep(1.0)                  # and their last retransmissions met the sink
    stop_sink.set()
    sink.join(5)
    lab.start_uas("uas_answer.xml")
    sock, guid, crv = h323_call(lab)
    while (message := sim.read_tpkt(sock, 5)) is not None and message["type"] != sim.CONNECT:
        pass
    assert message is not None, "no Connect after the fuzzing"
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0
    sock.close()
    stats = lab.settle()
    assert stats["internal_errors"] == 0 and stats["pools_kbps"]["h-s"] == 0 and stats["admitted_calls"] == 0
    assert stats.get("sip-malformed", 0) > 100


def test_a_phone_registered_at_the_mam_gatekeeper_calls_sip_admitted_once(tmp_path: Path) -> None:
    """H.323 phone -> ARQ/ACF at the MAM gatekeeper -> Setup relayed to the gateway (trusted:
    the gatekeeper admitted it, the gateway admits nothing) -> INVITE to SIPp; one allocation,
    held by the gatekeeper, back to 0 when the phone hangs up."""
    lab = Lab(tmp_path, gatekeeper=True)
    phone = sim.Phone("331234", ("127.0.0.1", lab.ras_port), host=H_HOST, rtp_port=H_RTP[1])
    try:
        lab.start_uas("uas_answer.xml")
        assert phone.register()[0] == "registrationConfirm"
        call = phone.place("442079460000")
        assert call.admission[0] == "admissionConfirm"
        connect = call.until(sim.CONNECT)
        assert connect is not None
        fast = sim.body_of(connect)[1]["fastStart"]
        media = sim.dec("olc", fast[0])["forwardLogicalChannelParameters"]["multiplexParameters"][1]
        assert socket.inet_ntoa(media["mediaChannel"][1][1]["network"]) == S_HOST
        gk = lab.gk_report()
        assert gk["admitted_calls"] == 1 and sum(gk["pools_kbps"].values()) > 0
        gw = lab.stats()
        assert gw["admitted_calls"] == 0 and gw.get("admitted-by-front-end") == 1 and gw.get("admitted", 0) == 0
        call.hang_up()
        assert lab.wait_uas() == 0                                  # SIPp got its BYE
        call.close()
        gk = lab.gk_settle()
        assert gk["admitted_calls"] == 0 and sum(gk["pools_kbps"].values()) == 0
        assert "INVITE sip:+442079460000@site-s.example" in (tmp_path / "uas.log").read_text()
    finally:
        phone.close()
        lab.close()


def test_a_sip_call_through_the_mam_proxy_to_h323_is_admitted_once(tmp_path: Path) -> None:
    """SIPp -> the MAM SIP proxy (admits; routes site-h's domain to the gateway) -> gateway
    (trusts the proxy: translates only) -> H.323 PBX; the proxy holds the one allocation."""
    import threading
    lab = Lab(tmp_path)
    proxy_port = free_port(socket.SOCK_DGRAM)
    document = yaml.safe_load((tmp_path / "site.yaml").read_text())
    document["communities"][0]["domains"] = ["site-b.example"]        # uac_call.xml dials ...@site-b.example
    document["sip"] = {"enabled": True, "listen": f"127.0.0.1:{proxy_port}", "transports": ["udp"],
                       "routes": {"site-b.example": f"127.0.0.1:{lab.sip_port}"}}
    document["gateway"]["trusted"] = ["127.0.0.1"]
    lab.close()
    lab = Lab(tmp_path, config_override=document)
    proxy_stats = tmp_path / "proxy.json"
    proxy = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(tmp_path / "site.yaml"),
                              "--stats-file", str(proxy_stats)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().startswith("SIP proxy")
        served: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: served.update(serve_h323_callee(lab)))
        thread.start()
        result = sipp_uac(lab, "uac_call.xml", target_port=proxy_port)
        thread.join(10)
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        release = sim.read_tpkt(served["conn"], 5)
        assert release is not None and release["type"] == sim.RELEASE_COMPLETE
        served["conn"].close()
        gw = lab.settle()
        assert gw.get("admitted-by-front-end") == 1 and gw.get("admitted", 0) == 0 and gw["internal_errors"] == 0
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        counters = json.loads(proxy_stats.read_text())
        assert counters["admitted"] == 1 and counters["released"] == 1 and counters["attached"] == 1, counters
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait(5)
        if proxy.stdout is not None:
            proxy.stdout.close()
        lab.close()


def test_sip_caller_cancels_while_the_h323_side_rings(lab: Lab) -> None:
    import threading
    served: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: served.update(serve_h323_callee(lab, ring_only=True)))
    thread.start()
    result = sipp_uac(lab, "uac_cancel.xml")
    thread.join(10)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    release = sim.read_tpkt(served["conn"], 5)
    assert release is not None and release["type"] == sim.RELEASE_COMPLETE and release["cause"] == 16
    served["conn"].close()
    assert "SIP/2.0 487" in (lab.workdir / "uac.log").read_text()
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0) and stats["released"] == 1


def test_a_full_pool_refuses_both_ways_cause_34_and_503(tmp_path: Path) -> None:
    lab = Lab(tmp_path, pool_kbps=50)                  # less than one G.711 call (91 kbit/s)
    try:
        sock, _, _ = h323_call(lab)
        messages = [sim.read_tpkt(sock, 5), sim.read_tpkt(sock, 5)]
        assert [(m["type"], m["cause"]) for m in messages if m] == \
            [(sim.CALL_PROCEEDING, None), (sim.RELEASE_COMPLETE, 34)]
        sock.close()
        result = sipp_uac(lab, "uac_call.xml")
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
        received = (lab.workdir / "uac.log").read_text()
        assert "SIP/2.0 503 Service Unavailable" in received and "Reason: Q.850;cause=34" in received
        stats = lab.settle()
        assert stats["rejected-pool-full"] == 2 and stats["pools_kbps"]["h-s"] == 0
    finally:
        lab.close()


def tshark_decode(lab: Lab, pcap: Path) -> tuple[str, str]:
    """tshark's verbose decoding of a capture of both legs (asserted free of malformed
    frames) and its one-line summary. Q.931/H.225.0 in TPKT on any TCP port is found by
    tshark's heuristic; SIP on the gateway's and SIPp's ports is named."""
    decode = ["tshark", "-r", str(pcap), "-n", "-d", f"udp.port=={lab.sip_port},sip",
              "-d", f"udp.port=={lab.uas_port},sip"]
    verbose = subprocess.run(decode + ["-V"], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 0, verbose.stderr
    assert "Malformed" not in verbose.stdout, [l for l in verbose.stdout.splitlines() if "Malformed" in l][:5]
    return verbose.stdout, subprocess.run(decode, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.skipif(capture_available() is not None, reason=str(capture_available()))
def test_tshark_decodes_both_legs_without_a_malformed_frame(lab: Lab, tmp_path: Path) -> None:
    import threading
    pcap = tmp_path / "gateway.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.h323_port, lab.uas_port, lab.phone.getsockname()[1]])
    try:
        lab.start_uas("uas_info.xml")                   # H.323 -> SIP, with a DTMF digit
        sock, guid, crv = h323_call(lab)
        while (message := sim.read_tpkt(sock, 5)) is not None and message["type"] != sim.CONNECT:
            pass
        uii = sim.enc("h245", ("indication", ("userInput", ("signal", {"signalType": "5", "duration": 160}))))
        sock.sendall(sim.q931(0x62, crv, False, ("facility", {"protocolIdentifier": sim.PID,
                                                              "reason": ("transportedInformation", 0),
                                                              "callIdentifier": {"guid": guid}}),
                              extra_pdu={"h245Tunnelling": True, "h245Control": [uii]}))
        time.sleep(0.3)
        sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
        assert lab.wait_uas() == 0
        sock.close()
        served: dict[str, Any] = {}                     # SIP -> H.323, with a DTMF digit
        thread = threading.Thread(target=lambda: served.update(serve_h323_callee(lab)))
        thread.start()
        assert sipp_uac(lab, "uac_info.xml").returncode == 0
        thread.join(10)
        sim.read_tpkt(served["conn"], 5)
        sim.read_tpkt(served["conn"], 5)
        served["conn"].close()
    finally:
        capture.stop()
    verbose, summary = tshark_decode(lab, pcap)
    for kind in ("setup", "callProceeding", "alerting", "connect", "releaseComplete"):
        assert sum(f"CS: {kind}" in line for line in summary.splitlines()) >= 2 if kind != "callProceeding" \
            else f"CS: {kind}" in summary, (kind, summary)
    assert verbose.count("userInputIndication") >= 2 or verbose.count("userInput") >= 2
    for sip in ("INVITE", "180 Ringing", "200 OK", "ACK", "BYE", "INFO"):
        assert sip in summary, (sip, summary)
    assert lab.settle()["pools_kbps"]["h-s"] == 0
