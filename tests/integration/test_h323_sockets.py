"""The standalone gatekeeper on real sockets with simulated endpoints; tshark decodes the wire.

Two phones register, call through the gatekeeper (gatekeeper-routed), the pool fills (ARJ,
and ReleaseComplete cause 34 for a Setup without ARQ), every release path returns the
pool to exactly 0, and tshark finds no malformed frame in anything either side sent.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import h323sim as sim
import pytest
from h323lab import Capture, GatekeeperProcess, capture_available, tshark, tshark_summary

pytestmark = pytest.mark.integration


@pytest.fixture
def gk(tmp_path: Path) -> Iterator[GatekeeperProcess]:
    process = GatekeeperProcess(tmp_path, pool_kbps=200)          # two G.711 calls (91 kbit/s each)
    try:
        yield process
    finally:
        process.stop()


def _phones(gk: GatekeeperProcess, register: bool = True) -> tuple[sim.Phone, sim.Phone]:
    a = sim.Phone("1001", gk.ras, rtp_port=41000)
    b = sim.Phone("2001", gk.ras, rtp_port=42000)
    if register:
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
    return a, b


def _connected(a: sim.Phone, b: sim.Phone, number: str = "2001") -> tuple[sim.OutgoingCall, sim.IncomingCall]:
    out = a.place(number)
    assert out.admission[0] == "admissionConfirm", out.admission
    first = out.read()
    assert first is not None and first["type"] == sim.CALL_PROCEEDING
    incoming = b.accept()
    assert incoming.admit()[0] == "admissionConfirm"             # the callee's ARQ: same call, no second admission
    incoming.answer()
    assert [m["type"] for m in (out.read(), out.read())] == [sim.ALERTING, sim.CONNECT]
    return out, incoming


def _until_pool(gk: GatekeeperProcess, kbps: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while gk.pool() != kbps:
        if time.monotonic() > deadline:
            raise AssertionError(f"pool {gk.pool()} kbit/s, expected {kbps}: {gk.stats()} {gk.log_text()}")
        time.sleep(0.05)


@pytest.mark.skipif(capture_available() is not None, reason=str(capture_available()))
def test_calls_fill_the_pool_every_release_returns_it_and_tshark_decodes_all(gk: GatekeeperProcess,
                                                                             tmp_path: Path) -> None:
    a, b = _phones(gk, register=False)
    pcap = tmp_path / "h323.pcap"
    capture = Capture(pcap, [gk.ras_port, gk.call_port, b.signal_address[1], a.ras_address[1],
                             b.ras_address[1]])
    try:
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
        # 1. two calls fill the 200 kbit/s pool; the third gets ARJ resourceUnavailable
        first, first_in = _connected(a, b)
        second, second_in = _connected(a, b)
        assert gk.pool() == 182
        refused = a.place("2001")
        assert refused.admission[0] == "admissionReject"
        assert refused.admission[1]["rejectReason"][0] == "resourceUnavailable"
        # 2. a Setup without ARQ (an endpoint skipping RAS) is refused with cause 34
        with socket.create_connection(("127.0.0.1", gk.call_port), timeout=3) as raw:
            guid = sim.new_guid()
            raw.sendall(sim.q931(sim.SETUP, 77, False, sim.setup_body(
                guid, [("dialledDigits", "2001")], [("dialledDigits", "1001")], [], a.signal_address)))
            answers = [sim.read_tpkt(raw), sim.read_tpkt(raw)]
            assert [m["type"] for m in answers if m] == [sim.CALL_PROCEEDING, sim.RELEASE_COMPLETE]
            assert answers[1] is not None and answers[1]["cause"] == 34
        # 3. release paths: caller hangs up; callee hangs up
        first.hang_up()
        assert first_in.read() is not None
        _until_pool(gk, 91)
        second_in.hang_up()
        released = second.until(sim.RELEASE_COMPLETE)
        assert released is not None and released["cause"] == 16
        _until_pool(gk, 0)
        # 4. DRQ ends a connected call; 5. the caller's connection drops
        third, third_in = _connected(a, b)
        assert third.disengage()[0] == "disengageConfirm"
        assert third_in.until(sim.RELEASE_COMPLETE) is not None
        _until_pool(gk, 0)
        fourth, fourth_in = _connected(a, b)
        assert fourth.sock is not None
        fourth.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        fourth.close()                                           # RST
        end = fourth_in.until(sim.RELEASE_COMPLETE)
        assert end is not None and end["cause"] == 41
        _until_pool(gk, 0)
        for call in (first, second, third, fourth, refused):
            call.close()
        for call in (first_in, second_in, third_in, fourth_in):
            call.close()
    finally:
        capture.stop()
        a.close()
        b.close()
    stats = gk.stats()
    assert stats["admitted_calls"] == 0 and stats["active_calls"] == 0
    assert not any(k.startswith("internal") for k in stats["dropped"]), stats
    decoded = tshark(pcap, gk.ras_port)
    assert "Malformed" not in decoded, [l for l in decoded.splitlines() if "Malformed" in l][:5]
    lines = tshark_summary(pcap, gk.ras_port)
    seen = " ".join(lines)
    for message in ("RAS: registrationRequest", "RAS: registrationConfirm", "RAS: admissionRequest",
                    "RAS: admissionConfirm", "RAS: admissionReject", "RAS: disengageRequest", "RAS: disengageConfirm",
                    "CS: setup", "CS: callProceeding", "CS: alerting", "CS: connect", "CS: releaseComplete"):
        assert message in seen, (message, lines[:40])


def test_keepalive_lrq_and_gatekeeper_discovery(gk: GatekeeperProcess) -> None:
    a, b = _phones(gk)
    try:
        assert a.request(sim.grq(a.next_seq(), a.ras_address))[0] == "gatekeeperConfirm"
        keep = a.request(sim.rrq(a.next_seq(), a.ras_address, a.signal_address, [], keep_alive_id=a.endpoint_id))
        assert keep[0] == "registrationConfirm"
        assert a.request(sim.lrq(a.next_seq(), [("dialledDigits", "2001")], a.ras_address))[0] == "locationConfirm"
        assert b.request(sim.urq(b.next_seq(), b.endpoint_id or "", b.signal_address))[0] == "unregistrationConfirm"
        assert a.request(sim.lrq(a.next_seq(), [("dialledDigits", "2001")], a.ras_address))[0] == "locationReject"
    finally:
        a.close()
        b.close()
