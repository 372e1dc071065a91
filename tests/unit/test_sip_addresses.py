"""Every address the proxy could send to is checked when parsed (issue 11), and the
stray-response rule: only a 2xx of a call the proxy holds, only to where its INVITE came from."""

from __future__ import annotations

import pytest

from ryu_apps.signalling.sip.addresses import hostname, valid_address, valid_host
from ryu_apps.signalling.sip.errors import ParseError
from ryu_apps.signalling.sip.message import Response, parse_uri, parse_via
from ryu_apps.signalling.sip.routing import RouteError, RouteTable, parse_hop
from ryu_apps.signalling.sip.transaction import Peer

from test_sip_proxy import CALLEE, CALLER, PROXY_HOST, Harness, answer, establish, invite, only_request, request, \
    statuses, to

BAD_HOSTS = ["127.0.1.1\x00", "exämple..test", "a" * 64 + ".example", "", "-a.example", "a-.example", "a..b",
             "1.2.3", "300.1.1.1", "a_b.example", "[::1", "[1.2.3.4]", "x" * 254, "a.example\x00"]
GOOD_HOSTS = ["127.0.0.1", "[::1]", "[2001:db8::1]", "a" * 63 + ".example", "site-b.example", "localhost",
              "example.com.", "pbx1", "1x.example"]


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_valid_hosts(host: str) -> None:
    assert valid_host(host)


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_invalid_hosts(host: str) -> None:
    assert not valid_host(host)


def test_hostname_length_limits() -> None:
    assert hostname(".".join(["a" * 63] * 3) + "." + "b" * 61)          # 253 characters
    assert not hostname(".".join(["a" * 63] * 3) + "." + "b" * 62)      # 254
    assert valid_address("::1") and valid_address("[::1]") and not valid_address("example.com")


@pytest.mark.parametrize("host", BAD_HOSTS[:6])
def test_parsers_refuse_bad_hosts_everywhere(host: str) -> None:
    for text in (f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK1", f"SIP/2.0/UDP 10.0.0.1;received={host}",
                 f"SIP/2.0/UDP 10.0.0.1;maddr={host}"):
        with pytest.raises(ParseError):
            parse_via(text)
    for text in (f"sip:bob@{host}", f"sip:{host}:5060;lr", f"sip:bob@10.0.0.1;maddr={host}"):
        with pytest.raises(ParseError):
            parse_uri(text)


def test_via_rport_and_received_are_checked() -> None:
    assert parse_via("SIP/2.0/UDP 10.0.0.1;rport;received=::1").host == "10.0.0.1"
    for text in ("SIP/2.0/UDP 10.0.0.1;rport=0", "SIP/2.0/UDP 10.0.0.1;rport=70000",
                 "SIP/2.0/UDP 10.0.0.1;received=", "SIP/2.0/UDP 10.0.0.1;received=host.example"):
        with pytest.raises(ParseError):
            parse_via(text)


@pytest.mark.parametrize("where", ["uri", "via", "route", "record-route", "contact", "received"])
@pytest.mark.parametrize("host", ["127.0.1.1\x00", "exämple..test", "a" * 64 + ".example"])
def test_a_request_with_a_bad_address_is_400_and_sends_nothing_elsewhere(where: str, host: str) -> None:
    h = Harness()
    data = invite()
    if where == "uri":
        data = data.replace(b"INVITE sip:bob@site-b.example", f"INVITE sip:bob@{host}".encode())
    elif where == "via":
        data = data.replace(b"Via: SIP/2.0/UDP 10.1.0.10:5060;", f"Via: SIP/2.0/UDP {host}:5060;".encode())
    elif where == "received":
        data = data.replace(b"branch=z9hG4bKa1", f"branch=z9hG4bKa1;received={host}".encode())
    elif where == "contact":
        data = data.replace(b"<sip:alice@10.1.0.10:5060>", f"<sip:alice@{host}:5060>".encode())
    else:
        header = "Route" if where == "route" else "Record-Route"
        data = data.replace(b"Max-Forwards: 70\r\n", f"Max-Forwards: 70\r\n{header}: <sip:{host};lr>\r\n".encode())
    out = h.send(data, CALLER)
    assert statuses(out, CALLER) == [400] and all(s.peer == CALLER for s in out)
    assert not h.control.calls_of("admit") and h.proxy.stats.malformed == 1


def test_a_2xx_with_a_bad_contact_is_dropped_not_recorded() -> None:
    h = Harness()
    _, raw = only_request(h.send(invite(), CALLER), CALLEE, "INVITE")
    out = h.send(answer(raw, 200, "OK", contact="<sip:bob@exämple..test>"), CALLEE)
    assert out == [] and h.proxy.stats.malformed == 1 and h.proxy.calls["c1"].callee.contact is None


def test_other_sip_versions_get_505_when_a_response_can_be_built() -> None:
    h = Harness()
    out = h.send(invite().replace(b"INVITE sip:bob@site-b.example SIP/2.0", b"INVITE sip:bob@site-b.example SIP/3.0"),
                 CALLER)
    (response,) = to(out, CALLER)
    assert isinstance(response, Response) and response.status == 505
    assert response.header("call-id") == "c1" and not h.control.calls_of("admit")
    # a response in another version cannot be answered: dropped
    assert h.send(b"SIP/3.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n\r\n", CALLEE) == []
    assert h.proxy.stats.dropped == 1


def test_config_routes_are_checked_and_names_resolved_once() -> None:
    for bad in ("exämple..test:5060", "127.0.1.1\x00:5060", "a..b:5060", "[10.0.0.1]:5060", "host:0"):
        with pytest.raises(RouteError):
            parse_hop(bad)
    assert parse_hop("[::1]:5070") == Peer("udp", "::1", 5070)
    table = RouteTable.from_specs(["site-b.example=pbx.site-b.example:5070", "*=tcp:10.0.0.1:5060"])
    resolved = table.resolved(lambda name: {"pbx.site-b.example": "10.2.0.5"}[name])
    assert dict(resolved.routes) == {"site-b.example": Peer("udp", "10.2.0.5", 5070), "*": Peer("tcp", "10.0.0.1", 5060)}
    with pytest.raises(RouteError, match="site-b.example"):
        table.resolved(lambda name: (_ for _ in ()).throw(OSError("no such name")))


def _late_200(h: Harness, forwarded: bytes, second_via: str | None = None) -> bytes:
    data = answer(forwarded, 200, "OK")
    if second_via is not None:
        data = data.replace(b"Via: SIP/2.0/UDP 10.1.0.10:5060", f"Via: SIP/2.0/UDP {second_via}".encode())
    return data


def test_stray_2xx_of_a_held_call_goes_only_to_where_its_invite_came_from() -> None:
    h = Harness()
    forwarded = establish(h)
    h.advance(40)                          # timer M: the INVITE client transaction is gone
    assert h.proxy.transaction_counts() == (0, 0)
    out = h.send(_late_200(h, forwarded, second_via="192.0.2.66:5060"), CALLEE)
    assert [s.peer for s in out] == [CALLER] and h.proxy.stats.stray_forwarded == 1
    (late,) = to(out, CALLER)
    assert isinstance(late, Response) and late.header_values("via")[0].startswith("SIP/2.0/UDP 192.0.2.66")


def test_other_strays_are_dropped_and_counted() -> None:
    h = Harness()
    forwarded = establish(h)
    h.advance(40)
    stray_branch = _late_200(h, forwarded).replace(b"branch=z9hG4bK", b"branch=z9hG4bKother", 1)
    to_bye = _late_200(h, forwarded).replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    unknown_call = _late_200(h, forwarded).replace(b"Call-ID: c1", b"Call-ID: nobody")
    provisional = answer(forwarded, 180, "Ringing")
    for data in (stray_branch, to_bye, unknown_call, provisional):
        assert h.send(data, CALLEE) == []
    assert h.proxy.stats.stray_responses == 4 and h.proxy.stats.stray_forwarded == 0
    # and a call that ended is no longer a plausible dialog
    h.send(request("BYE", "c1", "z9hG4bKbye", 2, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"), CALLER)
    assert h.send(_late_200(h, forwarded), CALLEE) == [] and h.proxy.stats.stray_responses == 5


def test_the_shells_resolve_route_names_at_start() -> None:
    from ryu_apps.signalling.sip.guard import resolve_routes
    h = Harness(routes=RouteTable.from_specs(["site-b.example=localhost:5070"]))
    resolve_routes(h.proxy)
    assert dict(h.proxy.config.routes.routes)["site-b.example"] in (Peer("udp", "127.0.0.1", 5070),
                                                                     Peer("udp", "::1", 5070))
    out = h.send(invite(), CALLER)
    assert [s.peer.port for s in out if s.peer != CALLER] == [5070]
