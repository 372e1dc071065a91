#!/usr/bin/env python3
"""RTP-sized media for emulations: a paced sender and a receiver that measures loss and jitter.

    rtpflow.py send --flow 10.0.2.1:40002:40000 [--flow ...] --pps 50 --size 160 --dscp 46 --duration 10
    rtpflow.py recv --port 40002 [--port ...] --duration 12 > result.json

The sender writes RTP packets (RFC 3550 header: version 2, sequence number, an 8 kHz
timestamp, one SSRC per flow) of ``--size`` payload bytes at ``--pps`` per flow, paced on
a monotonic clock. The receiver reports, per port and in total, packets and bytes,
loss from the sequence numbers, RFC 3550 interarrival jitter, the DSCPs seen, and
received kbit/s per second (for plots), as JSON on stdout. Standard library only, so it
runs with any Python inside a Mininet host or a network namespace.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time

RTP = struct.Struct("!BBHII")          # V/P/X/CC, M/PT, sequence, timestamp, SSRC
CLOCK_HZ = 8000                         # the RTP clock of narrowband voice
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)


def parse_flow(text: str) -> tuple[str, int, int | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected IP:PORT[:SOURCE_PORT], got {text!r}")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None


def send(flows: list[tuple[str, int, int | None]], pps: float, size: int, dscp: int, duration: float,
         probe: bool = False) -> dict:
    sockets = []
    for index, (host, port, source_port) in enumerate(flows):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        if source_port:
            sock.bind(("0.0.0.0", source_port))
        sockets.append((sock, (host, port), 0x4D410000 + index))
    payload = bytes(size)
    interval = 1.0 / pps
    samples_per_packet = max(1, round(CLOCK_HZ / pps))
    start = time.monotonic()
    sent = errors = 0
    sequence = 0
    while True:
        due = start + sequence * interval
        now = time.monotonic()
        if now - start >= duration:
            break
        if due > now:
            time.sleep(due - now)
        header_ts = (sequence * samples_per_packet) & 0xFFFFFFFF
        for sock, address, ssrc in sockets:
            packet = b"k" if probe else RTP.pack(0x80, 0, sequence & 0xFFFF, header_ts, ssrc) + payload
            try:
                sock.sendto(packet, address)
                sent += 1
            except OSError:  # a full queue or no route yet: counted, never fatal
                errors += 1
        sequence += 1
    return {"sent": sent, "send_errors": errors, "flows": len(flows), "pps": pps, "size": size}


class FlowStats:
    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.first_seq: int | None = None
        self.highest = 0          # extended highest sequence number
        self.cycles = 0
        self.jitter = 0.0         # in RTP clock units
        self.transit: float | None = None
        self.dscps: dict[int, int] = {}
        self.last_arrival: float | None = None
        self.max_gap = 0.0        # the longest time between two packets (s)

    def add(self, data: bytes, arrival: float, tos: int | None, samples_per_second: float) -> None:
        _, _, seq, timestamp, _ = RTP.unpack_from(data)
        self.packets += 1
        self.bytes += len(data)
        if self.last_arrival is not None:
            self.max_gap = max(self.max_gap, arrival - self.last_arrival)
        self.last_arrival = arrival
        if tos is not None:
            self.dscps[tos >> 2] = self.dscps.get(tos >> 2, 0) + 1
        if self.first_seq is None:
            self.first_seq, self.highest = seq, seq
        else:
            extended = self.cycles + seq
            if seq < (self.highest & 0xFFFF) and (self.highest & 0xFFFF) - seq > 0x8000:
                self.cycles += 0x10000
                extended = self.cycles + seq
            self.highest = max(self.highest, extended)
        transit = arrival * samples_per_second - timestamp
        if self.transit is not None:
            self.jitter += (abs(transit - self.transit) - self.jitter) / 16
        self.transit = transit

    def report(self, samples_per_second: float) -> dict:
        expected = 0 if self.first_seq is None else self.highest - self.first_seq + 1
        lost = max(0, expected - self.packets)
        return {"packets": self.packets, "bytes": self.bytes, "expected": expected, "lost": lost,
                "loss_pct": round(100.0 * lost / expected, 3) if expected else None,
                "jitter_ms": round(1000.0 * self.jitter / samples_per_second, 3),
                "max_gap_ms": round(1000.0 * self.max_gap, 1),
                "dscps": {str(k): v for k, v in sorted(self.dscps.items())}}


def receive(ports: list[int], duration: float, idle: float | None) -> dict:
    sockets = {}
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("0.0.0.0", port))
        sockets[sock] = port
    stats = {port: FlowStats() for port in ports}
    per_second: dict[int, int] = {}
    start = time.monotonic()
    last = None
    print(json.dumps({"listening": ports}), file=sys.stderr, flush=True)
    while True:
        now = time.monotonic()
        if now - start >= duration or (idle is not None and last is not None and now - last > idle):
            break
        ready, _, _ = select.select(list(sockets), [], [], 0.1)
        for sock in ready:
            data, ancillary, _, _ = sock.recvmsg(65535, socket.CMSG_SPACE(4))
            arrival = time.monotonic()
            if len(data) < RTP.size:  # a probe, not media
                continue
            last = arrival
            tos = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IP and kind in (IP_RECVTOS, getattr(socket, "IP_TOS", 1)) and value:
                    tos = value[0]
            stats[sockets[sock]].add(data, arrival, tos, CLOCK_HZ)
            second = int(arrival - start)
            per_second[second] = per_second.get(second, 0) + len(data)
    flows = {str(port): s.report(CLOCK_HZ) for port, s in stats.items()}
    expected = sum(s["expected"] for s in flows.values())
    lost = sum(s["lost"] for s in flows.values())
    return {
        "flows": flows,
        "packets": sum(s["packets"] for s in flows.values()),
        "bytes": sum(s["bytes"] for s in flows.values()),
        "expected": expected, "lost": lost,
        "loss_pct": round(100.0 * lost / expected, 3) if expected else None,
        "jitter_ms": max((s["jitter_ms"] for s in flows.values()), default=0.0),
        "kbps_per_second": [round(per_second.get(i, 0) * 8 / 1000, 1)
                            for i in range(int(max(per_second, default=-1)) + 1)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tx = commands.add_parser("send", help="send paced RTP-sized packets")
    tx.add_argument("--flow", type=parse_flow, action="append", required=True, help="IP:PORT[:SOURCE_PORT]")
    tx.add_argument("--pps", type=float, default=50.0, help="packets per second per flow (50 = 20 ms)")
    tx.add_argument("--size", type=int, default=160, help="RTP payload bytes (160 = G.711, 20 ms)")
    tx.add_argument("--dscp", type=int, default=0)
    tx.add_argument("--duration", type=float, default=10.0)
    tx.add_argument("--probe", action="store_true",
                    help="1-byte packets that keep flows alive; receivers ignore them")
    rx = commands.add_parser("recv", help="receive and report loss, jitter, DSCP, kbit/s per second")
    rx.add_argument("--port", type=int, action="append", required=True)
    rx.add_argument("--duration", type=float, default=12.0)
    rx.add_argument("--idle", type=float, default=None, help="stop this long after the last packet")
    args = parser.parse_args(argv)
    if args.command == "send":
        result = send(args.flow, args.pps, args.size, args.dscp, args.duration, args.probe)
    else:
        result = receive(args.port, args.duration, args.idle)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
