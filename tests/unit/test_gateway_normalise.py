"""SIP normalisation rules, one by one, and the proxy's hook (messages in and out)."""

import ipaddress
import re

import pytest

from ryu_apps.core.network import Community
from ryu_apps.signalling.gateway.normalise import (ProxyNormaliser, apply_header_rules, e164_to_national, filter_sdp,
                                                   inbound, national_to_e164, outbound)
from ryu_apps.signalling.gateway.profile import (BUILTIN_PROFILES, GatewayConfig, CommunitySignalling, HeaderAction,
                                                 HeaderRule, Identity, NumberForm, NumberPlan, Profile, SdpRules)
from ryu_apps.signalling.sip.message import Request, Response, parse_message, serialize
from ryu_apps.signalling.sip.transaction import Peer, Send

UK = NumberPlan("44", "0", "00", NumberForm.NATIONAL)
US = NumberPlan("1", "1", "011", NumberForm.E164)

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.2.0.5\r\ns=-\r\nc=IN IP4 10.2.0.5\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 18 8 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:18 G729/8000\r\n"
       b"a=fmtp:18 annexb=no\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 opus/48000/2\r\n"
       b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:30\r\n"
       b"m=video 5000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n")


def invite(*extra: str, uri: str = "sip:02079460000@site-b.example", to: str = "<sip:02079460000@site-b.example>",
           body: bytes = b"") -> Request:
    head = [f"INVITE {uri} SIP/2.0", "Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK1",
            "From: \"Alice\" <sip:02071230000@site-a.example>;tag=a1", f"To: {to}", "Call-ID: c1@x",
            "CSeq: 1 INVITE", "Contact: <sip:alice@10.1.0.5>", "Max-Forwards: 70", *extra]
    if body:
        head.append("Content-Type: application/sdp")
    message = parse_message(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize("number, plan, expected", [
    ("02079460000", UK, "+442079460000"),
    ("020-7946-0000", UK, "+442079460000"),
    ("0033142685300", UK, "+33142685300"),
    ("+442079460000", UK, "+442079460000"),
    ("2345", UK, "2345"),                 # an extension: unchanged
    ("0", UK, "0"),
    ("alice", UK, "alice"),
    ("12125551234", US, "+12125551234"),
    ("01133142685300", US, "+33142685300"),
])
def test_national_to_e164(number, plan, expected):
    assert national_to_e164(number, plan) == expected


@pytest.mark.parametrize("number, plan, expected", [
    ("+442079460000", UK, "02079460000"),
    ("+33142685300", UK, "0033142685300"),
    ("+12125551234", US, "12125551234"),
    ("2345", UK, "2345"),
    ("bob", UK, "bob"),
])
def test_e164_to_national(number, plan, expected):
    assert e164_to_national(number, plan) == expected


def test_inbound_numbers_become_e164_in_ruri_from_to_and_pai():
    profile = Profile("p", numbers=UK)
    message = inbound(invite("P-Asserted-Identity: <sip:02071230000@site-a.example>"), profile)
    assert isinstance(message, Request)
    assert message.uri == "sip:+442079460000@site-b.example"
    assert message.header("from") == "\"Alice\" <sip:+442071230000@site-a.example>;tag=a1"
    assert message.header("to") == "<sip:+442079460000@site-b.example>"
    assert message.header("p-asserted-identity") == "<sip:+442071230000@site-a.example>"


def test_outbound_numbers_take_the_pbx_form_and_keep_uri_parameters():
    profile = Profile("p", numbers=UK)
    message = outbound(invite(uri="sip:+442079460000;npdi@site-b.example;user=phone",
                              to="<tel:+442079460000;phone-context=x>"), profile)
    assert isinstance(message, Request)
    assert message.uri == "sip:02079460000;npdi@site-b.example;user=phone"
    assert message.header("to") == "<tel:02079460000;phone-context=x>"


def test_the_ruri_of_an_in_dialog_request_is_never_rewritten():
    profile = Profile("p", numbers=UK)
    message = inbound(invite(to="<sip:02079460000@site-b.example>;tag=b1", uri="sip:02079460000@10.2.0.5"), profile)
    assert isinstance(message, Request) and message.uri == "sip:02079460000@10.2.0.5"
    assert message.header("to") == "<sip:+442079460000@site-b.example>;tag=b1"


def test_rpid_from_the_pbx_becomes_pai_with_privacy():
    profile = Profile("p", identity=Identity.RPID)
    message = inbound(invite('Remote-Party-ID: "Bob" <sip:2001@site-b.example>;party=calling;screen=yes;privacy=full'),
                      profile)
    assert message.header("p-asserted-identity") == '"Bob" <sip:2001@site-b.example>'
    assert message.header("privacy") == "id" and message.header("remote-party-id") is None


def test_rpid_of_the_wrong_party_is_dropped_not_asserted():
    profile = Profile("p", identity=Identity.RPID)
    message = inbound(invite("Remote-Party-ID: <sip:2001@site-b.example>;party=called"), profile)
    assert message.header("p-asserted-identity") is None and message.header("remote-party-id") is None


def test_pai_becomes_rpid_for_an_rpid_pbx():
    profile = Profile("p", identity=Identity.RPID)
    message = outbound(invite("P-Asserted-Identity: \"Alice\" <sip:+442071230000@site-a.example>",
                              "P-Asserted-Identity: <tel:+442071230000>", "Privacy: id"), profile)
    assert message.header("remote-party-id") == \
        '"Alice" <sip:+442071230000@site-a.example>;party=calling;screen=yes;privacy=full'
    assert message.header("p-asserted-identity") is None


def test_a_pai_pbx_gets_pai_even_from_an_rpid_side():
    message = outbound(invite("Remote-Party-ID: <sip:2001@a>;party=calling"), BUILTIN_PROFILES["asterisk"])
    assert message.header("p-asserted-identity") == "<sip:2001@a>"


def test_rpid_in_a_response_is_the_called_party():
    raw = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n"
           b"To: <sip:b@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:b@b>\r\n\r\n")
    message = outbound(parse_message(raw), Profile("p", identity=Identity.RPID))
    assert isinstance(message, Response)
    assert message.header("remote-party-id") == "<sip:b@b>;party=called;screen=yes;privacy=off"


def test_header_rules_in_order():
    rules = (HeaderRule(HeaderAction.REMOVE, "x-*"), HeaderRule(HeaderAction.ADD, "x-site", "b"),
             HeaderRule(HeaderAction.RENAME, "subject", to="x-subject"),
             HeaderRule(HeaderAction.SET, "user-agent", "mam"),
             HeaderRule(HeaderAction.REPLACE, "x-subject", "[b] \\1", match=re.compile("^(.*)$")))
    message = apply_header_rules(invite("X-Secret: 1", "X-Other: 2", "Subject: hi", "User-Agent: a",
                                        "User-Agent: b"), rules)
    assert message.header("x-secret") is None and message.header("x-other") is None
    assert message.header_values("user-agent") == ["mam"] and message.header("subject") is None
    assert message.header("x-subject") == "[b] hi" and message.header("x-site") == "b"
    assert message.header("via") and message.call_id == "c1@x"        # routing state untouched


def test_strip_topology_only_outbound():
    profile = Profile("p", strip_topology=True)
    message = invite("User-Agent: PBX 1.0", "Server: x", "X-Internal: 10.9.9.9", "Warning: 399 pbx.internal \"x\"")
    assert inbound(message, profile).header("user-agent") == "PBX 1.0"
    out = outbound(message, profile)
    assert [out.header(h) for h in ("user-agent", "server", "x-internal", "warning")] == [None] * 4
    assert out.header("contact") == "<sip:alice@10.1.0.5>"


def test_sdp_codecs_filtered_and_ordered_with_their_attribute_lines():
    body = filter_sdp(SDP, SdpRules(codecs=("pcma", "pcmu", "telephone-event"))).decode()
    assert "m=audio 4000 RTP/AVP 8 0 101\r\n" in body
    assert "G729" not in body and "annexb" not in body and "opus" not in body
    assert "a=fmtp:101 0-15" in body and "m=video 5000" in body and body.endswith("\r\n")


def test_sdp_ptime_and_video():
    body = filter_sdp(SDP, SdpRules(ptime_ms=20, disable_video=True)).decode()
    assert "a=ptime:20" in body and "a=ptime:30" not in body
    assert "m=video 0 RTP/AVP 97" in body and "m=audio 4000 RTP/AVP 0 18 8 96 101" in body


def test_sdp_with_no_allowed_codec_left_is_passed_for_the_pbx_to_refuse():
    assert filter_sdp(SDP, SdpRules(codecs=("g722",))) == SDP
    assert filter_sdp(SDP, SdpRules(codecs=("telephone-event",))) == SDP


@pytest.mark.parametrize("body", [b"\xff\xfe", b"", b"not sdp", b"v=0\r\nm=audio\r\n"])
def test_sdp_rules_never_fail_on_odd_bodies(body):
    assert filter_sdp(body, SdpRules(codecs=("pcma",), ptime_ms=20)) in (body, body + b"a=ptime:20\r\n") \
        or filter_sdp(body, SdpRules(codecs=("pcma",), ptime_ms=20)).startswith(b"v=0")


def test_sdp_rules_apply_to_offers_in_requests_only():
    profile = Profile("p", sdp=SdpRules(codecs=("pcma",)))
    out = outbound(invite(body=SDP), profile)
    assert b"m=audio 4000 RTP/AVP 8\r\n" in out.body
    assert b"Content-Length: %d" % len(out.body) in serialize(out)
    raw = serialize(invite(body=SDP)).replace(b"INVITE sip:02079460000@site-b.example SIP/2.0",
                                              b"SIP/2.0 200 OK")
    answer = parse_message(raw)
    assert outbound(answer, profile).body == SDP


def test_generic_changes_nothing():
    message = invite("Remote-Party-ID: <sip:1@a>", "User-Agent: x", body=SDP)
    generic = BUILTIN_PROFILES["generic"]
    assert inbound(message, generic) == message and outbound(message, generic) == message
    assert generic.changes_nothing


def community(name, prefix):
    return Community(name, "s1", (1,), (ipaddress.ip_network(prefix),))


def test_proxy_normaliser_picks_the_profile_by_address_and_is_absent_without_profiles():
    pbx = Profile("pbx", numbers=UK, identity=Identity.RPID)
    gateway = GatewayConfig(tuple(BUILTIN_PROFILES.values()) + (pbx,),
                            (CommunitySignalling("a", profile="generic"), CommunitySignalling("b", profile="pbx")))
    communities = [community("a", "10.1.0.0/16"), community("b", "10.2.0.0/16")]
    assert ProxyNormaliser.for_config(GatewayConfig(tuple(BUILTIN_PROFILES.values()), ()), communities) is None
    normaliser = ProxyNormaliser.for_config(gateway, communities)
    assert normaliser is not None
    assert normaliser.profile_for("10.1.0.5") is None and normaliser.profile_for("10.2.0.5") is pbx
    assert normaliser.profile_for("not-an-address") is None
    message = invite("P-Asserted-Identity: <sip:+442071230000@site-a.example>", uri="sip:+442079460000@site-b.example")
    to_b, to_a = Send(serialize(message), Peer("udp", "10.2.0.5", 5060)), Send(b"junk", Peer("udp", "10.1.0.5", 5060))
    out = normaliser.outbound([to_b, to_a])
    assert out[1] is to_a
    sent = parse_message(out[0].data)
    assert isinstance(sent, Request) and sent.uri == "sip:02079460000@site-b.example"
    assert sent.header("remote-party-id") == "<sip:02071230000@site-a.example>;party=calling;screen=yes;privacy=off"
    back = normaliser.inbound(sent, Peer("udp", "10.2.0.5", 5060))
    assert isinstance(back, Request) and back.uri == "sip:+442079460000@site-b.example"
    assert back.header("p-asserted-identity") == "<sip:+442071230000@site-a.example>"
    unparsable = Send(b"\x00garbage", Peer("udp", "10.2.0.5", 5060))
    assert normaliser.outbound([unparsable]) == [unparsable] and normaliser.errors == 1


def test_a_failing_rule_leaves_the_message_as_it_came_and_is_counted(monkeypatch):
    import ryu_apps.signalling.gateway.normalise as normalise

    def boom(message, profile):
        raise RuntimeError("rule bug")
    pbx = Profile("pbx", strip_topology=True)
    normaliser = ProxyNormaliser([(community("b", "10.2.0.0/16"), pbx)])
    monkeypatch.setattr(normalise, "inbound", boom)
    monkeypatch.setattr(normalise, "outbound", boom)
    message = invite("User-Agent: x")
    assert normaliser.inbound(message, Peer("udp", "10.2.0.5", 5060)) is message
    send = Send(serialize(message), Peer("udp", "10.2.0.5", 5060))
    assert normaliser.outbound([send]) == [send] and normaliser.errors == 2


class Control:
    """Admission that admits everything, for a SipProxy under test (also test_gateway_extensions)."""

    def __init__(self):
        self.requests = []

    def admit(self, request):
        from ryu_apps.core.admission import Admitted
        self.requests.append(request)
        return Admitted(request.call_id, "a-b", 91)

    def attach_media(self, *args):
        return None

    def modify(self, call_id, media):
        from ryu_apps.core.admission import Admitted
        return Admitted(call_id, "a-b", 91)

    def release(self, call_id, cause):
        return None

    def community_of(self, domain, address):
        return {"site-a.example": "a", "site-b.example": "b"}.get(domain or "")


def test_the_proxy_core_applies_the_normaliser_both_ways():
    """Through SipProxy itself: an INVITE from a profiled PBX is normalised before routing
    and what is sent to a profiled PBX after; malformed input still gets its 400."""
    from ryu_apps.signalling.sip.ids import HashIds
    from ryu_apps.signalling.sip.proxy import SipProxy
    from ryu_apps.signalling.sip.proxy_config import ProxyConfig
    from ryu_apps.signalling.sip.routing import RouteTable
    uk = Profile("uk", numbers=UK, identity=Identity.RPID)
    normaliser = ProxyNormaliser([(community("a", "10.1.0.0/16"), uk), (community("b", "10.2.0.0/16"), uk)])
    config = ProxyConfig(host="10.0.0.1", port=5060, routes=RouteTable.from_specs(["site-b.example=10.2.0.5:5060"]))
    proxy = SipProxy(config, Control(), HashIds(b"k"))
    proxy.normaliser = normaliser
    out = proxy.receive(serialize(invite('Remote-Party-ID: "A" <sip:02071230000@site-a.example>;party=calling')),
                        Peer("udp", "10.1.0.5", 5060), 0.0)
    forwarded = [parse_message(s.data) for s in out if s.peer.host == "10.2.0.5"]
    assert len(forwarded) == 1 and isinstance(forwarded[0], Request)
    assert forwarded[0].uri == "sip:02079460000@site-b.example"           # national again for b's PBX
    assert forwarded[0].header("remote-party-id") == '"A" <sip:02071230000@site-a.example>;party=calling;screen=yes;privacy=off'
    out = proxy.receive(b"INVITE sip:x@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.5;branch=z9hG4bKq\r\n"
                        b"From: <sip:a@site-a.example>;tag=1\r\nTo: <sip:x@site-b.example>\r\nCall-ID: q\r\n"
                        b"CSeq: x INVITE\r\n\r\n", Peer("udp", "10.1.0.5", 5060), 0.1)
    assert [parse_message(s.data).status for s in out] == [400]
    assert proxy.stats.internal_errors == 0


# --- Diversion <-> History-Info (RFC 7544) -----------------------------------------------------

from ryu_apps.signalling.gateway.normalise import diversion_to_history, history_to_diversion  # noqa: E402
from ryu_apps.signalling.gateway.profile import DiversionForm  # noqa: E402


def test_one_diversion_becomes_two_history_entries_with_the_cause():
    message = diversion_to_history(invite('Diversion: <sip:2001@site-b.example>;reason=user-busy;counter=1'))
    assert message.header("diversion") is None
    assert message.header("history-info") == \
        "<sip:2001@site-b.example>;index=1, <sip:02079460000@site-b.example;cause=486>;index=1.1"


def test_a_chain_of_diversions_oldest_first_each_target_with_its_cause():
    message = diversion_to_history(invite('Diversion: <sip:2002@b>;reason=no-answer',      # newest first
                                          'Diversion: <sip:2001@b>;reason=unconditional'))
    assert message.header("history-info") == \
        "<sip:2001@b>;index=1, <sip:2002@b;cause=302>;index=1.1, " \
        "<sip:02079460000@site-b.example;cause=408>;index=1.1.1"


def test_history_info_becomes_diversion_newest_first():
    message = history_to_diversion(invite(
        "History-Info: <sip:2001@b>;index=1, <sip:2002@b;cause=302>;index=1.1",
        "History-Info: <sip:02079460000@site-b.example;cause=486>;index=1.1.1"))
    assert message.header("history-info") is None
    assert message.header_values("diversion") == [
        "<sip:2002@b>;reason=user-busy;counter=1;privacy=off",
        "<sip:2001@b>;reason=unconditional;counter=1;privacy=off"]


def test_round_trip_and_unknown_causes_and_in_dialog_requests():
    original = invite('Diversion: <sip:2001@b>;reason=deflection')
    back = history_to_diversion(diversion_to_history(original))
    assert back.header_values("diversion") == ["<sip:2001@b>;reason=deflection;counter=1;privacy=off"]
    odd = history_to_diversion(invite("History-Info: <sip:1@b>;index=1, <sip:2@b;cause=499>;index=1.1"))
    assert odd.header("diversion") == "<sip:1@b>;reason=unknown;counter=1;privacy=off"
    in_dialog = invite('Diversion: <sip:2001@b>;reason=user-busy', to="<sip:x@b>;tag=9")
    assert diversion_to_history(in_dialog) == in_dialog
    both = diversion_to_history(invite("Diversion: <sip:1@b>", "History-Info: <sip:9@b>;index=1"))
    assert both.header("diversion") is None and both.header("history-info") == "<sip:9@b>;index=1"


def test_profiles_apply_diversion_both_ways():
    pbx = Profile("pbx", diversion=DiversionForm.DIVERSION)
    canonical = inbound(invite('Diversion: <sip:2001@b>;reason=user-busy'), pbx)
    assert canonical.header("history-info") is not None and canonical.header("diversion") is None
    assert outbound(canonical, pbx).header("diversion") == "<sip:2001@b>;reason=user-busy;counter=1;privacy=off"
    assert outbound(invite('Diversion: <sip:2001@b>;reason=user-busy'),
                    Profile("hi", diversion=DiversionForm.HISTORY_INFO)).header("history-info") is not None
    assert BUILTIN_PROFILES["cisco-cucm"].diversion is DiversionForm.DIVERSION


def test_numbers_inside_diversion_and_history_info_are_renumbered_both_ways():
    # A UK PBX diverts in national form; the canonical side is E.164, the other PBX's form again
    # on the way out, in every entry of the redirection history (not only R-URI, From, To).
    pbx = Profile("uk", numbers=UK, diversion=DiversionForm.DIVERSION)
    canonical = inbound(invite("Diversion: <sip:02071112222@site-b.example>;reason=user-busy;counter=1",
                               "Diversion: <tel:02073334444>;reason=unconditional"), pbx)
    assert canonical.header("history-info") == (
        "<tel:+442073334444>;index=1, <sip:+442071112222@site-b.example;cause=302>;index=1.1, "
        "<sip:+442079460000@site-b.example;cause=486>;index=1.1.1")
    back = outbound(canonical, pbx)
    assert back.header_values("diversion") == [
        "<sip:02071112222@site-b.example>;reason=user-busy;counter=1;privacy=off",
        "<tel:02073334444>;reason=unconditional;counter=1;privacy=off"]
    us = outbound(canonical, Profile("us", numbers=US, diversion=DiversionForm.HISTORY_INFO))
    assert us.header("history-info") == (
        "<tel:+442073334444>;index=1, <sip:+442071112222@site-b.example;cause=302>;index=1.1, "
        "<sip:+442079460000@site-b.example;cause=486>;index=1.1.1")     # US keeps E.164
    untouched = outbound(invite("Diversion: <sip:alice@b>;reason=user-busy"), pbx)
    assert untouched.header("diversion") == "<sip:alice@b>;reason=user-busy"       # no number: as it came
