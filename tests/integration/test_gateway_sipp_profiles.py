"""Normalisation profiles through the real proxy: SIPp PBXs of two communities.

site-a's PBX (SIPp UAC on 127.0.0.2) dials UK national numbers, sends P-Asserted-Identity
and headers that leak its equipment. site-b's PBX (SIPp UAS on 127.0.0.3) wants E.164,
Remote-Party-ID, PCMA first and no topology headers. The test reads, from SIPp's own
message traces, exactly what each PBX received, and checks the pool is back at zero.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.gateway.normalise import ProxyNormaliser
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.standalone import SipServer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"
A_HOST, B_HOST = "127.0.0.2", "127.0.0.3"


def free_udp_port(host: str) -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def site(port: int, uas_port: int) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [2], "prefixes": [f"{A_HOST}/32"],
             "domains": ["site-a.example"], "profile": "pbx-uk"},
            {"name": "site-b", "edge": "s2", "access_ports": [2], "prefixes": [f"{B_HOST}/32"],
             "domains": ["site-b.example"], "profile": "pbx-rpid"}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 1000}],
        "codecs": {"allowed": ["pcmu", "pcma", "g729"]},
        "sip": {"listen": f"127.0.0.1:{port}", "routes": {"site-b.example": f"{B_HOST}:{uas_port}"},
                "transports": ["udp"]},
        "profiles": {
            "pbx-uk": {"identity": "pai",
                       "numbers": {"country_code": 44, "national_prefix": "0", "international_prefix": "00",
                                   "form": "national"}},
            "pbx-rpid": {"identity": "rpid", "strip_topology": True,
                         "numbers": {"country_code": 1, "national_prefix": "1", "international_prefix": "011",
                                     "form": "e164"},
                         "headers": {"outbound": [{"action": "add", "header": "X-Gateway", "value": "mam"}]},
                         "sdp": {"codecs": ["pcma", "pcmu", "telephone-event"]}},
        },
    }


def received(log: Path, first_line: str) -> str:
    """The first message SIPp logged as received whose start line begins with ``first_line``."""
    text = log.read_text(errors="replace")
    for block in re.split(r"-{10,} [^\n]*\n", text):
        body = block.strip()
        if body.startswith("UDP message received"):
            message = body.split("\n", 1)[1].lstrip()
            if message.startswith(first_line):
                return message
    raise AssertionError(f"no received {first_line!r} in {log}:\n{text[-3000:]}")


class Lab:
    """The proxy (admission in this process) with normalisers, SIPp PBXs on .2 (a) and .3 (b)."""

    def __init__(self, tmp_path: Path, document: dict[str, Any], port: int) -> None:
        self.tmp_path = tmp_path
        config = parse_config(document)
        self.service = MamService(build_manager(config))
        self.proxy = SipProxy(ProxyConfig.from_sip_config(config.sip), self.service, HashIds(b"gateway"))
        self.proxy.normaliser = ProxyNormaliser.for_config(config.gateway, config.topology.communities)
        self.server = SipServer(self.proxy, ("udp",), bind_host="127.0.0.1")
        self.port = port
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.server.stop())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(5)

    def uas(self, scenario: str, uas_port: int) -> subprocess.Popen[bytes]:
        """site-b's SIPp PBX, in the background, logging what it received to uas.log."""
        proc = subprocess.Popen(["sipp", "-sf", str(SCENARIOS / scenario), "-i", B_HOST, "-p", str(uas_port),
                                 "-t", "u1", "-timeout", "30s", "-trace_msg",
                                 "-message_file", str(self.tmp_path / "uas.log"), "-nostdin", "-bg"],
                                cwd=self.tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        return proc

    def uac(self, scenario: str) -> None:
        """One call from site-a's SIPp PBX through the proxy (uac.log); it must end without error."""
        done = subprocess.run(["sipp", "-sf", str(SCENARIOS / scenario), "-i", A_HOST,
                               "-p", str(free_udp_port(A_HOST)), "-t", "u1", f"127.0.0.1:{self.port}", "-m", "1",
                               "-timeout", "20s", "-timeout_error", "-trace_msg",
                               "-message_file", str(self.tmp_path / "uac.log"), "-nostdin"],
                              cwd=self.tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=40)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]

    def call(self, uac: str, uas: str, uas_port: int) -> tuple[str, str]:
        """One call; the INVITE the UAS received and the 200 the UAC received."""
        proc = self.uas(uas, uas_port)
        try:
            self.uac(uac)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.service.read(lambda m: len(m.calls())):
                time.sleep(0.05)
            assert self.service.read(lambda m: (len(m.calls()), m.used_kbps("a-b"))) == (0, 0)
            return received(self.tmp_path / "uas.log", "INVITE "), received(self.tmp_path / "uac.log", "SIP/2.0 200")
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def call_between(tmp_path: Path, profiles: tuple[str, str], uac: str, uas: str,
                 defined: dict[str, Any] | None = None) -> tuple[str, str, Lab]:
    """One call from site-a to site-b with these profiles (``defined``: profiles to (re)define)."""
    port, uas_port = free_udp_port("127.0.0.1"), free_udp_port(B_HOST)
    document = site(port, uas_port)
    document["communities"][0]["profile"], document["communities"][1]["profile"] = profiles
    document["profiles"].update(defined or {})
    lab = Lab(tmp_path, document, port)
    try:
        invite, ok = lab.call(uac, uas, uas_port)
    finally:
        lab.close()
    return invite, ok, lab


def test_vendor_pair_cisco_cucm_calls_asterisk_with_the_builtin_profiles(tmp_path: Path) -> None:
    invite, ok, _ = call_between(tmp_path, ("cisco-cucm", "asterisk"), "uac_cucm.xml", "uas_asterisk.xml")
    # what Asterisk (sendrpid=pai) received from Cisco UCM: PAI, no RPID, no Cisco-Guid
    assert '\nP-Asserted-Identity: "Alice" <sip:02071230000@site-a.example>' in invite
    assert "Remote-Party-ID" not in invite and "Remote-Party-Id" not in invite and "Cisco-Guid" not in invite
    assert "\nUser-Agent: Cisco-CUCM11.5" in invite          # asterisk's profile strips nothing
    assert invite.startswith("INVITE sip:02079460000@site-b.example SIP/2.0")    # no numbering plan: as dialled
    # what Cisco UCM received from Asterisk: Remote-Party-ID for the called party, privacy kept, no Server
    assert re.search(r'^Remote-Party-ID: "Bob" <sip:\+442079460000@site-b\.example>;party=called;screen=yes;'
                     r'privacy=full\r?$', ok, re.M), ok
    assert "P-Asserted-Identity" not in ok and "Server:" not in ok


def test_profiles_rewrite_numbers_identity_headers_and_sdp_between_two_pbxs(tmp_path: Path) -> None:
    port, uas_port = free_udp_port("127.0.0.1"), free_udp_port(B_HOST)
    config = parse_config(site(port, uas_port))
    service = MamService(build_manager(config))
    proxy = SipProxy(ProxyConfig.from_sip_config(config.sip), service, HashIds(b"gateway"))
    proxy.normaliser = ProxyNormaliser.for_config(config.gateway, config.topology.communities)
    server = SipServer(proxy, ("udp",), bind_host="127.0.0.1")
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    uas = subprocess.Popen(["sipp", "-sf", str(SCENARIOS / "uas_answer.xml"), "-i", B_HOST, "-p", str(uas_port),
                            "-t", "u1", "-timeout", "30s", "-trace_msg", "-message_file", str(tmp_path / "uas.log"),
                            "-nostdin", "-bg"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        uac = subprocess.run(["sipp", "-sf", str(SCENARIOS / "uac_profile.xml"), "-i", A_HOST,
                              "-p", str(free_udp_port(A_HOST)), "-t", "u1", f"127.0.0.1:{port}", "-m", "1",
                              "-timeout", "20s", "-timeout_error", "-trace_msg",
                              "-message_file", str(tmp_path / "uac.log"), "-nostdin"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=40)
        assert uac.returncode == 0, uac.stderr.decode(errors="replace")[-2000:]
        invite = received(tmp_path / "uas.log", "INVITE ")
        assert invite.startswith("INVITE sip:+442079460000@site-b.example SIP/2.0")
        assert re.search(r'^From: "Alice" <sip:\+442071230000@site-a\.example>;tag=', invite, re.M)
        assert '\nRemote-Party-ID: "Alice" <sip:+442071230000@site-a.example>;party=calling;screen=yes;privacy=off' \
            in invite
        assert "P-Asserted-Identity" not in invite
        assert "User-Agent" not in invite and "X-Internal-Trunk" not in invite
        assert "\nX-Gateway: mam" in invite
        assert re.search(r"^m=audio \d+ RTP/AVP 8 0 101\r?$", invite, re.M), invite
        assert "G729" not in invite
        ok = received(tmp_path / "uac.log", "SIP/2.0 200")
        assert re.search(r"^To: <sip:02079460000@site-b\.example>;tag=", ok, re.M), ok    # back to national
        assert re.search(r"^m=audio \d+ RTP/AVP 8\r?$", ok, re.M)                         # PCMA answered
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and service.read(lambda m: len(m.calls())):
            time.sleep(0.05)
        assert service.read(lambda m: (len(m.calls()), m.used_kbps("a-b"))) == (0, 0)
        stats = proxy.stats
        assert stats.admitted == 1 and stats.released == 1 and stats.internal_errors == 0
    finally:
        if uas.poll() is None:
            uas.terminate()
            uas.wait(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


# --- session timers and 100rel (RFC 4028, RFC 3262) as each PBX supports them --------------------

NEITHER = {"session_timers": False, "reliable_provisional": False}      # a PBX without timers or 100rel


def test_a_pbx_without_timers_gets_no_timer_tag_and_the_caller_is_made_the_refresher(tmp_path: Path) -> None:
    invite, ok, lab = call_between(tmp_path, ("generic", "pbx-rpid"), "uac_timers.xml", "uas_answer.xml",
                                   {"pbx-rpid": NEITHER})
    stats = lab.proxy.stats
    assert stats.admitted == 1 and stats.released == 1 and stats.internal_errors == 0
    # what site-b's PBX received: no option tag it lacks, nothing it must Require; the interval stays
    assert re.search(r"^Supported: replaces\r?$", invite, re.M), invite
    assert not re.search(r"^Require:", invite, re.M) and "timer," not in invite and "100rel" not in invite
    assert re.search(r"^Session-Expires: 1800;refresher=uac\r?$", invite, re.M), invite
    # what site-a's PBX received: its PBX's 2xx had no Session-Expires; the proxy made the caller refresh
    assert re.search(r"^Session-Expires: 1800;refresher=uac\r?$", ok, re.M), ok
    assert re.search(r"^Require: timer\r?$", ok, re.M), ok


def test_require_100rel_toward_a_pbx_without_prack_is_answered_420_by_the_proxy(tmp_path: Path) -> None:
    port, uas_port = free_udp_port("127.0.0.1"), free_udp_port(B_HOST)
    document = site(port, uas_port)
    document["communities"][0]["profile"] = "generic"
    document["profiles"]["pbx-rpid"] = NEITHER
    lab = Lab(tmp_path, document, port)
    uas = lab.uas("uas_answer.xml", uas_port)
    try:
        lab.uac("uac_100rel.xml")
        refused = received(tmp_path / "uac.log", "SIP/2.0 420")
        assert re.search(r"^Unsupported: 100rel\r?$", refused, re.M), refused
        time.sleep(0.5)                                   # the ACK, absorbed by the proxy
        uas_log = tmp_path / "uas.log"
        assert not uas_log.exists() or "INVITE sip:" not in uas_log.read_text(errors="replace")
        assert lab.service.read(lambda m: (len(m.calls()), m.used_kbps("a-b"))) == (0, 0)
        stats = lab.proxy.stats
        assert stats.admitted == 0 and stats.internal_errors == 0
    finally:
        if uas.poll() is None:
            uas.terminate()
            uas.wait(5)
        lab.close()


def test_a_caller_pbx_without_timers_is_not_offered_as_the_refresher(tmp_path: Path) -> None:
    """The other direction: site-a's PBX lists timer and 100rel but its profile says it does
    neither; site-b (generic) receives neither tag, so a UAS with timers would refresh itself."""
    invite, ok, _ = call_between(tmp_path, ("pbx-uk", "generic"), "uac_timers.xml", "uas_answer.xml",
                                 {"pbx-uk": NEITHER})
    assert re.search(r"^Supported: replaces\r?$", invite, re.M), invite
    assert not re.search(r"^Require:", invite, re.M) and "100rel" not in invite
    assert re.search(r"^Session-Expires: 1800\r?$", invite, re.M), invite     # refresher=uac gone: not it
    assert not re.search(r"^Session-Expires:", ok, re.M), ok       # site-b generic: nothing inserted
