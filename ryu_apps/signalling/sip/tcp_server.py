"""TCP for the asyncio shell: one framer per connection (messages cut by Content-Length).

Connections are known by the peer's address: responses to a request go back on the
connection it came in on, requests to a next hop use an open connection to it or open one.
A framing error (oversized head, bad Content-Length) closes the connection. Every
callback is guarded: a failure closes at most this connection, never the listener.
Limits (:mod:`.tcp_limits`): connections in all and per source, idle and slow-message
timeouts, swept by the server every second.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .message import StreamFramer
from .transaction import Peer

if TYPE_CHECKING:  # pragma: no cover
    from .standalone import SipServer


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: "SipServer", outbound: bool = False) -> None:
        self.server = server
        self.outbound = outbound
        self.framer = StreamFramer(server.proxy.config.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        try:
            host, port = transport.get_extra_info("peername")[:2]
            self.peer = Peer("tcp", host, port)
            table, now = self.server.tcp_table, self.server.now()
            if self.outbound:
                table.opened(self, host, now)
            elif table.admit(self, host, now) is not None:
                self.peer = None
                transport.abort()  # type: ignore[attr-defined]  # over a limit (counted in the table)
                return
            self.server.tcp_connections[self.peer] = self
            for data in self.pending:
                transport.write(data)  # type: ignore[attr-defined]
            self.pending.clear()
        except Exception as error:  # noqa: BLE001
            self.server.faults.record("tcp-accept", error)
            transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            assert self.peer is not None
            for item in self.framer.feed(data):
                self.server.on_tcp_message(item, self.peer)
            broken = self.framer.broken
            self.server.tcp_table.activity(self, self.server.now(), self.framer.pending)
        except Exception as error:  # noqa: BLE001 - close this connection, nothing else
            self.server.faults.record("tcp-receive", error)
            broken = True
        if broken and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.tcp_table.closed(self)
        if self.peer is not None and self.server.tcp_connections.get(self.peer) is self:
            del self.server.tcp_connections[self.peer]

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
            return
        try:
            self.transport.write(data)
            self.server.tcp_table.activity(self, self.server.now(), self.framer.pending)
        except Exception as error:  # noqa: BLE001
            self.server.faults.record("tcp-send", error)
            self.transport.close()


async def open_tcp(server: "SipServer", peer: Peer, first: bytes) -> None:
    """Connect to a next hop and send ``first``; failures are counted, the transaction times out."""
    loop = asyncio.get_running_loop()
    connection = TcpConnection(server, outbound=True)
    connection.pending.append(first)
    server.tcp_connections[peer] = connection       # later sends queue until connected
    try:
        await loop.create_connection(lambda: connection, peer.host, peer.port)
    except Exception as error:  # noqa: BLE001 - OSError or worse: the transaction times out either way
        server.faults.record("tcp-connect", error, f"to {peer.host}:{peer.port}")
        if server.tcp_connections.get(peer) is connection:
            del server.tcp_connections[peer]
