"""UDP for the asyncio shell: datagrams in, to the proxy core; its outputs out."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .standalone import SipServer


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: "SipServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_buffers(sock)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.server.on_datagram(data, addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:   # ICMP unreachable etc.: nothing to do
        self.server.send_errors += 1

    def sendto(self, data: bytes, host: str, port: int) -> None:
        if self.transport is not None:
            self.transport.sendto(data, (host, port))


SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def tune_buffers(sock: socket.socket) -> None:
    """Large kernel buffers ride out a pause of the loop (capped by net.core.rmem_max/wmem_max)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        except OSError:
            pass
