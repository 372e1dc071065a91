"""Small pieces of the cluster: allocation lanes, the etcd URL, the cluster settings."""

from __future__ import annotations

import time

import pytest

from ryu_apps.cluster.replication import lane_of
from ryu_apps.config import ConfigError, parse_config
from ryu_apps.core.errors import InvalidRequest
from ryu_apps.core.tags import TagAllocator
from ryu_apps.store.url import EtcdUrl


def test_a_lane_hands_out_from_its_start_then_wraps():
    tags = TagAllocator(1, 10, start=6)
    assert [tags.allocate() for _ in range(10)] == [6, 7, 8, 9, 10, 1, 2, 3, 4, 5]
    assert tags.allocate() is None
    tags.release(9), tags.release(2)
    assert tags.allocate() == 9 and tags.allocate() == 2


def test_claims_far_up_a_range_cost_nothing_and_allocation_stays_lowest_free():
    serials = TagAllocator(1, 0xFF_FFFF_FFFF)
    started = time.perf_counter()
    serials.claim(0xFF_FFFF_FF00)            # another controller's lane, near the top
    serials.claim(3)
    assert time.perf_counter() - started < 0.01
    assert [serials.allocate() for _ in range(3)] == [1, 2, 4]
    serials.release(0xFF_FFFF_FF00)
    serials.release(2)
    assert serials.allocate() == 2            # lowest free, not the one released last
    twin = TagAllocator(1, 0xFF_FFFF_FFFF)
    for tag in (1, 2, 3, 4):
        twin.claim(tag)
    assert twin.allocate() == serials.allocate() == 5   # restored from claims: the same decisions


def test_lanes_differ_between_controllers():
    assert lane_of("ctl-a") != lane_of("ctl-b")
    assert all(0 <= lane_of(f"c{i}")[0] < 64 for i in range(100))


def test_the_etcd_url_names_endpoints_and_a_prefix():
    url = EtcdUrl.parse("etcd://10.0.0.1:2379,[::1]:23790,etcd.example:2379/mam/site")
    assert url.endpoints == (("10.0.0.1", 2379), ("::1", 23790), ("etcd.example", 2379))
    assert url.prefix == "/mam/site/"
    for bad, why in [("etcd://10.0.0.1:2379", "no key prefix"), ("etcd://10.0.0.1/mam", "not HOST:PORT"),
                     ("etcd://h:99999/mam", "not HOST:PORT"), ("http://h:1/mam", "not an etcd")]:
        with pytest.raises(InvalidRequest, match=why):
            EtcdUrl.parse(bad)


BASE = {"topology": {"switches": [{"name": "s1", "dpid": 1}]}}


def test_the_configuration_takes_an_etcd_store_and_cluster_settings():
    config = parse_config({**BASE, "store": "etcd://127.0.0.1:2379/mam", "cluster": {"name": "ctl-a",
                                                                                       "timeout_s": 0.5}})
    assert config.store_url == EtcdUrl((("127.0.0.1", 2379),), "/mam/")
    assert (config.cluster.name, config.cluster.timeout_s) == ("ctl-a", 0.5)
    assert parse_config({**BASE, "store": "/var/lib/mam/ledger.sqlite"}).store_url is None
    with pytest.raises(ConfigError, match=r"store: '127.0.0.1' in 'etcd://127.0.0.1/mam' is not HOST:PORT"):
        parse_config({**BASE, "store": "etcd://127.0.0.1/mam"})
    with pytest.raises(ConfigError, match="cluster.timeout_s"):
        parse_config({**BASE, "cluster": {"timeout_s": 0}})


def test_cluster_roles_are_switch_groups_with_preferred_controllers():
    topo = {"topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}]}}
    config = parse_config({**topo, "cluster": {"lease_ttl_s": 1, "roles": {
        "site-a": {"switches": ["s1"], "controllers": ["ctl-a", "ctl-b"]}, "core": {"switches": ["s2"]}}}})
    assert config.cluster.lease_ttl_s == 1
    assert config.cluster.roles == (("site-a", ("s1",), ("ctl-a", "ctl-b")), ("core", ("s2",), ()))
    with pytest.raises(ConfigError, match=r"cluster.roles.b.switches\[0\]: switch s1 is already in group a"):
        parse_config({**topo, "cluster": {"roles": {"a": {"switches": ["s1"]}, "b": {"switches": ["s1"]}}}})
    with pytest.raises(ConfigError, match=r"cluster.roles.a.switches\[0\]: unknown switch 's9'"):
        parse_config({**topo, "cluster": {"roles": {"a": {"switches": ["s9"]}}}})


def test_elections_prefer_the_listed_order_and_hand_groups_back():
    from ryu_apps.cluster.roles import Group, should_campaign, should_resign, wanted_roles
    from ryu_apps.openflow.events import Role
    site_a = Group("site-a", ("s1",), ("ctl-a", "ctl-b"))
    anyone = Group("all", ("s1", "s2"))
    assert should_campaign(site_a, "ctl-a", {"ctl-b"}) and not should_campaign(site_a, "ctl-b", {"ctl-a"})
    assert should_campaign(site_a, "ctl-b", {"ctl-b"})                  # ctl-a is dead: the backup takes over
    assert should_resign(site_a, "ctl-b", {"ctl-a", "ctl-b"})            # ctl-a is back: it gets its site again
    assert not should_resign(site_a, "ctl-a", {"ctl-a", "ctl-b"})
    assert should_campaign(anyone, "x", set()) and not should_resign(anyone, "x", {"y"})
    assert not should_campaign(site_a, "ctl-z", set())                   # not listed: never masters the site
    roles = wanted_roles([site_a, Group("core", ("s2",))], {"site-a": ("ctl-a", 42), "core": ("ctl-b", 43)}, "ctl-a")
    assert roles == {"s1": (Role.MASTER, 42), "s2": (Role.SLAVE, 43)}
