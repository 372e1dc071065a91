"""One source of truth for an emulated network: switches, links with their capacity,
communities with their hosts. From it come both the Mininet topology and the
controller's configuration, so link capacities and ports can never disagree.

No Mininet import at module level: the controller configuration can be derived (and
tested) anywhere; `build_topo` imports Mininet only when a topology is built.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HostSpec:
    name: str
    ip: str            # with its prefix length, e.g. 10.0.1.1/8
    mac: str
    port: int          # the edge switch's access port

    @property
    def address(self) -> str:
        return self.ip.split("/")[0]


@dataclass(frozen=True)
class LinkSpec:
    a: str
    a_port: int
    b: str
    b_port: int
    mbit: float                 # shaped by Mininet's TCLink (HTB) and told to the controller
    reservable: float = 0.5     # share of the capacity aggregates may reserve


@dataclass(frozen=True)
class CommunitySpec:
    name: str
    edge: str
    prefixes: tuple[str, ...]
    domains: tuple[str, ...]
    hosts: tuple[HostSpec, ...]
    e164_prefixes: tuple[str, ...] = ()        # the community's numbers (H.323 aliases, the gateway)
    signalling: str = "sip"                    # what its PBX speaks: sip or h323 (docs/gateway.md)


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    switches: tuple[tuple[str, int], ...]          # (name, dpid)
    links: tuple[LinkSpec, ...]
    communities: tuple[CommunitySpec, ...]
    aggregates: tuple[dict[str, Any], ...] = ()
    description: str = ""
    codecs: tuple[str, ...] = ("pcmu", "pcma", "g729", "g722", "t38")

    def host(self, name: str) -> HostSpec:
        for community in self.communities:
            for host in community.hosts:
                if host.name == name:
                    return host
        raise KeyError(name)

    def community_of(self, host_name: str) -> CommunitySpec:
        for community in self.communities:
            if any(h.name == host_name for h in community.hosts):
                return community
        raise KeyError(host_name)

    def link(self, a: str, b: str) -> LinkSpec:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        raise KeyError((a, b))

    # --- the controller's view ----------------------------------------------------------

    def controller_config(self, *, api_port: int = 8080, token: str | None = None, sip: dict[str, Any] | None = None,
                          dataplane: dict[str, Any] | None = None, store: str | None = None,
                          aggregates: bool = True, h323: dict[str, Any] | None = None) -> dict[str, Any]:
        """The YAML document (as a dict) for `ryu_apps.mam_app` that matches this network."""
        config: dict[str, Any] = {
            "topology": {
                "switches": [{"name": name, "dpid": dpid} for name, dpid in self.switches],
                "links": [{"a": l.a, "a_port": l.a_port, "b": l.b, "b_port": l.b_port,
                           "capacity_kbps": int(l.mbit * 1000), "reservable": l.reservable} for l in self.links],
            },
            "communities": [{
                "name": c.name, "edge": c.edge, "access_ports": [h.port for h in c.hosts],
                "prefixes": list(c.prefixes), "domains": list(c.domains),
                "terminals": [{"ip": h.address, "port": h.port, "mac": h.mac} for h in c.hosts],
                **({"e164_prefixes": list(c.e164_prefixes)} if c.e164_prefixes else {}),
                **({"signalling": c.signalling} if c.signalling != "sip" else {}),
            } for c in self.communities],
            "codecs": {"allowed": list(self.codecs)},
            "dataplane": dict(dataplane or {"class_mode": "tc"}),
            "api": {"host": "127.0.0.1", "port": api_port, **({"token": token} if token else {})},
            "sip": dict(sip or {"enabled": False}),
        }
        if aggregates and self.aggregates:
            config["aggregates"] = [dict(a) for a in self.aggregates]
        if store:
            config["store"] = store
        if h323:
            config["h323"] = dict(h323)
        return config


def build_topo(spec: NetworkSpec, prefix: str = "") -> Any:
    """A Mininet `Topo` of ``spec``; node names get ``prefix`` so emulations side by side
    (or other users' bridges) never clash. Switch-to-switch links are shaped with HTB."""
    from mininet.topo import Topo

    class SpecTopo(Topo):
        def build(self) -> None:
            for name, dpid in spec.switches:
                self.addSwitch(prefix + name, dpid=f"{dpid:016x}")
            for link in spec.links:
                self.addLink(prefix + link.a, prefix + link.b, port1=link.a_port, port2=link.b_port,
                             bw=link.mbit)
            for community in spec.communities:
                for host in community.hosts:
                    self.addHost(prefix + host.name, ip=host.ip, mac=host.mac)
                    self.addLink(prefix + host.name, prefix + community.edge, port2=host.port)

    return SpecTopo()


def validate(spec: NetworkSpec) -> None:
    """Cheap consistency checks (the controller's own validation runs on the derived config)."""
    names = {name for name, _ in spec.switches}
    for link in spec.links:
        if link.a not in names or link.b not in names:
            raise ValueError(f"{spec.name}: link {link.a}-{link.b} names an unknown switch")
    for community in spec.communities:
        for host in community.hosts:
            if not any(ipaddress.ip_address(host.address) in ipaddress.ip_network(p) for p in community.prefixes):
                raise ValueError(f"{spec.name}: {host.name} {host.ip} is outside {community.name}'s prefixes")

