"""SDP (RFC 8866) as far as admission needs it: offer/answer media of a call.

Reads session- and media-level ``c=`` and ``b=`` (AS, TIAS), ``m=`` lines, ``a=rtpmap``,
``a=ptime``, ``a=gpmd`` (V.152 ``vbd=yes``), direction attributes and RFC 3312
precondition attributes (``a=curr:qos``, ``a=des:qos``). :func:`media_of` turns a
description into what admission asks for: a :class:`MediaSpec`, the sender's media
address (:class:`MediaEndpoint`) and whether the offer used preconditions.

A small parser of our own rather than ``sdp-transform``: we read a dozen line types,
must never raise anything but :class:`ParseError` on hostile input (fuzzed), return
typed frozen values, and sit on the call-setup fast path (one parse per INVITE and per
answer); sdp-transform returns untyped dicts built by a regex grammar for every line type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import STANDARD_CODECS, MediaSpec

from .errors import ParseError

#: Static RTP payload types (RFC 3551) that admission can size.
STATIC_PAYLOAD_TYPES = {0: "pcmu", 3: "gsm", 4: "g723", 8: "pcma", 9: "g722", 15: "g728", 18: "g729"}
#: Formats that ride along with a voice codec but are never "the" codec of a call.
AUXILIARY = frozenset({"telephone-event", "cn", "red", "ulpfec", "comfort-noise", "rtx"})
_STATIC_AUXILIARY = {13: "cn", 19: "cn"}
_RTP_UDP_IPV4_BITS = (12 + 8 + 20) * 8
_DEFAULT_PTIME = {c.name: c.default_ptime_ms for c in STANDARD_CODECS}
_ENCODING_ALIASES = {"g729a": "g729", "g729ab": "g729", "g729b": "g729", "g7221": "g722.1", "ilbc": "ilbc"}


@dataclass(frozen=True, slots=True)
class MediaDescription:
    kind: str                                  # audio, video, image, ...
    port: int
    proto: str                                 # RTP/AVP, udptl, ...
    formats: tuple[str, ...]
    connection: str | None = None              # media-level c= address
    rtpmap: tuple[tuple[str, str, int], ...] = ()   # (payload type, encoding, clock rate)
    ptime_ms: int | None = None
    maxptime_ms: int | None = None
    bandwidth_as: int | None = None            # kbit/s
    bandwidth_tias: int | None = None          # bit/s
    direction: str = "sendrecv"
    preconditions: bool = False
    voice_band_data: bool = False              # a=gpmd:<pt> vbd=yes


@dataclass(frozen=True, slots=True)
class SessionDescription:
    connection: str | None
    bandwidth_as: int | None
    bandwidth_tias: int | None
    media: tuple[MediaDescription, ...]

    @property
    def preconditions(self) -> bool:
        return any(m.preconditions for m in self.media)


@dataclass(frozen=True, slots=True)
class CallMedia:
    """What a call's offer (or answer) says admission needs to know."""

    spec: MediaSpec
    endpoint: MediaEndpoint | None   # where this party receives media; None if on hold / no address
    preconditions: bool = False

    @property
    def voice_band_data(self) -> bool:
        return self.spec.voice_band_data or self.spec.codec in ("t38", "clearmode")


def _int(text: str, what: str, low: int = 0, high: int = 10 ** 9) -> int:
    text = text.strip()
    if not text.isdigit() or len(text) > 10 or not low <= int(text) <= high:
        raise ParseError(f"bad {what} {text[:20]!r} in SDP", 488)
    return int(text)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise ParseError(f"bad c= line {value[:60]!r}", 488)
    return parts[2].split("/")[0]


class _Media:
    """A media section while it is read (then a frozen :class:`MediaDescription`)."""

    __slots__ = ("kind", "port", "proto", "formats", "c", "bw_as", "bw_tias", "rtpmap", "ptime", "maxptime",
                 "direction", "preconditions", "vbd")

    def __init__(self, kind: str, port: int, proto: str, formats: tuple[str, ...]) -> None:
        self.kind, self.port, self.proto, self.formats = kind, port, proto, formats
        self.c: str | None = None
        self.bw_as: int | None = None
        self.bw_tias: int | None = None
        self.rtpmap: list[tuple[str, str, int]] = []
        self.ptime: int | None = None
        self.maxptime: int | None = None
        self.direction = "sendrecv"
        self.preconditions = False
        self.vbd = False

    def frozen(self) -> MediaDescription:
        return MediaDescription(self.kind, self.port, self.proto, self.formats, self.c, tuple(self.rtpmap),
                                self.ptime, self.maxptime, self.bw_as, self.bw_tias, self.direction,
                                self.preconditions, self.vbd)


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body. Raises :class:`ParseError` (status 488) and nothing else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("SDP is not UTF-8", 488) from None
    session_c: str | None = None
    session_as: int | None = None
    session_tias: int | None = None
    media: list[_Media] = []
    current: _Media | None = None          # None: session level
    seen_version = False
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise ParseError(f"bad SDP line {line[:60]!r}", 488)
        kind, value = line[0], line[2:]
        if kind == "a":
            if current is not None:
                _attribute(current, value)
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise ParseError(f"bad m= line {value[:60]!r}", 488)
            current = _Media(parts[0].lower(), _int(parts[1].split("/")[0], "m= port", 0, 65535), parts[2],
                             tuple(parts[3:]))
            media.append(current)
        elif kind == "c":
            if current is None:
                session_c = _connection(value)
            else:
                current.c = _connection(value)
        elif kind == "b":
            modifier, _, amount = value.partition(":")
            modifier = modifier.strip().upper()
            if modifier == "AS":
                if current is None:
                    session_as = _int(amount, "b=AS")
                else:
                    current.bw_as = _int(amount, "b=AS")
            elif modifier == "TIAS":
                if current is None:
                    session_tias = _int(amount, "b=TIAS")
                else:
                    current.bw_tias = _int(amount, "b=TIAS")
        elif kind == "v":
            seen_version = True
    if not seen_version:
        raise ParseError("SDP without v= line", 488)
    return SessionDescription(session_c, session_as, session_tias, tuple(m.frozen() for m in media))


def _attribute(media: _Media, value: str) -> None:
    name, _, rest = value.partition(":")
    name = name.strip().lower()
    if name == "rtpmap":
        pt, _, encoding = rest.strip().partition(" ")
        enc_name, _, clock = encoding.strip().partition("/")
        if pt.isdigit() and enc_name:
            rate = clock.partition("/")[0]
            media.rtpmap.append((pt, enc_name.lower(), int(rate) if rate.isdigit() and len(rate) < 8 else 0))
    elif name == "ptime":
        media.ptime = _ptime(rest)
    elif name == "maxptime":
        media.maxptime = _ptime(rest)
    elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
        media.direction = name
    elif name in ("curr", "des", "conf") and rest.strip().lower().startswith("qos"):
        media.preconditions = True
    elif name == "gpmd" and "vbd=yes" in rest.replace(" ", "").lower():
        media.vbd = True


def _ptime(text: str) -> int:
    try:
        value = float(text.strip())
    except ValueError:
        raise ParseError(f"bad ptime {text[:20]!r} in SDP", 488) from None
    if not 0 < value <= 1000 or math.isnan(value):
        raise ParseError(f"bad ptime {text[:20]!r} in SDP", 488)
    return max(1, round(value))


def codec_of(media: MediaDescription) -> str | None:
    """The media codec: first format of the m= line that is not DTMF/CN/RED/FEC."""
    if media.kind == "image":
        return "t38" if any(f.lower() == "t38" for f in media.formats) else (media.formats[0].lower() or None)
    names = {pt: name for pt, name, _ in media.rtpmap}
    for fmt in media.formats:
        name = names.get(fmt)
        if name is None and fmt.isdigit() and len(fmt) < 4:
            number = int(fmt)
            if number in _STATIC_AUXILIARY:
                continue
            name = STATIC_PAYLOAD_TYPES.get(number)
        if name is None:
            name = fmt.lower() if not fmt.isdigit() else None
        if name is None or name in AUXILIARY:
            continue
        return _ENCODING_ALIASES.get(name, name)
    return None


def _explicit_kbps(session: SessionDescription, media: MediaDescription, ptime_ms: int) -> int | None:
    """Declared bandwidth at IP level: TIAS (+ RTP/UDP/IP per packet) beats AS; media beats session."""
    tias = media.bandwidth_tias if media.bandwidth_tias is not None else (
        session.bandwidth_tias if media.bandwidth_as is None else None)
    if tias is not None and tias > 0:
        packets_per_s = 1000 / ptime_ms
        return math.ceil((tias + _RTP_UDP_IPV4_BITS * packets_per_s) / 1000)
    declared = media.bandwidth_as if media.bandwidth_as is not None else session.bandwidth_as
    return declared if declared else None


def media_of(session: SessionDescription, default_ptime_ms: int | None = None) -> CallMedia | None:
    """The call's media from an offer or answer: the first active audio or image stream.

    Without a=ptime the codec's usual packetisation is assumed (20 ms for most, 30 for
    G.723.1), or ``default_ptime_ms`` when given. None when no stream is active (every
    m= port 0) or no codec can be named."""
    for media in session.media:
        if media.port == 0 or media.kind not in ("audio", "image"):
            continue
        codec = codec_of(media)
        if codec is None:
            continue
        ptime = media.ptime_ms or default_ptime_ms or _DEFAULT_PTIME.get(codec, 20)
        address = media.connection or session.connection
        endpoint = None
        if address and address not in ("0.0.0.0", "::") and media.direction != "inactive":
            endpoint = MediaEndpoint(address, media.port)
        vbd = media.voice_band_data or media.kind == "image"
        spec = MediaSpec(codec, ptime, _explicit_kbps(session, media, ptime), vbd)
        return CallMedia(spec, endpoint, session.preconditions)
    return None
