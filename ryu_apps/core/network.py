"""The network model: switches, links with reservable capacity, user communities."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

import networkx as nx

from .errors import InvalidRequest, NotFound

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: A link in one direction, as (from switch, to switch). Reservations are per direction.
Hop = tuple[str, str]


@lru_cache(maxsize=8192)
def parse_address(text: str) -> IPAddress:
    """``ipaddress.ip_address``, remembered per text: the call path plans flows for the same
    addresses again and again (ValueError for a bad address, as ever)."""
    return ipaddress.ip_address(text)


@dataclass(frozen=True)
class Switch:
    name: str
    dpid: int


@dataclass(frozen=True)
class Link:
    """A full-duplex link; capacity and reservable share apply to each direction."""

    a: str
    a_port: int
    b: str
    b_port: int
    capacity_kbps: int
    reservable_kbps: int

    def port_on(self, switch: str) -> int:
        if switch == self.a:
            return self.a_port
        if switch == self.b:
            return self.b_port
        raise NotFound(f"link {self.a}-{self.b} does not touch {switch}")

    def hops(self) -> tuple[Hop, Hop]:
        return (self.a, self.b), (self.b, self.a)


@dataclass(frozen=True)
class Terminal:
    """A known terminal (phone, gateway) attached to a community's access port."""

    ip: IPAddress
    port: int
    mac: str | None = None


@dataclass(frozen=True)
class Community:
    """A user community (enterprise site, carrier customer) behind one edge switch.

    Prefixes may overlap with other communities'; the access ports (and SIP domains)
    are what tell two such communities apart.
    """

    name: str
    edge: str
    access_ports: tuple[int, ...]
    prefixes: tuple[IPNetwork, ...]
    domains: tuple[str, ...] = ()
    terminals: tuple[Terminal, ...] = ()
    e164_prefixes: tuple[str, ...] = ()   # dialled numbers starting with one of these belong here

    def contains(self, address: IPAddress) -> bool:
        return any(address in prefix for prefix in self.prefixes)

    def terminal_port(self, address: IPAddress) -> int | None:
        """Where a terminal is by configuration (a static binding, or the community's only
        access port), or None when that is left to learning."""
        for terminal in self.terminals:
            if terminal.ip == address:
                return terminal.port
        if len(self.access_ports) == 1:
            return self.access_ports[0]
        return None

    def terminal_port_of(self, ip: str) -> int | None:
        """:meth:`terminal_port` for an address in text form."""
        if not self.terminals:
            return self.access_ports[0] if len(self.access_ports) == 1 else None
        try:
            return self.terminal_port(parse_address(ip))
        except ValueError:
            return None


@dataclass(frozen=True)
class Topology:
    switches: tuple[Switch, ...]
    links: tuple[Link, ...]
    communities: tuple[Community, ...] = ()
    _graph: nx.Graph = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Community] = field(init=False, repr=False, compare=False)
    _adjacency: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _reservable: dict[Hop, int] = field(init=False, repr=False, compare=False)
    _links: dict[Hop, Link] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        graph = nx.Graph()
        names = {s.name for s in self.switches}
        if len(names) != len(self.switches):
            raise InvalidRequest("switch names must be unique", field="switches")
        graph.add_nodes_from(names)
        for link in self.links:
            for end in (link.a, link.b):
                if end not in names:
                    raise InvalidRequest(f"link {link.a}-{link.b} names unknown switch {end!r}", field="links")
            if graph.has_edge(link.a, link.b):
                raise InvalidRequest(f"more than one link between {link.a} and {link.b}", field="links")
            graph.add_edge(link.a, link.b, link=link)
        seen: set[str] = set()
        for community in self.communities:
            if community.edge not in names:
                raise InvalidRequest(f"community {community.name!r} has unknown edge switch {community.edge!r}",
                                     field="communities")
            if community.name in seen:
                raise InvalidRequest(f"duplicate community {community.name!r}", field="communities")
            seen.add(community.name)
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_by_name", {c.name: c for c in self.communities})
        object.__setattr__(self, "_adjacency", {name: tuple(graph.adj[name]) for name in graph.nodes})
        object.__setattr__(self, "_links", {hop: link for link in self.links for hop in link.hops()})
        object.__setattr__(self, "_reservable", {hop: link.reservable_kbps for link in self.links
                                                 for hop in link.hops()})

    @property
    def graph(self) -> nx.Graph:
        """An undirected view of the switches; each edge carries its `Link` as `link`."""
        return self._graph

    @property
    def adjacency(self) -> dict[str, tuple[str, ...]]:
        """Each switch's neighbours (read only; plain dicts for searches that run often)."""
        return self._adjacency

    def switch(self, name: str) -> Switch:
        for switch in self.switches:
            if switch.name == name:
                return switch
        raise NotFound(f"no switch {name!r}")

    def switch_by_dpid(self, dpid: int) -> Switch | None:
        for switch in self.switches:
            if switch.dpid == dpid:
                return switch
        return None

    def has_link(self, a: str, b: str) -> bool:
        return bool(self._graph.has_edge(a, b))

    def link(self, a: str, b: str) -> Link:
        try:
            return self._links[a, b]
        except KeyError:
            raise NotFound(f"no link between {a} and {b}") from None

    def out_port(self, here: str, toward: str) -> int:
        return self.link(here, toward).port_on(here)

    def hops(self) -> Iterator[Hop]:
        for link in self.links:
            yield from link.hops()

    def reservable(self, hop: Hop) -> int:
        try:
            return self._reservable[hop]
        except KeyError:
            return self.link(*hop).reservable_kbps      # raises NotFound

    def community(self, name: str) -> Community:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no community {name!r}") from None

    def has_community(self, name: str) -> bool:
        return name in self._by_name

    def community_of(self, domain: str | None = None, address: str | None = None) -> Community | None:
        """The community a SIP party belongs to: by domain first, then by address.

        An address inside several communities' prefixes (overlapping customers) is
        ambiguous and yields None; such communities need domains.
        """
        if domain:
            wanted = domain.lower()
            for community in self.communities:
                if wanted in community.domains:
                    return community
        if address:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return None
            matches = [c for c in self.communities if c.contains(ip)]
            if len(matches) == 1:
                return matches[0]
        return None

    def community_of_number(self, number: str | None) -> Community | None:
        """The community a dialled number (E.164 digits) belongs to: the longest matching
        ``e164_prefixes`` entry wins; a tie between communities is ambiguous (None)."""
        digits = (number or "").lstrip("+")
        best: list[Community] = []
        best_len = 0
        for community in self.communities:
            for prefix in community.e164_prefixes:
                if digits.startswith(prefix) and len(prefix) >= best_len:
                    if len(prefix) > best_len:
                        best, best_len = [], len(prefix)
                    if community not in best:
                        best.append(community)
        return best[0] if len(best) == 1 and digits else None

    def communities_at(self, switch: str) -> Iterable[Community]:
        return (c for c in self.communities if c.edge == switch)
