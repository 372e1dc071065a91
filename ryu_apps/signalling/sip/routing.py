"""The static route table: where to send a request whose Request-URI names a domain.

Keys, most specific first: ``user@domain``, ``domain``, ``*`` (default). Values are next
hops ``host:port`` with an optional transport (``tcp:host:port`` or ``host:port;transport=tcp``);
the host is an IPv4 address, an IPv6 address (bracketed or not) or an RFC 1123 host name,
which the shell resolves once at start (:meth:`RouteTable.resolved`): the proxy never
looks names up while it runs. A Request-URI (or top Route) whose host is an IP address
and that no key matches goes straight to that address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .addresses import hostname, ipv4, ipv6
from .addresses import is_ip as is_ip
from .message import SipUri
from .transaction import Peer


class RouteError(ValueError):
    """A route specification is malformed (local misuse: a configuration error)."""


def parse_hop(text: str, default_transport: str = "udp") -> Peer:
    spec = text.strip()
    transport = default_transport
    if ";" in spec:
        spec, _, params = spec.partition(";")
        for item in params.split(";"):
            key, _, value = item.partition("=")
            if key.strip().lower() == "transport":
                transport = value.strip().lower()
    lowered = spec.lower()
    for prefix in ("udp:", "tcp:"):
        if lowered.startswith(prefix):
            transport, spec = prefix[:-1], spec[len(prefix):]
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RouteError(f"next hop must be host:port, got {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not (ipv6(host) if bracketed else (ipv4(host) or ipv6(host) or hostname(host))):
        raise RouteError(f"next hop host must be an IPv4 address, an [IPv6] address or a host name, got {text!r}")
    if transport not in ("udp", "tcp"):
        raise RouteError(f"transport must be udp or tcp, got {transport!r} in {text!r}")
    return Peer(transport, host.lower(), int(port))


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[tuple[str, Peer], ...] = ()
    _index: dict[str, Peer] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {key.lower(): hop for key, hop in self.routes})

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "RouteTable":
        return cls(tuple((key.strip().lower(), parse_hop(hop)) for key, hop in pairs))

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> "RouteTable":
        """``["site-b.example=127.0.0.1:5070", "*=tcp:10.0.0.1:5060"]``."""
        pairs = []
        for spec in specs:
            key, sep, hop = spec.partition("=")
            if not sep or not key.strip():
                raise RouteError(f"route must be key=host:port, got {spec!r}")
            pairs.append((key, hop))
        return cls.from_pairs(pairs)

    def resolved(self, resolve: Callable[[str], str]) -> "RouteTable":
        """The same table with every host name replaced by ``resolve(name)`` (an IP address);
        the shell passes a resolver at start. Raises :class:`RouteError` naming the route."""
        routes = []
        for key, hop in self.routes:
            if not is_ip(hop.host):
                try:
                    address = resolve(hop.host)
                except (OSError, UnicodeError, ValueError) as error:
                    raise RouteError(f"route {key}: cannot resolve {hop.host!r}: {error}") from None
                if not is_ip(address):
                    raise RouteError(f"route {key}: {hop.host!r} resolved to {address!r}, not an IP address")
                hop = Peer(hop.transport, address.strip("[]"), hop.port)
            routes.append((key, hop))
        return RouteTable(tuple(routes))

    def lookup(self, uri: SipUri) -> Peer | None:
        index = self._index
        if uri.user is not None and uri.host:
            hop = index.get(f"{uri.user.lower()}@{uri.host}")
            if hop is not None:
                return hop
        hop = index.get(uri.host) if uri.host else index.get(uri.user or "")
        if hop is not None:
            return hop
        if uri.host and is_ip(uri.host):
            transport = uri.transport if uri.transport in ("udp", "tcp") else "udp"
            return Peer(transport or "udp", uri.host.strip("[]"), uri.port or 5060)
        return index.get("*")
