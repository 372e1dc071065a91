"""The admission channel's framing and codec (``--workers``): every message survives a round
trip in any chunking; truncated input waits, garbage is a CodecError (never another
exception), an impossible length a FrameError."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel,
                                     SignallingProtocol)
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.signalling.call_control import Admit, AttachMedia, Modify, Release
from ryu_apps.signalling.sip.channel_codec import (MAX_FRAME, ChannelMessage, CodecError, Ended, FrameDecoder,
                                                   FrameError, Hello, JobReply, JobRequest, Restore, decode,
                                                   encode, frame)
from ryu_apps.signalling.sip.control_jobs import AdmitCall, CallAdmission, ControlFailed, SaveDialog

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
small = st.integers(min_value=0, max_value=2 ** 31)
media = st.builds(MediaSpec, codec=st.sampled_from(["pcmu", "pcma", "g729", "g722", "opus"]),
                  ptime_ms=st.integers(10, 120), explicit_kbps=st.none() | st.integers(1, 10_000),
                  voice_band_data=st.booleans(), ip_version=st.sampled_from([4, 6]),
                  rtcp_bps=st.none() | st.integers(0, 100_000))
levels = st.sampled_from(list(ServiceLevel))
endpoints = st.builds(MediaEndpoint, text, st.integers(0, 65535))
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | text,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
dialogs = st.dictionaries(text, json_values, max_size=6)
jobs = st.one_of(
    st.builds(AdmitCall, text, st.none() | text, st.none() | text, st.none() | text, st.none() | text, media, levels),
    st.builds(lambda *a: Admit(AdmissionRequest(*a)), text, text, text, media, levels,
              st.sampled_from(list(SignallingProtocol))),
    st.builds(Modify, text, media),
    st.builds(AttachMedia, text, endpoints, endpoints),
    st.builds(Release, text, text),
    st.builds(SaveDialog, text, dialogs))
decisions = st.one_of(
    st.builds(Admitted, text, text, small, st.lists(text, max_size=3).map(tuple), small),
    st.builds(Rejected, text, st.sampled_from(list(RejectReason)), text))
results = st.one_of(st.none(), decisions, st.builds(ControlFailed, text),
                    st.builds(CallAdmission, st.none() | text, st.none() | text, st.none() | decisions))
messages: st.SearchStrategy[ChannelMessage] = st.one_of(
    st.builds(Hello, small, small), st.builds(JobRequest, small, jobs), st.builds(JobReply, small, results),
    st.builds(Restore, st.lists(dialogs, max_size=3).map(tuple)),
    st.builds(Ended, text, st.none() | small, text))


@settings(max_examples=300)
@given(messages)
def test_every_message_round_trips(message: ChannelMessage) -> None:
    frames = FrameDecoder().feed(encode(message))
    assert len(frames) == 1
    assert decode(frames[0]) == message


@settings(max_examples=100)
@given(st.lists(messages, min_size=1, max_size=8), st.lists(st.integers(1, 64), min_size=1, max_size=30))
def test_messages_survive_any_chunking_in_order(batch: list[ChannelMessage], cuts: list[int]) -> None:
    stream = b"".join(encode(m) for m in batch)
    decoder = FrameDecoder()
    got: list[ChannelMessage] = []
    position, index = 0, 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        got += [decode(f) for f in decoder.feed(stream[position:position + size])]
        position += size
        index += 1
    assert got == batch and decoder.pending == 0


@given(messages, st.data())
def test_a_truncated_frame_waits_for_the_rest(message: ChannelMessage, data: st.DataObject) -> None:
    encoded = encode(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    decoder = FrameDecoder()
    assert decoder.feed(encoded[:cut]) == []
    assert decoder.pending == cut
    assert [decode(f) for f in decoder.feed(encoded[cut:])] == [message]


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_payload_is_a_codec_error_only(payload: bytes) -> None:
    try:
        decode(payload)
    except CodecError:
        pass


@settings(max_examples=300)
@given(json_values)
def test_json_of_the_wrong_shape_is_a_codec_error_only(value: Any) -> None:
    try:
        decode(json.dumps(value).encode())
    except CodecError:
        pass


@pytest.mark.parametrize("body", [
    ["job", 1, ["admit-call", "c", None, None, None, None, {"codec": "pcmu"}, 99]],      # no such level
    ["job", 1, ["admit-call", "c", None, None, None, None, {"ptime_ms": 20}, 2]],       # media without codec
    ["job", 1, ["attach", "c", ["10.0.0.1"], ["10.0.0.2", 4000]]],
    ["job", True, ["release", "c", "bye"]],
    ["done", 1, ["rejected", "c", "no-such-reason", ""]],
    ["done", 1, ["admitted", "c", "a-b", "91", [], 1]],
    ["hello", 0], ["restore", [1]], ["ended", "c", "1", "x"], ["shout", 1], [], {"job": 1}, "job",
])
def test_known_mistakes_are_codec_errors(body: Any) -> None:
    with pytest.raises(CodecError):
        decode(json.dumps(body).encode())


def test_an_impossible_length_breaks_the_stream() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(struct.pack(">I", MAX_FRAME + 1) + b"x")


def test_a_bad_frame_between_good_ones_is_only_that_frame() -> None:
    good = JobRequest(7, Release("c", "bye"))
    frames = FrameDecoder().feed(encode(good) + frame(b"\xff\xfe not json") + encode(good))
    assert len(frames) == 3
    assert decode(frames[0]) == good and decode(frames[2]) == good
    with pytest.raises(CodecError):
        decode(frames[1])
