"""Shared fixtures: small topologies built from the core's own classes."""

from __future__ import annotations

import ipaddress

import pytest

from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.core.network import Community, Link, Switch, Topology


def net(prefix: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(prefix)


def line_topology(reservable: int = 1000, capacity: int = 10000) -> Topology:
    """site-a (s1) -- s2 -- (s3) site-b; site-c also at s3 with an overlapping prefix."""
    return Topology(
        (Switch("s1", 1), Switch("s2", 2), Switch("s3", 3)),
        (Link("s1", 2, "s2", 1, capacity, reservable), Link("s2", 2, "s3", 1, capacity, reservable)),
        (Community("site-a", "s1", (1,), (net("10.1.0.0/16"),), ("a.example",)),
         Community("site-b", "s3", (2,), (net("10.2.0.0/16"),), ("b.example",)),
         Community("site-c", "s3", (3,), (net("10.2.0.0/16"),), ("c.example",))),
    )


def mesh_topology() -> Topology:
    """s1 and s4 are edges; s1-s2-s4 is short but s2-s4 reserves little; s1-s3-s5-s4 is long."""
    return Topology(
        tuple(Switch(f"s{i}", i) for i in range(1, 6)),
        (Link("s1", 2, "s2", 1, 10000, 5000), Link("s2", 2, "s4", 1, 10000, 300),
         Link("s1", 3, "s3", 1, 10000, 5000), Link("s3", 2, "s5", 1, 10000, 5000),
         Link("s5", 2, "s4", 2, 10000, 5000)),
        (Community("east", "s1", (1,), (net("10.1.0.0/16"),)),
         Community("west", "s4", (3,), (net("10.4.0.0/16"),))),
    )


@pytest.fixture
def line() -> Topology:
    return line_topology()


@pytest.fixture
def manager(line: Topology) -> MediaAggregationManager:
    return MediaAggregationManager(line)
