"""Codec policy: the bandwidth a call needs, with packet overhead, at an explicit layer.

Figures are in kbit/s and always name their layer:

* ``Layer.IP``: RTP payload + RTP (12) + UDP (8) + IPv4 (20) bytes per packet.
  G.711 at 20 ms = 200-byte packets x 50/s = 80 kbit/s; G.729 at 20 ms = 24 kbit/s.
* ``Layer.ETHERNET``: IP plus the Ethernet header and FCS (18 bytes) plus any tag bytes
  (VLAN 4, MPLS 4) that the aggregate adds on core links. This is what OpenFlow meters
  and link capacities count, and the default for admission.
  G.711 at 20 ms = 87.2 kbit/s untagged, 90.4 kbit/s with VLAN + MPLS tags.
* ``Layer.WIRE``: Ethernet plus preamble and inter-frame gap (20 bytes).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

RTP_UDP_IPV4_BYTES = 12 + 8 + 20
ETHERNET_BYTES = 14 + 4
PREAMBLE_GAP_BYTES = 8 + 12
#: Bytes the aggregate adds on the core: one VLAN tag (aggregate) + one MPLS label (call).
AGGREGATE_TAG_BYTES = 4 + 4


class Layer(str, enum.Enum):
    IP = "ip"
    ETHERNET = "ethernet"
    WIRE = "wire"


class MediaClass(str, enum.Enum):
    """What the media carries; voice-band data (fax, modem) gets its own level of service."""

    VOICE = "voice"
    VOICE_BAND_DATA = "voice-band-data"


@dataclass(frozen=True)
class Codec:
    name: str
    bitrate_bps: int
    default_ptime_ms: int = 20
    payload_type: int | None = None
    clock_rate: int = 8000
    media_class: MediaClass = MediaClass.VOICE

    def payload_bytes(self, ptime_ms: int) -> int:
        return math.ceil(self.bitrate_bps * ptime_ms / 8000)


#: Well-known codecs. T.38 is sized for 14.4 kbit/s fax with UDPTL overhead folded in.
STANDARD_CODECS: tuple[Codec, ...] = (
    Codec("pcmu", 64000, 20, 0),
    Codec("pcma", 64000, 20, 8),
    Codec("g722", 64000, 20, 9),
    Codec("g729", 8000, 20, 18),
    Codec("g723", 6300, 30, 4),
    Codec("gsm", 13200, 20, 3),
    Codec("ilbc", 15200, 20),
    Codec("opus", 32000, 20, clock_rate=48000),
    Codec("amr", 12200, 20),
    Codec("amr-wb", 23850, 20, clock_rate=16000),
    Codec("clearmode", 64000, 20, media_class=MediaClass.VOICE_BAND_DATA),
    Codec("t38", 14400, 20, media_class=MediaClass.VOICE_BAND_DATA),
)


@dataclass(frozen=True)
class MediaSpec:
    """The media of one call as signalled (SDP): codec, packetisation, explicit bandwidth.

    ``explicit_kbps`` is a bandwidth the endpoint declared (b=AS, or b=TIAS converted),
    at IP level. ``voice_band_data`` marks fax/modem carried over a voice codec.
    """

    codec: str
    ptime_ms: int = 20
    explicit_kbps: int | None = None
    voice_band_data: bool = False


@dataclass(frozen=True)
class CodecPolicy:
    """Which codecs may be admitted and how bandwidth is counted."""

    codecs: tuple[Codec, ...] = STANDARD_CODECS
    allowed: frozenset[str] | None = None
    layer: Layer = Layer.ETHERNET
    tag_bytes: int = AGGREGATE_TAG_BYTES
    _by_name: dict[str, Codec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.codecs})

    def codec(self, name: str) -> Codec | None:
        return self._by_name.get(name.lower())

    def is_allowed(self, name: str) -> bool:
        return self.allowed is None or name.lower() in self.allowed

    def media_class(self, media: MediaSpec) -> MediaClass:
        codec = self.codec(media.codec)
        if media.voice_band_data or (codec is not None and codec.media_class is MediaClass.VOICE_BAND_DATA):
            return MediaClass.VOICE_BAND_DATA
        return MediaClass.VOICE

    def bandwidth_kbps(self, media: MediaSpec, layer: Layer | None = None) -> int | None:
        """Bandwidth of one direction of the call at ``layer`` (default: the policy's).

        Uses the larger of the codec's own figure and the declared one, so a terminal
        that declares more than its codec needs gets what it declared. None when the
        codec is unknown and nothing was declared.
        """
        layer = layer or self.layer
        if media.ptime_ms <= 0:
            return None
        codec = self.codec(media.codec)
        packets_per_s = 1000 / media.ptime_ms
        candidates: list[float] = []
        if codec is not None:
            ip_bytes = codec.payload_bytes(media.ptime_ms) + RTP_UDP_IPV4_BYTES
            candidates.append(ip_bytes * 8 * packets_per_s / 1000)
        if media.explicit_kbps is not None and media.explicit_kbps > 0:
            candidates.append(float(media.explicit_kbps))
        if not candidates:
            return None
        ip_kbps = max(candidates)
        extra = 0
        if layer in (Layer.ETHERNET, Layer.WIRE):
            extra += ETHERNET_BYTES + self.tag_bytes
        if layer is Layer.WIRE:
            extra += PREAMBLE_GAP_BYTES
        return math.ceil(round(ip_kbps + extra * 8 * packets_per_s / 1000, 6))
