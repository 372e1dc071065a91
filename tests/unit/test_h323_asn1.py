"""pycrate's aligned-PER workaround, Q.931/TPKT framing and the OLC <-> codec mapping."""

from __future__ import annotations

import h323sim as sim
import pytest

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.signalling.h323 import media, q931
from ryu_apps.signalling.h323.asn1 import Asn1Error, decode_olc, decode_ras, decode_uu, encode_olc, encode_ras, encode_uu

GUID = bytes(range(16))


def test_arq_with_call_identifier_encodes_as_x691_says() -> None:
    # Root ends 1 bit into an octet; X.691: bitmap length (0 + 6 bits), 19-bit bitmap with
    # bit 2 (callIdentifier) set, realign, then the open type: length 17, SEQUENCE {guid}.
    value = sim.arq(2, "ep1", GUID, None, src=[("dialledDigits", "1001")])
    data = encode_ras(value)
    tail = bytes((0x09, 0x20, 0x00, 0x00, 0x11, 0x00)) + GUID
    assert data.endswith(tail), data.hex()
    assert decode_ras(data) == value


@pytest.mark.parametrize("message", [
    sim.drq(3, "ep1", GUID), sim.brq(4, "ep1", GUID, 160),
    sim.rrq(5, ("127.0.0.1", 1), ("127.0.0.1", 2), [("h323-ID", "x")], ttl=60, keep_alive_id="ep1"),
])
def test_ras_round_trips_with_extensions(message: tuple) -> None:
    assert decode_ras(encode_ras(message)) == message


def test_release_complete_with_reason_and_call_identifier_round_trips() -> None:
    value = {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", {
        "protocolIdentifier": sim.PID, "reason": ("noBandwidth", 0), "callIdentifier": {"guid": GUID}})}}
    assert decode_uu(encode_uu(value)) == value


def test_garbage_is_an_asn1_error() -> None:
    for data in (b"", b"\xff" * 3, b"\x26\x00"):
        with pytest.raises(Asn1Error):
            decode_ras(data)


def test_q931_round_trip_keeps_unknown_ies_and_rewrites_user_user() -> None:
    raw = sim.q931(sim.SETUP, 0x1234, False, sim.setup_body(GUID, [("dialledDigits", "2")], [], [], ("1.2.3.4", 5)),
                   called="2001", cause=16)[4:]
    message = q931.parse(raw)
    assert (message.message_type, message.call_ref, message.to_originator) == (sim.SETUP, 0x1234, False)
    assert message.called_number == "2001" and message.cause == 16
    assert q931.serialize(message) == raw
    moved = q931.Q931(message.message_type, 7, True, message.ies)
    assert sim.parse_q931(q931.serialize(moved))["crv"] == 7
    assert q931.parse(q931.serialize(message.with_user_user(b"\x01\x02"))).user_user == b"\x01\x02"


@pytest.mark.parametrize("data, error", [(b"\x09\x02\x00\x01\x05", "discriminator"), (b"\x08\x05\x00\x01\x05", "call ref"),
                                         (b"\x08\x02\x00\x01\x05\x70\x09\x81", "says 9"),
                                         (b"\x08\x02\x00\x01\x05\x7e\x00", "truncated"), (b"\x08\x02", "short")])
def test_q931_errors_name_the_problem(data: bytes, error: str) -> None:
    with pytest.raises(q931.Q931Error, match=error):
        q931.parse(data)


def test_tpkt_framer_reassembles_split_and_joined_messages_and_breaks_on_bad_headers() -> None:
    one, two = q931.tpkt(b"\x08\x02\x00\x01\x05"), q931.tpkt(b"\x08\x02\x00\x02\x07")
    framer = q931.TpktFramer()
    stream = one + two
    got = [framer.feed(stream[i:i + 1]) for i in range(len(stream))]
    assert [m for chunk in got for m in chunk] == [one[4:], two[4:]]
    assert framer.feed(q931.tpkt(b"") + one) == [one[4:]]           # empty TPKT = keep-alive
    bad = q931.TpktFramer(max_bytes=64)
    assert bad.feed(b"\x03\x00\xff\xff") == [] and "length" in (bad.broken or "")
    wrong = q931.TpktFramer()
    wrong.feed(b"\x04\x00\x00\x08")
    assert "version" in (wrong.broken or "")


@pytest.mark.parametrize("choice, frames, codec, ptime", [
    ("g711Ulaw64k", 20, "pcmu", 20), ("g711Alaw64k", 30, "pcma", 30), ("g729AnnexA", 2, "g729", 20),
    ("g729wAnnexB", 4, "g729", 40), ("g7231", 1, "g723", 30), ("g722-64k", 20, "g722", 20)])
def test_olc_codec_and_frames_per_packet(choice: str, frames: int, codec: str, ptime: int) -> None:
    channel = media.channel_of(decode_olc(sim.olc_audio(1, choice, frames, reverse=True, media=("10.0.0.1", 4000),
                                                        rtcp=None)))
    assert (channel.codec, channel.ptime_ms, channel.reverse) == (codec, ptime, True)
    assert channel.media == MediaEndpoint("10.0.0.1", 4000)


def test_t38_and_building_offers_round_trip() -> None:
    t38 = ("data", {"application": ("t38fax", (("udp", 0), {})), "maxBitRate": 144})
    assert media.codec_of_data_type(t38) == ("t38", 20)
    assert media.Channel("t38", 20, False).spec.voice_band_data  # type: ignore[union-attr]
    offer = media.olc(1, "g729", 20, reverse=False, media=MediaEndpoint("10.1.1.1", 5000), control=None)
    channel = media.channel_of(decode_olc(encode_olc(offer)))
    assert (channel.codec, channel.ptime_ms, channel.media) == ("g729", 20, MediaEndpoint("10.1.1.1", 5000))


def test_templated_ras_encoding_equals_pycrate_for_every_sequence_number() -> None:
    import random

    from ryu_apps.signalling.h323.asn1 import _templates, encode_ras_fast
    rng = random.Random(5)
    shapes = [("admissionConfirm", {"bandWidth": bw, "callModel": ("gatekeeperRouted", 0),
                                    "destCallSignalAddress": ("ipAddress", {"ip": b"\x7f\0\0\1", "port": 1720}),
                                    "willRespondToIRR": False}) for bw in (160, 1280, 100000)]
    shapes += [("admissionReject", {"rejectReason": ("resourceUnavailable", 0)}),
               ("gatekeeperConfirm", {"protocolIdentifier": sim.PID, "gatekeeperIdentifier": "gk",
                                      "rasAddress": ("ipAddress", {"ip": b"\x7f\0\0\1", "port": 1719})}),
               ("disengageConfirm", {}), ("requestInProgress", {"delay": 3000})]
    for kind, fields in shapes:
        for seq in [1, 2, 255, 256, 65535] + [rng.randint(1, 65535) for _ in range(20)]:
            value = (kind, {"requestSeqNum": seq, **fields})
            assert encode_ras_fast(value) == encode_ras(value), (kind, seq)
    assert any(t is not None for t in _templates.values())
