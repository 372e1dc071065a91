"""Which worker a datagram on the shared socket belongs to, and how it is handed over (pure).

``--workers N``: every worker reads the one shared UDP socket, and the kernel gives each
datagram to whichever worker reads first. What arrives there is what a caller sends to
the proxy's public address: new INVITEs and, for the same transaction, their
retransmissions, the CANCEL and the ACK of a non-2xx answer. Those must reach the
worker that holds the INVITE transaction, so each datagram belongs to worker
``crc32(Call-ID) % N`` (:func:`worker_for`); a worker that reads another's datagram
hands it over on that worker's unix datagram socket, wrapped with where it came from
(:func:`wrap` / :func:`unwrap`; the datagrams read in one wake-up for one worker travel
in one packet of at most ``PACK_BYTES``: one send, one wake-up of that worker). Responses and in-dialog requests need no steering:
they come to the worker's own port (its Via and Record-Route).
"""

from __future__ import annotations

import struct
import zlib

ENVELOPE = struct.Struct(">dHBH")         # seconds waited in the kernel, source port, host length, data length
PACK_BYTES = 48 * 1024                    # a packet of steered datagrams holds at most this much


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
    return 0 if call_id is None else worker_of_call(call_id, workers)


def worker_of_call(call_id: bytes, workers: int) -> int:
    """The index of the worker that owns the call with this Call-ID (what :func:`worker_for`
    steers its datagrams to)."""
    return zlib.crc32(call_id) % workers if workers > 1 else 0


def wrap(data: bytes, host: str, port: int, waited: float) -> bytes:
    """One datagram with where it came from; several wrapped datagrams may travel in one packet."""
    raw = host.encode("ascii", "replace")[:255]
    return ENVELOPE.pack(waited, port & 0xFFFF, len(raw), len(data)) + raw + data


def unwrap(packet: bytes) -> list[tuple[bytes, str, int, float]]:
    """Every ``(data, host, port, waited)`` in a packet, in order; ValueError for a packet that
    is not one of ours (what precedes the damage is returned only if all of it is sound)."""
    out = []
    start, size = 0, len(packet)
    while start < size:
        if size - start < ENVELOPE.size:
            raise ValueError("steered packet cut in an envelope")
        waited, port, host_length, data_length = ENVELOPE.unpack_from(packet, start)
        host_at = start + ENVELOPE.size
        data_at = host_at + host_length
        end = data_at + data_length
        if end > size:
            raise ValueError("steered packet cut in a datagram")
        out.append((packet[data_at:end], packet[host_at:data_at].decode("ascii", "replace"), port, waited))
        start = end
    return out


def pack(pieces: list[bytes]) -> list[bytes]:
    """Wrapped datagrams joined into as few packets of at most PACK_BYTES as their order allows."""
    packets: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for piece in pieces:
        if current and size + len(piece) > PACK_BYTES:
            packets.append(b"".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece)
    if current:
        packets.append(b"".join(current))
    return packets
