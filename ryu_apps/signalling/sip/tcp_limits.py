"""TCP connection limits, the same in both shells (no sockets here: connections are keys).

* at most ``max_connections`` inbound connections in all and ``max_connections_per_source``
  from one address: one more is closed at once (``refused_total`` / ``refused_per_source``);
* a connection idle for ``idle_timeout_s`` is closed (``idle_closed``);
* a message must be complete within ``message_timeout_s`` of its first byte, however slowly
  its bytes trickle in (slowloris): else the connection is closed (``slow_closed``).

Connections the proxy opens to next hops count in the total and time out when idle, but
are never refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable


@dataclass(frozen=True)
class TcpLimits:
    idle_timeout_s: float = 300.0
    message_timeout_s: float = 10.0
    max_connections: int = 1024
    max_connections_per_source: int = 64


@dataclass
class _Connection:
    host: str
    last: float
    started: float | None = None       # when the message now being read began
    outbound: bool = False


@dataclass
class TcpCounters:
    accepted: int = 0
    refused_total: int = 0
    refused_per_source: int = 0
    idle_closed: int = 0
    slow_closed: int = 0


@dataclass
class ConnectionTable:
    limits: TcpLimits
    counters: TcpCounters = field(default_factory=TcpCounters)
    _connections: dict[Hashable, _Connection] = field(default_factory=dict)
    _per_source: dict[str, int] = field(default_factory=dict)

    def admit(self, key: Hashable, host: str, now: float) -> str | None:
        """An inbound connection from ``host``: None when kept, else why it must be closed."""
        limits, counters = self.limits, self.counters
        if len(self._connections) >= limits.max_connections:
            counters.refused_total += 1
            return "too many TCP connections"
        if self._per_source.get(host, 0) >= limits.max_connections_per_source:
            counters.refused_per_source += 1
            return f"too many TCP connections from {host}"
        counters.accepted += 1
        self._add(key, host, now, outbound=False)
        return None

    def opened(self, key: Hashable, host: str, now: float) -> None:
        """A connection we opened to a next hop."""
        self._add(key, host, now, outbound=True)

    def _add(self, key: Hashable, host: str, now: float, outbound: bool) -> None:
        if key in self._connections:
            return
        self._connections[key] = _Connection(host, now, outbound=outbound)
        if not outbound:
            self._per_source[host] = self._per_source.get(host, 0) + 1

    def closed(self, key: Hashable) -> None:
        connection = self._connections.pop(key, None)
        if connection is None or connection.outbound:
            return
        left = self._per_source.get(connection.host, 1) - 1
        if left > 0:
            self._per_source[connection.host] = left
        else:
            self._per_source.pop(connection.host, None)

    def activity(self, key: Hashable, now: float, partial: bool) -> None:
        """Bytes came (or went); ``partial``: a message is begun and not complete yet."""
        connection = self._connections.get(key)
        if connection is None:
            return
        connection.last = now
        if not partial:
            connection.started = None
        elif connection.started is None:
            connection.started = now

    def expired(self, now: float) -> list[tuple[Hashable, str]]:
        """Connections to close now, each with the reason (counted, and forgotten here)."""
        out = [(key, reason) for key in list(self._connections) if (reason := self.check(key, now)) is not None]
        return out

    def check(self, key: Hashable, now: float) -> str | None:
        """Whether one connection must be closed now (then counted and forgotten)."""
        connection = self._connections.get(key)
        if connection is None:
            return None
        limits, counters = self.limits, self.counters
        if connection.started is not None and now - connection.started > limits.message_timeout_s:
            counters.slow_closed += 1
            reason = "message not complete in time"
        elif now - connection.last > limits.idle_timeout_s:
            counters.idle_closed += 1
            reason = "idle"
        else:
            return None
        self.closed(key)
        return reason

    def __len__(self) -> int:
        return len(self._connections)

    def from_source(self, host: str) -> int:
        return self._per_source.get(host, 0)
