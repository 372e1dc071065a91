"""Mutated RAS datagrams and Q.931/TPKT streams for the gatekeeper fuzz test and benchmark.

Seeds are valid messages from the simulator; mutations flip bits, overwrite, insert and
delete bytes, truncate, repeat, splice two messages, or replace everything with noise.
Streams add bad TPKT versions and lengths, oversized packets, empty TPKTs, and
split the bytes into many small chunks (a slow sender) before closing or resetting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import h323sim as sim
from h323_harness import PHONE_A, SIGNAL_A, Harness

GUID = bytes(range(16))


def ras_seeds() -> list[bytes]:
    messages = [sim.grq(1, PHONE_A), sim.rrq(2, PHONE_A, SIGNAL_A, [("dialledDigits", "1001"), ("h323-ID", "a@b")]),
                sim.rrq(3, PHONE_A, SIGNAL_A, [], keep_alive_id="ep000001"),
                sim.arq(4, "ep000001", GUID, [("dialledDigits", "2001")]), sim.brq(5, "ep000001", GUID, 160),
                sim.drq(6, "ep000001", GUID), sim.urq(7, "ep000001", SIGNAL_A),
                sim.lrq(8, [("dialledDigits", "2001")], PHONE_A),
                sim.irr(9, "ep000001", PHONE_A, SIGNAL_A, [GUID], need_response=True)]
    return [sim.enc("ras", m) for m in messages]


def q931_seeds() -> list[bytes]:
    fast = [sim.olc_audio(1, "g729", 2, reverse=False, media=None, rtcp=("10.0.1.5", 4001)),
            sim.olc_audio(2, "g729", 2, reverse=True, media=("10.0.1.5", 4000), rtcp=("10.0.1.5", 4001))]
    return [sim.q931(sim.SETUP, 7, False, sim.setup_body(GUID, [("dialledDigits", "2001")],
                                                         [("dialledDigits", "1001")], fast, SIGNAL_A), called="2001"),
            sim.q931(sim.ALERTING, 7, True, sim.answer_body("alerting", GUID)),
            sim.q931(sim.CONNECT, 7, True, sim.answer_body("connect", GUID, fast)),
            sim.q931(sim.RELEASE_COMPLETE, 7, False, sim.release_body(GUID), cause=16),
            sim.q931(sim.FACILITY, 7, False, None)]


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9)
        if choice == 0 and out:                                   # flip bits
            at = rng.randrange(len(out))
            out[at] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:                                 # overwrite a byte
            out[rng.randrange(len(out))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif choice == 2:                                         # insert bytes
            at = rng.randrange(len(out) + 1)
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 3 and out:                                 # delete a run
            at = rng.randrange(len(out))
            del out[at:at + rng.randint(1, 8)]
        elif choice == 4 and out:                                 # truncate
            del out[rng.randrange(len(out)):]
        elif choice == 5:                                         # oversize: repeat
            out = out * rng.randint(2, 40)
        elif choice == 6:                                         # splice with another seed
            other = rng.choice(seeds)
            out = out[:rng.randrange(len(out) + 1)] + other[rng.randrange(len(other) + 1):]
        elif choice == 7:                                         # noise
            out = bytearray(rng.randbytes(rng.randint(0, 200)))
        else:                                                     # length bytes to extremes
            for at in range(min(len(out), 6)):
                if rng.random() < 0.3:
                    out[at] = rng.choice((0, 0xFF))
    return bytes(out)


def stream(rng: random.Random, seeds: list[bytes]) -> tuple[list[bytes], bool]:
    """Chunks of one mutated call-signalling stream, and whether it ends in a reset."""
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 4)):
        seed = rng.choice(seeds)
        kind = rng.randrange(6)
        if kind == 0:
            parts.append(seed)                                    # valid
        elif kind == 1:
            parts.append(seed[:4] + mutate(seed[4:], rng, seeds))  # valid TPKT, mutated Q.931 (length may lie)
        elif kind == 2:
            payload = mutate(seed[4:], rng, seeds)[:0xFFFF - 4]
            parts.append(bytes((3, 0)) + (len(payload) + 4).to_bytes(2, "big") + payload)
        elif kind == 3:
            parts.append(bytes((rng.choice((0, 2, 4, 0xFF)), 0)) + seed[2:])      # bad version
        elif kind == 4:
            parts.append(bytes((3, 0, 0xFF, 0xFF)) + rng.randbytes(rng.randint(0, 64)))  # oversized length
        else:
            parts.append(bytes((3, 0, 0, 4)))                     # empty TPKT (keep-alive)
    data = b"".join(parts)
    chunks: list[bytes] = []
    at = 0
    while at < len(data):                                         # a slow sender: small random pieces
        size = rng.choice((1, 2, 3, 7, 64, 1024))
        chunks.append(data[at:at + size])
        at += size
    return chunks, rng.random() < 0.5


@dataclass
class FuzzResult:
    datagrams: int = 0
    streams: int = 0
    grq_checks: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def run(datagrams: int, streams: int, seed: int = 1, check_every: int = 1000) -> FuzzResult:
    """Feed the sans-IO gatekeeper; after every ``check_every`` inputs a valid GRQ must be answered."""
    rng = random.Random(seed)
    h = Harness()
    h.two_phones()
    ras, q931 = ras_seeds(), q931_seeds()
    result = FuzzResult()
    grq = sim.enc("ras", sim.grq(60000, ("10.0.3.3", 1719)))

    def check() -> None:
        answer = h.ras_bytes(("10.0.3.3", 1719), grq)
        assert answer and answer[-1][0] == "gatekeeperConfirm", answer
        result.grq_checks += 1
        h.datagrams.clear()
        h.sent_bytes.clear()

    for i in range(datagrams):
        data = mutate(rng.choice(ras), rng, ras)
        source = ("10.0.1.%d" % rng.randint(1, 254), rng.randint(1, 65535))
        h.gk.receive_ras(data, source[0], source[1], h.now)
        result.datagrams += 1
        if i % check_every == check_every - 1:
            h.advance(rng.random() * 5)
            check()
    for i in range(streams):
        conn = h.connect(("10.0.1.%d" % rng.randint(1, 254), rng.randint(1024, 65535)))
        chunks, reset = stream(rng, q931)
        for chunk in chunks:
            h.gk.stream_data(conn, chunk, h.now)
        h.gk.stream_closed(conn, h.now, reset)
        result.streams += 1
        if i % (check_every // 10 or 1) == 0:
            h.advance(rng.random() * 5)
            check()
    h.advance(1000)
    check()
    result.dropped = dict(h.gk.stats.dropped)
    internal = {k: v for k, v in result.dropped.items() if k.startswith("internal")}
    assert not internal, f"the gatekeeper failed inside on fuzzed input: {internal}"
    return result
