"""Which hosts the proxy accepts in an address it might send to.

Every host in a Via (sent-by, ``received``, ``maddr``), a SIP URI (Request-URI, Route,
Record-Route, Contact) and a configured route is checked here when it is parsed: an
IPv4 address, a bracketed IPv6 address (a bare one only where the grammar allows it:
Via ``received``), or an RFC 1123 host name (ASCII letters, digits and hyphens, labels
of 1 to 63 characters not starting or ending with a hyphen, at most 253 characters,
the last label not all digits). Anything else (a NUL byte, a non-ASCII name, an empty
label, a 64-character label) is refused before it can reach a socket, where it would
raise something other than ``OSError`` (issue 11).

Results are cached: the same few hosts come back in every message.
"""

from __future__ import annotations

import functools
import ipaddress
import re

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z")

MAX_HOSTNAME = 253


@functools.lru_cache(maxsize=8192)
def ipv4(text: str) -> bool:
    if not _IPV4.match(text):
        return False
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def ipv6(text: str) -> bool:
    """A bare IPv6 address (no brackets, no zone)."""
    if ":" not in text or "%" in text or not text.isascii():
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def hostname(text: str) -> bool:
    """An RFC 1123 host name (a trailing dot allowed), not an all-numeric top label."""
    if not text.isascii():
        return False
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > MAX_HOSTNAME:
        return False
    labels = name.split(".")
    if labels[-1].isdigit():          # "1.2.3" or "300.1.1.1": a broken address, not a name
        return False
    return all(_LABEL.match(label) for label in labels)


def valid_host(text: str) -> bool:
    """A host as it may appear in a SIP URI or a Via sent-by: IPv4, [IPv6] or a host name."""
    if text.startswith("["):
        return text.endswith("]") and ipv6(text[1:-1])
    return ipv4(text) or hostname(text)


def valid_address(text: str) -> bool:
    """An IP address, bracketed or bare (Via ``received``)."""
    if text.startswith("["):
        return text.endswith("]") and ipv6(text[1:-1])
    return ipv4(text) or ipv6(text)


def is_ip(text: str) -> bool:
    """An IP literal (IPv4, [IPv6] or bare IPv6): something a socket can send to without DNS."""
    return valid_address(text)
