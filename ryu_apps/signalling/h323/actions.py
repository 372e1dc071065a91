"""What the sans-IO gatekeeper asks its shell to do: plain values, no sockets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..call_control import ControlOp


@dataclass(frozen=True)
class Datagram:
    """Send ``data`` on the RAS socket to ``host:port``."""

    host: str
    port: int
    data: bytes


@dataclass(frozen=True)
class StreamOpen:
    """Open call-signalling connection ``conn`` to ``host:port``; later :class:`StreamSend`
    for ``conn`` go out once it is connected. A failed connect is reported back with
    ``Gatekeeper.stream_closed(conn, now, reset=True)``."""

    conn: int
    host: str
    port: int


@dataclass(frozen=True)
class StreamSend:
    conn: int
    data: bytes


@dataclass(frozen=True)
class StreamClose:
    """Close ``conn`` after what was queued for it has been written."""

    conn: int


@dataclass(frozen=True)
class Perform:
    """Run ``op`` against admission (in order with every other Perform) and hand the
    result to ``Gatekeeper.performed(ticket, result, now)``."""

    ticket: int
    op: ControlOp


Action = Union[Datagram, StreamOpen, StreamSend, StreamClose, Perform]
