"""Kamailio (Debian 5.6) as the SIP front end, with admission by the controller's REST API.

Real processes on free ports: the controller's REST API and admission (``benchmarks/peers/
rest_only.py``: the service and API of ``ryu-manager ryu_apps.mam_app`` without OpenFlow, so
a call's media attach is kept instead of failing for want of a switch), Kamailio running
``docs/examples/kamailio/kamailio-mam.cfg``, SIPp callers and callees (tests/sipp/*_txn.xml)
and a raw UDP caller for exact header checks. Every test ends with the pool at exactly 0.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from benchmarks.peers import kamailio as kamailio_peer
from benchmarks.peers.controller import Controller
from benchmarks.peers.kamailio import FRONT_END, Kamailio
from benchmarks.peers.procs import free_port
from benchmarks.peers.sipp import Uas, UacResult, run_uac
from netlab import strong_token

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]

PCMU_KBPS = 91           # G.711 20 ms at Ethernet level with the default tags
POOL_CALLS = 5
TOKEN = strong_token("kamailio")
DIALOG_TIMEOUT_S = 8     # a vanished caller's call ends this long after its 200 (whole-second ticks)
RETRY_AFTER_S = 7


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.controller = Controller(workdir, POOL_CALLS * PCMU_KBPS, token=TOKEN)
        self.uas_port, self.port = free_port(), free_port()
        try:
            self.kamailio = Kamailio(FRONT_END, workdir, self.port, defines={
                "MAM_HTTPCON": f'"mam=>{self.controller.url_with(TOKEN)}"',
                "NEXT_HOP": f'"sip:127.0.0.1:{self.uas_port}"', "DIALOG_TIMEOUT": DIALOG_TIMEOUT_S,
                "MAM_RETRY_AFTER": RETRY_AFTER_S})
        except Exception:
            self.controller.stop()
            raise
        self.uas: Uas | None = None

    def callee(self, scenario: str) -> None:
        if self.uas is not None:
            self.uas.stop()
        self.uas = Uas(self.workdir, self.uas_port, scenario)

    def caller(self, scenario: str, calls: int, **options: Any) -> UacResult:
        return run_uac(self.workdir, self.port, calls, scenario=scenario, **options)

    def stats(self) -> dict[str, Any]:
        return self.controller.rest("GET", "/stats")[1]

    def settle(self, timeout: float = 5.0) -> None:
        """Until the pool is back at exactly zero (releases run after the SIP messages)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.controller.pool() != (0, 0):
            time.sleep(0.1)
        assert self.controller.pool() == (0, 0), f"pool not back to zero: {self.controller.calls()}\n" \
                                                 f"{self.kamailio.log_tail()}"

    def close(self) -> None:
        if self.uas is not None:
            self.uas.stop()
        self.kamailio.stop()
        self.controller.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = kamailio_peer.available()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path_factory.mktemp("kamailio"))
    try:
        yield lab
    finally:
        lab.close()


# --- a raw caller for exact answers ----------------------------------------------------------

SDP = ("v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n")


def invite(port: int, *, caller: str = "alice@site-a.example", callee: str = "bob@site-b.example",
           body: str | None = None) -> tuple[int, str]:
    """One INVITE from a plain UDP socket: (final status, final response text); ACKs it."""
    body = SDP.format(pt=0, name="PCMU") if body is None else body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()[1]
        branch, call_id = f"z9hG4bK{uuid.uuid4().hex[:12]}", f"raw-{uuid.uuid4().hex[:12]}"
        common = (f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\nMax-Forwards: 70\r\n"
                  f"From: <sip:{caller}>;tag=raw1\r\n")
        sock.sendto((f"INVITE sip:{callee} SIP/2.0\r\n{common}To: <sip:{callee}>\r\nCall-ID: {call_id}\r\n"
                     f"CSeq: 1 INVITE\r\nContact: <sip:raw@127.0.0.1:{local}>\r\nContent-Type: application/sdp\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n{body}").encode(), ("127.0.0.1", port))
        while True:
            text = sock.recv(65535).decode(errors="replace")
            status = int(text.split(" ", 2)[1])
            if status >= 200:
                break
        to = re.search(r"^To: (.*)$", text, re.M | re.I)
        sock.sendto((f"ACK sip:{callee} SIP/2.0\r\n{common}To: {to.group(1).strip() if to else '<sip:x>'}\r\n"
                     f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
        return status, text


def header(text: str, name: str) -> str | None:
    match = re.search(rf"^{name}:\s*(.*?)\r?$", text, re.M | re.I)
    return match.group(1) if match else None


# --- tests -------------------------------------------------------------------------------------

def test_calls_admitted_until_the_pool_is_full_then_503_with_reason_and_media_attached(lab: Lab) -> None:
    lab.callee("uas_answer_txn.xml")
    before = lab.stats()
    outcome: dict[str, UacResult] = {}
    thread = threading.Thread(target=lambda: outcome.update(
        run=lab.caller("uac_call_txn.xml", 12, rate=50, hold_ms=2500, limit=12)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and lab.controller.pool() != (POOL_CALLS * PCMU_KBPS, POOL_CALLS):
            time.sleep(0.05)
        time.sleep(0.3)                                  # the 200s have gone by: media attached
        calls = lab.controller.calls()
        assert len(calls) == POOL_CALLS
        for call in calls:
            assert call["protocol"] == "sip" and call["caller_community"] == "site-a"
            assert call["caller_media"] and call["callee_media"], call   # PUT /calls/{id}/media arrived
            assert call["caller_media"]["ip"] == "127.0.0.1" and call["caller_media"] != call["callee_media"]
        status, text = invite(lab.port)                # while full: the exact refusal
        assert status == 503, text
        assert re.fullmatch(r'Q\.850;cause=34;text="pool-full: .*"', header(text, "Reason") or ""), text
        assert header(text, "Retry-After") == str(RETRY_AFTER_S), text
    finally:
        thread.join(60)
    run = outcome["run"]
    assert run.exit == 0 and run.failed == 0, run.errors
    assert run.received["10_200"] == POOL_CALLS and run.total("503") == 12 - POOL_CALLS, run.received
    lab.settle()
    after = lab.stats()
    assert after["admitted"] - before["admitted"] == POOL_CALLS
    assert after["rejected"]["pool-full"] - before["rejected"]["pool-full"] == 12 - POOL_CALLS + 1
    assert after["released"] - before["released"] == POOL_CALLS


@pytest.mark.parametrize("options, status, cause", [
    ({"body": SDP.format(pt=9, name="G722")}, 488, 65),                      # codec-not-allowed
    ({"body": "v=0\r\nm=audio oops\r\n"}, 488, 88),                          # invalid SDP
    ({"caller": "mallory@elsewhere.example"}, 403, 21),                     # caller in no community
    ({"callee": "bob@elsewhere.example"}, 404, 3),                           # callee in no community
])
def test_refusals_answer_like_the_project_proxy(lab: Lab, options: dict[str, str], status: int, cause: int) -> None:
    got, text = invite(lab.port, **options)
    assert got == status, text
    assert re.fullmatch(rf'Q\.850;cause={cause};text=".+"', header(text, "Reason") or ""), text
    assert header(text, "Retry-After") is None
    assert lab.controller.pool() == (0, 0)


def test_cancel_during_ringing_releases(lab: Lab) -> None:
    lab.callee("uas_ring.xml")
    before = lab.stats()
    run = lab.caller("uac_cancel.xml", 5, rate=20, limit=5)
    assert run.exit == 0 and run.failed == 0, run.errors
    assert run.total("487") == 5, run.received
    lab.settle()
    after = lab.stats()
    assert after["admitted"] - before["admitted"] == 5 and after["released"] - before["released"] == 5


def test_busy_callee_releases(lab: Lab) -> None:
    lab.callee("uas_busy_txn.xml")
    before = lab.stats()
    run = lab.caller("uac_call_txn.xml", 5, rate=20, limit=5)
    assert run.exit == 0 and run.failed == 0, run.errors
    assert run.total("486") == 5, run.received
    lab.settle()
    after = lab.stats()
    assert after["admitted"] - before["admitted"] == 5 and after["released"] - before["released"] == 5


def test_a_vanished_caller_is_released_by_the_dialog_timeout(lab: Lab) -> None:
    lab.callee("uas_answer_txn.xml")
    before = lab.stats()
    run = lab.caller("uac_vanish_txn.xml", 3, rate=20, limit=3)
    assert run.exit == 0 and run.failed == 0, run.errors
    assert lab.controller.pool() == (3 * PCMU_KBPS, 3)      # no BYE: the calls hold their bandwidth
    time.sleep(DIALOG_TIMEOUT_S - 4)        # a loaded machine only makes this check later: keep 4 s clear
    assert lab.controller.pool()[1] == 3, "released before the dialog timeout"
    lab.settle(DIALOG_TIMEOUT_S + 5)
    assert lab.stats()["released"] - before["released"] == 3
