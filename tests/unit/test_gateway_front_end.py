"""The controller's proxy routes the H.323 communities' domains to its gateway by default, and
the gateway trusts the proxy and the gatekeeper (ryu_apps/signalling/gateway/front_end.py)."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ryu_apps.config import ConfigError, parse_config
from ryu_apps.signalling.gateway.front_end import front_end_sources, gateway_routes
from ryu_apps.signalling.sip.message import parse_uri
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.routing import RouteTable
from ryu_apps.signalling.sip.transaction import Peer

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"


def document(routes=None, gateway=True, **sip):
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["communities"][1].update(signalling="h323", domains=["site-b.example", "Site-B2.example"])
    doc["sip"].update(sip)
    if routes is not None:
        doc["sip"]["routes"] = routes
    if gateway:
        doc["gateway"] = {"sip_listen": "127.0.0.1:5070", "h323_listen": "127.0.0.1:1730",
                          "pbx": {"site-b": "127.0.0.1:1720"}}
    return doc


def routes_of(config):
    sip = config.sip
    pairs = sip.routes + gateway_routes(config.gateway, config.topology.communities, sip.routes)
    return ProxyConfig.from_sip_config(sip, routes=RouteTable.from_pairs(pairs)).routes


def test_the_h323_communities_domains_route_to_the_gateway_by_default():
    config = parse_config(document())
    assert gateway_routes(config.gateway, config.topology.communities, ()) == (
        ("site-b.example", "127.0.0.1:5070"), ("site-b2.example", "127.0.0.1:5070"))
    table = routes_of(config)
    assert table.lookup(parse_uri("sip:331234@site-b.example")) == Peer("udp", "127.0.0.1", 5070)
    assert table.lookup(parse_uri("sip:alice@site-a.example")) is None          # a SIP community: as before


def test_an_explicit_route_wins_and_no_gateway_means_no_route():
    config = parse_config(document(routes={"site-b.example": "127.0.0.9:5080"}))
    assert gateway_routes(config.gateway, config.topology.communities, config.sip.routes) == (
        ("site-b2.example", "127.0.0.1:5070"),)
    assert routes_of(config).lookup(parse_uri("sip:1@site-b.example")) == Peer("udp", "127.0.0.9", 5080)
    config = parse_config(document(gateway=False))
    assert gateway_routes(config.gateway, config.topology.communities, ()) == ()
    gw = replace(config.gateway, enabled=True, sip_listen=("::1", 5070))
    assert gateway_routes(gw, config.topology.communities, ()) == (("site-b.example", "[::1]:5070"),
                                                                    ("site-b2.example", "[::1]:5070"))


def test_the_gateway_trusts_the_proxy_and_the_gatekeeper_it_starts_with():
    config = parse_config(document())
    assert front_end_sources(config.gateway, config.sip, config.h323) == frozenset({"127.0.0.1"})
    assert front_end_sources(config.gateway, replace(config.sip, listen_host="10.0.0.7")) == frozenset({"10.0.0.7"})
    wildcard = replace(config.sip, listen_host="0.0.0.0")
    gw = replace(config.gateway, sip_listen=("10.0.0.8", 5070), h323_listen=("10.0.0.9", 1730))
    assert front_end_sources(gw, wildcard) == frozenset({"10.0.0.8"})        # local traffic: from the gateway's host
    h323 = replace(config.h323, enabled=True)
    assert front_end_sources(gw, replace(config.sip, enabled=False), h323) == frozenset({"10.0.0.9"})


def test_the_gateway_may_not_listen_where_the_proxy_or_the_gatekeeper_does():
    doc = document()
    doc["gateway"]["sip_listen"] = "127.0.0.1:5060"
    with pytest.raises(ConfigError, match=r"gateway.sip_listen: 127.0.0.1:5060 is the address of sip.listen"):
        parse_config(doc)
    doc = document(listen="0.0.0.0:5070")
    with pytest.raises(ConfigError, match="gateway.sip_listen"):
        parse_config(doc)
    doc = document()
    doc["h323"] = {"call_listen": "127.0.0.1:1730"}
    with pytest.raises(ConfigError, match="gateway.h323_listen: .* h323.call_listen"):
        parse_config(doc)
    doc = document()
    doc["sip"]["enabled"] = False
    doc["gateway"]["sip_listen"] = "127.0.0.1:5060"
    assert parse_config(copy.deepcopy(doc)).gateway.sip_listen == ("127.0.0.1", 5060)   # no proxy: no clash
