"""SDP <-> H.245 fastStart for the gateway (pure; pycrate only through h323.asn1).

* An H.323 caller's fastStart offer (forward channels: what it can send; reverse
  channels: what it receives and where) becomes an SDP offer, and the SIP answer picks
  the fastStart channels the gateway accepts in Alerting/Progress/Connect.
* A SIP caller's SDP offer becomes fastStart proposals (a forward and a reverse channel
  per codec H.245 can name), and the H.323 callee's accepted channels an SDP answer.

Media flows end to end between the two parties; the gateway rewrites only descriptions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Sequence

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

from ..h323.asn1 import Asn1Error, decode_olc, encode_olc
from ..h323.media import OFFER_CHOICES, Channel, channel_of, olc
from ..sip.errors import ParseError
from ..sip.sdp import STATIC_PAYLOAD_TYPES, parse_sdp

__all__ = ["Offer", "Proposal", "SdpMedia", "answer_faststart", "build_sdp", "faststart_offer", "parse_faststart",
           "read_sdp"]

#: Policy codec -> static RTP payload type (RFC 3551) used in the SDP the gateway builds.
PAYLOAD_TYPES = {name: pt for pt, name in STATIC_PAYLOAD_TYPES.items()}
_CLOCK = {"g722": 8000}


class MediaError(ValueError):
    """A media description the gateway cannot translate (Q.850 cause 65 / SIP 488)."""


@dataclass(frozen=True)
class Proposal:
    """One decoded fastStart element."""

    number: int
    channel: Channel
    raw: dict[str, Any]


@dataclass(frozen=True)
class Offer:
    """What one side offers: codecs in preference order (with packet times) and where it receives."""

    codecs: tuple[tuple[str, int], ...]
    receive: MediaEndpoint | None

    def spec(self) -> MediaSpec:
        codec, ptime = self.codecs[0]
        return MediaSpec(codec, ptime, voice_band_data=codec == "t38")


@dataclass(frozen=True)
class SdpMedia:
    """An SDP's first active audio stream: codecs (name, payload type, ptime) and address."""

    codecs: tuple[tuple[str, str, int], ...]
    receive: MediaEndpoint | None

    def offer(self) -> Offer:
        usable = tuple((name, ptime) for name, _, ptime in self.codecs if name in OFFER_CHOICES)
        return Offer(usable, self.receive)


def parse_faststart(elements: Sequence[bytes]) -> list[Proposal]:
    """Decode each fastStart element; undecodable ones raise :class:`MediaError`."""
    out: list[Proposal] = []
    for data in elements:
        try:
            value = decode_olc(bytes(data))
        except Asn1Error as error:
            raise MediaError(str(error)) from None
        number = value.get("forwardLogicalChannelNumber")
        out.append(Proposal(number if isinstance(number, int) else 0, channel_of(value), value))
    return out


def offer_of(proposals: Sequence[Proposal]) -> Offer:
    """A caller's fastStart offer: the codecs of its forward proposals (in order, known
    ones only) and the receive address of its first reverse proposal that names one."""
    codecs: list[tuple[str, int]] = []
    for proposal in proposals:
        channel = proposal.channel
        if not channel.reverse and channel.codec in OFFER_CHOICES and \
                all(c != channel.codec for c, _ in codecs):
            codecs.append((channel.codec, channel.ptime_ms))
    receive = next((p.channel.media for p in proposals if p.channel.reverse and p.channel.media), None)
    return Offer(tuple(codecs), receive)


def accepted_of(proposals: Sequence[Proposal]) -> tuple[MediaSpec | None, MediaEndpoint | None]:
    """A callee's accepted fastStart channels: the codec and where the callee receives
    (the forward channel's mediaChannel, from the callee's side of view: the channel
    the caller transmits on)."""
    for proposal in proposals:
        channel = proposal.channel
        if not channel.reverse and channel.spec is not None:
            return channel.spec, channel.media
    for proposal in proposals:
        if proposal.channel.spec is not None:
            return proposal.channel.spec, None
    return None, None


def faststart_offer(offer: Offer, rtcp_of: MediaEndpoint | None) -> list[bytes]:
    """fastStart proposals for an SDP offer: per codec a forward channel (the SIP party
    sends) and a reverse one (it receives, at ``offer.receive``)."""
    elements: list[bytes] = []
    number = 1
    for codec, ptime in offer.codecs:
        elements.append(encode_olc(olc(number, codec, ptime, reverse=False, media=None, control=rtcp_of)))
        elements.append(encode_olc(olc(number + 1, codec, ptime, reverse=True, media=offer.receive,
                                       control=rtcp_of)))
        number += 2
    return elements


def answer_faststart(proposals: Sequence[Proposal], codec: str, ptime: int,
                     receive: MediaEndpoint | None) -> list[bytes]:
    """The channels accepted from an H.323 caller's proposals, for a SIP answer choosing
    ``codec`` with the SIP callee receiving at ``receive``. Raises :class:`MediaError`
    when the caller proposed no such codec."""
    forward = next((p for p in proposals if not p.channel.reverse and p.channel.codec == codec), None)
    reverse = next((p for p in proposals if p.channel.reverse and p.channel.codec == codec), None)
    if forward is None:
        raise MediaError(f"the H.323 caller proposed no {codec} channel")
    rtcp = None if receive is None else MediaEndpoint(receive.ip, receive.port + 1)
    accepted = olc(forward.number, codec, ptime, reverse=False, media=receive, control=rtcp)
    _same_data_type(accepted, "forwardLogicalChannelParameters", forward.raw)
    out = [encode_olc(accepted)]
    if reverse is not None:
        accepted = olc(reverse.number, codec, ptime, reverse=True, media=None, control=rtcp)
        _same_data_type(accepted, "reverseLogicalChannelParameters", reverse.raw)
        out.append(encode_olc(accepted))
    return out


def _same_data_type(accepted: dict[str, Any], key: str, proposal: dict[str, Any]) -> None:
    """An accepted channel names the codec exactly as the caller proposed it (g729 stays
    g729, not g729AnnexA), frames per packet included."""
    proposed = proposal.get(key)
    if isinstance(proposed, dict) and "dataType" in proposed:
        accepted[key]["dataType"] = proposed["dataType"]


def read_sdp(body: bytes) -> SdpMedia:
    """The first active audio stream of an SDP body. Raises :class:`MediaError`."""
    try:
        session = parse_sdp(body)
    except ParseError as error:
        raise MediaError(error.message) from None
    for media in session.media:
        if media.kind != "audio" or media.port == 0:
            continue
        names = {pt: name for pt, name, _ in media.rtpmap}
        codecs: list[tuple[str, str, int]] = []
        for fmt in media.formats:
            name = names.get(fmt) or (STATIC_PAYLOAD_TYPES.get(int(fmt), "") if fmt.isdigit() and len(fmt) < 4
                                      else "")
            name = {"g729a": "g729"}.get(name, name)
            if name:
                codecs.append((name, fmt, media.ptime_ms or (30 if name == "g723" else 20)))
        address = media.connection or session.connection
        receive = None
        if address and address not in ("0.0.0.0", "::") and media.direction != "inactive":
            try:
                ipaddress.ip_address(address)
                receive = MediaEndpoint(address, media.port)
            except ValueError:
                raise MediaError(f"c= address {address[:40]!r} is not an IP address") from None
        return SdpMedia(tuple(codecs), receive)
    raise MediaError("no active audio stream in the SDP")


def build_sdp(receive: MediaEndpoint, codecs: Sequence[tuple[str, int]], session_id: int, *,
              payload_types: dict[str, str] | None = None, telephone_event_pt: int | None = None) -> bytes:
    """An SDP offer or answer: one audio stream at ``receive`` with ``codecs`` (static
    payload types unless ``payload_types`` names the offer's), the first codec's ptime."""
    ip = ipaddress.ip_address(receive.ip)
    family = "IP6" if ip.version == 6 else "IP4"
    pts: list[str] = []
    lines = []
    for codec, _ in codecs:
        pt = (payload_types or {}).get(codec) or str(PAYLOAD_TYPES.get(codec, ""))
        if not pt or pt in pts:
            continue
        pts.append(pt)
        lines.append(f"a=rtpmap:{pt} {codec.upper()}/{_CLOCK.get(codec, 8000)}")
    if not pts:
        raise MediaError("no codec with a payload type to describe")
    if telephone_event_pt is not None:
        pts.append(str(telephone_event_pt))
        lines += [f"a=rtpmap:{telephone_event_pt} telephone-event/8000", f"a=fmtp:{telephone_event_pt} 0-15"]
    ptime = codecs[0][1]
    text = "\r\n".join([
        "v=0", f"o=mam-gw {session_id} {session_id} IN {family} {receive.ip}", "s=mam gateway",
        f"c=IN {family} {receive.ip}", "t=0 0", f"m=audio {receive.port} RTP/AVP {' '.join(pts)}",
        *lines, f"a=ptime:{ptime}", "a=sendrecv", ""])
    return text.encode("ascii")
