"""Mutated SIP from real seeds (tests/sip_seeds/): every header of every seed in turn.

``Mutator(seed=n).next()`` gives one mutated message. Header mutations walk the headers of
the seeds round-robin, so a run of a few hundred messages has mutated every header of
every seed at least once (``covered()`` says which); the rest are start-line, body and
byte-level mutations. Values come from what broke or could break parsers: the hosts of
issue 11, NUL and non-UTF-8 bytes, overlong values and labels, numbers out of range,
unbalanced quotes and brackets, odd separators, other SIP versions.
"""

from __future__ import annotations

import random
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "sip_seeds"

HOSTS = [b"127.0.1.1\x00", "ex\u00e4mple..test".encode(), b"a" * 64 + b".example", b"[::1", b"[1.2.3.4]",
         b"300.1.1.1", b"-a.example", b"x" * 300, b"", b"127.0.0.1:0", b"127.0.0.1:99999", b"[::ffff:1.2.3.4]"]
VALUES = [b"", b" ", b"\x00", b"\xff\xfe", b"\xc3\x28", b"A" * 5000, b"9" * 30, b"-1", b"0", b"4294967296",
          b'"unterminated', b"<<<<<<<<<<", b">", b";;;;", b",,,,", b"=", b"%00%ff", b"\t\t", b"\\\"",
          b";tag=", b";branch=", b";branch=z9hG4bK", b";received=", b";rport=0", b";maddr=" + HOSTS[0],
          b"SIP/2.0/UDP", b"SIP/3.0/UDP 127.0.0.1", b"sip:", b"tel:", b"sips:x@", b"<sip:@>", b"*",
          b"application/sdp", b"1 INVITE", b"1 BYE", b"99999999999 INVITE", b"70", b"256", b"0;refresher=uac"]
START_LINES = [b"INVITE sip:bob@site-b.example SIP/3.0", b"INVITE sip:bob@site-b.example SIP/2.0 extra",
               b"SIP/3.0 200 OK", b"SIP/2.0 999 Odd", b"SIP/2.0 099 Low", b"SIP/2.0 200", b"BYE  SIP/2.0",
               b"INVITE sip:bob@" + HOSTS[0] + b" SIP/2.0", b"INVITE sip:bob@" + HOSTS[1] + b" SIP/2.0",
               b"\xffNVITE sip:x SIP/2.0", b"INVITE mailto:x@y SIP/2.0", b"OPTIONS * SIP/2.0", b"X" * 2000]
TOKENS = [b"\r\n", b"\n", b":", b";", b",", b"<", b">", b'"', b" ", b"\t", b"=", b"@", b"[", b"]", b"\x00",
          b"\xff", b"\r\n\r\n", b"Content-Length: 99999\r\n", b"l: 5\r\n", b"v: SIP/2.0/TCP x\r\n", b"%"]


def load_seeds() -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted(SEEDS.glob("*.sip"))]
    if not seeds:
        raise RuntimeError(f"no seeds in {SEEDS}")
    return seeds


class Mutator:
    def __init__(self, seed: int = 0, seeds: list[bytes] | None = None) -> None:
        self.rng = random.Random(seed)
        self.seeds = seeds or load_seeds()
        self._cursor = 0                                   # round-robin over (seed, header line)
        self._lines = [(i, n) for i, data in enumerate(self.seeds)
                       for n in range(1, len(data.partition(b"\r\n\r\n")[0].split(b"\r\n")))]
        self.mutated: set[tuple[int, bytes]] = set()       # (seed, header name) mutated so far

    def covered(self) -> tuple[int, int]:
        """(header lines of the seeds mutated at least once, header lines in all)."""
        names = {(i, self._name(i, n)) for i, n in self._lines}
        return len(names & self.mutated), len(names)

    def _name(self, seed: int, line: int) -> bytes:
        head = self.seeds[seed].partition(b"\r\n\r\n")[0].split(b"\r\n")
        return head[line].partition(b":")[0].strip().lower()

    def next(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.6:
            return self.header()
        if roll < 0.7:
            return self.start_line()
        if roll < 0.8:
            return self.body()
        return self.bytes_level()

    def header(self) -> bytes:
        seed, line = self._lines[self._cursor % len(self._lines)]
        self._cursor += 1
        data = self.seeds[seed]
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        name, colon, value = lines[line].partition(b":")
        self.mutated.add((seed, name.strip().lower()))
        rng = self.rng
        kind = rng.randrange(9)
        if kind == 0:                                      # a nasty value
            lines[line] = name + b": " + rng.choice(VALUES)
        elif kind == 1:                                    # a bad host where a host may be
            host = rng.choice(HOSTS)
            lines[line] = name + colon + value.replace(b"127.0.0.1", host).replace(b"10.1.0.10", host) \
                .replace(b"site-a.example", host).replace(b"site-b.example", host)
        elif kind == 2:                                    # the value cut short
            lines[line] = name + colon + value[:rng.randrange(len(value) + 1)]
        elif kind == 3:                                    # the header many times, or combined by commas
            copies = rng.choice([2, 10, 300])
            lines[line:line + 1] = [lines[line]] * copies if rng.random() < 0.5 else \
                [name + colon + b",".join([value.strip()] * copies)]
        elif kind == 4:                                    # gone
            del lines[line]
        elif kind == 5:                                    # the name mangled (compact, case, spaces, junk)
            lines[line] = rng.choice([name.upper(), name[:1], b" " + name, name + b" \t", b"X-" + name, b""]) + \
                colon + value
        elif kind == 6:                                    # folded onto a continuation line
            lines[line:line + 1] = [name + colon + value[:len(value) // 2], b" \t" + value[len(value) // 2:]]
        elif kind == 7:                                    # a token inserted in the value
            at = rng.randrange(len(value) + 1)
            lines[line] = name + colon + value[:at] + rng.choice(TOKENS + VALUES) + value[at:]
        else:                                              # a parameter appended
            lines[line] = lines[line] + rng.choice([b";received=" + rng.choice(HOSTS), b";maddr=" + rng.choice(HOSTS),
                                                    b";rport=" + rng.choice(VALUES), b";oc", b";tag=x" * 50,
                                                    b";lr;lr;lr", b";transport=sctp"])
        return b"\r\n".join(lines) + sep + body

    def start_line(self) -> bytes:
        data = self.rng.choice(self.seeds)
        head, sep, rest = data.partition(b"\r\n")
        return self.rng.choice(START_LINES) + sep + rest

    def body(self) -> bytes:
        data = self.rng.choice(self.seeds)
        head, sep, body = data.partition(b"\r\n\r\n")
        rng = self.rng
        lines = body.split(b"\r\n") if body else [b"v=0"]
        at = rng.randrange(len(lines))
        lines[at] = rng.choice([b"m=audio 99999 RTP/AVP 0", b"c=IN IP4 " + rng.choice(HOSTS), b"a=ptime:0",
                                b"b=TIAS:99999999999", b"m=audio 4000 RTP/AVP", b"a=rtpmap:96 " + b"X" * 500,
                                b"m=image 0 udptl t38", b"a=ptime:-5", b"c=IN IP6 ::1", b"", b"\x00\xff"])
        body = b"\r\n".join(lines)
        return head + sep + body

    def bytes_level(self) -> bytes:
        data = bytearray(self.rng.choice(self.seeds))
        rng = self.rng
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(4)
            at = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[at:at] = rng.choice(TOKENS)
            elif op == 2:
                del data[at:at + rng.randint(1, 40)]
            else:
                data = data[:at]
        return bytes(data)

    def stream(self) -> tuple[bytes, list[int]]:
        """A TCP byte stream of 1-4 messages (some mutated) and where to cut it into writes."""
        rng = self.rng
        parts = [self.next() if rng.random() < 0.7 else rng.choice(self.seeds) for _ in range(rng.randint(1, 4))]
        stream = b"".join(parts)
        cuts = sorted(rng.sample(range(1, max(2, len(stream))), min(rng.randint(0, 6), max(0, len(stream) - 2))))
        return stream, cuts
