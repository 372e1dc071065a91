"""T.38 fax switch-over on calls with tunnelled H.245: SIP re-INVITE (m=image udptl t38) <->
requestMode and T.38 logical channels, both ways, refusals, and fastStart calls (488)."""

from __future__ import annotations

import h323sim as sim
from test_gateway_h245 import OFFER, H2S, S2H
from test_gateway_interwork import PBX_S, S_RTP, Control, H2S as FastH2S, response, sdp, sip_out

from ryu_apps.signalling.h323.asn1 import encode_h245
from ryu_apps.signalling.h323.h245 import H245Session, ModeAnswered, ModeRequested

S_T38 = ("10.2.0.5", 50010)
T38_SDP = (f"v=0\r\no=- 1 2 IN IP4 {S_T38[0]}\r\ns=-\r\nc=IN IP4 {S_T38[0]}\r\nt=0 0\r\n"
           f"m=audio 0 RTP/AVP 0\r\nm=image {S_T38[1]} udptl t38\r\na=T38FaxVersion:0\r\n").encode()


def reinvite(to: str, from_: str, call_id: str, body: bytes, cseq: int = 30) -> bytes:
    return (f"INVITE sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKre{cseq}\r\n"
            f"From: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:pbx@10.2.0.5:5060>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def connected_s2h(control: Control) -> tuple[S2H, object]:
    call = S2H(control)
    ok = call.ring_and_connect()[0]
    call.ack(ok, sdp(*S_RTP, pts="8", names=("PCMA",)))
    return call, ok


def test_sip_reinvite_with_t38_switches_the_h323_channels_and_admission():
    control = Control()
    call, ok = connected_s2h(control)
    data = reinvite(ok.header("to"), "<sip:+442071230000@site-s.example>;tag=caller1", "s2h-1", T38_SDP)
    call.h323_after(call.gw.sip_receive(data, PBX_S, 5.0), 5.0)
    assert "requestMode" in call.peer.seen and "closeLogicalChannel" in call.peer.seen
    assert call.peer.peer_t38_media == S_T38                         # its T.38 channel acked with SIPp's address
    assert call.peer.seen.count("openLogicalChannel") == 2            # audio, then T.38: no audio reopened
    channel = call.peer.peer_t38_channel["forwardLogicalChannelParameters"]
    assert channel["dataType"][1]["application"][0] == "t38fax"
    (answer,) = [m for m in sip_out(call.out, 200) if m.cseq == (30, "INVITE")]
    body = answer.body.decode()
    assert "m=audio 0 RTP/AVP 0\r\nm=image 40010 udptl t38" in body and "c=IN IP4 10.1.0.5" in body
    assert "a=T38FaxRateManagement:transferredTCF" in body
    assert [m.codec for _, m in control.modified][-1] == "t38"
    assert [(a.port, b.port) for _, a, b in control.attached][-1] == (50010, 40010)
    assert call.gw.stats["t38-switched"] == 1 and call.gw.internal_errors == 0
    again = call.gw.sip_receive(reinvite(ok.header("to"), "<sip:+442071230000@site-s.example>;tag=caller1",
                                         "s2h-1", T38_SDP, cseq=31), PBX_S, 6.0)
    (refresh,) = sip_out(again)                                       # a T.38 session refresh: 200, same media
    assert refresh.status == 200 and "m=image 40010 udptl t38" in refresh.body.decode()


def h323_asks_for_t38(control: Control) -> H2S:
    """A connected H.323 caller without fastStart whose requestMode asks for T.38."""
    call = H2S(control)
    call.sip(response(call.invite, 200, body=OFFER), 1.0)
    actions = call.gw.h323_data(call.conn, sim.facility(call.crv, False, call.guid, [call.peer.request_t38()]), 2.0)
    call.out = list(actions)
    call.converse(actions, 2.0)
    return call


def test_h323_request_mode_sends_a_t38_reinvite_and_the_answer_acks_its_channel():
    control = Control()
    call = h323_asks_for_t38(control)
    assert "requestModeAck" in call.peer.seen and call.peer.peer_t38_channel is not None
    (offer,) = sip_out(call.out, "INVITE")
    assert "m=image 40010 udptl t38" in offer.body.decode() and offer.header("to").endswith("tag=callee1")
    answer = response(offer, 200, body=T38_SDP)
    actions, _ = call.sip(answer, 3.0)
    assert [a.cseq for a in sip_out(actions, "ACK")] == [(offer.cseq[0], "ACK")]
    assert call.peer.peer_t38_media == S_T38
    assert [m.codec for _, m in control.modified][-1] == "t38"
    assert [(a.port, b.port) for _, a, b in control.attached][-1] == (40010, 50010)
    assert not sip_out(call.gw.handle_timer(3.6), "INVITE")              # answered: not resent


def test_a_refused_switch_gets_488_and_the_call_goes_on():
    control = Control()
    call, ok = connected_s2h(control)
    call.peer.t38 = False
    data = reinvite(ok.header("to"), "<sip:+442071230000@site-s.example>;tag=caller1", "s2h-1", T38_SDP)
    call.h323_after(call.gw.sip_receive(data, PBX_S, 5.0), 5.0)
    refused = [m for m in sip_out(call.out, 488) if m.cseq == (30, "INVITE")]
    assert len(refused) == 1 and refused[0].header("reason").startswith("Q.850;cause=65")
    assert control.releases == [] and call.gw.bridges


def test_a_sip_refusal_of_our_t38_reinvite_puts_the_h323_leg_back_on_audio():
    control = Control()
    call = h323_asks_for_t38(control)
    (offer,) = sip_out(call.out, "INVITE")
    before = len(call.peer.seen)
    actions, h323 = call.sip(response(offer, 488), 3.0)
    assert len(sip_out(actions, "ACK")) == 1 and not sip_out(actions, "BYE")
    assert sim.RELEASE_COMPLETE not in [m["type"] for m in h323]
    seen = call.peer.seen[before:]
    assert "requestMode" in seen and seen.count("closeLogicalChannel") == 1 and "openLogicalChannel" in seen
    assert "openLogicalChannelReject" in seen                          # its T.38 channel refused
    assert call.peer.audio_again and call.peer.peer_media == S_RTP     # its new audio channel acked
    assert call.peer.peer_channel["forwardLogicalChannelParameters"]["dataType"][0] == "audioData"
    assert control.releases == [] and call.gw.stats["t38-refused"] == 1 and call.gw.internal_errors == 0


def test_no_answer_to_our_request_mode_gets_488_after_the_h245_timeout():
    control = Control()
    call, ok = connected_s2h(control)
    call.peer.on = lambda controls: []
    data = reinvite(ok.header("to"), "<sip:+442071230000@site-s.example>;tag=caller1", "s2h-1", T38_SDP)
    call.gw.sip_receive(data, PBX_S, 5.0)
    assert sip_out(call.gw.sip_receive(data, PBX_S, 5.5)) == []       # its retransmission waits too
    out = call.gw.handle_timer(15.1)
    assert [m.status for m in sip_out(out)] == [488] and control.releases == []


def test_a_faststart_call_refuses_a_t38_reinvite_with_488():
    control = Control()
    call = FastH2S(control)
    call.answer()
    data = reinvite(f"{call.invite.header('from')}", f"{call.invite.header('to')};tag=callee1", call.invite.call_id,
                    T38_SDP)
    refused = sip_out(call.sip(data, 3.0), 488)
    assert len(refused) == 1 and "fastStart" in refused[0].header("reason")


def test_the_session_answers_and_asks_request_mode():
    a, b = H245Session(), H245Session()
    out = b.receive(a.request_mode("t38", 0.0).send[0], 0.0)
    assert out.events == [ModeRequested(1, "t38")]
    answer = b.answer_mode(1, True)
    assert a.receive(answer.send[0], 0.0).events == [ModeAnswered(True)]
    assert a.receive(answer.send[0], 0.0).events == []                  # answered once
    a.request_mode("audio", 1.0)
    assert a.receive(b.answer_mode(2, False).send[0], 1.0).events == [ModeAnswered(False)]
    a.request_mode("t38", 2.0)
    assert a.handle_timer(13.0).events == [ModeAnswered(False)]
    video = encode_h245(("request", ("requestMode", {"sequenceNumber": 4, "requestedModes": [
        [{"type": ("videoMode", ("h261VideoMode", {"resolution": ("qcif", 0), "bitRate": 100,
                                                   "stillImageTransmission": False}))}]]})))
    refused = b.receive(video, 0.0)
    assert refused.events == [] and b"" not in refused.send and len(refused.send) == 1   # requestModeReject
