import math

import pytest

from ryu_apps.core.codec import RTCP_INTERVAL_S, CodecPolicy, Layer, MediaClass, MediaSpec


@pytest.mark.parametrize("codec, ptime, layer, tag_bytes, kbps", [
    ("pcmu", 20, Layer.IP, 8, 80),          # 160 + 40 bytes x 50/s
    ("pcma", 20, Layer.ETHERNET, 0, 88),    # 87.2 rounded up: + 18 bytes Ethernet
    ("pcmu", 20, Layer.ETHERNET, 8, 91),    # 90.4 with VLAN + MPLS tags
    ("pcmu", 20, Layer.WIRE, 0, 96),        # + preamble and gap: 95.2
    ("pcmu", 10, Layer.IP, 8, 96),          # 80 + 40 bytes x 100/s
    ("g729", 20, Layer.IP, 8, 24),          # 20 + 40 bytes x 50/s
    ("g729", 40, Layer.IP, 8, 16),          # 40 + 40 bytes x 25/s
    ("g722", 20, Layer.IP, 8, 80),
])
def test_rtp_includes_packet_overhead_at_the_named_layer(codec, ptime, layer, tag_bytes, kbps):
    policy = CodecPolicy(tag_bytes=tag_bytes)
    assert math.ceil(round(policy.rtp_kbps(MediaSpec(codec, ptime), layer), 6)) == kbps


@pytest.mark.parametrize("codec, ptime, layer, kbps", [
    ("pcmu", 20, Layer.ETHERNET, 91),       # 90.4 RTP + 0.30 RTCP, as the docs say
    ("g729", 20, Layer.ETHERNET, 35),       # 34.4 + 0.30
    ("pcmu", 20, Layer.IP, 81),             # 80 RTP + 0.25 RTCP: a call is never free of RTCP
    ("g729", 20, Layer.IP, 25),
])
def test_a_call_costs_its_rtp_and_its_rtcp(codec, ptime, layer, kbps):
    policy = CodecPolicy()
    media = MediaSpec(codec, ptime)
    assert policy.rtcp_kbps(media, Layer.ETHERNET) == pytest.approx((128 + 26) * 8 / RTCP_INTERVAL_S / 1000)
    assert RTCP_INTERVAL_S == pytest.approx(4.104, abs=0.001)
    assert policy.bandwidth_kbps(media, layer) == kbps
    assert CodecPolicy(rtcp_packet_bytes=0).bandwidth_kbps(media, layer) == math.ceil(policy.rtp_kbps(media, layer))


def test_ipv6_media_pays_twenty_more_header_bytes_per_packet():
    policy = CodecPolicy()
    v4, v6 = MediaSpec("pcmu"), MediaSpec("pcmu", ip_version=6)
    assert policy.rtp_kbps(v6, Layer.IP) - policy.rtp_kbps(v4, Layer.IP) == pytest.approx(8.0)   # 20 B x 50/s
    assert policy.bandwidth_kbps(v6) == 99 and policy.bandwidth_kbps(v4) == 91


def test_declared_rtcp_bandwidth_is_used_as_rfc_3556_says():
    policy = CodecPolicy()
    declared = MediaSpec("pcmu", rtcp_bps=4000)          # b=RS:4000 (IP level)
    # 4000 bit/s of 128-byte packets is 3.9 packets/s, each with 26 bytes of Ethernet and tags
    assert policy.rtcp_kbps(declared, Layer.ETHERNET) == pytest.approx(4.0 + 4000 / 1024 * 26 * 8 / 1000)
    assert policy.bandwidth_kbps(declared) == 96          # 90.4 + 4.81
    assert policy.rtcp_kbps(MediaSpec("pcmu", rtcp_bps=0)) == 0.0   # b=RS:0: the party sends no RTCP


def test_declared_bandwidth_wins_when_larger_and_is_ip_level():
    policy = CodecPolicy()
    assert policy.rtp_kbps(MediaSpec("g729", 20, explicit_kbps=64), Layer.IP) == 64
    assert policy.rtp_kbps(MediaSpec("g729", 20, explicit_kbps=10), Layer.IP) == 24
    # unknown codec with a declared figure: the figure plus the layer's overhead (and RTCP)
    assert policy.rtp_kbps(MediaSpec("x-vendor", 20, explicit_kbps=50), Layer.ETHERNET) == 50 + 10.4
    assert policy.bandwidth_kbps(MediaSpec("x-vendor", 20, explicit_kbps=50), Layer.ETHERNET) == 61


def test_unknown_codec_without_declared_bandwidth_has_no_figure():
    assert CodecPolicy().bandwidth_kbps(MediaSpec("x-vendor")) is None
    assert CodecPolicy().bandwidth_kbps(MediaSpec("pcmu", 0)) is None


def test_voice_band_data_is_a_class_of_its_own():
    policy = CodecPolicy()
    assert policy.media_class(MediaSpec("t38")) is MediaClass.VOICE_BAND_DATA
    assert policy.media_class(MediaSpec("pcmu", voice_band_data=True)) is MediaClass.VOICE_BAND_DATA
    assert policy.media_class(MediaSpec("pcmu")) is MediaClass.VOICE


def test_allowed_list_is_case_insensitive():
    policy = CodecPolicy(allowed=frozenset({"pcmu"}))
    assert policy.is_allowed("PCMU") and not policy.is_allowed("g729")
