"""Endpoint registrations (RRQ/RCF), their aliases, time to live, and the communities
H.323 parties belong to."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any, Iterable, Protocol

Address = tuple[str, int]
#: An alias as (kind, text): kind is e164, h323-id, url or email; text as registered.
Alias = tuple[str, str]
ALIAS_KINDS = {"dialledDigits": "e164", "h323-ID": "h323-id", "url-ID": "url", "email-ID": "email"}
ASN_KINDS = {v: k for k, v in ALIAS_KINDS.items()}


class Directory(Protocol):
    """Which community a party belongs to (the controller's topology, or its REST API)."""

    def by_address(self, ip: str) -> str | None: ...

    def by_number(self, digits: str) -> str | None: ...

    def by_domain(self, domain: str) -> str | None: ...


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    ras: Address
    call_signal: Address | None
    aliases: tuple[Alias, ...]
    community: str | None
    ttl_s: int
    expires_at: float


def alias_of(value: Any) -> Alias | None:
    """pycrate AliasAddress -> Alias (None for kinds we do not route on)."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    kind = ALIAS_KINDS.get(value[0])
    if kind is None or not isinstance(value[1], str) or not value[1]:
        return None
    return kind, value[1]


def aliases_of(values: Any) -> tuple[Alias, ...]:
    if not isinstance(values, list):
        return ()
    found = (alias_of(v) for v in values)
    return tuple(a for a in found if a is not None)


def asn_alias(alias: Alias) -> tuple[str, str]:
    return ASN_KINDS[alias[0]], alias[1]


def transport_address(value: Any) -> Address | None:
    """pycrate H.225 TransportAddress -> (ip, port); IPv4 and IPv6 only."""
    try:
        kind, fields = value
        if kind == "ipAddress":
            return str(ipaddress.IPv4Address(fields["ip"])), int(fields["port"])
        if kind == "ip6Address":
            return str(ipaddress.IPv6Address(fields["ip"])), int(fields["port"])
    except (TypeError, ValueError, KeyError):
        return None
    return None


def asn_transport(address: Address) -> tuple[str, dict[str, Any]]:
    ip = ipaddress.ip_address(address[0])
    kind = "ip6Address" if ip.version == 6 else "ipAddress"
    return kind, {"ip": ip.packed, "port": address[1]}


def domain_of(alias: Alias) -> str | None:
    """The domain of an h323-ID, URL or email alias (``user@domain``, ``h323:user@domain``)."""
    if alias[0] == "e164":
        return None
    text = alias[1].lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    elif text.startswith(("h323:", "sip:")):
        text = text.split(":", 1)[1]
    if "@" not in text:
        return None
    host = text.rsplit("@", 1)[1].split("/", 1)[0].split(";", 1)[0].split(":", 1)[0]
    return host or None


def community_of(directory: Directory, addresses: Iterable[str], aliases: Iterable[Alias]) -> str | None:
    """Source addresses first (the community's prefixes), then aliases: E.164 prefix, domain."""
    for ip in addresses:
        found = directory.by_address(ip)
        if found:
            return found
    for alias in aliases:
        if alias[0] == "e164":
            found = directory.by_number(alias[1])
        else:
            domain = domain_of(alias)
            found = directory.by_domain(domain) if domain else None
        if found:
            return found
    return None


def destination_community(directory: Directory, aliases: Iterable[Alias]) -> str | None:
    """The community of a dialled destination by its aliases alone: E.164 prefix, then domain."""
    return community_of(directory, (), aliases)


class Registry:
    """Registered endpoints with indexes by id, alias and RAS address."""

    def __init__(self) -> None:
        self.by_id: dict[str, Endpoint] = {}
        self._by_alias: dict[Alias, str] = {}
        self._by_ras: dict[Address, str] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.by_id)

    def new_id(self) -> str:
        self._next += 1
        return f"ep{self._next:06x}"

    def add(self, endpoint: Endpoint) -> None:
        self.remove(endpoint.endpoint_id)
        for alias in endpoint.aliases:
            owner = self._by_alias.get(_key(alias))
            if owner is not None and owner != endpoint.endpoint_id:
                raise ValueError(f"alias {alias[1]!r} is registered by {owner}")
        self.by_id[endpoint.endpoint_id] = endpoint
        for alias in endpoint.aliases:
            self._by_alias[_key(alias)] = endpoint.endpoint_id
        self._by_ras[endpoint.ras] = endpoint.endpoint_id

    def alias_owner(self, alias: Alias) -> str | None:
        return self._by_alias.get(_key(alias))

    def remove(self, endpoint_id: str) -> Endpoint | None:
        endpoint = self.by_id.pop(endpoint_id, None)
        if endpoint is None:
            return None
        for alias in endpoint.aliases:
            if self._by_alias.get(_key(alias)) == endpoint_id:
                del self._by_alias[_key(alias)]
        if self._by_ras.get(endpoint.ras) == endpoint_id:
            del self._by_ras[endpoint.ras]
        return endpoint

    def refresh(self, endpoint_id: str, now: float) -> Endpoint | None:
        endpoint = self.by_id.get(endpoint_id)
        if endpoint is None:
            return None
        endpoint = replace(endpoint, expires_at=now + endpoint.ttl_s)
        self.by_id[endpoint_id] = endpoint
        return endpoint

    def get(self, endpoint_id: str | None) -> Endpoint | None:
        return None if endpoint_id is None else self.by_id.get(endpoint_id)

    def by_ras(self, address: Address) -> Endpoint | None:
        found = self._by_ras.get(address)
        return None if found is None else self.by_id.get(found)

    def find(self, aliases: Iterable[Alias]) -> Endpoint | None:
        for alias in aliases:
            found = self._by_alias.get(_key(alias))
            if found is not None:
                return self.by_id.get(found)
        return None

    def by_call_signal(self, address: Address) -> Endpoint | None:
        for endpoint in self.by_id.values():
            if endpoint.call_signal == address:
                return endpoint
        return None

    def expired(self, now: float) -> list[Endpoint]:
        return [e for e in self.by_id.values() if e.expires_at <= now]

    def next_expiry(self) -> float | None:
        return min((e.expires_at for e in self.by_id.values()), default=None)


def _key(alias: Alias) -> Alias:
    return alias[0], alias[1] if alias[0] == "e164" else alias[1].lower()
