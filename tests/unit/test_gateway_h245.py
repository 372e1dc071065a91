"""The gateway without fastStart: tunnelled H.245 on the H.323 leg, late offer on the SIP leg.

Both directions driven with the simulator's own H.245 (tests/h323sim.py ``TunnelledH245``,
built on pycrate directly, not on the gateway's session): answered, busy, cancelled, hang-up
either side, H.245 that never completes, unusable offers/answers, DTMF both ways and RFC 4733
advertised as the SIP community's profile says. Admission: one admit, one attach, one release.
"""

from __future__ import annotations

import re

import h323sim as sim
from test_gateway_interwork import (H_RTP, PBX_H, PBX_S, S_RTP, Control, cancel_while_ringing, drain_and_balance,
                                    gateway, h323_out,
                                    invite_bytes, response, sdp, sip_out)

from ryu_apps.signalling.gateway.profile import Profile, SdpRules
from ryu_apps.signalling.h323.actions import StreamClose, StreamOpen, StreamSend
from ryu_apps.signalling.sip.message import Request

OFFER = sdp(*S_RTP, pts="0 101", names=("PCMU", "telephone-event"))


def h245_names(messages) -> list[str]:
    return [sim.dec("h245", c)[1][0] for m in messages for c in sim.controls_of(m)]


def bye_releases(gw, from_: str, to: str, call_id: str, now: float) -> list:
    """A BYE from the SIP party: the H.323 leg gets one ReleaseComplete cause 16 (returned)."""
    bye = (f"BYE sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKbye\r\n"
           f"From: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 50 BYE\r\n"
           f"Reason: Q.850;cause=16\r\n\r\n").encode()
    released = h323_out(gw.sip_receive(bye, PBX_S, now))
    assert [(m["type"], m["cause"]) for m in released] == [(sim.RELEASE_COMPLETE, 16)]
    return released


def converse(call, actions, from_destination: bool, now: float) -> list:
    """Feed the gateway's tunnelled H.245 (in ``actions``) to the simulator and its answers
    back in a Facility, until neither has more to say. Returns the H.225.0 messages the
    gateway sent; every action is kept in ``call.out``."""
    seen = []
    pending = h323_out(actions, call.conn)
    while pending:
        seen += pending
        answers = [a for m in pending for a in call.peer.on(sim.controls_of(m))]
        pending = []
        if answers:
            more = call.gw.h323_data(call.conn, sim.facility(call.crv, from_destination, call.guid, answers), now)
            call.out += more
            pending = h323_out(more, call.conn)
    return seen


class H2S:
    """An H.323 caller without fastStart (tunnelled H.245) calling a SIP number."""

    def __init__(self, control, te_pt=None, codec="g711Ulaw64k", **settings):
        self.control, self.gw = control, gateway(control, **settings)
        self.guid, self.crv = sim.new_guid(), 88
        self.peer = sim.TunnelledH245(H_RTP, codec=codec, te_pt=te_pt)
        self.conn = self.gw.h323_accept(("10.1.0.5", 33000))
        setup = sim.q931(sim.SETUP, self.crv, False,
                         sim.setup_body(self.guid, [("dialledDigits", "442079460000")], [("dialledDigits", "331234")],
                                        [], PBX_H), called="442079460000",
                         extra_pdu={"h245Tunnelling": True, "h245Control": self.peer.opening()})
        self.out = self.gw.h323_data(self.conn, setup, 0.0)
        self.h323 = self.converse(self.out, 0.0)
        self.invite = sip_out(self.out, "INVITE")[0] if sip_out(self.out, "INVITE") else None

    def converse(self, actions, now):
        return converse(self, actions, False, now)

    def sip(self, data, now=1.0):
        actions = self.gw.sip_receive(data, PBX_S, now)
        self.out = list(actions)
        return actions, self.converse(actions, now)


def test_h323_without_faststart_sends_a_late_offer_invite_and_admits_once():
    control = Control()
    call = H2S(control)
    assert call.invite is not None and call.invite.body == b"" and call.invite.header("content-type") is None
    assert [m["type"] for m in call.h323][:1] == [sim.CALL_PROCEEDING]
    assert all(m["uu"]["h323-uu-pdu"]["h245Tunnelling"] for m in call.h323)
    assert "terminalCapabilitySetAck" in h245_names(call.h323) and "masterSlaveDetermination" in h245_names(call.h323)
    assert [(r.media.codec, r.media.ptime_ms) for r in control.admits] == [("pcmu", 20)]


def test_h323_without_faststart_answered_offer_in_200_answer_in_ack_then_h323_hangs_up():
    control = Control()
    call = H2S(control, te_pt=101)
    _, ringing = call.sip(response(call.invite, 180))
    assert [m["type"] for m in ringing] == [sim.ALERTING]
    actions, h323 = call.sip(response(call.invite, 200, body=OFFER), 1.5)
    assert h323[0]["type"] == sim.CONNECT
    assert call.peer.peer_codecs == ["g711Ulaw64k"] and call.peer.peer_te_pt == 101     # our TCS: the SIP offer
    assert call.peer.peer_media == S_RTP                                  # its channel acked with the SIP address
    channel = call.peer.peer_channel["forwardLogicalChannelParameters"]
    assert channel["dataType"] == ("audioData", ("g711Ulaw64k", 20))
    acks = sip_out(call.out, "ACK")
    assert len(acks) == 1 and acks[0].header("content-type") == "application/sdp"
    body = acks[0].body.decode()
    assert "c=IN IP4 10.1.0.5" in body and re.search(r"m=audio 40000 RTP/AVP 0 101\r\n", body)
    assert "a=rtpmap:101 telephone-event/8000" in body
    assert [(a.ip, a.port, b.ip, b.port) for _, a, b in control.attached] == [("10.1.0.5", 40000, "10.2.0.5", 50000)]
    assert sip_out(call.sip(response(call.invite, 200, body=OFFER), 2.0)[0], "ACK") == acks   # 200 again: same ACK
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 3.0)
    byes = sip_out(out, "BYE")
    assert len(byes) == 1 and byes[0].header("reason") == "Q.850;cause=16"
    assert control.balanced() and len(control.releases) == 1 and call.gw.internal_errors == 0


def test_h323_without_faststart_sip_callee_hangs_up_end_session_in_release_complete():
    control = Control()
    call = H2S(control)
    call.sip(response(call.invite, 200, body=OFFER), 1.0)
    released = bye_releases(call.gw, f"{call.invite.header('to')};tag=callee1", call.invite.header("from"),
                            call.invite.call_id, 2.0)
    assert h245_names(released) == ["closeLogicalChannel", "endSessionCommand"]
    assert len(control.releases) == 1


def test_h323_without_faststart_busy_and_cancelled():
    control = Control()
    call = H2S(control)
    _, h323 = call.sip(response(call.invite, 486))
    assert [(m["type"], m["cause"]) for m in h323] == [(sim.RELEASE_COMPLETE, 17)]
    assert len(sip_out(call.out, "ACK")) == 1 and len(control.releases) == 1
    control = Control()
    call = H2S(control)
    call.sip(response(call.invite, 180))
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 2.0)
    assert len(sip_out(out, "CANCEL")) == 1 and len(control.releases) == 1


def test_h323_without_faststart_no_common_codec_or_no_offer_acks_refusing_then_byes():
    for body in (sdp(*S_RTP, pts="8", names=("PCMA",)), b""):
        control = Control()
        call = H2S(control)                                      # the caller receives only PCMU
        actions, h323 = call.sip(response(call.invite, 200, body=body))
        ack, bye = sip_out(actions, "ACK"), sip_out(actions, "BYE")
        assert len(ack) == 1 and len(bye) == 1 and bye[0].header("reason").startswith("Q.850;cause=65")
        if body:
            assert re.search(r"m=audio 0 RTP/AVP", ack[0].body.decode())    # every stream refused
        assert (h323[-1]["type"], h323[-1]["cause"]) == (sim.RELEASE_COMPLETE, 65)
        assert len(control.releases) == 1


def test_h323_without_faststart_h245_that_never_completes_times_out():
    control = Control()
    call = H2S(control)
    call.peer.on = lambda controls: []                           # the caller stops answering H.245
    call.sip(response(call.invite, 200, body=OFFER), 1.0)
    out = call.gw.handle_timer(1.0 + 10.1)
    assert len(sip_out(out, "ACK")) == 1 and len(sip_out(out, "BYE")) == 1
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 102)]
    assert len(control.releases) == 1


def test_h323_without_faststart_dtmf_both_ways():
    control = Control()
    call = H2S(control)
    call.sip(response(call.invite, 200, body=OFFER), 1.0)
    uii = sim.enc("h245", ("indication", ("userInput", ("signal", {"signalType": "7", "duration": 120}))))
    out = call.gw.h323_data(call.conn, sim.facility(call.crv, False, call.guid, [uii]), 2.0)
    infos = sip_out(out, "INFO")
    assert len(infos) == 1 and infos[0].body == b"Signal=7\r\nDuration=120\r\n"
    info = (f"INFO sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKinfo\r\n"
            f"From: {call.invite.header('to')};tag=callee1\r\nTo: {call.invite.header('from')}\r\n"
            f"Call-ID: {call.invite.call_id}\r\nCSeq: 6 INFO\r\nContent-Type: application/dtmf-relay\r\n"
            f"Content-Length: 21\r\n\r\nSignal=#\r\nDuration=90").encode()
    _, h323 = call.sip(info, 2.5)
    assert call.peer.digits == ["#"]


class S2H:
    """A SIP caller without SDP (late offer) calling an H.323 number: the simulator answers."""

    def __init__(self, control, te_pt=None, codec="g711Alaw64k", **settings):
        self.control, self.gw = control, gateway(control, **settings)
        self.peer = sim.TunnelledH245(H_RTP, codec=codec, te_pt=te_pt)
        self.first = self.gw.sip_receive(invite_bytes(body=b""), PBX_S, 0.0)
        self.conn = next(a.conn for a in self.first if isinstance(a, StreamOpen))
        self.setup = h323_out(self.first)[0]
        self.guid = sim.body_of(self.setup)[1]["callIdentifier"]["guid"]
        self.crv = self.setup["crv"]
        self.out: list = []

    def h323(self, message_type, kind, now=1.0, h245=None, cause=None):
        body = sim.release_body(self.guid) if kind == "releaseComplete" else sim.answer_body(kind, self.guid)
        extra = {"h245Tunnelling": True, "h245Control": h245} if h245 else {"h245Tunnelling": True}
        actions = self.gw.h323_data(self.conn, sim.q931(message_type, self.crv, True, body, cause=cause,
                                                        extra_pdu=extra), now)
        self.out += actions
        converse(self, actions, True, now)
        return actions

    def ring_and_connect(self, now=1.0):
        self.h323(sim.ALERTING, "alerting", now, h245=self.peer.on(sim.controls_of(self.setup)) + self.peer.opening())
        self.h323(sim.CONNECT, "connect", now + 0.5)
        return sip_out(self.out, 200)

    def ack(self, ok, body, now=3.0):
        head = (f"ACK sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKack\r\n"
                f"From: <sip:+442071230000@site-s.example>;tag=caller1\r\nTo: {ok.header('to')}\r\n"
                f"Call-ID: s2h-1\r\nCSeq: 10 ACK\r\n")
        if body:
            head += "Content-Type: application/sdp\r\n"
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        return self.h323_after(self.gw.sip_receive(data, PBX_S, now), now)

    def h323_after(self, actions, now):
        self.out += actions
        converse(self, actions, True, now)
        return actions


def test_late_offer_invite_becomes_a_setup_without_faststart_with_tunnelled_capabilities():
    control = Control()
    call = S2H(control)
    assert [r.status for r in sip_out(call.first)] == [100]
    fields = sim.body_of(call.setup)[1]
    pdu = call.setup["uu"]["h323-uu-pdu"]
    assert "fastStart" not in fields and pdu["h245Tunnelling"] is True
    assert h245_names([call.setup]) == ["terminalCapabilitySet", "masterSlaveDetermination"]
    tcs = sim.dec("h245", pdu["h245Control"][0])[1][1]
    names = [e["capability"][1][0] if e["capability"][0] == "receiveAudioCapability" else e["capability"][0]
             for e in tcs["capabilityTable"]]
    assert names[:4] == ["g711Ulaw64k", "g711Alaw64k", "g729AnnexA", "g722-64k"]
    assert "receiveRTPAudioTelephonyEventCapability" in names          # generic profile: dtmf rfc4733
    assert [(r.media.codec, r.caller_community, r.callee_community) for r in control.admits] == \
        [("pcmu", "site-s", "site-h")]


def test_late_offer_answered_offer_in_200_answer_in_ack_then_sip_hangs_up():
    control = Control()
    call = S2H(control, te_pt=101)
    oks = call.ring_and_connect()
    assert [r.status for r in sip_out(call.out)][:1] == [180] and len(oks) == 1
    body = oks[0].body.decode()
    assert "c=IN IP4 10.1.0.5" in body and re.search(r"m=audio 40000 RTP/AVP 8 101\r\n", body)
    assert "a=rtpmap:101 telephone-event/8000" in body
    assert [(m.codec) for _, m in control.modified] == ["pcma"]      # admitted on PCMU, the callee chose PCMA
    call.ack(oks[0], sdp(*S_RTP, pts="8 101", names=("PCMA", "telephone-event")))
    assert call.peer.peer_media == S_RTP                              # its channel acked with the SIP address
    assert [(a.ip, a.port, b.ip, b.port) for _, a, b in control.attached] == [("10.2.0.5", 50000, "10.1.0.5", 40000)]
    released = bye_releases(call.gw, "<sip:+442071230000@site-s.example>;tag=caller1", oks[0].header("to"),
                            "s2h-1", 5.0)
    assert "endSessionCommand" in h245_names(released)
    assert control.balanced() and len(control.releases) == 1 and call.gw.internal_errors == 0


def test_late_offer_h323_callee_hangs_up_busy_and_cancel():
    control = Control()
    call = S2H(control)
    oks = call.ring_and_connect()
    call.ack(oks[0], sdp(*S_RTP, pts="8", names=("PCMA",)))
    out = call.h323(sim.RELEASE_COMPLETE, "releaseComplete", 4.0, cause=16)
    assert len(sip_out(out, "BYE")) == 1 and len(control.releases) == 1
    control = Control()
    call = S2H(control)
    out = call.h323(sim.RELEASE_COMPLETE, "releaseComplete", 1.0, cause=17)
    assert [r.status for r in sip_out(out)] == [486] and len(control.releases) == 1
    control = Control()
    call = S2H(control)
    call.h323(sim.ALERTING, "alerting", 1.0, h245=call.peer.on(sim.controls_of(call.setup)))
    cancel_while_ringing(call.gw, control)


def test_late_offer_ack_without_a_usable_answer_ends_the_call_with_65():
    for body in (b"", sdp(*S_RTP, pts="18", names=("G729",))):
        control = Control()
        call = S2H(control)
        oks = call.ring_and_connect()
        out = call.ack(oks[0], body)
        assert len(sip_out(out, "BYE")) == 1
        assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 65)]
        assert len(control.releases) == 1


def test_late_offer_h323_side_never_opens_times_out_with_504():
    control = Control()
    call = S2H(control)
    call.peer.on = lambda controls: []
    call.h323(sim.CONNECT, "connect", 1.0)
    out = call.gw.handle_timer(11.2)
    assert [r.status for r in sip_out(out)] == [504]
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 102)]
    assert len(control.releases) == 1


def test_late_offer_rfc4733_follows_the_profile_and_the_answer():
    info_profile = {"site-s": Profile("pbx", dtmf="info")}
    control = Control()
    call = S2H(control, te_pt=101, profiles=info_profile)
    tcs = sim.dec("h245", call.setup["uu"]["h323-uu-pdu"]["h245Control"][0])[1][1]
    assert all(e["capability"][0] != "receiveRTPAudioTelephonyEventCapability" for e in tcs["capabilityTable"])
    oks = call.ring_and_connect()
    assert "telephone-event" not in oks[0].body.decode()
    control = Control()                                          # rfc4733 with the profile's payload type
    call = S2H(control, te_pt=100, profiles={"site-s": Profile("pbx", sdp=SdpRules(telephone_event_pt=96))})
    tcs = sim.dec("h245", call.setup["uu"]["h323-uu-pdu"]["h245Control"][0])[1][1]
    assert {"dynamicRTPPayloadType": 96, "audioTelephoneEvent": "0-15"} in [
        e["capability"][1] for e in tcs["capabilityTable"]]
    oks = call.ring_and_connect()
    assert "a=rtpmap:100 telephone-event/8000" in oks[0].body.decode()   # the callee's own payload type
    before = len(call.peer.seen)
    call.ack(oks[0], sdp(*S_RTP, pts="8", names=("PCMA",)))           # the answer refuses telephone-events
    assert "terminalCapabilitySet" in call.peer.seen[before:]         # so the H.323 side is told again
    assert call.peer.peer_te_pt == 96                                 # (the simulator keeps what it saw first)


def test_h323_without_faststart_info_profile_never_advertises_telephone_events():
    control = Control()
    call = H2S(control, te_pt=101, profiles={"site-s": Profile("pbx", dtmf="info")})
    call.sip(response(call.invite, 200, body=OFFER), 1.0)
    assert call.peer.peer_te_pt is None
    assert "telephone-event" not in sip_out(call.out, "ACK")[0].body.decode()


def test_late_offer_dtmf_both_ways():
    control = Control()
    call = S2H(control)
    oks = call.ring_and_connect()
    call.ack(oks[0], sdp(*S_RTP, pts="8", names=("PCMA",)))
    uii = sim.enc("h245", ("indication", ("userInput", ("alphanumeric", "3"))))
    out = call.gw.h323_data(call.conn, sim.facility(call.crv, True, call.guid, [uii]), 4.0)
    infos = sip_out(out, "INFO")
    assert len(infos) == 1 and infos[0].body.startswith(b"Signal=3")
    assert isinstance(infos[0], Request)


def test_garbage_h245_in_a_tunnelled_call_is_counted_and_the_call_goes_on():
    control = Control()
    call = S2H(control)
    out = call.h323(sim.ALERTING, "alerting", 1.0, h245=[b"\xff\xff\xff", b"", b"\x00" * 9])
    assert [r.status for r in sip_out(out)] == [180]
    assert call.gw.stats.get("h245-errors", 0) >= 2 and call.gw.internal_errors == 0


def test_mutated_tunnelled_calls_never_raise_and_leave_admission_balanced():
    import random
    rng = random.Random(245)
    control = Control()
    h2s, s2h = H2S(control), S2H(control)
    peer = sim.TunnelledH245(H_RTP)
    setup = sim.q931(sim.SETUP, 5, False, sim.setup_body(sim.new_guid(), [("dialledDigits", "4420")],
                                                        [("dialledDigits", "331")], [], PBX_H), called="4420",
                     extra_pdu={"h245Tunnelling": True, "h245Control": peer.opening()})
    answers = peer.on(sim.controls_of(s2h.setup)) + peer.opening() + [sim.h245_olc_ack(1, H_RTP, (H_RTP[0], 1))]
    seeds_h323 = [setup, sim.facility(s2h.crv, True, s2h.guid, answers),
                  sim.q931(sim.CONNECT, s2h.crv, True, sim.answer_body("connect", s2h.guid),
                           extra_pdu={"h245Tunnelling": True, "h245Control": answers})]
    seeds_sip = [invite_bytes(call_id=f"l{i}", body=b"") for i in range(3)] + [response(h2s.invite, 200, body=OFFER)]

    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(out))
            out[at] = rng.randrange(256)
        return bytes(out)
    now = 2.0
    for i in range(800):
        now += 0.05
        h2s.gw.sip_receive(mutate(rng.choice(seeds_sip)), PBX_S, now)
        s2h.gw.sip_receive(mutate(rng.choice(seeds_sip)), PBX_S, now)
        conn = h2s.gw.h323_accept(("10.1.0.5", 41000 + i))
        h2s.gw.h323_data(conn, mutate(setup), now)
        s2h.gw.h323_data(s2h.conn, mutate(rng.choice(seeds_h323)), now)
    drain_and_balance((h2s.gw, s2h.gw), control, now)
    assert len(control.admits) > 20 and h2s.gw.stats.get("h323-setups", 0) > 500       # the mutants reached the core


def test_a_from_uri_that_does_not_parse_still_gets_its_setup():
    """Found by the mutants above: a From whose host does not parse made send_setup raise
    after admission (an internal error, the call left admitted without a Setup)."""
    control = Control()
    gw = gateway(control)
    data = invite_bytes(body=b"").replace(b"@site-s.example>;tag=caller1", b"@\x1eite-s.example>;tag=caller1")
    out = gw.sip_receive(data, PBX_S, 0.0)
    (setup,) = h323_out(out)
    assert sim.body_of(setup)[1]["sourceAddress"] == [("h323-ID", "mam-gw")] and gw.internal_errors == 0


# --- H.245 on its own TCP connection (no tunnelling) -----------------------------------------

def h245_link(gw, peer, actions, conn, now):
    """Carry H.245 between the gateway (its StreamSends on ``conn``) and the simulator until
    quiet; returns every action the gateway emitted on the way."""
    seen = list(actions)
    pending = [d for a in actions if isinstance(a, StreamSend) and a.conn == conn for d in sim.untpkt(a.data)]
    while pending:
        answers = peer.on(pending)
        pending = []
        if answers:
            more = gw.h323_data(conn, b"".join(sim.tpkt(a) for a in answers), now)
            seen += more
            pending = [d for a in more if isinstance(a, StreamSend) and a.conn == conn for d in sim.untpkt(a.data)]
    return seen


def test_h323_caller_with_its_own_h245_connection_to_a_sip_late_offer():
    control = Control()
    gw = gateway(control)
    guid, crv, peer = sim.new_guid(), 21, sim.TunnelledH245(H_RTP)
    conn = gw.h323_accept(("10.1.0.5", 33000))
    fields = sim.setup_body(guid, [("dialledDigits", "442079460000")], [("dialledDigits", "331234")], [], PBX_H)
    fields[1]["h245Address"] = ("ipAddress", {"ip": bytes([10, 1, 0, 5]), "port": 41000})
    out = gw.h323_data(conn, sim.q931(sim.SETUP, crv, False, fields, called="442079460000",
                                      extra_pdu={"h245Tunnelling": False}), 0.0)
    (opened,) = [a for a in out if isinstance(a, StreamOpen)]
    assert (opened.host, opened.port) == ("10.1.0.5", 41000) and opened.conn != conn
    invite = sip_out(out, "INVITE")[0]
    assert invite.body == b""
    out = gw.h323_data(opened.conn, b"".join(sim.tpkt(d) for d in peer.opening()), 0.5)
    out = h245_link(gw, peer, out, opened.conn, 0.5)
    out += gw.sip_receive(response(invite, 200, body=OFFER), PBX_S, 1.0)
    out = h245_link(gw, peer, out, opened.conn, 1.0)
    assert [m["type"] for m in h323_out(out, conn)] == [sim.CONNECT]
    assert all(not sim.controls_of(m) for m in h323_out(out, conn))       # nothing tunnelled
    ack = sip_out(out, "ACK")
    assert len(ack) == 1 and "m=audio 40000 RTP/AVP 0" in ack[0].body.decode()
    assert peer.peer_media == S_RTP and len(control.attached) == 1
    out = gw.h323_data(conn, sim.q931(sim.RELEASE_COMPLETE, crv, False, sim.release_body(guid), cause=16), 2.0)
    assert len(sip_out(out, "BYE")) == 1
    last = [d for a in out if isinstance(a, StreamSend) and a.conn == opened.conn for d in sim.untpkt(a.data)]
    assert [sim.dec("h245", d)[1][0] for d in last] == ["closeLogicalChannel", "endSessionCommand"]
    assert any(isinstance(a, StreamClose) and a.conn == opened.conn for a in out)
    assert len(control.releases) == 1 and not gw.by_h245 and gw.internal_errors == 0


def test_an_h323_callee_that_does_not_tunnel_gets_our_h245_on_its_connection():
    control = Control()
    call = S2H(control)
    alerting = sim.answer_body("alerting", call.guid)
    alerting[1]["h245Address"] = ("ipAddress", {"ip": bytes([10, 1, 0, 5]), "port": 41001})
    out = call.gw.h323_data(call.conn, sim.q931(sim.ALERTING, call.crv, True, alerting,
                                                extra_pdu={"h245Tunnelling": False}), 1.0)
    (opened,) = [a for a in out if isinstance(a, StreamOpen)]
    resent = [sim.dec("h245", d)[1][0] for a in out if isinstance(a, StreamSend) and a.conn == opened.conn
              for d in sim.untpkt(a.data)]
    assert resent == ["terminalCapabilitySet", "masterSlaveDetermination"]      # what the Setup tunnelled
    h245_link(call.gw, call.peer, out, opened.conn, 1.1)
    out = call.gw.h323_data(opened.conn, b"".join(sim.tpkt(d) for d in call.peer.opening()), 1.2)
    out = h245_link(call.gw, call.peer, out, opened.conn, 1.2)
    out = call.gw.h323_data(call.conn, sim.q931(sim.CONNECT, call.crv, True, sim.answer_body("connect", call.guid),
                                                extra_pdu={"h245Tunnelling": False}), 1.5)
    (ok,) = sip_out(out, 200)
    assert "c=IN IP4 10.1.0.5" in ok.body.decode()
    h245_link(call.gw, call.peer, call.ack(ok, sdp(*S_RTP, pts="8", names=("PCMA",))), opened.conn, 3.0)
    assert call.peer.peer_media == S_RTP and len(control.attached) == 1
    out = call.gw.h323_closed(opened.conn, 4.0)                  # losing H.245 ends the call
    assert len(sip_out(out, "BYE")) == 1
    assert [(m["type"], m["cause"]) for m in h323_out(out, call.conn)] == [(sim.RELEASE_COMPLETE, 41)]
    assert len(control.releases) == 1 and call.gw.internal_errors == 0


def test_an_h245_address_outside_the_partys_community_is_never_connected_to():
    control = Control()
    gw = gateway(control)
    conn = gw.h323_accept(("10.1.0.5", 33000))
    fields = sim.setup_body(sim.new_guid(), [("dialledDigits", "442079460000")], [("dialledDigits", "331234")], [],
                            PBX_H)
    fields[1]["h245Address"] = ("ipAddress", {"ip": bytes([192, 0, 2, 9]), "port": 22})
    out = gw.h323_data(conn, sim.q931(sim.SETUP, 3, False, fields, called="442079460000",
                                      extra_pdu={"h245Tunnelling": False}), 0.0)
    assert not any(isinstance(a, StreamOpen) for a in out) and not sip_out(out, "INVITE")
    assert [(m["type"], m["cause"]) for m in h323_out(out)][-1] == (sim.RELEASE_COMPLETE, 65)
    assert gw.stats["h245-address-refused"] == 1 and control.admits == []


def test_faststart_calls_do_not_claim_h245_tunnelling():
    """A fastStart caller that also tunnels H.245 must not be led to wait for tunnelled
    answers the gateway never gives: only H.245 calls (and a DTMF Facility) say h245Tunnelling."""
    from test_gateway_interwork import H2S as FastH2S
    call = FastH2S(Control())
    out = call.answer()
    sent = h323_out(call.first) + h323_out(out)
    assert [m["type"] for m in sent][:1] == [sim.CALL_PROCEEDING] and sim.CONNECT in [m["type"] for m in sent]
    assert all("h245Tunnelling" not in m["uu"]["h323-uu-pdu"] for m in sent)


def test_deferred_admission_both_directions_without_faststart():
    """REST mode: admission answered later (Perform / performed); the H.245 exchange waits
    for nothing, the INVITE / Setup for the yes; one Modify, one AttachMedia, one Release."""
    from ryu_apps.signalling.call_control import Admit, AttachMedia, Modify, Release
    from ryu_apps.signalling.h323.actions import Perform
    from ryu_apps.core.admission import Admitted

    def performs(actions):
        return [a.op for a in actions if isinstance(a, Perform)]
    control = Control()
    gw = gateway(control)
    gw.defer = True
    peer = sim.TunnelledH245(H_RTP, codec="g711Alaw64k")
    first = gw.sip_receive(invite_bytes(body=b""), PBX_S, 0.0)
    (ask,) = performs(first)
    assert isinstance(ask, Admit) and not any(isinstance(a, StreamOpen) for a in first)
    ticket = next(a.ticket for a in first if isinstance(a, Perform))
    out = gw.performed(ticket, Admitted(ask.request.call_id, "a-b", 91), 0.2)
    (opened,) = [a for a in out if isinstance(a, StreamOpen)]
    setup = h323_out(out)[0]
    guid, crv = sim.body_of(setup)[1]["callIdentifier"]["guid"], setup["crv"]
    every = list(out)
    answers = peer.on(sim.controls_of(setup)) + peer.opening()
    for kind, body in (("alerting", sim.answer_body("alerting", guid)), ("connect", sim.answer_body("connect", guid))):
        out = gw.h323_data(opened.conn, sim.q931(sim.ALERTING if kind == "alerting" else sim.CONNECT, crv, True, body,
                                                 extra_pdu={"h245Tunnelling": True, "h245Control": answers}
                                                 if answers else {"h245Tunnelling": True}), 1.0)
        answers = []
        every += out
        pending = h323_out(out, opened.conn)
        while pending:
            replies = [r for m in pending for r in peer.on(sim.controls_of(m))]
            pending = []
            if replies:
                more = gw.h323_data(opened.conn, sim.facility(crv, True, guid, replies), 1.0)
                every += more
                pending = h323_out(more, opened.conn)
    (ok,) = sip_out(every, 200)
    assert [type(op) for op in performs(every)] == [Modify]                 # PCMU admitted, PCMA chosen
    ack = (f"ACK sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKack\r\n"
           f"From: <sip:+442071230000@site-s.example>;tag=caller1\r\nTo: {ok.header('to')}\r\n"
           f"Call-ID: s2h-1\r\nCSeq: 10 ACK\r\nContent-Type: application/sdp\r\n")
    answer = sdp(*S_RTP, pts="8", names=("PCMA",))
    out = gw.sip_receive((ack + f"Content-Length: {len(answer)}\r\n\r\n").encode() + answer, PBX_S, 2.0)
    assert [type(op) for op in performs(out)] == [AttachMedia]
    out = gw.h323_data(opened.conn, sim.q931(sim.RELEASE_COMPLETE, crv, True, sim.release_body(guid), cause=16), 3.0)
    assert [type(op) for op in performs(out)] == [Release] and len(sip_out(out, "BYE")) == 1
    assert gw.internal_errors == 0 and control.admits == []
