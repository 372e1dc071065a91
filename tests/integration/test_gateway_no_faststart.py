"""The gateway process without fastStart, on real sockets: the H.323 endpoint simulator speaks
H.245 tunnelled in H.225.0 (``TunnelledH245``), SIPp does a late offer (INVITE without SDP, or
a 200 offering to an INVITE without SDP). Both directions answered with DTMF and hung up from
either side, a busy callee, and a capture whose tunnelled H.245 tshark decodes. The pool
is back at 0 after each call (the rig is test_gateway_interworking.py's).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import h323sim as sim
from h323lab import Capture, capture_available
from test_gateway_interworking import (H_HOST, H_RTP, S_HOST, Lab, lab, sipp_uac,  # noqa: F401 - lab: a fixture
                                       tshark_decode)

pytestmark = [pytest.mark.integration]


def h323_caller(lab: Lab, number: str = "442079460000") -> tuple[socket.socket, bytes, int, sim.TunnelledH245]:
    """A Setup without fastStart: h245Tunnelling, our TerminalCapabilitySet and MSD tunnelled."""
    guid, crv = sim.new_guid(), 654
    peer = sim.TunnelledH245(H_RTP)
    sock = socket.create_connection(("127.0.0.1", lab.h323_port), timeout=5, source_address=(H_HOST, 0))
    sock.sendall(sim.q931(sim.SETUP, crv, False, sim.setup_body(guid, [("dialledDigits", number)],
                                                               [("dialledDigits", "331234")], [], (H_HOST, 1720)),
                          called=number, extra_pdu={"h245Tunnelling": True, "h245Control": peer.opening()}))
    return sock, guid, crv, peer


def connected(peer: sim.TunnelledH245):
    return lambda seen: peer.peer_media is not None and any(m["type"] == sim.CONNECT for m in seen)


def h323_to_sip_call(lab: Lab) -> None:
    lab.start_uas("uas_late_offer.xml")
    sock, guid, crv, peer = h323_caller(lab)
    seen = sim.converse(sock, crv, False, guid, peer, connected(peer))
    assert [m["type"] for m in seen][:1] == [sim.CALL_PROCEEDING] and sim.ALERTING in [m["type"] for m in seen]
    assert peer.peer_media is not None and peer.peer_media[0] == S_HOST           # SIPp's offer, via our OLCAck
    assert peer.peer_codecs == ["g711Ulaw64k"] and peer.peer_te_pt == 101         # our TCS: the 200's offer
    busy = lab.stats()
    assert busy["admitted_calls"] == 1 and busy["pools_kbps"]["h-s"] > 0
    uii = sim.enc("h245", ("indication", ("userInput", ("signal", {"signalType": "5", "duration": 160}))))
    sock.sendall(sim.facility(crv, False, guid, [uii]))
    time.sleep(0.3)
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0                      # SIPp: ACK with the answer, INFO, BYE
    sock.close()


def test_h323_without_faststart_to_a_sip_late_offer_dtmf_then_h323_hangs_up(lab: Lab) -> None:
    h323_to_sip_call(lab)
    log = (lab.workdir / "uas.log").read_text()
    invite = log[log.index("INVITE sip:"):]
    invite = invite[:invite.index("\n\n") if "\n\n" in invite else len(invite)]
    assert re.search(r"Content-Length: *0", invite) and "application/sdp" not in invite
    ack = log[log.index("ACK sip:"):]
    assert f"c=IN IP4 {H_HOST}" in ack and "m=audio 40000 RTP/AVP 0" in ack
    assert "Signal=5" in log and "Reason: Q.850;cause=16" in log
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["attached"] == 1
    assert stats["late-offer-answered"] == 1 and stats["internal_errors"] == 0


def test_h323_without_faststart_to_a_busy_sip_callee_gets_cause_17(lab: Lab) -> None:
    lab.start_uas("uas_busy_txn.xml")
    sock, guid, crv, peer = h323_caller(lab)
    seen = sim.converse(sock, crv, False, guid, peer, lambda s: s and s[-1]["type"] == sim.RELEASE_COMPLETE)
    assert seen and (seen[-1]["type"], seen[-1]["cause"]) == (sim.RELEASE_COMPLETE, 17)
    assert lab.wait_uas() == 0
    sock.close()
    stats = lab.settle()
    assert stats["pools_kbps"]["h-s"] == 0 and stats["released"] == 1


def early_media_call(lab: Lab) -> list[dict[str, Any]]:
    """H.323 caller without fastStart -> SIPp offering in a reliable 183: Progress (PI 8), the
    H.245 exchange, the PRACK's answer, then the 200, a digit, hang-up from the H.323 side."""
    lab.start_uas("uas_early_media.xml")
    sock, guid, crv, peer = h323_caller(lab)
    seen = sim.converse(sock, crv, False, guid, peer, lambda s: peer.peer_media is not None)
    progress = [m for m in seen if m["type"] == sim.PROGRESS]
    assert progress and progress[0]["progress"] == 8, seen           # in-band information available
    assert peer.peer_media[0] == S_HOST and peer.peer_codecs == ["g711Ulaw64k"]   # early: before any Connect
    assert sim.CONNECT not in [m["type"] for m in seen]
    deadline = time.monotonic() + 3
    while (early := lab.stats()).get("early-media-answered") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert early["attached"] == 1 and early["admitted_calls"] == 1 and early["early-media-answered"] == 1
    seen += sim.converse(sock, crv, False, guid, peer, lambda s: any(m["type"] == sim.CONNECT for m in s))
    uii = sim.enc("h245", ("indication", ("userInput", ("signal", {"signalType": "5", "duration": 160}))))
    sock.sendall(sim.facility(crv, False, guid, [uii]))
    time.sleep(0.3)
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0                      # SIPp: Supported 100rel, PRACK with the answer, ACK, BYE
    sock.close()
    return seen


@pytest.mark.skipif(capture_available() is not None, reason=str(capture_available()))
def test_h323_without_faststart_early_media_from_a_reliable_183_answered_in_the_prack(lab: Lab,
                                                                                      tmp_path: Path) -> None:
    pcap = tmp_path / "early.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.h323_port, lab.uas_port])
    try:
        early_media_call(lab)
    finally:
        capture.stop()
    log = (lab.workdir / "uas.log").read_text()
    prack = log[log.index("PRACK sip:"):]
    prack = prack[:prack.index("\nACK sip:") if "\nACK sip:" in prack else len(prack)]
    assert f"c=IN IP4 {H_HOST}" in prack and "m=audio 40000 RTP/AVP 0" in prack
    ack = log[log.index("\nACK sip:") + 1:]
    ack = ack[:ack.index("\n\n") if "\n\n" in ack else len(ack)]
    assert re.search(r"Content-Length: *0", ack) and "application/sdp" not in ack   # offer/answer was in the PRACK
    assert "Signal=5" in log and "Reason: Q.850;cause=16" in log
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["attached"] == 1
    assert stats["early-media-connected"] == 1 and stats["internal_errors"] == 0
    text, summary = tshark_decode(lab, pcap)
    assert "Progress description: In-band information or an appropriate pattern is now available (0x08)" in text
    for name in ("terminalCapabilitySet", "openLogicalChannel", "openLogicalChannelAck", "userInput"):
        assert name in text, name
    assert "CS: progress" in summary, summary
    for sip in ("INVITE", "183 Session Progress", "PRACK", "200 OK", "ACK", "BYE"):
        assert sip in summary, (sip, summary)


def test_h323_without_faststart_unreliable_183_offer_is_progress_1_answered_in_the_ack(lab: Lab) -> None:
    """SIPp offers in an unreliable 183: Progress with indicator 1 (no early media can flow),
    no PRACK; the 200 repeats the offer and the ACK answers it."""
    lab.start_uas("uas_unreliable_183.xml")
    sock, guid, crv, peer = h323_caller(lab)
    seen = sim.converse(sock, crv, False, guid, peer, connected(peer))
    kinds = [(m["type"], m["progress"]) for m in seen]
    assert (sim.PROGRESS, 1) in kinds and kinds.index((sim.PROGRESS, 1)) < [k for k, _ in kinds].index(sim.CONNECT)
    sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
    assert lab.wait_uas() == 0
    sock.close()
    log = (lab.workdir / "uas.log").read_text()
    assert "PRACK sip:" not in log and "Supported: 100rel" in log         # supported, not required by SIPp
    ack = log[log.index("\nACK sip:"):]
    assert f"c=IN IP4 {H_HOST}" in ack and "m=audio 40000 RTP/AVP 0" in ack
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["attached"] == 1
    assert stats["early-offer-unreliable"] == 1 and stats["internal_errors"] == 0


def serve_early_media_callee(lab: Lab, served: dict[str, Any]) -> None:
    """The H.323 PBX ignores the Setup's fastStart: Alerting with progress indicator 8 and its
    tunnelled H.245; once both channels are open (early media), Connect; then until the end."""
    lab.phone.settimeout(5)
    conn, _ = lab.phone.accept()
    setup = sim.read_tpkt(conn, 5)
    assert setup is not None and setup["type"] == sim.SETUP
    guid, crv = sim.body_of(setup)[1]["callIdentifier"]["guid"], setup["crv"]
    peer = sim.TunnelledH245(H_RTP, te_pt=101)
    conn.sendall(sim.q931(sim.ALERTING, crv, True, sim.answer_body("alerting", guid), progress=8,
                          extra_pdu={"h245Tunnelling": True, "h245Control": peer.opening()}))
    seen = sim.converse(conn, crv, True, guid, peer, lambda s: peer.peer_media is not None and peer.opened)
    time.sleep(0.3)                                           # early media: the 183 is out before the answer
    conn.sendall(sim.q931(sim.CONNECT, crv, True, sim.answer_body("connect", guid), extra_pdu={"h245Tunnelling": True}))
    seen += sim.converse(conn, crv, True, guid, peer, lambda s: bool(s) and s[-1]["type"] == sim.RELEASE_COMPLETE, 10)
    served.update(setup=setup, conn=conn, h245=peer, seen=seen)


def test_sip_offer_to_an_h323_callee_without_faststart_early_media_183_then_200(lab: Lab, tmp_path: Path) -> None:
    """SIPp offers; the simulator refuses fastStart and alerts with progress indicator 8: SIPp gets
    a 183 with the answer (no 180), then a 200 with the same; tshark decodes the indicator."""
    pcap = tmp_path / "early-s2h.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.phone.getsockname()[1]]) if capture_available() is None else None
    served: dict[str, Any] = {}
    thread = threading.Thread(target=serve_early_media_callee, args=(lab, served))
    thread.start()
    try:
        result = sipp_uac(lab, "uac_early_media.xml")
        thread.join(15)
    finally:
        if capture is not None:
            capture.stop()
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    served["conn"].close()
    assert "fastStart" in sim.body_of(served["setup"])[1]
    peer: sim.TunnelledH245 = served["h245"]
    assert peer.peer_media is not None and peer.peer_media[0] == S_HOST       # the INVITE's offer, via our OLCAck
    assert served["seen"][-1]["type"] == sim.RELEASE_COMPLETE
    log = (lab.workdir / "uac.log").read_text()
    early = log[log.index("SIP/2.0 183"):]
    ok = early[early.index("SIP/2.0 200"):]
    sdp = early[early.index("v=0"):early.index("SIP/2.0 200")].split("\n\n")[0].strip()
    assert f"c=IN IP4 {H_HOST}" in sdp and "m=audio 40000 RTP/AVP 0 101" in sdp
    assert sdp in ok and "SIP/2.0 180" not in log                          # the 200 repeats the answer
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["attached"] == 1
    assert stats["faststart-refused"] == 1 and stats["early-media-sent"] == 1 and stats["internal_errors"] == 0
    if capture is not None:
        text, summary = tshark_decode(lab, pcap)
        assert "Progress description: In-band information or an appropriate pattern is now available" in text
        for name in ("fastStart", "terminalCapabilitySet", "openLogicalChannelAck", "endSessionCommand"):
            assert name in text, name
        assert "183 Session Progress" in summary and "180 Ringing" not in summary


def serve_h323_callee(lab: Lab, served: dict[str, Any]) -> None:
    """The H.323 PBX without fastStart: answers the Setup's H.245, rings, connects, and runs
    its tunnelled H.245 until the gateway's ReleaseComplete."""
    lab.phone.settimeout(5)
    conn, _ = lab.phone.accept()
    setup = sim.read_tpkt(conn, 5)
    assert setup is not None and setup["type"] == sim.SETUP
    guid = sim.body_of(setup)[1]["callIdentifier"]["guid"]
    peer = sim.answer_tunnelled(conn, setup, H_RTP)
    served.update(setup=setup, conn=conn, h245=peer, seen=sim.converse(
        conn, setup["crv"], True, guid, peer, lambda s: bool(s) and s[-1]["type"] == sim.RELEASE_COMPLETE, 10))


def sip_to_h323_call(lab: Lab, scenario: str = "uac_late_offer.xml") -> dict[str, Any]:
    served: dict[str, Any] = {}
    thread = threading.Thread(target=serve_h323_callee, args=(lab, served))
    thread.start()
    result = sipp_uac(lab, scenario)
    thread.join(15)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    served["conn"].close()
    return served


def test_sip_late_offer_to_h323_without_faststart_dtmf_then_sip_hangs_up(lab: Lab) -> None:
    served = sip_to_h323_call(lab)
    setup = served["setup"]
    assert "fastStart" not in sim.body_of(setup)[1] and setup["uu"]["h323-uu-pdu"]["h245Tunnelling"] is True
    peer: sim.TunnelledH245 = served["h245"]
    assert peer.peer_media is not None and peer.peer_media[0] == S_HOST      # the ACK's answer, via our OLCAck
    assert peer.digits == ["5"]                                               # SIPp's INFO
    release = served["seen"][-1]
    assert (release["type"], release["cause"]) == (sim.RELEASE_COMPLETE, 16)
    assert "endSessionCommand" in [sim.dec("h245", c)[1][0] for c in sim.controls_of(release)]
    received = (lab.workdir / "uac.log").read_text()
    assert f"c=IN IP4 {H_HOST}" in received and "m=audio 40000 RTP/AVP 0" in received
    stats = lab.settle()
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0)
    assert stats["admitted"] == 1 and stats["released"] == 1 and stats["attached"] == 1
    assert stats["dtmf-sip-to-h323"] == 1 and stats["internal_errors"] == 0


@pytest.mark.skipif(capture_available() is not None, reason=str(capture_available()))
def test_tshark_decodes_the_tunnelled_h245_of_both_directions(lab: Lab, tmp_path: Path) -> None:
    pcap = tmp_path / "h245.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.h323_port, lab.uas_port, lab.phone.getsockname()[1]])
    try:
        h323_to_sip_call(lab)
        sip_to_h323_call(lab)
    finally:
        capture.stop()
    text, summary = tshark_decode(lab, pcap)
    for name in ("terminalCapabilitySet", "terminalCapabilitySetAck", "masterSlaveDetermination",
                 "masterSlaveDeterminationAck", "openLogicalChannel", "openLogicalChannelAck",
                 "endSessionCommand", "userInput", "receiveRTPAudioTelephonyEventCapability"):
        assert name in text, name
    assert text.count("h245Tunnelling: True") >= 8
    for kind in ("setup", "alerting", "connect", "facility", "releaseComplete"):
        assert sum(f"CS: {kind}" in line for line in summary.splitlines()) >= 2, (kind, summary)
    for sip in ("INVITE", "180 Ringing", "200 OK", "ACK", "INFO", "BYE"):
        assert sip in summary, (sip, summary)
    assert lab.settle()["pools_kbps"]["h-s"] == 0


def test_a_registered_phone_without_faststart_calls_sip_through_the_mam_gatekeeper(tmp_path: Path) -> None:
    """Phone.place(fast_start=False): ARQ/ACF at the MAM gatekeeper, the Setup (tunnelled H.245,
    no fastStart) relayed to the gateway, a late offer to SIPp; the gatekeeper holds the one
    allocation and it is back at 0 after the phone hangs up."""
    lab = Lab(tmp_path, gatekeeper=True)
    phone = sim.Phone("331234", ("127.0.0.1", lab.ras_port), host=H_HOST, rtp_port=H_RTP[1])
    try:
        lab.start_uas("uas_late_offer.xml")
        assert phone.register()[0] == "registrationConfirm"
        call = phone.place("442079460000", fast_start=False)
        assert call.admission[0] == "admissionConfirm" and call.h245 is not None
        peer = call.h245
        seen = call.converse(connected(peer))
        assert sim.CONNECT in [m["type"] for m in seen], seen
        assert peer.peer_media is not None and peer.peer_media[0] == S_HOST
        gw = lab.stats()
        assert gw["admitted_calls"] == 0 and gw.get("admitted-by-front-end") == 1
        call.hang_up()
        assert lab.wait_uas() == 0
        call.close()
        gk = lab.gk_settle()
        assert gk["admitted_calls"] == 0 and sum(gk["pools_kbps"].values()) == 0
        assert f"c=IN IP4 {H_HOST}" in (tmp_path / "uas.log").read_text()
    finally:
        phone.close()
        lab.close()


def test_a_sip_reinvite_to_t38_switches_the_h323_channels(lab: Lab, tmp_path: Path) -> None:
    """SIPp (late offer) calls the H.323 PBX, then re-INVITEs to T.38: the simulator gets a
    requestMode, switches to a T.38 channel, and SIPp's 200 answers m=image at its address;
    tshark decodes the requestMode and the T.38 channels."""
    pcap = tmp_path / "t38.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.uas_port, lab.phone.getsockname()[1]])
    try:
        served = sip_to_h323_call(lab, "uac_t38.xml")
    finally:
        capture.stop()
    peer: sim.TunnelledH245 = served["h245"]
    assert "requestMode" in peer.seen and peer.peer_t38_media is not None and peer.peer_t38_media[0] == S_HOST
    assert peer.peer_t38_media[1] == 6010                                   # the re-INVITE's image port
    received = (lab.workdir / "uac.log").read_text()
    assert f"m=image {H_RTP[1] + 10} udptl t38" in received
    stats = lab.settle()
    assert stats["t38-switched"] == 1 and stats["admitted"] == 1 and stats["released"] == 1
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0) and stats["internal_errors"] == 0
    text, _ = tshark_decode(lab, pcap)
    for name in ("requestMode", "requestModeAck", "t38fax", "closeLogicalChannel"):
        assert name in text, name


@pytest.mark.skipif(capture_available() is not None, reason=str(capture_available()))
def test_h323_caller_with_h245_on_its_own_connection_to_a_sip_late_offer(lab: Lab, tmp_path: Path) -> None:
    """No tunnelling: the Setup gives an h245Address; the gateway connects to it and runs H.245
    there (TPKT, no Q.931); tshark decodes it on that connection."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((H_HOST, 0))
    listener.listen(1)
    h245_port = listener.getsockname()[1]
    pcap = tmp_path / "h245-tcp.pcap"
    capture = Capture(pcap, [lab.sip_port, lab.h323_port, lab.uas_port, h245_port])
    peer = sim.TunnelledH245(H_RTP)
    served: dict[str, Any] = {}

    def serve() -> None:
        listener.settimeout(5)
        conn, _ = listener.accept()
        served["conn"] = conn
        sim.serve_h245(conn, peer, lambda: False, timeout=10)
    thread = threading.Thread(target=serve)
    try:
        lab.start_uas("uas_late_offer.xml")
        thread.start()
        guid, crv = sim.new_guid(), 655
        sock = socket.create_connection(("127.0.0.1", lab.h323_port), timeout=5, source_address=(H_HOST, 0))
        body = sim.setup_body(guid, [("dialledDigits", "442079460000")], [("dialledDigits", "331234")], [],
                              (H_HOST, 1720))
        body[1]["h245Address"] = sim.taddr(H_HOST, h245_port)
        sock.sendall(sim.q931(sim.SETUP, crv, False, body, called="442079460000",
                              extra_pdu={"h245Tunnelling": False}))
        while (message := sim.read_tpkt(sock, 5)) is not None and message["type"] != sim.CONNECT:
            pass
        assert message is not None
        deadline = time.monotonic() + 5
        while peer.peer_media is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.peer_media is not None and peer.peer_media[0] == S_HOST
        sock.sendall(sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16))
        assert lab.wait_uas() == 0
        thread.join(10)
        sock.close()
    finally:
        capture.stop()
        listener.close()
        if "conn" in served:
            served["conn"].close()
    assert "endSessionCommand" in peer.seen
    ack = (lab.workdir / "uas.log").read_text()
    assert "m=audio 40000 RTP/AVP 0" in ack[ack.index("ACK sip:"):]
    stats = lab.settle()
    assert stats["h245-connections"] == 1 and stats["admitted"] == 1 and stats["released"] == 1
    assert (stats["admitted_calls"], stats["pools_kbps"]["h-s"]) == (0, 0) and stats["internal_errors"] == 0
    text, _ = tshark_decode(lab, pcap)
    for name in ("terminalCapabilitySet", "masterSlaveDetermination", "openLogicalChannelAck", "endSessionCommand"):
        assert name in text, name
