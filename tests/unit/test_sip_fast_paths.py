"""The proxy's cheaper paths (issue 13) give the answers the plain ones gave.

Timer heap compaction, Record-Route placement, the first Via, serialising with cached
header prefixes, the SDP reader's session/media levels, and the UDP shell's remembered
peers: each against what RFC 3261 / RFC 8866 and the old code say.
"""

from __future__ import annotations

import logging

import pytest

from ryu_apps.signalling.sip.errors import ParseError
from ryu_apps.signalling.sip.guard import Faults
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.message import Request, Response, parse_message, serialize
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.sdp import MediaDescription, media_of, parse_sdp
from ryu_apps.signalling.sip.standalone import PEER_CACHE, SipServer
from ryu_apps.signalling.sip.transaction import Peer, Send, Timers, slim


class Owner:
    """A timer owner (identity-hashed, like transactions and call records)."""


# --- timers -------------------------------------------------------------------------------

def test_cancelled_deadlines_do_not_pile_up_in_the_heap() -> None:
    """A call's 4-hour lifetime timer is cancelled when the call ends; the heap must not
    keep it (and the call's record) until it would have passed."""
    timers = Timers()
    keep = Owner()
    timers.set(keep, "lifetime", 14_400.0)
    for i in range(50_000):
        owner = Owner()
        timers.set(owner, "lifetime", 14_400.0 + i)
        timers.set(owner, "C", 180.0 + i)
        timers.cancel(owner, "lifetime", "C")
    assert len(timers) == 1
    assert len(timers._heap) <= 2 * len(timers) + Timers.COMPACT_SLACK
    assert timers.next() == 14_400.0
    assert timers.due(20_000.0) == [(keep, "lifetime")]
    assert timers.next() is None


def test_compaction_keeps_order_and_the_latest_deadline_of_each_timer() -> None:
    timers = Timers()
    owners = [Owner() for _ in range(3 * Timers.COMPACT_SLACK)]
    for i, owner in enumerate(owners):
        timers.set(owner, "A", 10.0 + i % 7)
        timers.set(owner, "A", 20.0 + i % 5)       # re-set: only this one may fire
        if i % 3:
            timers.cancel(owner, "A")
    kept = [owner for i, owner in enumerate(owners) if not i % 3]
    fired = timers.due(100.0)
    assert sorted(map(id, (owner for owner, _ in fired))) == sorted(map(id, kept))
    deadlines = [20.0 + owners.index(owner) % 5 for owner, _ in fired]
    assert deadlines == sorted(deadlines)
    same = [owners.index(owner) for owner, _ in fired if 20.0 + owners.index(owner) % 5 == 20.0]
    assert same == sorted(same)                      # equal deadlines fire in the order they were set


# --- messages -------------------------------------------------------------------------------

def test_top_via_is_the_first_value_of_the_first_via_that_has_one() -> None:
    message = Request("OPTIONS", "sip:a@b.example", (
        ("via", ""), ("max-forwards", "70"),
        ("via", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKx , SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKy")))
    via = message.top_via
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "10.0.0.1", 5070, "z9hG4bKx")
    with pytest.raises(ParseError, match="missing Via"):
        Request("OPTIONS", "sip:a@b.example", (("via", " "), ("to", "<sip:a@b.example>"))).top_via  # noqa: B018


def test_serialize_writes_display_names_once_and_one_content_length() -> None:
    response = Response(180, "Ringing", (
        ("via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"), ("content-length", "999"), ("call-id", "c"),
        ("www-authenticate", 'Digest realm="x"'), ("x-custom-thing", "1"), ("cseq", "1 INVITE")), b"hi")
    wire = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nCall-ID: c\r\n"
            b'WWW-Authenticate: Digest realm="x"\r\nX-Custom-Thing: 1\r\nCSeq: 1 INVITE\r\n'
            b"Content-Length: 2\r\n\r\nhi")
    assert serialize(response) == wire
    assert serialize(response) == wire               # the second time from the cached prefixes
    assert serialize(parse_message(wire)) == wire


# --- Record-Route ---------------------------------------------------------------------------

def _proxy() -> SipProxy:
    return SipProxy(ProxyConfig(host="10.0.0.1", port=5060), _NoControl(), HashIds(b"k"))  # type: ignore[arg-type]


class _NoControl:
    pass


def test_record_route_goes_after_the_vias_or_on_top_of_the_record_routes() -> None:
    proxy = _proxy()
    plain = Request("INVITE", "sip:b@x", (("via", "v1"), ("via", "v2"), ("from", "f"), ("to", "t")))
    assert proxy._record_route(plain, "udp", "udp").headers == (
        ("via", "v1"), ("via", "v2"), ("record-route", "<sip:10.0.0.1:5060;lr>"), ("from", "f"), ("to", "t"))
    routed = Request("INVITE", "sip:b@x", (("via", "v1"), ("from", "f"), ("record-route", "<sip:up;lr>"),
                                           ("via", "v2")))
    assert proxy._record_route(routed, "udp", "tcp").headers == (
        ("via", "v1"), ("from", "f"), ("record-route", "<sip:10.0.0.1:5060;transport=tcp;lr>"),
        ("record-route", "<sip:10.0.0.1:5060;lr>"), ("record-route", "<sip:up;lr>"), ("via", "v2"))
    bare = Request("INVITE", "sip:b@x", (("from", "f"),))
    assert proxy._record_route(bare, "tcp", "tcp").headers == (
        ("record-route", "<sip:10.0.0.1:5060;transport=tcp;lr>"), ("from", "f"))


# --- SDP ------------------------------------------------------------------------------------

def test_sdp_levels_media_overrides_and_attributes() -> None:
    body = ("v=0\r\no=- 1 1 IN IP4 10.1.0.1\r\ns=-\r\nc=IN IP4 10.1.0.1\r\nb=AS:80\r\nb=TIAS:64000\r\nt=0 0\r\n"
            "a=sendonly\r\n"                                   # session level: not a media attribute
            "m=audio 4000/2 RTP/AVP 18 101\r\nc=IN IP4 10.1.0.2/127\r\nb=AS:40\r\na=rtpmap:18 G729/8000\r\n"
            "a=rtpmap:101 telephone-event/8000/1\r\na=ptime:30\r\na=maxptime:60\r\na=recvonly\r\n"
            "a=curr:qos local none\r\na=gpmd:18 vbd=yes\r\nb=X:1\r\n"
            "m=video 0 RTP/AVP 31\r\n").encode()
    session = parse_sdp(body)
    assert (session.connection, session.bandwidth_as, session.bandwidth_tias) == ("10.1.0.1", 80, 64000)
    assert session.media == (
        MediaDescription("audio", 4000, "RTP/AVP", ("18", "101"), "10.1.0.2",
                         (("18", "g729", 8000), ("101", "telephone-event", 8000)), 30, 60, 40, None, "recvonly",
                         True, True),
        MediaDescription("video", 0, "RTP/AVP", ("31",)))
    media = media_of(session)
    assert media is not None and media.preconditions and media.voice_band_data
    assert (media.spec.codec, media.spec.ptime_ms) == ("g729", 30)
    assert media.endpoint is not None and (media.endpoint.ip, media.endpoint.port) == ("10.1.0.2", 4000)


@pytest.mark.parametrize("body, error", [
    (b"o=- 1 1 IN IP4 1.2.3.4\r\n", "without v="),
    (b"v=0\r\nm=audio x RTP/AVP 0\r\n", "m= port"),
    (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:nan\r\n", "ptime"),
    (b"v=0\r\nb=AS:-1\r\n", "b=AS"),
    (b"v=0\r\nc=IN IP9 1.2.3.4\r\n", "c= line"),
    (b"v=0\r\nbad\r\n", "bad SDP line"),
    (b"v=0\r\n\xff\r\n", "not UTF-8"),
])
def test_sdp_errors_are_488_parse_errors(body: bytes, error: str) -> None:
    with pytest.raises(ParseError, match=error) as caught:
        parse_sdp(body)
    assert caught.value.status_hint == 488


# --- the UDP shell's remembered peers ----------------------------------------------------------

class _Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, int]] = []

    def sendto(self, data: bytes, host: str, port: int) -> None:
        self.sent.append((data, host, port))


def test_the_shell_still_refuses_every_undeliverable_peer_after_remembering_good_ones() -> None:
    server = SipServer(_proxy(), ("udp",))
    server.faults = Faults(logging.getLogger("test"))
    udp = server.udp = _Udp()  # type: ignore[assignment]
    good = Peer("udp", "10.0.0.2", 5060)
    bad = [Peer("udp", "exämple..test", 5060), Peer("udp", "10.0.0.2", 0), Peer("sctp", "10.0.0.2", 5060),
           Peer("udp", ["10.0.0.2"], 5060)]  # type: ignore[arg-type]   # not even hashable
    for _ in range(3):
        server.send([Send(b"x", good)] + [Send(b"y", peer) for peer in bad])
    assert udp.sent == [(b"x", "10.0.0.2", 5060)] * 3
    assert server.faults.snapshot() == {"undeliverable": 3 * len(bad)}
    for i in range(PEER_CACHE + 10):                   # remembered peers stay bounded
        server.send([Send(b"z", Peer("udp", "10.0.0.3", 1 + i))])
    assert len(server._deliverable) <= PEER_CACHE


def test_slim_keeps_only_what_answers_need_and_returns_a_lean_request_unchanged() -> None:
    lean = Request("INVITE", "sip:b@x", (("via", "v"), ("from", "f"), ("to", "t"), ("call-id", "c"),
                                         ("cseq", "1 INVITE"), ("route", "<sip:r;lr>")))
    assert slim(lean) is lean
    fat = Request("INVITE", "sip:b@x", lean.headers[:2] + (("contact", "<sip:a@h>"),) + lean.headers[2:], b"sdp")
    slimmed = slim(fat)
    assert (slimmed.method, slimmed.uri, slimmed.headers, slimmed.body) == ("INVITE", "sip:b@x", lean.headers, b"")
    with_body = Request("INVITE", "sip:b@x", lean.headers, b"sdp")
    assert slim(with_body).headers == lean.headers and slim(with_body).body == b""


def test_the_shell_wakes_for_a_deadline_at_the_end_of_its_slot_never_before() -> None:
    from ryu_apps.signalling.sip.standalone import TIMER_SLOT_S, wake_time
    deadlines = [1000.0 + i * 0.0013 for i in range(2000)] + [0.3, 0.07, 12345.678901, 1e-9]
    for deadline in deadlines:
        wake = wake_time(deadline)
        assert deadline <= wake < deadline + TIMER_SLOT_S + 1e-9
    slots = {wake_time(d) for d in deadlines[:2000]}
    assert len(slots) <= 2000 * 0.0013 / TIMER_SLOT_S + 2      # ~8 deadlines share each wake-up
