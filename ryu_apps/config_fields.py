"""The configuration file's validation toolkit: a mapping being read and typed readers.

Every reader takes the value and the path of its key and returns the value converted, or
raises :class:`ConfigError` naming the path (``communities[1].prefixes[0]: not an IP
prefix: '10.0.0/33'``). :class:`Node` remembers which keys were read, so a leftover
(a typo) is an error, with the closest known key suggested.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any, Callable, TypeVar

from .core.errors import MamError

T = TypeVar("T")


class ConfigError(MamError):
    """A configuration value is wrong; ``path`` names the key (``links[2].b_port``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, field=path or "(top)")
        self.path = path


class Node:
    """A mapping being read; remembers which keys were used so leftovers are errors."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {kind_of(value)}")
        self.value, self.path = value, path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, convert: Callable[[Any, str], T], default: Any = ...) -> T:
        self.used.add(name)
        if name not in self.value or self.value[name] is None:
            if default is ...:
                close = difflib.get_close_matches(name, [str(k) for k in self.value if k not in self.used], 1)
                if close:  # a typo is the likelier mistake: point at the key as written
                    raise ConfigError(self.key(close[0]), f"unknown key; did you mean {name!r}?")
                raise ConfigError(self.key(name), "is required")
            return default  # type: ignore[no-any-return]  # the caller's default, of the caller's type
        return convert(self.value[name], self.key(name))

    def done(self) -> None:
        unknown = sorted(set(map(str, self.value)) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), f"unknown key (expected one of: {', '.join(sorted(self.used))})")


def kind_of(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"expected a non-empty string, got {value!r}")
    return value.strip()


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    return value


def integer(low: int, high: int) -> Callable[[Any, str], int]:
    def convert(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(path, f"must be between {low} and {high}, got {value}")
        return value
    return convert


def number(low: float, high: float) -> Callable[[Any, str], float]:
    def convert(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(path, f"must be between {low} and {high}, got {value}")
        return float(value)
    return convert


def listing(item: Callable[[Any, str], T], *, min_items: int = 0) -> Callable[[Any, str], tuple[T, ...]]:
    def convert(value: Any, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {kind_of(value)}")
        if len(value) < min_items:
            raise ConfigError(path, f"needs at least {min_items} item(s)")
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))
    return convert


def choice(*options: str) -> Callable[[Any, str], str]:
    def convert(value: Any, path: str) -> str:
        text = string(value, path).lower()
        if text not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, got {value!r}")
        return text
    return convert


def prefix(value: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise ConfigError(path, f"not an IP prefix: {value!r}") from None


def ip_address(value: Any, path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise ConfigError(path, f"not an IP address: {value!r}") from None


def dpid(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 64:
        return value
    if isinstance(value, str):
        try:
            return int(value.replace(":", ""), 16)
        except ValueError:
            pass
    raise ConfigError(path, f"not a datapath id (integer or hex like 00:00:00:00:00:00:00:01): {value!r}")


def mac_address(value: Any, path: str) -> str:
    text = string(value, path).lower()
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ConfigError(path, f"not a MAC address: {value!r}")
    return text


def hostport(value: Any, path: str) -> str:
    text = string(value, path)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"expected host:port, got {value!r}")
    return text


def ovsdb_address(value: Any, path: str) -> str:
    """An OVSDB server as ovsdb-client names it: unix:/path/to/db.sock or tcp:HOST:PORT."""
    text = string(value, path)
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return text
    if kind == "tcp":
        host, sep, port = rest.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if sep and port.isdigit() and 0 < int(port) < 65536:
            try:
                ipaddress.ip_address(host)
                return text
            except ValueError:
                pass
    raise ConfigError(path, f"expected unix:/path/to/db.sock or tcp:IP:PORT (e.g. tcp:192.0.2.10:6640), got {value!r}")


def string_or_int(value: Any, path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return string(value, path)
