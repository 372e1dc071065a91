"""Q.931 messages as H.225.0 uses them, and TPKT framing (RFC 1006) on the TCP stream.

A :class:`Q931` keeps its information elements in order as raw bytes, so a relay
forwards what it did not understand unchanged and rewrites only the User-user IE (the
H.323-UserInformation) and the ones it must. Errors are :class:`Q931Error` naming what is
wrong; nothing here knows sockets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

TPKT_HEADER = 4
PROTOCOL_DISCRIMINATOR = 0x08
USER_USER_PD = 0x05           # X.208/X.209 coded user information (H.225.0 7.2.2.1)


class Q931Error(ValueError):
    """Bytes that are not a Q.931 message or a TPKT stream."""


class MessageType(enum.IntEnum):
    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    RELEASE_COMPLETE = 0x5A
    FACILITY = 0x62
    NOTIFY = 0x6E
    STATUS_ENQUIRY = 0x75
    INFORMATION = 0x7B
    STATUS = 0x7D


class IE(enum.IntEnum):
    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    PROGRESS_INDICATOR = 0x1E
    DISPLAY = 0x28
    CALLING_PARTY_NUMBER = 0x6C
    CALLED_PARTY_NUMBER = 0x70
    USER_USER = 0x7E


#: Bearer capability for a speech call: ITU-T coding, speech; circuit mode 64 kbit/s; G.711 u-law.
SPEECH_BEARER = bytes((0x80, 0x90, 0xA3))


@dataclass(frozen=True)
class Q931:
    """One message. ``call_ref`` is the 15-bit value; ``to_originator`` is the flag bit
    (set on messages sent by the side that did not allocate the call reference)."""

    message_type: int
    call_ref: int
    to_originator: bool = False
    ies: tuple[tuple[int, bytes], ...] = field(default=())

    def ie(self, ident: int) -> bytes | None:
        for key, value in self.ies:
            if key == ident:
                return value
        return None

    def with_ie(self, ident: int, value: bytes | None) -> "Q931":
        """Replace (or add, keeping ascending order; or drop when ``value`` is None) one IE."""
        kept = [(k, v) for k, v in self.ies if k != ident]
        if value is not None:
            at = next((i for i, (k, _) in enumerate(kept) if k > ident and k < 0x80), len(kept))
            kept.insert(at, (ident, value))
        return replace(self, ies=tuple(kept))

    @property
    def user_user(self) -> bytes | None:
        """The H323-UserInformation bytes (after the protocol discriminator), if any."""
        raw = self.ie(IE.USER_USER)
        if raw is None or not raw or raw[0] != USER_USER_PD:
            return None
        return raw[1:]

    def with_user_user(self, uu: bytes) -> "Q931":
        return self.with_ie(IE.USER_USER, bytes((USER_USER_PD,)) + uu)

    @property
    def cause(self) -> int | None:
        raw = self.ie(IE.CAUSE)
        if raw is None or len(raw) < 2:
            return None
        at = 1 if raw[0] & 0x80 else 2      # octet 3a (recommendation) is present when bit 8 of 3 is 0
        return raw[at] & 0x7F if len(raw) > at else None

    @property
    def progress(self) -> int | None:
        """The Progress indicator's description (Q.931 4.5.23: 1 not end-to-end ISDN,
        8 in-band information available ...), or None."""
        raw = self.ie(IE.PROGRESS_INDICATOR)
        return raw[1] & 0x7F if raw is not None and len(raw) >= 2 else None

    @property
    def called_number(self) -> str | None:
        return _digits(self.ie(IE.CALLED_PARTY_NUMBER))

    @property
    def calling_number(self) -> str | None:
        return _digits(self.ie(IE.CALLING_PARTY_NUMBER))


def _digits(raw: bytes | None) -> str | None:
    if not raw:
        return None
    at = 0
    while at < len(raw) and not raw[at] & 0x80:   # octets 3, 3a ... end with bit 8 set
        at += 1
    text = raw[at + 1:].decode("ascii", "replace")
    return text or None


def cause_ie(cause: int, location: int = 1) -> bytes:
    """Cause IE contents: ITU-T coding, ``location`` (1: private network serving the local user)."""
    return bytes((0x80 | (location & 0x0F), 0x80 | (cause & 0x7F)))


#: Progress descriptions (Q.931 4.5.23) the gateway uses.
NOT_END_TO_END_ISDN, IN_BAND_INFORMATION = 1, 8


def progress_ie(description: int, location: int = 1) -> bytes:
    """Progress indicator IE contents: ITU-T coding, ``location``, the description."""
    return bytes((0x80 | (location & 0x0F), 0x80 | (description & 0x7F)))


def number_ie(digits: str, calling: bool = False) -> bytes:
    """Called/calling party number: unknown type, ISDN/telephony plan; calling: presentation allowed."""
    head = bytes((0x01, 0x80)) if calling else bytes((0x81,))
    return head + digits.encode("ascii")


def parse(data: bytes) -> Q931:
    """One Q.931 message (the payload of one TPKT)."""
    if len(data) < 5:
        raise Q931Error(f"Q.931 message of {len(data)} bytes is too short")
    if data[0] != PROTOCOL_DISCRIMINATOR:
        raise Q931Error(f"protocol discriminator {data[0]:#04x} is not Q.931 (0x08)")
    crl = data[1] & 0x0F
    if crl not in (1, 2) or len(data) < 3 + crl:
        raise Q931Error(f"call reference length {crl} is not 1 or 2")
    ref = int.from_bytes(data[2:2 + crl], "big")
    flag_bit = 1 << (8 * crl - 1)
    at = 2 + crl
    message_type = data[at]
    if message_type & 0x80:
        raise Q931Error(f"message type {message_type:#04x} has bit 8 set")
    at += 1
    ies: list[tuple[int, bytes]] = []
    while at < len(data):
        ident = data[at]
        if ident & 0x80:                       # single-octet IE (shift, sending complete, ...)
            ies.append((ident, b""))
            at += 1
            continue
        if ident == IE.USER_USER:              # H.225.0: two-octet length
            if at + 3 > len(data):
                raise Q931Error("User-user IE truncated in its length")
            length = int.from_bytes(data[at + 1:at + 3], "big")
            start = at + 3
        else:
            if at + 2 > len(data):
                raise Q931Error(f"IE {ident:#04x} truncated in its length")
            length = data[at + 1]
            start = at + 2
        if start + length > len(data):
            raise Q931Error(f"IE {ident:#04x} says {length} bytes, {len(data) - start} remain")
        ies.append((ident, data[start:start + length]))
        at = start + length
    return Q931(message_type, ref & (flag_bit - 1), bool(ref & flag_bit), tuple(ies))


def serialize(message: Q931) -> bytes:
    ref = (message.call_ref & 0x7FFF) | (0x8000 if message.to_originator else 0)
    out = bytearray((PROTOCOL_DISCRIMINATOR, 2))
    out += ref.to_bytes(2, "big")
    out.append(message.message_type & 0x7F)
    for ident, value in message.ies:
        if ident & 0x80:
            out.append(ident)
        elif ident == IE.USER_USER:
            if len(value) > 0xFFFF:
                raise Q931Error(f"User-user IE of {len(value)} bytes is too long")
            out.append(ident)
            out += len(value).to_bytes(2, "big")
            out += value
        else:
            if len(value) > 0xFF:
                raise Q931Error(f"IE {ident:#04x} of {len(value)} bytes is too long")
            out += bytes((ident, len(value)))
            out += value
    return bytes(out)


def tpkt(payload: bytes) -> bytes:
    """Wrap one message in a TPKT header (version 3)."""
    length = len(payload) + TPKT_HEADER
    if length > 0xFFFF:
        raise Q931Error(f"message of {len(payload)} bytes does not fit a TPKT")
    return bytes((3, 0)) + length.to_bytes(2, "big") + payload


class TpktFramer:
    """Cuts a TCP byte stream into TPKT payloads. A bad header (version not 3, length
    shorter than the header or above ``max_bytes``) makes the stream :attr:`broken`: the
    connection cannot be resynchronised and should be closed."""

    def __init__(self, max_bytes: int = 16384) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.broken: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.broken:
            return []
        self.buffer += data
        out: list[bytes] = []
        while len(self.buffer) >= TPKT_HEADER:
            version, length = self.buffer[0], int.from_bytes(self.buffer[2:4], "big")
            if version != 3:
                self.broken = f"TPKT version {version} (expected 3)"
                break
            if length < TPKT_HEADER or length > self.max_bytes:
                self.broken = f"TPKT length {length} outside {TPKT_HEADER}..{self.max_bytes}"
                break
            if len(self.buffer) < length:
                break
            payload = bytes(self.buffer[TPKT_HEADER:length])
            del self.buffer[:length]
            if payload:                       # an empty TPKT is a keep-alive
                out.append(payload)
        return out
