"""The SIP <-> H.323 interworking core, driven with the H.323 simulator's messages and
hand-written SIP: every mapping, and every way a bridged call ends, with admission
asserted to have exactly one allocation and one release per call."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

import h323sim as sim
from ryu_apps.core.admission import Admitted, Rejected, RejectReason
from ryu_apps.signalling.gateway.causes import q850_of_status, status_of_q850
from ryu_apps.signalling.gateway.interwork import Gateway, GatewaySettings
from ryu_apps.signalling.gateway.profile import Identity, NumberForm, NumberPlan, Profile
from ryu_apps.signalling.h323.actions import StreamClose, StreamOpen, StreamSend
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.message import Request, Response, parse_message, serialize
from ryu_apps.signalling.sip.transaction import Peer, Send

PBX_H = ("10.1.0.5", 1720)          # the H.323 community's PBX
PBX_S = Peer("udp", "10.2.0.5", 5060)  # the SIP community's PBX
H_RTP, S_RTP = ("10.1.0.5", 40000), ("10.2.0.5", 50000)


@dataclass
class Control:
    reject: RejectReason | None = None
    admits: list = field(default_factory=list)
    releases: list = field(default_factory=list)
    attached: list = field(default_factory=list)
    modified: list = field(default_factory=list)

    def admit(self, request):
        self.admits.append(request)
        if self.reject is not None:
            return Rejected(request.call_id, self.reject, "aggregate a-b: full")
        return Admitted(request.call_id, "a-b", 91)

    def attach_media(self, call_id, caller, callee):
        self.attached.append((call_id, caller, callee))

    def modify(self, call_id, media):
        self.modified.append((call_id, media))
        return Admitted(call_id, "a-b", 35)

    def release(self, call_id, cause):
        self.releases.append((call_id, cause))

    def community_of(self, domain, address):
        return None

    def balanced(self):
        """Exactly one release per admitted call."""
        admitted = [r.call_id for r in self.admits] if self.reject is None else []
        return sorted(admitted) == sorted(c for c, _ in self.releases)


class Directory:
    def by_address(self, ip):
        return {"10.1.0.5": "site-h", "10.2.0.5": "site-s"}.get(ip)

    def by_domain(self, domain):
        return {"site-s.example": "site-s", "site-h.example": "site-h"}.get(domain)

    def by_number(self, digits):
        digits = digits.lstrip("+")
        return "site-s" if digits.startswith("44") else "site-h" if digits.startswith("33") else None


def gateway(control, **settings):
    return Gateway(GatewaySettings("10.0.0.1", 5080, "10.0.0.1", 1720, sip_pbx={"site-s": PBX_S},
                                   h323_pbx={"site-h": PBX_H}, domains={"site-s": "site-s.example"}, **settings),
                   control, Directory(), HashIds(b"test"))


def sip_out(actions, method_or_status=None):
    out = []
    for a in actions:
        if isinstance(a, Send):
            m = parse_message(a.data)
            if method_or_status is None or (isinstance(m, Request) and m.method == method_or_status) or \
                    (isinstance(m, Response) and m.status == method_or_status):
                out.append(m)
    return out


def h323_out(actions, conn=None):
    return [sim.parse_q931(a.data[4:]) for a in actions if isinstance(a, StreamSend) and (conn is None or a.conn == conn)]


def faststart_offer(codecs=("g711Ulaw64k",)):
    fast, n = [], 1
    for codec in codecs:
        fast.append(sim.olc_audio(n, codec, 20, reverse=False, media=None, rtcp=(H_RTP[0], H_RTP[1] + 1)))
        fast.append(sim.olc_audio(n + 1, codec, 20, reverse=True, media=H_RTP, rtcp=(H_RTP[0], H_RTP[1] + 1)))
        n += 2
    return fast


def response(invite: Request, status: int, *, tag="callee1", body=b"", extra=()):
    head = [f"SIP/2.0 {status} X"] + [f"{n}: {v}" for n, v in invite.headers if n in ("via", "from", "call-id", "cseq")]
    to = invite.header("to") + (f";tag={tag}" if status > 100 else "")
    head += [f"To: {to}", "Contact: <sip:pbx@10.2.0.5:5060>", *extra]
    if body:
        head.append("Content-Type: application/sdp")
    return ("\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def sdp(host, port, pts="0", names=("PCMU",)):
    lines = ["v=0", f"o=- 1 1 IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0", f"m=audio {port} RTP/AVP {pts}"]
    lines += [f"a=rtpmap:{pt} {name}/8000" for pt, name in zip(pts.split(), names)]
    return ("\r\n".join(lines) + "\r\n").encode()


class H2S:
    """An H.323 caller (site-h) calling a SIP number of site-s through the gateway."""

    def __init__(self, control, codecs=("g711Ulaw64k",), **settings):
        self.control = control
        self.gw = gateway(control, **settings)
        self.guid = sim.new_guid()
        self.crv = 77
        self.conn = self.gw.h323_accept(("10.1.0.5", 33000))
        setup = sim.q931(sim.SETUP, self.crv, False,
                         sim.setup_body(self.guid, [("dialledDigits", "442079460000")], [("dialledDigits", "331234")],
                                        faststart_offer(codecs), PBX_H), called="442079460000")
        self.first = self.gw.h323_data(self.conn, setup, 0.0)
        invites = sip_out(self.first, "INVITE")
        self.invite = invites[0] if invites else None

    def sip(self, data, now=1.0):
        return self.gw.sip_receive(data, PBX_S, now)

    def answer(self, now=1.0):
        self.sip(response(self.invite, 180), now)
        return self.sip(response(self.invite, 200, body=sdp(*S_RTP)), now)


def test_h323_setup_becomes_invite_with_the_faststart_offer_and_one_admission():
    control = Control()
    call = H2S(control)
    proceeding = h323_out(call.first)
    assert [m["type"] for m in proceeding] == [sim.CALL_PROCEEDING] and proceeding[0]["from_destination"]
    invite = call.invite
    assert invite is not None and invite.uri == "sip:+442079460000@site-s.example"
    assert [s.peer for s in call.first if isinstance(s, Send)] == [PBX_S]
    body = invite.body.decode()
    assert "c=IN IP4 10.1.0.5" in body and "m=audio 40000 RTP/AVP 0" in body and "a=rtpmap:0 PCMU/8000" in body
    assert invite.header("p-asserted-identity") == "<sip:+331234@10.0.0.1>"
    assert len(control.admits) == 1
    request = control.admits[0]
    assert request.call_id == "gw-" + call.guid.hex()
    assert (request.caller_community, request.callee_community, request.media.codec) == ("site-h", "site-s", "pcmu")


def test_ringing_and_answer_map_to_alerting_and_connect_with_accepted_channels():
    control = Control()
    call = H2S(control)
    ringing = call.sip(response(call.invite, 180))
    assert [m["type"] for m in h323_out(ringing)] == [sim.ALERTING]
    answered = call.sip(response(call.invite, 200, body=sdp(*S_RTP)))
    connect = h323_out(answered)
    assert [m["type"] for m in connect] == [sim.CONNECT]
    fast = sim.body_of(connect[0])[1]["fastStart"]
    forward = sim.dec("olc", fast[0])
    params = forward["forwardLogicalChannelParameters"]
    assert forward["forwardLogicalChannelNumber"] == 1 and params["dataType"][1][0] == "g711Ulaw64k"
    media = params["multiplexParameters"][1]["mediaChannel"][1][1]
    assert (media["network"], media["tsapIdentifier"]) == (bytes([10, 2, 0, 5]), 50000)
    acks = sip_out(answered, "ACK")
    assert len(acks) == 1 and acks[0].uri == "sip:pbx@10.2.0.5:5060" and acks[0].header("to").endswith(";tag=callee1")
    call_id = "gw-" + call.guid.hex()
    assert [(c, a.ip, a.port, b.ip, b.port) for c, a, b in control.attached] == \
        [(call_id, "10.1.0.5", 40000, "10.2.0.5", 50000)]
    again = call.sip(response(call.invite, 200, body=sdp(*S_RTP)))      # a retransmitted 200: ACK again only
    assert len(sip_out(again, "ACK")) == 1 and not h323_out(again)


def test_early_media_183_maps_to_progress_with_faststart():
    call = H2S(Control())
    progress = call.sip(response(call.invite, 183, body=sdp(*S_RTP)))
    message = h323_out(progress)
    assert [m["type"] for m in message] == [0x03]
    assert sim.body_of(message[0])[1]["fastStart"]


def test_the_answered_codec_is_accepted_and_admission_refined():
    control = Control()
    call = H2S(control, codecs=("g711Ulaw64k", "g729"))
    assert "m=audio 40000 RTP/AVP 0 18" in call.invite.body.decode()
    answered = call.sip(response(call.invite, 200, body=sdp(*S_RTP, pts="18", names=("G729",))))
    fast = sim.body_of(h323_out(answered)[0])[1]["fastStart"]
    assert sim.dec("olc", fast[0])["forwardLogicalChannelParameters"]["dataType"][1][0] == "g729"
    assert [m.codec for _, m in control.modified] == ["g729"]


def test_h323_caller_hangs_up_after_answer_bye_with_reason_and_one_release():
    control = Control()
    call = H2S(control)
    call.answer()
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 5.0)
    byes = sip_out(out, "BYE")
    assert len(byes) == 1 and byes[0].header("reason") == "Q.850;cause=16"
    assert any(isinstance(a, StreamClose) for a in out)
    assert control.releases == [("gw-" + call.guid.hex(), "h323: caller ReleaseComplete")]
    call.gw.h323_closed(call.conn, 5.1)
    call.sip(b"SIP/2.0 200 OK\r\n" + serialize(byes[0]).split(b"\r\n", 1)[1], 5.2)
    assert control.balanced()


def test_sip_callee_hangs_up_release_complete_carries_the_reason_cause():
    control = Control()
    call = H2S(control)
    call.answer()
    bye = (f"BYE sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKb1\r\n"
           f"From: {call.invite.header('to')};tag=callee1\r\nTo: {call.invite.header('from')}\r\n"
           f"Call-ID: {call.invite.call_id}\r\nCSeq: 9 BYE\r\nReason: Q.850;cause=31\r\n\r\n").encode()
    out = call.sip(bye, 6.0)
    assert [r.status for r in sip_out(out)] == [200]
    released = h323_out(out)
    assert [(m["type"], m["cause"]) for m in released] == [(sim.RELEASE_COMPLETE, 31)]
    assert control.balanced() and len(control.releases) == 1
    assert call.gw.sip_receive(bye, PBX_S, 6.5)        # a retransmitted BYE: answered, nothing released again
    assert len(control.releases) == 1


@pytest.mark.parametrize("status, reason, cause", [(486, None, 17), (404, None, 1), (480, None, 18),
                                                  (503, "Q.850;cause=34", 34), (603, None, 21), (488, None, 65)])
def test_sip_rejections_become_release_complete_per_rfc_3398(status, reason, cause):
    control = Control()
    call = H2S(control)
    out = call.sip(response(call.invite, status, extra=(f"Reason: {reason}",) if reason else ()))
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, cause)]
    ack = sip_out(out, "ACK")
    assert len(ack) == 1 and ack[0].top_via.branch == call.invite.top_via.branch    # hop-by-hop ACK
    assert control.releases == [("gw-" + call.guid.hex(), f"sip-{status}")]


def test_no_answer_from_the_sip_side_times_out_with_cause_102():
    control = Control()
    call = H2S(control)
    retransmitted = call.gw.handle_timer(0.6)
    assert len(sip_out(retransmitted, "INVITE")) == 1
    out = []
    now = 0.6
    while now < 40:
        now = call.gw.next_timer() or 40
        out += call.gw.handle_timer(now)
        if any(isinstance(a, StreamSend) for a in out):
            break
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 102)]
    assert 31 < now < 33 and control.releases == [("gw-" + call.guid.hex(), "timeout")]


def test_h323_caller_abandons_while_ringing_cancel_then_487_is_acked():
    control = Control()
    call = H2S(control)
    call.sip(response(call.invite, 180))
    out = call.gw.h323_data(call.conn, sim.q931(sim.RELEASE_COMPLETE, call.crv, False, sim.release_body(call.guid),
                                                cause=16), 3.0)
    cancels = sip_out(out, "CANCEL")
    assert len(cancels) == 1 and cancels[0].top_via.branch == call.invite.top_via.branch
    assert cancels[0].header("reason") == "Q.850;cause=16"
    late = call.sip(response(call.invite, 487), 3.1)
    assert len(sip_out(late, "ACK")) == 1 and not h323_out(late)
    assert len(control.releases) == 1


def test_a_200_crossing_the_cancel_is_acked_and_byed():
    control = Control()
    call = H2S(control)
    call.sip(response(call.invite, 180))
    call.gw.h323_closed(call.conn, 3.0)                     # the caller's connection dropped
    late = call.sip(response(call.invite, 200, body=sdp(*S_RTP)), 3.1)
    assert len(sip_out(late, "ACK")) == 1 and len(sip_out(late, "BYE")) == 1
    assert len(control.releases) == 1


def test_admission_refusal_gives_release_complete_34_and_no_invite():
    control = Control(reject=RejectReason.POOL_FULL)
    call = H2S(control)
    assert call.invite is None
    messages = h323_out(call.first)
    assert [(m["type"], m["cause"]) for m in messages] == [(sim.CALL_PROCEEDING, None), (sim.RELEASE_COMPLETE, 34)]
    assert control.releases == []


def test_admission_ending_the_call_clears_both_legs_without_a_second_release():
    control = Control()
    call = H2S(control)
    call.answer()
    out = call.gw.call_ended("gw-" + call.guid.hex(), "preempted by an emergency call", 9.0)
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 8)]
    assert sip_out(out, "BYE")[0].header("reason") == "Q.850;cause=8"
    assert control.releases == []
    assert call.gw.call_ended("gw-" + call.guid.hex(), "again", 9.1) == []


def test_unknown_number_and_no_faststart_are_refused_with_a_cause():
    control = Control()
    gw = gateway(control)
    conn = gw.h323_accept(("10.1.0.5", 33001))
    guid = sim.new_guid()
    out = gw.h323_data(conn, sim.q931(sim.SETUP, 5, False, sim.setup_body(guid, [("dialledDigits", "999")], [], [],
                                                                          PBX_H), called="999"), 0.0)
    assert [m["cause"] for m in h323_out(out)] == [None, 1]
    conn = gw.h323_accept(("10.1.0.5", 33002))
    out = gw.h323_data(conn, sim.q931(sim.SETUP, 6, False, sim.setup_body(guid, [("dialledDigits", "4420")], [], [],
                                                                          PBX_H), called="4420"), 0.0)
    assert [m["cause"] for m in h323_out(out)] == [None, 65] and control.admits == []


def test_garbage_on_the_h323_stream_and_the_sip_port_stops_nothing():
    control = Control()
    call = H2S(control)
    gw = call.gw
    assert gw.h323_data(call.conn, b"\x03\x00\x00\x09\x08\x02\x00\x01\x99", 1.0) == []     # bad message type
    assert gw.h323_data(call.conn, b"\x03\x00\x00\x0a\x08\x02\x00\x4d\x01\x7e\xff", 1.0) == []   # truncated IE
    out = gw.sip_receive(b"INVITE sip:x SIP/2.0\r\nVia: bad\r\n\r\n", PBX_S, 1.0)
    assert out == [] or all(isinstance(a, Send) for a in out)
    out = gw.sip_receive(b"OPTIONS sip:gw@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKo\r\n"
                         b"From: <sip:a@b>;tag=1\r\nTo: <sip:gw@10.0.0.1>\r\nCall-ID: o\r\nCSeq: x OPTIONS\r\n\r\n",
                         PBX_S, 1.0)
    assert [r.status for r in sip_out(out)] == [400]
    assert gw.sip_receive(b"\xff" * 50, PBX_S, 1.0) == []
    broken = gw.h323_data(call.conn, b"\x07\x00\x00\x05x", 1.5)              # TPKT version 7: the stream is lost
    assert any(isinstance(a, StreamClose) for a in broken) and len(sip_out(broken, "CANCEL")) == 1
    assert gw.internal_errors == 0 and control.balanced()
    assert gw.stats["q931-malformed"] == 2 and gw.stats["tpkt-broken"] == 1


# --- SIP -> H.323 -----------------------------------------------------------------------------------

def invite_bytes(number="331234", call_id="s2h-1", body=None, extra=()):
    body = sdp(*S_RTP, pts="8 0 101", names=("PCMA", "PCMU", "telephone-event")) if body is None else body
    head = [f"INVITE sip:{number}@site-h.example SIP/2.0", "Via: SIP/2.0/UDP 10.2.0.5:5060;branch=z9hG4bKi1",
            "From: <sip:+442071230000@site-s.example>;tag=caller1", f"To: <sip:{number}@site-h.example>",
            f"Call-ID: {call_id}", "CSeq: 10 INVITE", "Contact: <sip:pbx@10.2.0.5:5060>", "Max-Forwards: 70", *extra]
    if body:
        head.append("Content-Type: application/sdp")
    return ("\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class S2H:
    def __init__(self, control, **settings):
        self.control = control
        self.gw = gateway(control, **settings)
        self.first = self.gw.sip_receive(invite_bytes(), PBX_S, 0.0)
        opens = [a for a in self.first if isinstance(a, StreamOpen)]
        self.conn = opens[0].conn if opens else None
        setups = h323_out(self.first)
        self.setup = setups[0] if setups else None

    def h323(self, message_type, kind, fast=None, cause=None, now=1.0):
        guid = sim.body_of(self.setup)[1]["callIdentifier"]["guid"]
        body = sim.release_body(guid) if kind == "releaseComplete" else sim.answer_body(kind, guid, fast)
        return self.gw.h323_data(self.conn, sim.q931(message_type, self.setup["crv"], True, body, cause=cause), now)

    def answer_fast(self, codec="g711Alaw64k"):
        host, port = H_RTP
        return [sim.olc_audio(1, codec, 20, reverse=False, media=(host, port), rtcp=(host, port + 1)),
                sim.olc_audio(2, codec, 20, reverse=True, media=None, rtcp=(host, port + 1))]


def test_invite_becomes_setup_with_faststart_and_one_admission():
    control = Control()
    call = S2H(control)
    assert [r.status for r in sip_out(call.first)] == [100]
    assert [(a.host, a.port) for a in call.first if isinstance(a, StreamOpen)] == [PBX_H]
    setup = call.setup
    assert setup["type"] == sim.SETUP and not setup["from_destination"]
    fields = sim.body_of(setup)[1]
    assert fields["destinationAddress"] == [("dialledDigits", "331234")]
    assert fields["sourceAddress"] == [("dialledDigits", "442071230000")]
    proposals = [sim.dec("olc", f) for f in fields["fastStart"]]
    assert [p.get("reverseLogicalChannelParameters", p["forwardLogicalChannelParameters"])["dataType"][1][0]
            for p in proposals] == ["g711Alaw64k", "g711Alaw64k", "g711Ulaw64k", "g711Ulaw64k"]
    media = proposals[1]["reverseLogicalChannelParameters"]["multiplexParameters"][1]["mediaChannel"][1][1]
    assert (media["network"], media["tsapIdentifier"]) == (bytes([10, 2, 0, 5]), 50000)
    assert [(r.caller_community, r.callee_community, r.media.codec) for r in control.admits] == \
        [("site-s", "site-h", "pcma")]


def test_alerting_and_connect_become_180_and_200_with_sdp_and_ack_stops_the_200():
    control = Control()
    call = S2H(control)
    assert [r.status for r in sip_out(call.h323(sim.ALERTING, "alerting"))] == [180]
    answered = sip_out(call.h323(sim.CONNECT, "connect", call.answer_fast()))
    assert [r.status for r in answered] == [200]
    body = answered[0].body.decode()
    assert "c=IN IP4 10.1.0.5" in body and re.search(r"m=audio 40000 RTP/AVP 8\r\n", body)
    assert answered[0].header("to").endswith(f";tag={sip_out(call.first)[0].header('to').split('tag=')[-1]}") or \
        ";tag=" in answered[0].header("to")
    assert len(sip_out(call.gw.handle_timer(1.6), 200)) == 1              # retransmitted until the ACK
    ack = (f"ACK sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKa\r\n"
           f"From: <sip:+442071230000@site-s.example>;tag=caller1\r\nTo: {answered[0].header('to')}\r\n"
           f"Call-ID: s2h-1\r\nCSeq: 10 ACK\r\n\r\n").encode()
    call.gw.sip_receive(ack, PBX_S, 1.7)
    assert call.gw.handle_timer(10.0) == []
    assert [(a.ip, a.port, b.ip, b.port) for _, a, b in control.attached] == [("10.2.0.5", 50000, "10.1.0.5", 40000)]
    bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"10 ACK", b"11 BYE").replace(b"z9hG4bKa", b"z9hG4bKb")
    out = call.gw.sip_receive(bye, PBX_S, 20.0)
    assert [r.status for r in sip_out(out)] == [200]
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 16)]
    assert control.balanced() and len(control.releases) == 1


@pytest.mark.parametrize("cause, status", [(17, 486), (1, 404), (34, 503), (19, 480), (21, 403), (127, 500)])
def test_h323_release_before_answer_becomes_a_final_with_reason(cause, status):
    control = Control()
    call = S2H(control)
    out = sip_out(call.h323(sim.RELEASE_COMPLETE, "releaseComplete", cause=cause))
    assert [r.status for r in out] == [status] and out[0].header("reason").startswith(f"Q.850;cause={cause}")
    assert len(control.releases) == 1


def test_h323_callee_hangs_up_after_answer_bye_to_the_sip_caller():
    control = Control()
    call = S2H(control)
    call.h323(sim.CONNECT, "connect", call.answer_fast())
    out = call.h323(sim.RELEASE_COMPLETE, "releaseComplete", cause=16, now=3.0)
    byes = sip_out(out, "BYE")
    assert len(byes) == 1 and byes[0].uri == "sip:pbx@10.2.0.5:5060" and byes[0].header("reason") == "Q.850;cause=16"
    assert byes[0].header("to") == "<sip:+442071230000@site-s.example>;tag=caller1"
    assert len(control.releases) == 1


def cancel_while_ringing(gw, control) -> None:
    """The SIP caller's CANCEL: 200 and 487, ReleaseComplete cause 16, one release."""
    cancel = invite_bytes(body=b"").replace(b"INVITE sip", b"CANCEL sip", 1).replace(b"10 INVITE", b"10 CANCEL")
    out = gw.sip_receive(cancel, PBX_S, 2.0)
    assert sorted(r.status for r in sip_out(out)) == [200, 487]
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 16)]
    assert len(control.releases) == 1


def test_sip_cancel_gives_200_487_and_release_complete():
    control = Control()
    call = S2H(control)
    call.h323(sim.ALERTING, "alerting")
    cancel_while_ringing(call.gw, control)


def test_h323_side_unreachable_or_silent():
    control = Control()
    call = S2H(control)
    out = sip_out(call.gw.h323_closed(call.conn, 0.1))          # connect failed
    assert [r.status for r in out] == [503] and out[0].header("reason").startswith("Q.850;cause=41")
    control = Control()
    call = S2H(control)
    out = sip_out(call.gw.handle_timer(4.1))                    # T303: no answer to the Setup
    assert [r.status for r in out] == [504] and len(control.releases) == 1


def test_sip_side_admission_refusal_and_bad_offers():
    control = Control(reject=RejectReason.POOL_FULL)
    call = S2H(control)
    out = sip_out(call.first)
    assert [r.status for r in out] == [100, 503] and out[1].header("reason").startswith("Q.850;cause=34")
    assert call.conn is None
    gw = gateway(Control())
    late = gw.sip_receive(invite_bytes(body=b""), PBX_S, 0.0)        # a late offer: H.245 (test_gateway_h245.py)
    assert [r.status for r in sip_out(late)] == [100] and any(isinstance(a, StreamOpen) for a in late)
    bad = invite_bytes(call_id="x2", body=b"v=0\r\nm=audio x RTP/AVP 0\r\n")
    assert [r.status for r in sip_out(gw.sip_receive(bad, PBX_S, 0.0))] == [488]
    nowhere = invite_bytes(number="999", call_id="x3").replace(b"site-h.example", b"elsewhere.example")
    assert [r.status for r in sip_out(gw.sip_receive(nowhere, PBX_S, 0.0))] == [404]


def test_a_retransmitted_invite_gets_the_last_response_and_no_second_admission():
    control = Control()
    call = S2H(control)
    call.h323(sim.ALERTING, "alerting")
    again = call.gw.sip_receive(invite_bytes(), PBX_S, 0.5)
    assert [r.status for r in sip_out(again)] == [180] and len(control.admits) == 1
    assert not any(isinstance(a, StreamOpen) for a in again)


def test_profiles_apply_to_the_gateways_sip_leg():
    uk = Profile("uk", identity=Identity.RPID, numbers=NumberPlan("44", "0", "00", NumberForm.NATIONAL))
    call = H2S(Control(), profiles={"site-s": uk})
    assert call.invite.uri == "sip:02079460000@site-s.example"
    assert call.invite.header("remote-party-id") == "<sip:00331234@10.0.0.1>;party=calling;screen=yes;privacy=off"


def test_cause_tables_round_trip_the_common_cases():
    for cause, status in ((17, 486), (1, 404), (34, 503), (21, 403), (65, 488), (102, 504)):
        assert status_of_q850(cause) == status
    for status, cause in ((486, 17), (404, 1), (403, 21), (488, 65), (408, 102), (487, 127), (599, 41)):
        assert q850_of_status(status) == cause


def test_a_bug_or_a_failing_admission_is_contained():
    class Broken(Control):
        def admit(self, request):
            raise ConnectionError("controller down")
    call = H2S(Broken())
    assert [m["cause"] for m in h323_out(call.first)] == [None, 41] and call.gw.internal_errors == 0
    out = sip_out(gateway(Broken()).sip_receive(invite_bytes(), PBX_S, 0.0))
    assert [r.status for r in out] == [100, 503] or [r.status for r in out] == [503]
    gw = gateway(Control())

    def boom(*args):
        raise RuntimeError("bug")
    gw.sip.on_request = boom
    assert gw.sip_receive(invite_bytes(), PBX_S, 0.0) == [] and gw.internal_errors == 1


def test_mutated_messages_on_both_sides_never_raise_and_leave_admission_balanced():
    import random
    rng = random.Random(18)
    control = Control()
    h2s, s2h = H2S(control), S2H(control)
    seeds_sip = [invite_bytes(call_id=f"f{i}") for i in range(3)] + [response(h2s.invite, 200, body=sdp(*S_RTP)),
                                                                     response(h2s.invite, 486)]
    guid = sim.body_of(s2h.setup)[1]["callIdentifier"]["guid"]
    seeds_h323 = [sim.q931(sim.CONNECT, s2h.setup["crv"], True, sim.answer_body("connect", guid, s2h.answer_fast())),
                  sim.q931(sim.RELEASE_COMPLETE, s2h.setup["crv"], True, sim.release_body(guid), cause=17)]

    def mutate(data: bytes) -> bytes:
        data = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            at = rng.randrange(len(data))
            if choice < 0.5:
                data[at] = rng.randrange(256)
            elif choice < 0.75:
                del data[at:at + rng.randint(1, 20)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
            if not data:
                data = bytearray(b"x")
        return bytes(data)
    now = 2.0
    for i in range(1500):
        now += 0.05
        h2s.gw.sip_receive(mutate(rng.choice(seeds_sip)), PBX_S, now)
        s2h.gw.sip_receive(mutate(rng.choice(seeds_sip)), PBX_S, now)
        conn = s2h.gw.h323_accept(("10.1.0.5", 40000 + i))
        s2h.gw.h323_data(conn, mutate(rng.choice(seeds_h323)), now)
        s2h.gw.h323_data(s2h.conn, mutate(rng.choice(seeds_h323)), now)
        h2s.gw.h323_data(h2s.conn, mutate(rng.choice(seeds_h323)), now)
    drain_and_balance((h2s.gw, s2h.gw), control, now)


def drain_and_balance(gateways, control, now) -> None:
    """Run every timer, end what is left; no internal error, every admission released once."""
    for gw in gateways:
        while (deadline := gw.next_timer()) is not None and deadline < now + 100:
            gw.handle_timer(deadline)
        for call_id in list(gw.bridges):
            gw.call_ended(call_id, "test over", now + 100)
        assert gw.internal_errors == 0
    from collections import Counter
    admitted = Counter(r.call_id for r in control.admits)     # a call id can come back after its call ended
    released = Counter(c for c, _ in control.releases)
    assert all(released[c] <= admitted[c] for c in released), "a call was released more often than admitted"
    assert all(released[c] >= admitted[c] - 0 for c in admitted), "an admitted call was never released"


# --- DTMF -------------------------------------------------------------------------------------

def uii_facility(crv: int, guid: bytes, from_destination: bool, value) -> bytes:
    return sim.q931(0x62, crv, from_destination, ("facility", {"protocolIdentifier": sim.PID,
                                                                "reason": ("transportedInformation", 0),
                                                                "callIdentifier": {"guid": guid}}),
                    extra_pdu={"h245Tunnelling": True, "h245Control": [sim.enc("h245", value)]})


@pytest.mark.parametrize("value, body", [
    (("indication", ("userInput", ("alphanumeric", "5"))), b"Signal=5\r\nDuration=100\r\n"),
    (("indication", ("userInput", ("signal", {"signalType": "#", "duration": 160}))), b"Signal=#\r\nDuration=160\r\n"),
])
def test_h323_user_input_becomes_sip_info(value, body):
    call = H2S(Control())
    call.answer()
    out = call.gw.h323_data(call.conn, uii_facility(call.crv, call.guid, False, value), 3.0)
    infos = sip_out(out, "INFO")
    assert len(infos) == 1 and infos[0].body == body
    assert infos[0].header("content-type") == "application/dtmf-relay"
    assert infos[0].uri == "sip:pbx@10.2.0.5:5060" and infos[0].header("to").endswith(";tag=callee1")
    assert len(sip_out(call.gw.handle_timer(3.6), "INFO")) == 1             # retransmitted until answered
    call.sip(b"SIP/2.0 200 OK\r\n" + serialize(infos[0]).split(b"\r\n", 1)[1], 3.7)
    assert sip_out(call.gw.handle_timer(5.0), "INFO") == []
    other = call.gw.h323_data(call.conn, uii_facility(call.crv, call.guid, False,
                                                      ("request", ("roundTripDelayRequest", {"sequenceNumber": 1}))),
                              6.0)
    assert sip_out(other, "INFO") == []                                     # other H.245 is not carried


@pytest.mark.parametrize("content_type, body, digit, duration", [
    ("application/dtmf-relay", b"Signal=7\r\nDuration=250\r\n", "7", 250),
    ("application/dtmf-relay", b"Signal=11\r\nDuration=80\r\n", "#", 80),
    ("application/dtmf", b"*", "*", 100),
])
def test_sip_info_becomes_h323_user_input(content_type, body, digit, duration):
    control = Control()
    call = S2H(control)
    answered = sip_out(call.h323(sim.CONNECT, "connect", call.answer_fast()))
    to = answered[0].header("to")
    info = (f"INFO sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKinfo\r\n"
            f"From: <sip:+442071230000@site-s.example>;tag=caller1\r\nTo: {to}\r\nCall-ID: s2h-1\r\n"
            f"CSeq: 12 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    out = call.gw.sip_receive(info, PBX_S, 2.0)
    assert [r.status for r in sip_out(out)] == [200]
    (facility,) = h323_out(out)
    assert facility["type"] == 0x62
    (control_bytes,) = facility["uu"]["h323-uu-pdu"]["h245Control"]
    assert sim.dec("h245", control_bytes) == \
        ("indication", ("userInput", ("signal", {"signalType": digit, "duration": duration})))


def test_odd_info_bodies_are_answered_and_carry_nothing():
    call = S2H(Control())
    to = sip_out(call.h323(sim.CONNECT, "connect", call.answer_fast()))[0].header("to")
    for content_type, body, status in (("application/dtmf-relay", b"Signal=Z\r\n", 400),
                                       ("text/plain", b"hello", 415), ("application/dtmf-relay", b"", 200)):
        info = (f"INFO sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bK{status}\r\n"
                f"From: <sip:+442071230000@site-s.example>;tag=caller1\r\nTo: {to}\r\nCall-ID: s2h-1\r\n"
                f"CSeq: 13 INFO\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        out = call.gw.sip_receive(info, PBX_S, 2.0)
        assert [r.status for r in sip_out(out)] == [status] and h323_out(out) == []


# --- deferred admission (REST mode): Perform out, performed in ------------------------------------

from ryu_apps.signalling.call_control import Admit, AttachMedia, Release  # noqa: E402
from ryu_apps.signalling.h323.actions import Perform  # noqa: E402


def performs(actions):
    return [a for a in actions if isinstance(a, Perform)]


def test_deferred_admission_h323_caller_waits_then_the_invite_goes():
    control = Control()
    gw = gateway(control)
    gw.defer = True
    conn = gw.h323_accept(("10.1.0.5", 33000))
    guid = sim.new_guid()
    setup = sim.q931(sim.SETUP, 9, False, sim.setup_body(guid, [("dialledDigits", "442079460000")], [],
                                                         faststart_offer(), PBX_H), called="442079460000")
    out = gw.h323_data(conn, setup, 0.0)
    (ask,) = performs(out)
    assert isinstance(ask.op, Admit) and sip_out(out) == [] and control.admits == []
    assert [m["type"] for m in h323_out(out)] == [sim.CALL_PROCEEDING]
    out = gw.performed(ask.ticket, Admitted(ask.op.request.call_id, "a-b", 91), 0.2)
    assert len(sip_out(out, "INVITE")) == 1
    invite = sip_out(out, "INVITE")[0]
    out = gw.sip_receive(response(invite, 200, body=sdp(*S_RTP)), PBX_S, 1.0)
    assert [type(p.op) for p in performs(out)] == [AttachMedia]
    out = gw.h323_data(conn, sim.q931(sim.RELEASE_COMPLETE, 9, False, sim.release_body(guid), cause=16), 2.0)
    assert [(type(p.op), p.op.call_id) for p in performs(out)] == [(Release, "gw-" + guid.hex())]
    assert len(sip_out(out, "BYE")) == 1


def test_deferred_admission_the_caller_leaves_or_control_is_slow_a_late_yes_is_released():
    gw = gateway(Control())
    gw.defer = True
    conn = gw.h323_accept(("10.1.0.5", 33000))
    guid = sim.new_guid()
    setup = sim.q931(sim.SETUP, 9, False, sim.setup_body(guid, [("dialledDigits", "442079460000")], [],
                                                         faststart_offer(), PBX_H), called="442079460000")
    (ask,) = performs(gw.h323_data(conn, setup, 0.0))
    gw.h323_closed(conn, 0.5)                                     # the caller gave up
    out = gw.performed(ask.ticket, Admitted("gw-" + guid.hex(), "a-b", 91), 1.0)
    assert [type(p.op) for p in performs(out)] == [Release] and sip_out(out) == []
    conn = gw.h323_accept(("10.1.0.5", 33001))
    guid = sim.new_guid()
    setup = sim.q931(sim.SETUP, 10, False, sim.setup_body(guid, [("dialledDigits", "442079460000")], [],
                                                          faststart_offer(), PBX_H), called="442079460000")
    (ask,) = performs(gw.h323_data(conn, setup, 10.0))
    out = gw.handle_timer(15.1)                                   # control_timeout_s
    assert [(m["type"], m["cause"]) for m in h323_out(out)] == [(sim.RELEASE_COMPLETE, 41)]
    late = gw.performed(ask.ticket, Admitted("gw-" + guid.hex(), "a-b", 91), 16.0)
    assert [type(p.op) for p in performs(late)] == [Release]
    assert gw.internal_errors == 0


def test_deferred_admission_sip_caller_refused_by_the_pool():
    gw = gateway(Control())
    gw.defer = True
    out = gw.sip_receive(invite_bytes(), PBX_S, 0.0)
    (ask,) = performs(out)
    assert [r.status for r in sip_out(out)] == [100] and not any(isinstance(a, StreamOpen) for a in out)
    out = gw.performed(ask.ticket, Rejected(ask.op.request.call_id, RejectReason.POOL_FULL, "full"), 0.3)
    finals = sip_out(out)
    assert [r.status for r in finals] == [503] and finals[0].header("reason").startswith("Q.850;cause=34")
    assert performs(out) == [] and h323_out(out) == []


# --- re-INVITE / UPDATE ----------------------------------------------------------------------------

def in_dialog(method, to, body=b"", cseq=20, extra=()):
    head = [f"{method} sip:gw@10.0.0.1:5080 SIP/2.0", f"Via: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bK{method}{cseq}",
            "From: <sip:+442071230000@site-s.example>;tag=caller1", f"To: {to}", "Call-ID: s2h-1",
            f"CSeq: {cseq} {method}", "Contact: <sip:pbx@10.2.0.5:5060>", *extra]
    if body:
        head.append("Content-Type: application/sdp")
    return ("\r\n".join(head) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_session_refresh_reinvite_is_answered_with_the_calls_media():
    control = Control()
    call = S2H(control)
    to = sip_out(call.h323(sim.CONNECT, "connect", call.answer_fast()))[0].header("to")
    offer = sdp(*S_RTP, pts="8 0", names=("PCMA", "PCMU"))
    out = sip_out(call.gw.sip_receive(in_dialog("INVITE", to, offer, extra=("Session-Expires: 1800;refresher=uac",
                                                                            "Supported: timer")), PBX_S, 60.0))
    assert [r.status for r in out] == [200]
    assert out[0].header("session-expires") == "1800;refresher=uac" and out[0].header("require") == "timer"
    body = out[0].body.decode()
    assert "c=IN IP4 10.1.0.5" in body and "m=audio 40000 RTP/AVP 8\r\n" in body
    hold = sdp("0.0.0.0", 50000, pts="8", names=("PCMA",))
    assert [r.status for r in sip_out(call.gw.sip_receive(in_dialog("INVITE", to, hold, 21), PBX_S, 61.0))] == [200]
    update = sip_out(call.gw.sip_receive(in_dialog("UPDATE", to, b"", 22), PBX_S, 62.0))
    assert [r.status for r in update] == [200] and b"m=audio 40000" in update[0].body
    moved = sdp("10.2.0.9", 50000, pts="8", names=("PCMA",))
    refused = sip_out(call.gw.sip_receive(in_dialog("INVITE", to, moved, 23), PBX_S, 63.0))
    assert [r.status for r in refused] == [488] and refused[0].header("reason").startswith("Q.850;cause=65")
    other_codec = sdp(*S_RTP, pts="18", names=("G729",))
    assert [r.status for r in sip_out(call.gw.sip_receive(in_dialog("INVITE", to, other_codec, 24), PBX_S,
                                                          64.0))] == [488]
    assert len(control.releases) == 0 and call.gw.bridges        # the call goes on


def test_a_reinvite_from_the_sip_callee_of_an_h323_caller_and_before_the_answer():
    call = H2S(Control())
    early = (f"INVITE sip:gw@10.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 10.2.0.5;branch=z9hG4bKe\r\n"
             f"From: {call.invite.header('to')};tag=callee1\r\nTo: {call.invite.header('from')}\r\n"
             f"Call-ID: {call.invite.call_id}\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    assert [r.status for r in sip_out(call.sip(early))] == [491]
    call.answer()
    out = sip_out(call.sip(early.replace(b"5 INVITE", b"6 INVITE").replace(b"bKe", b"bKf"), 9.0))
    assert [r.status for r in out] == [200] and b"c=IN IP4 10.1.0.5" in out[0].body


def test_a_call_relayed_by_a_trusted_front_end_is_translated_but_never_admitted_here():
    control = Control()
    gw = Gateway(GatewaySettings("10.0.0.1", 5080, "10.0.0.1", 1720, sip_pbx={"site-s": PBX_S},
                                 domains={"site-s": "site-s.example"}, trusted=frozenset({"10.0.0.1"})),
                 control, Directory(), HashIds(b"t"))
    conn = gw.h323_accept(("10.0.0.1", 40000))                   # our gatekeeper, in no community
    guid = sim.new_guid()
    out = gw.h323_data(conn, sim.q931(sim.SETUP, 3, False, sim.setup_body(guid, [("dialledDigits", "4420")], [],
                                                                         faststart_offer(), PBX_H),
                                      called="4420"), 0.0)
    (invite,) = sip_out(out, "INVITE")
    gw.sip_receive(response(invite, 200, body=sdp(*S_RTP)), PBX_S, 1.0)
    gw.h323_data(conn, sim.q931(sim.RELEASE_COMPLETE, 3, False, sim.release_body(guid), cause=16), 2.0)
    assert control.admits == [] and control.attached == [] and control.releases == []
    assert gw.stats["admitted-by-front-end"] == 1


def test_the_gatekeeper_routes_calls_for_sip_communities_to_the_gateway():
    from ryu_apps.config import parse_config
    from ryu_apps.signalling.h323.gatekeeper import GatekeeperSettings
    import copy, yaml
    from pathlib import Path
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs/examples/enterprise.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["communities"][0]["signalling"] = "h323"
    doc["h323"] = {"enabled": True}
    doc["gateway"] = {"h323_listen": "127.0.0.1:1730", "pbx": {"site-b": "10.0.2.5:5060"}}
    config = parse_config(doc)
    settings = GatekeeperSettings.from_config(config.h323, config.gateway)
    assert settings.route_for("site-b") == ("127.0.0.1", 1730)
    assert settings.route_for("site-a") is None and settings.route_for(None) is None
    assert GatekeeperSettings.from_config(config.h323).route_for("site-b") is None
