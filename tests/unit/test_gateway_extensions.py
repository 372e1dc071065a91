"""Session timers (RFC 4028) and 100rel (RFC 3262) as each PBX supports them: the pure rules,
both directions, and the proxy's hook (its own 420 / 422, the refresher it keeps)."""

import pytest
from test_gateway_normalise import Control, community

from ryu_apps.signalling.gateway.extensions import (from_pbx, interval_to_remember, limits_extensions, option_tags,
                                                    refresher_uac, refusal, toward_pbx)
from ryu_apps.signalling.gateway.normalise import ProxyNormaliser, inbound, outbound
from ryu_apps.signalling.gateway.profile import BUILTIN_PROFILES, Profile
from ryu_apps.signalling.sip.message import Request, Response, parse_message, serialize
from ryu_apps.signalling.sip.transaction import Peer, Send

NO_TIMERS = Profile("no-timers", session_timers=False)
NO_100REL = Profile("no-100rel", reliable_provisional=False)
NEITHER = Profile("neither", session_timers=False, reliable_provisional=False)
MIN_SE = Profile("min-se", min_se_s=1800)
PLAIN = (b"INVITE sip:bob@site-b.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK1\r\n"
         b"From: <sip:alice@site-a.example>;tag=a1\r\nTo: <sip:bob@site-b.example>\r\nCall-ID: c1@x\r\n"
         b"CSeq: 1 INVITE\r\nContact: <sip:alice@10.1.0.5>\r\nMax-Forwards: 70\r\n")


def request(*extra: str, method: str = "INVITE") -> Request:
    data = PLAIN.replace(b"INVITE", method.encode()) + "".join(f"{h}\r\n" for h in extra).encode() + b"\r\n"
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(status: int, *extra: str, cseq: str = "1 INVITE") -> Response:
    data = (f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK1\r\n"
            f"From: <sip:alice@site-a.example>;tag=a1\r\nTo: <sip:bob@site-b.example>;tag=b1\r\n"
            f"Call-ID: c1@x\r\nCSeq: {cseq}\r\n" + "".join(f"{h}\r\n" for h in extra) + "\r\n").encode()
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def test_only_profiles_that_limit_an_extension_apply_and_the_builtins_limit_none():
    assert not limits_extensions(Profile("x")) and Profile("x").changes_nothing
    for profile in (NO_TIMERS, NO_100REL, MIN_SE):
        assert limits_extensions(profile) and not profile.changes_nothing
    assert not any(limits_extensions(p) for p in BUILTIN_PROFILES.values())


def test_option_tags_are_read_from_every_header_and_list_case_insensitively():
    message = request("Supported: 100rel, Timer", "Supported: replaces", "Require: timer")
    assert option_tags(message, "supported") == {"100rel", "timer", "replaces"}
    assert option_tags(message, "require") == {"timer"} and option_tags(message, "proxy-require") == set()


# --- toward the PBX -------------------------------------------------------------------------

def test_toward_a_pbx_without_timers_timer_leaves_supported_and_require_session_expires_stays():
    message = request("Supported: 100rel, timer", "Require: timer", "Session-Expires: 1800;refresher=uac",
                      "Min-SE: 90")
    out = toward_pbx(message, NO_TIMERS)
    assert out.header_values("supported") == ["100rel"] and not out.has("require")
    assert out.header("session-expires") == "1800;refresher=uac" and out.header("min-se") == "90"


def test_toward_a_pbx_without_100rel_it_leaves_supported_only():
    out = toward_pbx(request("Supported: 100rel, timer", "Require: precondition"), NO_100REL)
    assert out.header_values("supported") == ["timer"] and out.header_values("require") == ["precondition"]
    assert not toward_pbx(request("Supported: 100rel"), NO_100REL).has("supported")


def test_responses_toward_a_pbx_without_timers_lose_the_tag_too():
    out = toward_pbx(response(200, "Require: timer", "Supported: timer, replaces",
                              "Session-Expires: 1800;refresher=uas"), NO_TIMERS)
    assert not out.has("require") and out.header_values("supported") == ["replaces"]
    assert out.header("session-expires") == "1800;refresher=uas"


@pytest.mark.parametrize("profile", [NO_TIMERS, NO_100REL, NEITHER, MIN_SE])
def test_a_message_without_those_headers_is_returned_as_it_is(profile):
    for message in (request(), response(180), request("Session-Expires: 300", method="BYE")):
        assert toward_pbx(message, profile) is message and from_pbx(message, profile) is message
        assert not isinstance(message, Request) or refusal(message, profile) is None


@pytest.mark.parametrize("profile", [NO_TIMERS, NO_100REL, NEITHER, MIN_SE])
def test_the_rules_are_idempotent(profile):
    for message in (request("Supported: 100rel, timer", "Require: timer", "Session-Expires: 100;refresher=uac"),
                    response(200, "Supported: timer, 100rel", "Require: 100rel", "RSeq: 1")):
        once = toward_pbx(message, profile)
        assert toward_pbx(once, profile) == once
        back = from_pbx(message, profile)
        assert from_pbx(back, profile) == back


def test_min_se_raises_the_interval_of_a_caller_without_timers_rfc4028_8_1():
    out = toward_pbx(request("Session-Expires: 300;refresher=uas"), MIN_SE)
    assert out.header("session-expires") == "1800;refresher=uas" and out.header("min-se") == "1800"
    out = toward_pbx(request("Session-Expires: 300", "Min-SE: 3600"), MIN_SE)   # never lowered
    assert out.header("session-expires") == "3600" and out.header("min-se") == "3600"
    long = request("Session-Expires: 7200")
    assert toward_pbx(long, MIN_SE) is long
    timers = request("Supported: timer", "Session-Expires: 300")             # that one gets a 422 instead
    assert toward_pbx(timers, MIN_SE) is timers


# --- the proxy's own answers ---------------------------------------------------------------

def test_require_100rel_toward_a_pbx_without_prack_is_a_420_with_unsupported():
    refused = refusal(request("Require: 100rel", "Supported: timer"), NO_100REL)
    assert refused is not None and (refused.status, refused.headers) == (420, (("unsupported", "100rel"),))
    assert refusal(request("Supported: 100rel"), NO_100REL) is None
    assert refusal(request("Require: 100rel"), NO_TIMERS) is None and refusal(request("Require: timer"), NO_TIMERS) is None


def test_a_short_interval_from_a_caller_with_timers_is_a_422_with_min_se():
    refused = refusal(request("Supported: timer", "Session-Expires: 300"), MIN_SE)
    assert refused is not None and (refused.status, refused.headers) == (422, (("min-se", "1800"),))
    assert refusal(request("Require: timer", "Session-Expires: 300", method="UPDATE"), MIN_SE).status == 422
    assert refusal(request("Supported: timer", "Session-Expires: 1800"), MIN_SE) is None
    assert refusal(request("Session-Expires: 300"), MIN_SE) is None          # raised instead (above)
    assert refusal(request("Supported: timer", "Session-Expires: x"), MIN_SE) is None


# --- from the PBX ---------------------------------------------------------------------------

def test_from_a_pbx_tags_it_does_not_do_are_removed_so_the_other_side_refreshes():
    message = request("Supported: 100rel, timer, replaces", "Require: 100rel")
    out = from_pbx(message, NEITHER)
    assert out.header_values("supported") == ["replaces"] and not out.has("require")
    assert from_pbx(message, NO_TIMERS).header_values("supported") == ["100rel", "replaces"]
    assert from_pbx(message, MIN_SE) is message
    named = request("Session-Expires: 1800;Refresher=uac;x=1")          # a PBX without timers cannot refresh
    assert from_pbx(named, NO_TIMERS).header("session-expires") == "1800;x=1"
    assert from_pbx(named, NO_100REL) is named
    for kept in (request("Session-Expires: 1800;refresher=uas"), request("Session-Expires: 1800")):
        assert from_pbx(kept, NO_TIMERS) is kept


def test_a_2xx_of_a_pbx_without_timers_gets_the_refresher_on_the_caller_rfc4028_8_2():
    caller = request("Supported: timer", "Session-Expires: 1800")
    assert interval_to_remember(caller, NO_TIMERS) == 1800
    assert interval_to_remember(caller, NO_100REL) is None
    assert interval_to_remember(request("Session-Expires: 1800"), NO_TIMERS) is None     # caller without timers
    assert interval_to_remember(request("Supported: timer", method="BYE"), NO_TIMERS) is None
    out = refresher_uac(response(200), 1800)
    assert out.header("session-expires") == "1800;refresher=uac" and out.header_values("require") == ["timer"]
    already = response(200, "Session-Expires: 900;refresher=uac", "Require: timer")
    assert refresher_uac(already, 1800) is already
    claims = refresher_uac(response(200, "Session-Expires: 900;refresher=uas"), 1800)   # it will not refresh
    assert claims.header_values("session-expires") == ["1800;refresher=uac"] and claims.header("require") == "timer"
    ringing = response(180)
    assert refresher_uac(ringing, 1800) is ringing


# --- through inbound()/outbound() and the proxy's normaliser -------------------------------------

def test_inbound_and_outbound_apply_the_extension_rules():
    assert outbound(request("Supported: timer"), NO_TIMERS).header("supported") is None
    assert inbound(request("Supported: timer"), NO_TIMERS).header("supported") is None
    plain = request("Supported: timer")
    assert outbound(plain, Profile("generic")) is plain and inbound(plain, Profile("generic")) is plain


def test_the_normaliser_remembers_the_interval_and_answers_the_2xx_with_refresher_uac():
    normaliser = ProxyNormaliser([(community("b", "10.2.0.0/16"), NO_TIMERS)])
    pbx = Peer("udp", "10.2.0.5", 5060)
    sent = normaliser.outbound([Send(serialize(request("Supported: timer", "Session-Expires: 1800")), pbx)])
    assert parse_message(sent[0].data).header("supported") is None
    ok = normaliser.inbound(response(200, "Supported: timer"), pbx)
    assert ok.header("session-expires") == "1800;refresher=uac" and ok.header_values("require") == ["timer"]
    assert ok.header("supported") is None
    again = normaliser.inbound(response(200), pbx)                   # a retransmitted 2xx: the same answer
    assert again.header("session-expires") == "1800;refresher=uac"
    second = request("Supported: timer", "Session-Expires: 90")
    second = Request("INVITE", second.uri, tuple((k, "2 INVITE" if k == "cseq" else v) for k, v in second.headers), b"")
    normaliser.outbound([Send(serialize(second), pbx)])
    assert normaliser._intervals[("c1@x", "2 INVITE")] == 90
    busy = normaliser.inbound(response(486, cseq="2  INVITE"), pbx)   # a failure: forgotten, unchanged
    assert not busy.has("session-expires") and ("c1@x", "2 INVITE") not in normaliser._intervals
    other = normaliser.inbound(response(200, cseq="3 INVITE"), pbx)
    assert not other.has("session-expires")
    assert normaliser.refuse(request("Require: timer"), pbx) is None
    assert normaliser.refuse(request("Require: 100rel"), Peer("udp", "10.1.0.5", 5060)) is None


def test_the_normaliser_keeps_a_bounded_memory():
    normaliser = ProxyNormaliser([(community("b", "10.2.0.0/16"), NO_TIMERS)])
    pbx = Peer("udp", "10.2.0.5", 5060)
    base = request("Supported: timer", "Session-Expires: 1800")
    for i in range(4100):
        headers = tuple((k, f"call-{i}" if k == "call-id" else v) for k, v in base.headers)
        normaliser.outbound([Send(serialize(Request("INVITE", base.uri, headers, b"")), pbx)])
    assert len(normaliser._intervals) == 4096 and ("call-0", "1 INVITE") not in normaliser._intervals


def _proxy(profile):
    from ryu_apps.signalling.sip.ids import HashIds
    from ryu_apps.signalling.sip.proxy import SipProxy
    from ryu_apps.signalling.sip.proxy_config import ProxyConfig
    from ryu_apps.signalling.sip.routing import RouteTable
    config = ProxyConfig(host="10.0.0.1", port=5060, routes=RouteTable.from_specs(["site-b.example=10.2.0.5:5060"]))
    proxy = SipProxy(config, Control(), HashIds(b"k"))
    proxy.normaliser = ProxyNormaliser([(community("b", "10.2.0.0/16"), profile)])
    return proxy


@pytest.mark.parametrize("profile, extra, status, header", [
    (NO_100REL, ("Require: 100rel",), 420, ("unsupported", "100rel")),
    (MIN_SE, ("Supported: timer", "Session-Expires: 300"), 422, ("min-se", "1800")),
])
def test_the_proxy_answers_for_the_pbx_before_admission(profile, extra, status, header):
    proxy = _proxy(profile)
    out = proxy.receive(serialize(request(*extra)), Peer("udp", "10.1.0.5", 5060), 0.0)
    answers = [parse_message(s.data) for s in out]
    answers = [a for a in answers if a.status != 100]
    assert {s.peer.host for s in out} == {"10.1.0.5"} and [a.status for a in answers] == [status]
    assert answers[0].header(header[0]) == header[1] and not proxy.control.requests
    assert proxy.stats.internal_errors == 0


def test_the_proxy_forwards_what_the_pbx_can_take_rewritten():
    proxy = _proxy(NEITHER)
    out = proxy.receive(serialize(request("Supported: 100rel, timer", "Require: timer", "Session-Expires: 1800")),
                        Peer("udp", "10.1.0.5", 5060), 0.0)
    forwarded = [parse_message(s.data) for s in out if s.peer.host == "10.2.0.5"]
    assert len(forwarded) == 1 and not forwarded[0].has("supported") and not forwarded[0].has("require")
    assert forwarded[0].header("session-expires") == "1800" and len(proxy.control.requests) == 1
