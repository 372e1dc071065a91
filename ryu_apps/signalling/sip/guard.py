"""The shells' last line of defence: nothing that goes wrong in one step stops a listener.

Every receive handler, send path and timer callback of the asyncio and hub shells runs
inside a guard. A failure is counted by kind, logged the first time that kind occurs and
then at most once a minute (with how many were not logged), and the step is dropped:
the socket, the loop and the hub go on. :func:`deliverable` is the check every
:class:`~.transaction.Send` passes before it reaches a socket: the core validates every
address it parses, and the shell refuses whatever still is not an IP literal and a port.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Callable

from .addresses import is_ip
from .transaction import Peer

if TYPE_CHECKING:  # pragma: no cover
    from .proxy import SipProxy

#: Kinds of failure the shells count (``faults`` in the stats file and the report).
KINDS = ("udp-receive", "udp-send", "udp-send-full", "tcp-accept", "tcp-receive", "tcp-send", "tcp-connect",
         "handler", "timer", "notification", "control", "undeliverable")


class Faults:
    """Failures by kind, logged once per kind and then at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: dict[str, int] = {}
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._next_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, kind: str, error: BaseException | None = None, detail: str = "") -> None:
        """Count one failure of ``kind``; log it unless this kind was logged lately."""
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if now < self._next_log.get(kind, float("-inf")):
                self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
                return
            self._next_log[kind] = now + self._interval
            skipped = self._unlogged.pop(kind, 0)
        more = f" ({skipped} more since the last report)" if skipped else ""
        what = f"{type(error).__name__}: {error}" if error is not None else ""
        text = "; ".join(part for part in (detail, what) if part)
        # a bug (not an OSError) gets its traceback the first time: that is what finds it
        self._log.warning("SIP %s failed%s: %s", kind, more, text[:300],
                          exc_info=error if error is not None and not isinstance(error, OSError) else None)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def deliverable(peer: Peer) -> bool:
    """An address a socket can take without surprises: udp/tcp, an IP literal, a port."""
    return (peer.transport in ("udp", "tcp") and isinstance(peer.host, str) and is_ip(peer.host)
            and isinstance(peer.port, int) and 0 < peer.port < 65536)


def resolve_name(name: str) -> str:
    """The first address of a host name (a shell's start-up step; never while running)."""
    return str(socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)[0][4][0])


def resolve_routes(proxy: "SipProxy", resolve: Callable[[str], str] = resolve_name) -> None:
    """Replace the host names in the proxy's route table by addresses, once, at start."""
    routes = proxy.config.routes.resolved(resolve)
    if routes != proxy.config.routes:
        proxy.config = dataclasses.replace(proxy.config, routes=routes)
