import pytest

from ryu_apps.core.codec import CodecPolicy, Layer, MediaClass, MediaSpec


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
def test_bandwidth_includes_packet_overhead_at_the_named_layer(codec, ptime, layer, tag_bytes, kbps):
    policy = CodecPolicy(tag_bytes=tag_bytes)
    assert policy.bandwidth_kbps(MediaSpec(codec, ptime), layer) == kbps


def test_declared_bandwidth_wins_when_larger_and_is_ip_level():
    policy = CodecPolicy()
    assert policy.bandwidth_kbps(MediaSpec("g729", 20, explicit_kbps=64), Layer.IP) == 64
    assert policy.bandwidth_kbps(MediaSpec("g729", 20, explicit_kbps=10), Layer.IP) == 24
    # unknown codec with a declared figure: the figure plus the layer's overhead
    assert policy.bandwidth_kbps(MediaSpec("x-vendor", 20, explicit_kbps=50), Layer.ETHERNET) == 50 + 11


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
