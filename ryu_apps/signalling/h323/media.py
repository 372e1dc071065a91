"""H.323 media descriptions <-> the codec policy's :class:`MediaSpec` (both ways).

Two sources, in order of preference:

1. **fastStart / OpenLogicalChannel** (H.245 ``dataType``): the codec and its frames per
   packet name exactly what will flow, so a call's allocation is refined (``modify``) to
   ``MediaSpec(codec, ptime)``, sized by the same policy as SIP (same layer, overheads,
   tags). Frames per packet become a packet time: G.711 and G.722 count milliseconds,
   the G.729 family 10 ms frames, G.723.1 30 ms frames, GSM 20 ms frames.
2. **ARQ/BRQ ``bandWidth``**, in units of 100 bit/s for *both* directions together, as
   H.225.0 says: 1280 = 2 x 64 kbit/s = one G.711 call. Half of it is the codec's bit rate
   in one direction; a rate that names a codec (64000 -> G.711, 8000 -> G.729, 6300 or
   5300 -> G.723.1, 13200 -> GSM, 14400 -> T.38) is admitted as that codec at its default
   packet time, exactly what the same call costs over SIP. Any other rate is admitted on
   G.711 (>= 64 kbit/s) or G.729 (below) with the rate declared as ``explicit_kbps`` plus
   RTP/UDP/IP overhead at 20 ms, so the larger of the two is reserved.

The reverse direction (:func:`audio_capability`, :func:`olc`) builds H.245 values from a
codec, for a front end that must offer media (the SIP <-> H.323 gateway).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import RTP_UDP_IPV4_BYTES, MediaSpec

#: H.245 AudioCapability choice -> (policy codec, milliseconds per "frame").
AUDIO_CODECS: dict[str, tuple[str, float]] = {
    "g711Ulaw64k": ("pcmu", 1), "g711Ulaw56k": ("pcmu", 1),
    "g711Alaw64k": ("pcma", 1), "g711Alaw56k": ("pcma", 1),
    "g722-64k": ("g722", 1), "g722-56k": ("g722", 1), "g722-48k": ("g722", 1),
    "g729": ("g729", 10), "g729AnnexA": ("g729", 10), "g729wAnnexB": ("g729", 10),
    "g729AnnexAwAnnexB": ("g729", 10),
    "g7231": ("g723", 30),
    "gsmFullRate": ("gsm", 20), "gsmEnhancedFullRate": ("gsm", 20),
}
#: Policy codec -> the H.245 choice used when offering it.
OFFER_CHOICES = {"pcmu": "g711Ulaw64k", "pcma": "g711Alaw64k", "g722": "g722-64k", "g729": "g729AnnexA",
                 "g723": "g7231"}
#: Codec bit rate (one direction, bit/s) named by an ARQ bandWidth -> policy codec.
RATE_CODECS = {64000: "pcmu", 56000: "pcmu", 8000: "g729", 6300: "g723", 5300: "g723", 13200: "gsm",
               14400: "t38"}
MIN_PTIME_MS, MAX_PTIME_MS = 5, 200


@dataclass(frozen=True)
class Channel:
    """One logical channel as an OpenLogicalChannel describes it.

    ``reverse`` is set for the channel carried in ``reverseLogicalChannelParameters``
    (media toward the endpoint that proposed it). ``media`` is the RTP address where
    that channel's receiver listens, when the message gives it."""

    codec: str | None
    ptime_ms: int
    reverse: bool
    media: MediaEndpoint | None = None
    control: MediaEndpoint | None = None
    session_id: int = 0

    @property
    def spec(self) -> MediaSpec | None:
        if self.codec is None:
            return None
        return MediaSpec(self.codec, self.ptime_ms, voice_band_data=self.codec == "t38")


def spec_from_bandwidth(units: int) -> MediaSpec:
    """An ARQ/BRQ ``bandWidth`` (100 bit/s, both directions) as a MediaSpec (see module doc)."""
    rate = max(units, 1) * 50                  # bit/s in one direction
    codec = RATE_CODECS.get(rate)
    if codec is not None:
        return MediaSpec(codec, 30 if codec == "g723" else 20, voice_band_data=codec == "t38")
    ip_kbps = -(-(rate + RTP_UDP_IPV4_BYTES * 8 * 50) // 1000)
    return MediaSpec("pcmu" if rate >= 64000 else "g729", 20, explicit_kbps=ip_kbps)


def bandwidth_units(bitrate_bps: int) -> int:
    """The ``bandWidth`` to ask or confirm for a codec of ``bitrate_bps`` (both directions)."""
    return max(1, -(-2 * bitrate_bps // 100))


def _audio(value: Any) -> tuple[str | None, int]:
    if not isinstance(value, tuple) or len(value) != 2:
        return None, 20
    name, frames = value
    known = AUDIO_CODECS.get(name)
    if known is None:
        return None, 20
    codec, frame_ms = known
    if isinstance(frames, dict):               # g7231 {maxAl-sduAudioFrames, ...}; gsm {audioUnitSize, ...}
        count = frames.get("maxAl-sduAudioFrames")
        if count is None and "audioUnitSize" in frames:
            count = max(1, int(frames["audioUnitSize"]) // 33)
        frames = count if isinstance(count, int) else 1
    if not isinstance(frames, int) or isinstance(frames, bool):
        frames = 1
    ptime = int(round(frames * frame_ms))
    return codec, min(MAX_PTIME_MS, max(MIN_PTIME_MS, ptime))


def codec_of_data_type(data_type: Any) -> tuple[str | None, int]:
    """H.245 DataType -> (policy codec or None, packet time in ms)."""
    if not isinstance(data_type, tuple) or len(data_type) != 2:
        return None, 20
    kind, value = data_type
    if kind == "audioData":
        return _audio(value)
    if kind == "data" and isinstance(value, dict):
        application = value.get("application")
        if isinstance(application, tuple) and application[0] == "t38fax":
            return "t38", 20
    return None, 20


def endpoint_of(address: Any) -> MediaEndpoint | None:
    """H.245 TransportAddress (unicast IPv4/IPv6) -> MediaEndpoint."""
    try:
        kind, unicast = address
        if kind != "unicastAddress":
            return None
        family, fields = unicast
        if family == "iPAddress":
            return MediaEndpoint(str(ipaddress.IPv4Address(fields["network"])), int(fields["tsapIdentifier"]))
        if family == "iP6Address":
            return MediaEndpoint(str(ipaddress.IPv6Address(fields["network"])), int(fields["tsapIdentifier"]))
    except (TypeError, ValueError, KeyError):
        return None
    return None


def h245_address(endpoint: MediaEndpoint) -> tuple[str, Any]:
    ip = ipaddress.ip_address(endpoint.ip)
    if ip.version == 6:
        return ("unicastAddress", ("iP6Address", {"network": ip.packed, "tsapIdentifier": endpoint.port}))
    return ("unicastAddress", ("iPAddress", {"network": ip.packed, "tsapIdentifier": endpoint.port}))


def channel_of(olc: dict[str, Any]) -> Channel:
    """An OpenLogicalChannel (fastStart element or tunnelled request) -> Channel."""
    reverse = "reverseLogicalChannelParameters" in olc
    params = olc.get("reverseLogicalChannelParameters") if reverse else olc.get("forwardLogicalChannelParameters")
    params = params if isinstance(params, dict) else {}
    codec, ptime = codec_of_data_type(params.get("dataType"))
    mux = params.get("multiplexParameters")
    h2250: dict[str, Any] = {}
    if isinstance(mux, tuple) and mux[0] == "h2250LogicalChannelParameters" and isinstance(mux[1], dict):
        h2250 = mux[1]
    media = endpoint_of(h2250.get("mediaChannel")) if "mediaChannel" in h2250 else None
    control = endpoint_of(h2250.get("mediaControlChannel")) if "mediaControlChannel" in h2250 else None
    session = h2250.get("sessionID", 0)
    return Channel(codec, ptime, reverse, media, control, session if isinstance(session, int) else 0)


def audio_capability(codec: str, ptime_ms: int) -> tuple[str, Any]:
    """Policy codec + packet time -> H.245 AudioCapability (raises KeyError if not offerable)."""
    choice = OFFER_CHOICES[codec]
    frame_ms = AUDIO_CODECS[choice][1]
    frames = max(1, int(ptime_ms // frame_ms))
    if choice == "g7231":
        return (choice, {"maxAl-sduAudioFrames": frames, "silenceSuppression": False})
    return (choice, frames)


#: T.38 over UDP (UDPTL, redundancy error correction, transferred TCF), H.245 T38FaxProfile.
T38_FAX = {"t38FaxProtocol": ("udp", 0), "t38FaxProfile": {
    "fillBitRemoval": False, "transcodingJBIG": False, "transcodingMMR": False, "version": 0,
    "t38FaxRateManagement": ("transferredTCF", 0),
    "t38FaxUdpOptions": {"t38FaxMaxBuffer": 200, "t38FaxMaxDatagram": 72, "t38FaxUdpEC": ("t38UDPRedundancy", 0)}}}
T38_DATA_TYPE = ("data", {"application": ("t38fax", T38_FAX), "maxBitRate": 144})     # 14.4 kbit/s


def olc(number: int, codec: str, ptime_ms: int, *, reverse: bool, media: MediaEndpoint | None,
        control: MediaEndpoint | None, session_id: int = 1) -> dict[str, Any]:
    """An OpenLogicalChannel for a fastStart offer or answer."""
    h2250: dict[str, Any] = {"sessionID": session_id}
    if media is not None:
        h2250["mediaChannel"] = h245_address(media)
    if control is not None:
        h2250["mediaControlChannel"] = h245_address(control)
    data_type = T38_DATA_TYPE if codec == "t38" else ("audioData", audio_capability(codec, ptime_ms))
    params = {"dataType": data_type,
              "multiplexParameters": ("h2250LogicalChannelParameters", h2250)}
    value: dict[str, Any] = {"forwardLogicalChannelNumber": number}
    if reverse:
        value["forwardLogicalChannelParameters"] = {"dataType": ("nullData", 0),
                                                    "multiplexParameters": ("none", 0)}
        value["reverseLogicalChannelParameters"] = params
    else:
        value["forwardLogicalChannelParameters"] = params
    return value
