"""Property tests: the parsers raise only ParseError on random and mutated input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryu_apps.signalling.sip.errors import ParseError
from ryu_apps.signalling.sip.message import (StreamFramer, parse_message, parse_name_addr, parse_uri, parse_via,
                                             serialize)
from ryu_apps.signalling.sip.sdp import media_of, parse_sdp

# (fixtures repeated from test_sip_message so each test file imports on its own)
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

FIXTURES = [INVITE, COMPACT,
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nTo: <sip:b@x>;tag=9\r\n"
            b"From: <sip:a@y>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"]
TOKENS = [b"\r\n", b"\n", b":", b";", b",", b"<", b">", b"\"", b" ", b"\t", b"=", b"@", b"[", b"]",
          b"Content-Length: ", b"l: 99999999999", b"v: SIP/2.0/UDP", b"\xff", b"\x00", b"SIP/2.0", b"%"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 2:
            del data[pos:pos + draw(st.integers(1, 40))]
        else:
            data = data[:pos]
    return bytes(data)


def _parse_everything(data: bytes) -> None:
    try:
        message = parse_message(data)
    except ParseError:
        return
    serialize(message)  # a parsed message always serializes
    for name in ("via", "from", "to", "contact", "route", "record-route"):
        for value in message.header_values(name):
            try:
                parse_via(value) if name == "via" else parse_uri(parse_name_addr(value).uri)
            except ParseError:
                pass
    try:
        message.cseq
    except ParseError:
        pass
    try:
        session = parse_sdp(message.body)
    except ParseError:
        return
    media_of(session)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _parse_everything(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    _parse_everything(data)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(TOKENS + [SDP, b"v=0", b"m=audio 1 RTP/AVP 0", b"a=ptime:x", b"b=TIAS:"]),
                max_size=30))
def test_sdp_token_soup(parts: list[bytes]) -> None:
    try:
        media_of(parse_sdp(b"".join(parts)))
    except ParseError:
        pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4), st.lists(st.integers(1, 200), max_size=10))
def test_stream_framer(messages: list[bytes], chunks: list[int]) -> None:
    stream = b"".join(messages)
    framer = StreamFramer(max_size=4096)
    position = 0
    for size in chunks + [len(stream)]:
        for item in framer.feed(stream[position:position + size]):
            assert isinstance(item, ParseError) or hasattr(item, "headers")
        position += size
