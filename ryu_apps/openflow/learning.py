"""Best-effort connectivity (table 1): MAC learning on a loop-free flood tree.

Everything that is not a reserved call goes here. A host's MAC is learned where it
first appears on a non-link port; unknown and broadcast destinations (ARP) are flooded
only along a spanning tree of the configured topology, so meshed cores do not loop;
known destinations get ``eth_dst`` entries along the shortest path. Ports LLDP finds
joined to another switch but that the configuration does not list are link ports too:
never flooded to, never a host's location.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..core.flowplan import FORWARD, CookieKind, FlowEntry, Output, cookie
from ..core.network import Topology

OFPP_CONTROLLER = 0xFFFFFFFD
PRIORITY_LEARNED = 100
LEARNED_IDLE_S = 300


@dataclass(frozen=True)
class Location:
    switch: str
    port: int


class BestEffort:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.hosts: dict[str, Location] = {}
        self._configured_link_ports = {(link.a, link.a_port) for link in topology.links} | {
            (link.b, link.b_port) for link in topology.links}
        self._link_ports = set(self._configured_link_ports)
        tree = nx.minimum_spanning_tree(topology.graph) if topology.links else topology.graph
        self._tree_ports = {(a, topology.out_port(a, b)) for a, b in tree.edges} | {
            (b, topology.out_port(b, a)) for a, b in tree.edges}

    def is_link_port(self, switch: str, port: int) -> bool:
        return (switch, port) in self._link_ports

    def set_discovered_link_ports(self, ports: set[tuple[str, int]]) -> list[str]:
        """Ports LLDP shows to reach another switch. Forgets hosts learned there; returns
        their MACs (their learned entries are stale)."""
        self._link_ports = self._configured_link_ports | ports
        stale = [mac for mac, where in self.hosts.items() if (where.switch, where.port) in self._link_ports]
        for mac in stale:
            del self.hosts[mac]
        return stale

    def base_entries(self, switch: str) -> list[FlowEntry]:
        """Table-1 miss: to the controller."""
        return [FlowEntry(switch, FORWARD, 0, (), (Output(OFPP_CONTROLLER),), cookie(CookieKind.BASE, 1))]

    def learn(self, switch: str, port: int, mac: str) -> bool:
        """Remember where ``mac`` lives; True when that is news."""
        if self.is_link_port(switch, port) or _is_group(mac):
            return False
        location = Location(switch, port)
        if self.hosts.get(mac) == location:
            return False
        self.hosts[mac] = location
        return True

    def flood_ports(self, switch: str, in_port: int, all_ports: list[int]) -> list[int]:
        """Ports to flood a packet on: non-link ports and tree links, never back in.
        A flooded packet arriving on a non-tree link is dropped (an empty list)."""
        if self.is_link_port(switch, in_port) and (switch, in_port) not in self._tree_ports:
            return []
        return [p for p in all_ports if p != in_port and (
            not self.is_link_port(switch, p) or (switch, p) in self._tree_ports)]

    def unlearned_entries(self, mac: str) -> list[FlowEntry]:
        """The learned entries toward ``mac`` on every switch, for deleting them."""
        return [FlowEntry(switch.name, FORWARD, PRIORITY_LEARNED, (("eth_dst", mac),), (),
                          cookie(CookieKind.BASE, 2)) for switch in self.topology.switches]

    def route(self, switch: str, mac: str) -> list[FlowEntry]:
        """Entries that deliver ``mac`` from ``switch`` to where it lives (empty if unknown)."""
        where = self.hosts.get(mac)
        if where is None:
            return []
        try:
            path = nx.shortest_path(self.topology.graph, switch, where.switch)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return []
        entries = []
        learned = cookie(CookieKind.BASE, 2)
        for here, following in zip(path, path[1:]):
            entries.append(FlowEntry(here, FORWARD, PRIORITY_LEARNED, (("eth_dst", mac),),
                                     (Output(self.topology.out_port(here, following)),), learned,
                                     idle_timeout=LEARNED_IDLE_S))
        entries.append(FlowEntry(where.switch, FORWARD, PRIORITY_LEARNED, (("eth_dst", mac),),
                                 (Output(where.port),), learned, idle_timeout=LEARNED_IDLE_S))
        return entries


def _is_group(mac: str) -> bool:
    return int(mac.split(":")[0], 16) & 1 == 1
