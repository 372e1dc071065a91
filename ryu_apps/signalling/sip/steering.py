"""Which worker a datagram on the shared socket belongs to, and how it is handed over (pure).

``--workers N``: every worker reads the one shared UDP socket, and the kernel gives each
datagram to whichever worker reads first. What arrives there is what a caller sends to
the proxy's public address: new INVITEs and, for the same transaction, their
retransmissions, the CANCEL and the ACK of a non-2xx answer. Those must reach the
worker that holds the INVITE transaction, so each datagram belongs to worker
``crc32(Call-ID) % N`` (:func:`worker_for`); a worker that reads another's datagram
hands it over on that worker's unix datagram socket, wrapped with where it came from
(:func:`wrap` / :func:`unwrap`). Responses and in-dialog requests need no steering:
they come to the worker's own port (its Via and Record-Route).
"""

from __future__ import annotations

import struct
import zlib

ENVELOPE = struct.Struct(">dHB")          # seconds waited in the kernel, source port, length of the host


def call_id_of(data: bytes) -> bytes | None:
    """The Call-ID header's value (long or compact form) in a SIP message's head, or None."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"call-id", b"i"):
            value = value.strip()
            return value or None
    return None


def worker_for(data: bytes, workers: int) -> int:
    """The index of the worker that owns this datagram's call (0 when it has no Call-ID:
    it is garbage or a keep-alive, and any worker answers it alike)."""
    if workers <= 1:
        return 0
    call_id = call_id_of(data)
    return 0 if call_id is None else zlib.crc32(call_id) % workers


def wrap(data: bytes, host: str, port: int, waited: float) -> bytes:
    raw = host.encode("ascii", "replace")[:255]
    return ENVELOPE.pack(waited, port & 0xFFFF, len(raw)) + raw + data


def unwrap(packet: bytes) -> tuple[bytes, str, int, float]:
    """``(data, host, port, waited)``; ValueError for a packet too short to be one of ours."""
    if len(packet) < ENVELOPE.size:
        raise ValueError("steered packet too short")
    waited, port, length = ENVELOPE.unpack_from(packet)
    start = ENVELOPE.size + length
    if len(packet) < start:
        raise ValueError("steered packet cut in its host")
    return packet[start:], packet[ENVELOPE.size:start].decode("ascii", "replace"), port, waited
