"""Early media without fastStart (H.323 caller, tunnelled H.245 -> SIP late offer), RFC 3262.

A reliable 183 with SDP offers; the gateway answers in the PRACK once the H.323 caller's
OpenLogicalChannelAck gives its address, tells the caller Progress with progress indicator 8
and attaches the media before the answer; the 200 then has no new offer (Connect, ACK without
SDP). An unreliable 183 with SDP is Progress with indicator 1 and its offer is answered in
the ACK of the 200. One admit, one attach, one release; cancelled during early media too.
"""

from __future__ import annotations

import re

import h323sim as sim
from test_gateway_h245 import H2S, OFFER, S2H, bye_releases, h245_names
from test_gateway_interwork import (H_RTP, PBX_S, S_RTP, Control, cancel_while_ringing, gateway, h323_out,
                                    invite_bytes, response, sip_out)

from ryu_apps.signalling.h323.actions import StreamOpen

RELIABLE = ("Require: 100rel", "RSeq: 1")


def early(control: Control, **settings) -> tuple[H2S, list]:
    """An H.323 caller without fastStart; the SIP callee answers the INVITE with a reliable 183 + SDP."""
    call = H2S(control, te_pt=101, **settings)
    _, h323 = call.sip(response(call.invite, 183, body=OFFER, extra=RELIABLE), 1.0)
    return call, h323


def test_the_late_offer_invite_supports_100rel_and_allows_prack():
    call = H2S(Control())
    assert call.invite.header("supported") == "100rel" and "PRACK" in call.invite.header("allow")


def test_a_reliable_183_offer_is_answered_in_the_prack_with_early_media_then_200_connects():
    control = Control()
    call, h323 = early(control)
    assert (h323[0]["type"], h323[0]["progress"]) == (sim.PROGRESS, 8)          # in-band information available
    assert "terminalCapabilitySet" in h245_names(h323[:1])                        # the offer's codecs
    assert call.peer.peer_codecs == ["g711Ulaw64k"] and call.peer.peer_media == ("10.2.0.5", 50000)
    (prack,) = sip_out(call.out, "PRACK")
    assert prack.header("rack") == "1 1 INVITE" and prack.header("content-type") == "application/sdp"
    assert prack.header("to").endswith(";tag=callee1") and prack.uri == "sip:pbx@10.2.0.5:5060"
    body = prack.body.decode()
    assert "c=IN IP4 10.1.0.5" in body and re.search(r"m=audio 40000 RTP/AVP 0 101\r\n", body)
    assert [(a.ip, a.port, b.ip, b.port) for _, a, b in control.attached] == [("10.1.0.5", 40000, "10.2.0.5", 50000)]
    assert not sip_out(call.out, "ACK") and call.gw.stats["early-media-answered"] == 1
    ok_prack = response(prack, 200)
    call.sip(ok_prack, 1.2)
    assert not call.gw.by_sip[call.invite.call_id].pending                       # the PRACK's transaction done
    actions, h323 = call.sip(response(call.invite, 200, body=OFFER), 2.0)        # the 200 repeats the SDP
    assert [m["type"] for m in h323] == [sim.CONNECT]
    (ack,) = sip_out(actions, "ACK")
    assert ack.body == b"" and ack.header("content-type") is None                 # offer/answer already done
    assert len(control.attached) == 1 and len(control.admits) == 1
    again, _ = call.sip(response(call.invite, 200, body=OFFER), 2.5)
    assert [a.header("cseq") for a in sip_out(again, "ACK")] == [ack.header("cseq")]
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 3.0)
    assert len(sip_out(out, "BYE")) == 1
    assert control.balanced() and len(control.releases) == 1 and call.gw.internal_errors == 0


def test_a_retransmitted_reliable_183_is_not_acted_on_twice():
    control = Control()
    call, _ = early(control)
    actions, h323 = call.sip(response(call.invite, 183, body=OFFER, extra=RELIABLE), 1.5)
    assert not sip_out(actions, "PRACK") and h323 == []
    assert call.gw.stats["sip-18x-repeated"] == 1


def test_a_reliable_180_without_sdp_is_prack_ed_empty_and_alerts():
    control = Control()
    call = H2S(control)
    actions, h323 = call.sip(response(call.invite, 180, extra=RELIABLE), 1.0)
    (prack,) = sip_out(actions, "PRACK")
    assert prack.body == b"" and prack.header("rack") == "1 1 INVITE"
    assert [(m["type"], m["progress"]) for m in h323] == [(sim.ALERTING, None)]
    actions, h323 = call.sip(response(call.invite, 183, body=OFFER, extra=("Require: 100rel", "RSeq: 2")), 1.5)
    assert (h323[0]["type"], h323[0]["progress"]) == (sim.PROGRESS, 8)          # then the offer: early media
    assert [p.header("rack") for p in sip_out(call.out, "PRACK")] == ["2 1 INVITE"]
    assert len(control.attached) == 1


def test_an_unreliable_183_offer_is_progress_1_and_answered_in_the_ack_of_the_200():
    for repeated in (OFFER, b""):                             # the 200 repeats the SDP, or (lenient) omits it
        control = Control()
        call = H2S(control, te_pt=101)
        actions, h323 = call.sip(response(call.invite, 183, body=OFFER), 1.0)
        assert [(m["type"], m["progress"]) for m in h323] == [(sim.PROGRESS, 1)]
        assert not sip_out(actions, "PRACK") and control.attached == [] and call.peer.peer_media is None
        actions, h323 = call.sip(response(call.invite, 200, body=repeated), 2.0)
        assert h323[0]["type"] == sim.CONNECT
        (ack,) = sip_out(call.out, "ACK")
        assert re.search(r"m=audio 40000 RTP/AVP 0 101\r\n", ack.body.decode())
        assert len(control.attached) == 1 and call.gw.stats["early-offer-unreliable"] == 1
        out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False,
                                                    sim.release_body(call.guid), cause=16), 3.0)
        assert len(sip_out(out, "BYE")) == 1 and control.balanced() and call.gw.internal_errors == 0


def test_the_h323_caller_hangs_up_during_early_media_cancel_and_one_release():
    control = Control()
    call, _ = early(control)
    assert len(control.attached) == 1
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 2.0)
    (cancel,) = sip_out(out, "CANCEL")
    assert cancel.header("reason") == "Q.850;cause=16" and len(control.releases) == 1
    out = call.gw.sip_receive(response(call.invite, 487), PBX_S, 2.1)
    assert len(sip_out(out, "ACK")) == 1
    call.gw.handle_timer(100.0)
    assert not call.gw.bridges                                # forgotten after the last retransmissions
    assert control.balanced() and len(control.releases) == 1 and call.gw.internal_errors == 0


def test_the_sip_callee_refuses_during_early_media_release_complete_and_one_release():
    control = Control()
    call, _ = early(control)
    actions, h323 = call.sip(response(call.invite, 486), 2.0)
    assert [(m["type"], m["cause"]) for m in h323][-1] == (sim.RELEASE_COMPLETE, 17)
    assert len(sip_out(actions, "ACK")) == 1 and control.balanced() and len(control.releases) == 1


def test_an_unusable_reliable_offer_cancels_with_65():
    control = Control()
    call = H2S(control)                                       # the caller receives only PCMU
    body = b"v=0\r\no=- 1 1 IN IP4 10.2.0.5\r\ns=-\r\nc=IN IP4 10.2.0.5\r\nt=0 0\r\nm=video 5 RTP/AVP 31\r\n"
    actions, h323 = call.sip(response(call.invite, 183, body=body, extra=RELIABLE), 1.0)
    assert len(sip_out(actions, "CANCEL")) == 1
    assert [(m["type"], m["cause"]) for m in h323][-1] == (sim.RELEASE_COMPLETE, 65)
    assert len(control.releases) == 1


def test_early_media_h245_that_never_completes_times_out_with_cancel():
    control = Control()
    call = H2S(control)
    call.peer.on = lambda controls: []                        # the caller stops answering H.245
    call.sip(response(call.invite, 183, body=OFFER, extra=RELIABLE), 1.0)
    out = call.gw.handle_timer(1.0 + 10.1)
    assert len(sip_out(out, "CANCEL")) == 1 and not sip_out(out, "PRACK")
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 102)]
    assert len(control.releases) == 1


# --- SIP caller with an SDP offer -> H.323 callee that takes the call with H.245, not fastStart ---

class S2HOffer(S2H):
    """The SIP caller offers (PCMA, PCMU, telephone-event 101): the Setup has fastStart; the
    simulator ignores it and answers with tunnelled H.245 (its TCS and MSD)."""

    def __init__(self, control, te_pt=101, codec="g711Alaw64k"):
        self.control, self.gw = control, gateway(control)
        self.peer = sim.TunnelledH245(H_RTP, codec=codec, te_pt=te_pt)
        self.first = self.gw.sip_receive(invite_bytes(), PBX_S, 0.0)
        self.conn = next(a.conn for a in self.first if isinstance(a, StreamOpen))
        self.setup = h323_out(self.first)[0]
        self.guid = sim.body_of(self.setup)[1]["callIdentifier"]["guid"]
        self.crv = self.setup["crv"]
        self.out = []

    def send(self, message_type, kind, now, progress=None, h245=None):
        extra = {"h245Tunnelling": True, "h245Control": h245} if h245 else {"h245Tunnelling": True}
        actions = self.gw.h323_data(self.conn, sim.q931(message_type, self.crv, True, sim.answer_body(kind, self.guid),
                                                        extra_pdu=extra, progress=progress), now)
        return self.h323_after(actions, now)


def test_an_h323_callee_refusing_faststart_with_pi_8_gives_a_183_answer_and_the_200_repeats_it():
    control = Control()
    call = S2HOffer(control)
    assert "fastStart" in sim.body_of(call.setup)[1]
    call.send(sim.ALERTING, "alerting", 1.0, progress=8, h245=call.peer.opening())
    assert call.gw.stats["faststart-refused"] == 1
    assert call.peer.peer_codecs == ["g711Alaw64k", "g711Ulaw64k"] and call.peer.peer_te_pt == 101   # the offer
    assert call.peer.peer_media == S_RTP                     # its channel acked with the SIP caller's address
    assert [r.status for r in sip_out(call.first + call.out)] == [100, 183]      # no 180: early media
    (early,) = sip_out(call.out, 183)
    body = early.body.decode()
    assert "c=IN IP4 10.1.0.5" in body and re.search(r"m=audio 40000 RTP/AVP 8 101\r\n", body)
    assert [(a.ip, a.port, b.ip, b.port) for _, a, b in control.attached] == [("10.2.0.5", 50000, "10.1.0.5", 40000)]
    assert control.modified == []                                               # admitted on PCMA, the first offered
    call.send(sim.CONNECT, "connect", 2.0)
    (ok,) = sip_out(call.out, 200)
    assert ok.body == early.body and ok.header("to") == early.header("to")      # the same answer
    call.ack(ok, b"", 3.0)
    assert call.gw.internal_errors == 0 and len(control.attached) == 1
    released = bye_releases(call.gw, "<sip:+442071230000@site-s.example>;tag=caller1", ok.header("to"), "s2h-1", 4.0)
    assert "endSessionCommand" in h245_names(released)
    assert control.balanced() and len(control.releases) == 1 and call.gw.internal_errors == 0


def test_an_h323_callee_refusing_faststart_without_pi_8_rings_then_answers_in_the_200():
    control = Control()
    call = S2HOffer(control)
    call.send(sim.ALERTING, "alerting", 1.0, h245=call.peer.opening())
    assert [r.status for r in sip_out(call.out)] == [180]
    call.send(sim.PROGRESS, "progress", 1.2, progress=1)
    assert [r.status for r in sip_out(call.out)] == [180]                       # no in-band information
    call.send(sim.CONNECT, "connect", 2.0)
    (ok,) = sip_out(call.out, 200)
    assert re.search(r"m=audio 40000 RTP/AVP 8 101\r\n", ok.body.decode()) and len(control.attached) == 1
    call.ack(ok, b"", 3.0)
    out = call.h323(sim.RELEASE_COMPLETE, "releaseComplete", 4.0, cause=16)
    assert len(sip_out(out, "BYE")) == 1 and control.balanced() and len(control.releases) == 1


def test_progress_with_pi_8_before_the_h245_gives_the_183_once_the_address_is_known():
    control = Control()
    call = S2HOffer(control)
    call.peer.on = lambda controls: []                        # the callee says nothing on H.245 yet
    call.send(sim.PROGRESS, "progress", 1.0, progress=8, h245=[sim.h245_tcs(1, [("g711Alaw64k", 20)])])
    assert sip_out(call.out) == []
    ack = sim.h245_olc_ack(1, H_RTP, (H_RTP[0], H_RTP[1] + 1))
    out = call.gw.h323_data(call.conn, sim.facility(call.crv, True, call.guid, [ack]), 1.5)
    assert [r.status for r in sip_out(out)] == [183] and len(control.attached) == 1


def test_the_sip_caller_cancels_during_early_media_from_the_h323_callee():
    control = Control()
    call = S2HOffer(control)
    call.send(sim.ALERTING, "alerting", 1.0, progress=8, h245=call.peer.opening())
    assert sip_out(call.out, 183) and len(control.attached) == 1
    cancel_while_ringing(call.gw, control)
    assert control.balanced() and call.gw.internal_errors == 0


def test_an_h323_callee_refusing_faststart_with_no_codec_of_the_offer_gets_488():
    control = Control()
    call = S2HOffer(control, codec="g729AnnexA")
    call.send(sim.ALERTING, "alerting", 1.0, progress=8,
              h245=[sim.h245_tcs(1, [("g729AnnexA", 20)]), sim.h245_msd(4242)])
    assert [r.status for r in sip_out(call.out)][-1] == 488
    assert [(m["type"], m["cause"]) for m in h323_out(call.out)][-1] == (sim.RELEASE_COMPLETE, 65)
    assert control.balanced() and len(control.releases) == 1


def test_a_faststart_callee_alerting_with_pi_8_gives_183_and_the_200_repeats_the_answer():
    """fastStart calls keep their mapping, with the indicator read: Alerting + fastStart + PI 8
    is early media (183 with the answer, not 180), and the 200 repeats the 183's SDP exactly."""
    from test_gateway_interwork import S2H as FastS2H
    control = Control()
    call = FastS2H(control)
    guid = sim.body_of(call.setup)[1]["callIdentifier"]["guid"]
    alerting = sim.q931(sim.ALERTING, call.setup["crv"], True, sim.answer_body("alerting", guid, call.answer_fast()),
                        progress=8)
    (early,) = sip_out(call.gw.h323_data(call.conn, alerting, 1.0))
    assert early.status == 183 and "m=audio 40000 RTP/AVP 8" in early.body.decode()
    (ok,) = sip_out(call.h323(sim.CONNECT, "connect", call.answer_fast(), now=2.0))
    assert ok.status == 200 and ok.body == early.body and len(control.attached) == 1
    control = Control()
    call = FastS2H(control)                                   # without the indicator: 180, as before
    assert [r.status for r in sip_out(call.h323(sim.ALERTING, "alerting", call.answer_fast()))] == [180]
