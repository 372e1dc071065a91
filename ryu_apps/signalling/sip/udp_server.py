"""UDP for the asyncio shell: our own non-blocking socket on the loop's reader.

Not an asyncio datagram transport on purpose: a transport closes itself for good when
``sendto`` raises anything but ``OSError`` (issue 11: one forged address stopped UDP).
Here every receive and every send is guarded (counted in :class:`~.guard.Faults`,
dropped), and each wake-up reads a batch of waiting datagrams and hands the proxy the
ones that are not INVITEs first: responses and in-dialog requests (ACK, BYE, CANCEL)
finish calls, new INVITEs start them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any, Protocol

from .guard import Faults

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
BATCH = 64                      # datagrams read per wake-up at most (then the loop runs other work)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)     # Linux: the kernel's receive time, ns
ANCILLARY = socket.CMSG_SPACE(16)


class DatagramSink(Protocol):
    """Where an endpoint's datagrams go (the :class:`~.standalone.SipServer`, or a worker's steering)."""

    faults: Faults

    def on_datagram(self, data: bytes, host: str, port: int, waited: float = 0.0) -> None: ...


class UdpEndpoint:
    def __init__(self, server: DatagramSink, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def bind(cls, server: DatagramSink, host: str, port: int) -> "UdpEndpoint":
        return cls(server, open_udp(host, port))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def _readable(self) -> None:
        batch: list[tuple[bytes, Any, float]] = []
        recvmsg = self.sock.recvmsg
        for _ in range(BATCH):
            try:
                data, ancillary, _, addr = recvmsg(65535, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:            # e.g. an ICMP error reported on the socket
                self.server.faults.record("udp-receive", error)
                break
            batch.append((data, addr, kernel_delay(ancillary)))
        if not batch:
            return
        handle = self.server.on_datagram
        invites = []
        for data, addr, waited in batch:         # everything but INVITEs first
            if data[:7] == b"INVITE ":
                invites.append((data, addr, waited))
            else:
                handle(data, addr[0], addr[1], waited)
        for data, addr, waited in invites:
            handle(data, addr[0], addr[1], waited)

    def sendto(self, data: bytes, host: str, port: int) -> None:
        try:
            self.sock.sendto(data, (host, port))
        except BlockingIOError:                  # send buffer full: UDP may drop, retransmission recovers
            self.server.faults.record("udp-send-full", None, f"to {host}:{port}")
        except OSError as error:
            self.server.faults.record("udp-send", error, f"to {host}:{port}")
        except Exception as error:  # noqa: BLE001 - whatever the address, the socket stays open
            self.server.faults.record("udp-send", error, f"to {host!r}:{port!r}")


def open_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (0: the kernel's choice), large buffers, timestamps."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        tune_buffers(sock)
        enable_timestamps(sock)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def enable_timestamps(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's receive time (how long it waited: the backlog)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass


def kernel_delay(ancillary: list[tuple[int, int, bytes]]) -> float:
    """Seconds since the kernel received the datagram (0 without a timestamp)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return max(0.0, time.time() - float(seconds) - float(nanoseconds) * 1e-9)
    return 0.0


def tune_buffers(sock: socket.socket) -> None:
    """Large kernel buffers ride out a pause of the loop (capped by net.core.rmem_max/wmem_max)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        except OSError:
            pass
