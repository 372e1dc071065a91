"""Codec policy: the bandwidth a call needs, with packet overhead, at an explicit layer.

Figures are in kbit/s and always name their layer:

* ``Layer.IP``: RTP payload + RTP (12) + UDP (8) + IPv4 (20) bytes per packet.
  G.711 at 20 ms = 200-byte packets x 50/s = 80 kbit/s; G.729 at 20 ms = 24 kbit/s.
* ``Layer.ETHERNET``: IP plus the Ethernet header and FCS (18 bytes) plus any tag bytes
  (VLAN 4, MPLS 4) that the aggregate adds on core links. This is what OpenFlow meters
  and link capacities count, and the default for admission.
  G.711 at 20 ms = 87.2 kbit/s untagged, 90.4 kbit/s with VLAN + MPLS tags.
* ``Layer.WIRE``: Ethernet plus preamble and inter-frame gap (20 bytes).

IPv6 media carries a 40-byte IP header instead of 20: G.711 at 20 ms costs 8 kbit/s more.

What a call costs in each direction is its RTP stream plus its RTCP (RFC 3556): the
``b=RS`` figure the party declared when there is one, else one compound RTCP packet
(``rtcp_packet_bytes`` at IP level, 128 by default: a sender report with one report
block and an SDES CNAME) every 4.1 s, RFC 3550's average interval for small sessions
(the 5 s minimum divided by e - 3/2). That adds 0.3 kbit/s on tagged Ethernet: G.711 at
20 ms costs 91 kbit/s (90.4 + 0.3, rounded up), G.729 35.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

RTP_UDP_IPV4_BYTES = 12 + 8 + 20
IPV6_EXTRA_BYTES = 40 - 20
#: RFC 3550 6.2-6.3: the 5 s minimum RTCP interval, divided by e - 3/2 (the compensation for
#: timer reconsideration), is the average interval of a small session.
RTCP_INTERVAL_S = 5.0 / (math.e - 1.5)
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
    ip_version: int = 4                 # of the media addresses (SDP c=): IPv6 headers are 20 bytes longer
    rtcp_bps: int | None = None         # the party's declared RTCP bandwidth (RFC 3556 b=RS), at IP level


@dataclass(frozen=True)
class CodecPolicy:
    """Which codecs may be admitted and how bandwidth is counted."""

    codecs: tuple[Codec, ...] = STANDARD_CODECS
    allowed: frozenset[str] | None = None
    layer: Layer = Layer.ETHERNET
    tag_bytes: int = AGGREGATE_TAG_BYTES
    rtcp_packet_bytes: int = 128        # one compound RTCP packet at IP level; 0: RTCP not counted
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
        """What one direction of the call costs at ``layer`` (default: the policy's): its
        RTP and its RTCP, in whole kbit/s rounded up. None when the codec is unknown and
        nothing was declared."""
        rtp = self.rtp_kbps(media, layer)
        if rtp is None:
            return None
        return math.ceil(round(rtp + self.rtcp_kbps(media, layer), 6))

    def rtp_kbps(self, media: MediaSpec, layer: Layer | None = None) -> float | None:
        """The RTP stream of one direction at ``layer``, exactly.

        Uses the larger of the codec's own figure and the declared one, so a terminal
        that declares more than its codec needs gets what it declared.
        """
        layer = layer or self.layer
        if media.ptime_ms <= 0:
            return None
        codec = self.codec(media.codec)
        packets_per_s = 1000 / media.ptime_ms
        ip_extra = IPV6_EXTRA_BYTES if media.ip_version == 6 else 0
        candidates: list[float] = []
        if codec is not None:
            ip_bytes = codec.payload_bytes(media.ptime_ms) + RTP_UDP_IPV4_BYTES + ip_extra
            candidates.append(ip_bytes * 8 * packets_per_s / 1000)
        if media.explicit_kbps is not None and media.explicit_kbps > 0:
            candidates.append(float(media.explicit_kbps))
        if not candidates:
            return None
        return max(candidates) + self._frame_bytes(layer) * 8 * packets_per_s / 1000

    def rtcp_kbps(self, media: MediaSpec, layer: Layer | None = None) -> float:
        """The RTCP of one direction at ``layer``: declared (b=RS) or one packet per average interval."""
        if not self.rtcp_packet_bytes:
            return 0.0
        layer = layer or self.layer
        packet = self.rtcp_packet_bytes + (IPV6_EXTRA_BYTES if media.ip_version == 6 else 0)
        if media.rtcp_bps is not None:
            if media.rtcp_bps <= 0:
                return 0.0
            packets_per_s = media.rtcp_bps / (packet * 8)
            return media.rtcp_bps / 1000 + self._frame_bytes(layer) * 8 * packets_per_s / 1000
        return (packet + self._frame_bytes(layer)) * 8 / RTCP_INTERVAL_S / 1000

    def _frame_bytes(self, layer: Layer) -> int:
        """Bytes each packet carries below IP at ``layer``."""
        extra = 0
        if layer in (Layer.ETHERNET, Layer.WIRE):
            extra += ETHERNET_BYTES + self.tag_bytes
        if layer is Layer.WIRE:
            extra += PREAMBLE_GAP_BYTES
        return extra
