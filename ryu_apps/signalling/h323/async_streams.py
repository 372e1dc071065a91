"""The Q.931/TPKT streams of an asyncio shell (the standalone gatekeeper and gateway).

Connections accepted and opened are kept by the core's connection number; data the core
sends before an outgoing connection completes waits for it, and a close asked for by then
happens once it completes. Every call into the core goes through the shell's ``guard``
(faults are counted, the loop goes on); a failed connect is reported as a reset stream.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from .actions import StreamClose, StreamOpen, StreamSend

Guard = Callable[[str, Callable[[], Any]], None]


class StreamTable:
    def __init__(self, guard: Guard, record: Callable[..., None], *, accepted: Callable[[str, int], int],
                 received: Callable[[int, bytes], Any], closed: Callable[[int, bool], Any],
                 kinds: tuple[str, str] = ("stream", "stream-close")) -> None:
        self.guard, self.record, self.kinds = guard, record, kinds
        self.accepted, self.received, self.closed = accepted, received, closed
        self.streams: dict[int, _Stream] = {}
        self.waiting: dict[int, list[bytes]] = {}     # opening: data sent before it connected
        self.closing: set[int] = set()                # opening: closed before it connected

    def protocol(self, conn: int | None = None) -> "_Stream":
        """An asyncio protocol for an accepted (``conn`` None) or an opened connection."""
        return _Stream(self, conn)

    def act(self, action: StreamSend | StreamOpen | StreamClose, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(action, StreamSend):
            stream = self.streams.get(action.conn)
            if stream is not None and stream.transport is not None:
                stream.transport.write(action.data)
            elif action.conn in self.waiting:
                self.waiting[action.conn].append(action.data)
        elif isinstance(action, StreamOpen):
            self.waiting[action.conn] = []
            loop.create_task(self._open(action, loop))
        else:
            stream = self.streams.pop(action.conn, None)
            if stream is not None and stream.transport is not None:
                stream.transport.close()
            elif action.conn in self.waiting:
                self.closing.add(action.conn)

    async def _open(self, action: StreamOpen, loop: asyncio.AbstractEventLoop) -> None:
        try:
            _, stream = await asyncio.wait_for(loop.create_connection(
                lambda: _Stream(self, action.conn), action.host, action.port), 3.0)
        except Exception as error:  # noqa: BLE001 - a peer that is not there is an answer
            self.record("connect", error, f"to {action.host}:{action.port}")
            self.waiting.pop(action.conn, None)
            self.closing.discard(action.conn)
            self.guard("connect", lambda: self.closed(action.conn, True))
            return
        for data in self.waiting.pop(action.conn, []):
            if stream.transport is not None:
                stream.transport.write(data)
        if action.conn in self.closing:
            self.closing.discard(action.conn)
            self.streams.pop(action.conn, None)
            if stream.transport is not None:
                stream.transport.close()

    def close_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.transport is not None:
                stream.transport.close()


class _Stream(asyncio.Protocol):
    def __init__(self, table: StreamTable, conn: int | None = None) -> None:
        self.table = table
        self.conn = conn
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.conn is None:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.conn = self.table.accepted(str(peer[0]), int(peer[1]))
        self.table.streams[self.conn] = self

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        self.table.guard(self.table.kinds[0], lambda: self.table.received(conn, data))

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is not None and self.table.streams.pop(conn, None) is not None:
            self.table.guard(self.table.kinds[1], lambda: self.table.closed(conn, exc is not None))
