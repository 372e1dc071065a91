"""SDP offer/answer reading for admission."""

from __future__ import annotations

import pytest

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.signalling.sip.errors import ParseError
from ryu_apps.signalling.sip.sdp import media_of, parse_sdp


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(("v=0", "o=- 1 1 IN IP4 10.1.0.10", "s=-", "t=0 0") + lines) + "\r\n").encode()


def test_pcmu_with_dtmf_and_session_connection() -> None:
    media = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.10", "m=audio 4000 RTP/AVP 0 101",
                                   "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000")))
    assert media is not None
    assert media.spec == MediaSpec("pcmu", 20, None)
    assert media.endpoint == MediaEndpoint("10.1.0.10", 4000) and not media.preconditions


def test_dtmf_first_dynamic_codec_ptime_and_media_connection() -> None:
    media = media_of(parse_sdp(sdp(
        "c=IN IP4 1.1.1.1", "m=audio 5000 RTP/AVP 101 96 18", "c=IN IP4 10.2.0.20",
        "a=rtpmap:101 telephone-event/8000", "a=rtpmap:96 opus/48000/2", "a=ptime:40")))
    assert media is not None and media.spec.codec == "opus" and media.spec.ptime_ms == 40
    assert media.endpoint == MediaEndpoint("10.2.0.20", 5000)


def test_static_g729_and_codec_default_ptime_for_g723() -> None:
    assert media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=audio 4000 RTP/AVP 18 13"))).spec.codec == "g729"  # type: ignore[union-attr]
    g723 = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=audio 4000 RTP/AVP 4")))
    assert g723 is not None and g723.spec == MediaSpec("g723", 30)


def test_bandwidth_tias_beats_as_and_is_converted_to_ip_level() -> None:
    media = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "b=AS:200", "m=audio 4000 RTP/AVP 0",
                                   "b=TIAS:64000", "b=AS:90")))
    assert media is not None and media.spec.explicit_kbps == 64 + 16   # 40 bytes x 50 pps = 16 kbit/s
    session_as = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "b=AS:100", "m=audio 4000 RTP/AVP 0")))
    assert session_as is not None and session_as.spec.explicit_kbps == 100


def test_t38_image_is_voice_band_data() -> None:
    media = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=image 6000 udptl t38", "a=T38FaxVersion:0")))
    assert media is not None and media.spec.codec == "t38" and media.voice_band_data


def test_v152_vbd_and_preconditions() -> None:
    media = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=audio 4000 RTP/AVP 0 98",
                                   "a=gpmd:0 vbd=yes", "a=curr:qos local none", "a=des:qos mandatory local sendrecv")))
    assert media is not None and media.voice_band_data and media.preconditions
    assert media.spec == MediaSpec("pcmu", 20, None, True)


def test_hold_rejected_stream_and_no_codec() -> None:
    held = media_of(parse_sdp(sdp("c=IN IP4 0.0.0.0", "m=audio 4000 RTP/AVP 0")))
    assert held is not None and held.endpoint is None
    assert media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=audio 0 RTP/AVP 0"))) is None
    assert media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=audio 4000 RTP/AVP 101",
                                  "a=rtpmap:101 telephone-event/8000"))) is None
    video_then_audio = media_of(parse_sdp(sdp("c=IN IP4 10.1.0.1", "m=video 4002 RTP/AVP 31",
                                              "m=audio 4000 RTP/AVP 8")))
    assert video_then_audio is not None and video_then_audio.spec.codec == "pcma"


@pytest.mark.parametrize("body", [
    b"o=- 1 1 IN IP4 1.1.1.1\r\n",
    b"v=0\r\nm=audio x RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:-5\r\n",
    b"v=0\r\nbogus\r\n",
    b"v=0\r\n\xff\r\n",
    b"v=0\r\nb=AS:lots\r\n",
])
def test_malformed_sdp_is_488(body: bytes) -> None:
    with pytest.raises(ParseError) as error:
        parse_sdp(body)
    assert error.value.status_hint == 488
