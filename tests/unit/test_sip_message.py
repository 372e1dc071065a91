"""SIP message parsing and serializing on byte fixtures."""

from __future__ import annotations

import pytest

from ryu_apps.signalling.sip.errors import ParseError
from ryu_apps.signalling.sip.message import (Request, Response, StreamFramer, build_response, parse_message,
                                             parse_name_addr, parse_uri, parse_via, pop_first_value,
                                             prepend_header, serialize, set_header)

SDP = (b"v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")

INVITE = (b"INVITE sip:bob@site-b.example SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.1.0.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
          b"Max-Forwards: 70\r\n"
          b"To: Bob <sip:bob@site-b.example>\r\n"
          b"From: \"Alice, A.\" <sip:alice@site-a.example>;tag=1928301774\r\n"
          b"Call-ID: a84b4c76e66710@pc33.site-a.example\r\n"
          b"CSeq: 314159 INVITE\r\n"
          b"Contact: <sip:alice@10.1.0.10>\r\n"
          b"Content-Type: application/sdp\r\n"
          b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)

COMPACT = (b"INVITE sip:bob@site-b.example SIP/2.0\r\n"
           b"v: SIP/2.0/UDP 10.1.0.10:5060;branch=z9hG4bKa\r\n"
           b"v: SIP/2.0/TCP proxy1.example;branch=z9hG4bKb , SIP/2.0/UDP 10.9.9.9:5070 ;branch=z9hG4bKc\r\n"
           b"t: <sip:bob@site-b.example>\r\n"
           b"f: <sip:alice@site-a.example>;tag=x\r\n"
           b"i: compact-1\r\n"
           b"CSeq: 1 INVITE\r\n"
           b"m: <sip:alice@10.1.0.10>\r\n"
           b"c: application/sdp\r\n"
           b"Subject: a long\r\n"
           b"   folded\r\n"
           b"\tsubject\r\n"
           b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def test_parse_full_invite() -> None:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    assert message.method == "INVITE" and message.uri == "sip:bob@site-b.example"
    assert message.call_id == "a84b4c76e66710@pc33.site-a.example"
    assert message.cseq == (314159, "INVITE")
    assert message.top_via.branch == "z9hG4bK776asdhds"
    assert message.top_via.port == 5060 and message.top_via.transport == "UDP"
    assert message.body == SDP
    sender = parse_name_addr(message.header("from") or "")
    assert sender.tag == "1928301774" and sender.display == '"Alice, A."'
    assert parse_uri(sender.uri).host == "site-a.example"


def test_compact_forms_folding_and_multiple_via() -> None:
    message = parse_message(COMPACT)
    assert message.call_id == "compact-1"
    assert message.header("subject") == "a long folded subject"
    assert message.header("content-type") == "application/sdp"
    vias = [parse_via(v) for v in message.header_values("via")]
    assert [v.branch for v in vias] == ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
    assert vias[1].transport == "TCP" and vias[1].port is None and vias[2].port == 5070
    assert message.body == SDP


def test_serialize_round_trip_uses_long_names_and_recomputes_length() -> None:
    message = parse_message(COMPACT)
    data = serialize(message)
    assert b"\r\nCall-ID: compact-1\r\n" in data and b"\r\nContact: " in data and b"\r\nv:" not in data
    assert data.endswith(b"Content-Length: %d\r\n\r\n" % len(SDP) + SDP)
    again = parse_message(data)
    assert again == parse_message(data) and again.headers[:-1] == message.headers[:-1]


def test_body_beyond_content_length_is_cut_and_short_body_is_an_error() -> None:
    assert parse_message(INVITE + b"garbage").body == SDP
    with pytest.raises(ParseError) as error:
        parse_message(INVITE[:-5])
    assert error.value.status_hint == 400
    assert error.value.partial is not None and error.value.partial.header("call-id")


def test_response_parse() -> None:
    data = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nTo: <sip:b@x>;tag=99\r\n"
            b"From: <sip:a@y>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    message = parse_message(data)
    assert isinstance(message, Response) and message.status == 180 and message.reason == "Ringing"


@pytest.mark.parametrize("data, status", [
    (b"INVITE sip:x SIP/3.0\r\nCall-ID: a\r\n\r\n", 505),
    (b"INVITE  sip:x SIP/2.0\r\n\r\n", 400),
    (b"SIP/2.0 99 Bad\r\n\r\n", 400),
    (b"SIP/2.0 1000 Bad\r\n\r\n", 400),
    (b"INVITE sip:x SIP/2.0\r\nNoColonHere\r\n\r\n", 400),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n", 400),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab", 400),
    (b"INVITE sip:x SIP/2.0\r\nVia: \xff\xfe\r\n\r\n", 400),
    (b" folded-first\r\n\r\n", 400),
])
def test_malformed(data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as error:
        parse_message(data)
    assert error.value.status_hint == status


def test_oversized_is_413_with_partial_head() -> None:
    big = INVITE.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"a" * 70000 + b"\r\n\r\n", 1)
    with pytest.raises(ParseError) as error:
        parse_message(big)
    assert error.value.status_hint == 413
    small = INVITE + b"x" * 70000
    with pytest.raises(ParseError) as error:
        parse_message(small)
    assert error.value.status_hint == 413 and error.value.partial and error.value.partial.header("cseq")


def test_header_values_and_addresses() -> None:
    assert parse_via("SIP / 2.0 / udp [2001:db8::1]:5062;branch=z9hG4bKx;received=1.2.3.4").host == "[2001:db8::1]"
    uri = parse_uri("sip:+1555@GW.example:5070;user=phone;transport=TCP?subject=x")
    assert (uri.user, uri.host, uri.port, uri.transport, uri.headers) == ("+1555", "gw.example", 5070, "tcp", "subject=x")
    assert parse_uri("tel:+15551234;phone-context=x").user == "+15551234"
    assert parse_uri("sip:[::1]:5060").host == "[::1]"
    addr = parse_name_addr("sip:bob@x.example;tag=abc")
    assert addr.uri == "sip:bob@x.example" and addr.tag == "abc" and not addr.bracketed
    with pytest.raises(ParseError):
        parse_uri("http://x")
    with pytest.raises(ParseError):
        parse_name_addr('"unterminated <sip:x>')


def test_editing_helpers() -> None:
    message = parse_message(COMPACT)
    popped = pop_first_value(message, "via")
    assert [parse_via(v).branch for v in popped.header_values("via")] == ["z9hG4bKb", "z9hG4bKc"]
    popped = pop_first_value(pop_first_value(popped, "via"), "via")
    assert popped.header_values("via") == []
    added = prepend_header(message, "via", "SIP/2.0/UDP p:5060;branch=z9hG4bKp")
    assert added.top_via.host == "p"
    assert set_header(message, "max-forwards", "69").header("max-forwards") == "69"


def test_build_response_copies_dialog_headers_and_adds_tag() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    response = build_response(request, 503, "Service Unavailable", to_tag="t1",
                              extra=[("reason", 'Q.850;cause=34;text="pool-full"')])
    data = serialize(response)
    assert data.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    again = parse_message(data)
    assert parse_name_addr(again.header("to") or "").tag == "t1"
    assert again.header("call-id") == request.call_id and again.header("reason")
    assert again.header_values("via") == request.header_values("via")


@pytest.mark.parametrize("cuts", [(1,), (10, 200), (len(INVITE) - 1,), tuple(range(1, 400, 7))])
def test_stream_framing_at_arbitrary_split_points(cuts: tuple[int, ...]) -> None:
    stream = b"\r\n\r\n" + INVITE + COMPACT + b"\r\n" + INVITE
    framer = StreamFramer()
    out = []
    previous = 0
    for cut in cuts + (len(stream),):
        out.extend(framer.feed(stream[previous:cut]))
        previous = cut
    assert [m.call_id for m in out] == [  # type: ignore[union-attr]
        "a84b4c76e66710@pc33.site-a.example", "compact-1", "a84b4c76e66710@pc33.site-a.example"]
    assert all(m.body == SDP for m in out)  # type: ignore[union-attr]


def test_stream_framing_errors() -> None:
    framer = StreamFramer(max_size=2000)
    out = framer.feed(b"INVITE sip:x SIP/2.0\r\nCall-ID: a\r\nContent-Length: 5000\r\n\r\n")
    assert len(out) == 1 and isinstance(out[0], ParseError) and out[0].status_hint == 413 and framer.broken
    framer = StreamFramer(max_size=2000)
    out = framer.feed(b"X" * 2500)
    assert isinstance(out[0], ParseError) and framer.broken
    framer = StreamFramer()
    bad_then_good = b"INVITE sip:x SIP/9.9\r\nContent-Length: 0\r\n\r\n" + INVITE
    out = framer.feed(bad_then_good)
    assert isinstance(out[0], ParseError) and out[0].status_hint == 505 and isinstance(out[1], Request)
    assert not framer.broken
