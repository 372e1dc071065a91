"""UDP for the asyncio shell: datagrams in, to the proxy core; its outputs out."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .standalone import SipServer


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: "SipServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.server.on_datagram(data, addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:   # ICMP unreachable etc.: nothing to do
        self.server.send_errors += 1

    def sendto(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None:
            self.transport.sendto(data, (host, port))
