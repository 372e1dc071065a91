"""The sans-IO H.245 session: every message both ways, two sessions talking, bad input."""

from __future__ import annotations

import random

import pytest

from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.signalling.h323 import h245
from ryu_apps.signalling.h323.asn1 import decode_h245, encode_h245
from ryu_apps.signalling.h323.h245 import (Capabilities, CapabilitiesAcked, CapabilitiesReceived, ChannelClosed,
                                           ChannelOpened, ChannelRejected, ChannelRequested, H245Session,
                                           MasterSlaveDecided, Output, ProtocolError, SessionEnded, UserInput)

CAPS = Capabilities((("pcmu", 20), ("g729", 20)), telephone_event_pt=101)
RTP_A, RTCP_A = MediaEndpoint("10.0.0.1", 4000), MediaEndpoint("10.0.0.1", 4001)
RTP_B, RTCP_B = MediaEndpoint("10.0.0.2", 5000), MediaEndpoint("10.0.0.2", 5001)


def names(out: Output) -> list[str]:
    return [decode_h245(data)[1][0] for data in out.send]


def deliver(out: Output, to: H245Session, now: float = 0.0) -> Output:
    """Every message of ``out`` into ``to``; what ``to`` answers, merged."""
    merged = Output()
    for data in out.send:
        merged.extend(to.receive(data, now))
    return merged


def pair() -> tuple[H245Session, H245Session]:
    return H245Session(rng=random.Random(1)), H245Session(terminal_type=50, rng=random.Random(2))


def test_capability_exchange_and_master_slave_both_ways() -> None:
    a, b = pair()
    out_a = a.start(CAPS, 0.0)
    assert names(out_a) == ["terminalCapabilitySet", "masterSlaveDetermination"]
    out_b = b.start(Capabilities((("pcma", 20), ("pcmu", 30))), 0.0)
    back_to_a = deliver(out_a, b)
    assert names(back_to_a) == ["terminalCapabilitySetAck", "masterSlaveDeterminationAck"]
    assert CapabilitiesReceived(Capabilities((("pcmu", 20), ("g729", 20)), 101, True)) in back_to_a.events
    assert MasterSlaveDecided(False) in back_to_a.events          # b (terminal 50) is slave to a gateway (60)
    back_to_b = deliver(out_b, a)
    assert CapabilitiesReceived(Capabilities((("pcma", 20), ("pcmu", 30)), None, True)) in back_to_b.events
    assert MasterSlaveDecided(True) in back_to_b.events
    assert deliver(back_to_a, a).events == [CapabilitiesAcked()]   # b's acks: a's TCS acked, decision agrees
    assert deliver(back_to_b, b).events == [CapabilitiesAcked()]
    assert a.master is True and b.master is False and a.remote == b.local and b.remote == a.local
    assert a.next_timer() is None and b.next_timer() is None


def test_equal_terminal_types_decide_by_number_modulo_2_24() -> None:
    a, b = H245Session(rng=random.Random(5)), H245Session(rng=random.Random(6))
    a.number, b.number = 10, 20                        # (20 - 10) mod 2^24 < 2^23: a is master
    answer = deliver(a.determine(0.0), b)
    assert MasterSlaveDecided(False) in answer.events
    assert deliver(answer, a).events == [MasterSlaveDecided(True)]


def test_identical_numbers_are_rejected_and_retried_then_given_up() -> None:
    a, b = H245Session(rng=random.Random(5)), H245Session(rng=random.Random(6))
    b.number = a.number
    out = deliver(a.determine(0.0), b)
    assert names(out)[:2] == ["masterSlaveDeterminationReject", "masterSlaveDetermination"]
    assert b.number != a.number
    msd = encode_h245(("request", ("masterSlaveDetermination", {"terminalType": 60,
                                                                 "statusDeterminationNumber": 7})))
    c = H245Session()
    c.number = 7
    for _ in range(h245.MSD_RETRIES):
        c.receive(msd, 0.0)
        c.number = 7
    last = c.receive(msd, 0.0)
    assert ProtocolError("master/slave determination indeterminate") in last.events
    rejected = H245Session()
    rejected.determine(0.0)
    reject = encode_h245(("response", ("masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)})))
    assert names(rejected.receive(reject, 0.0)) == ["masterSlaveDetermination"]


def test_logical_channels_open_ack_with_addresses_and_close() -> None:
    a, b = pair()
    deliver(b.start(Capabilities((("pcmu", 20),)), 0.0), a)
    a.local = CAPS
    number, out = a.open_channel("pcmu", 20, RTCP_A, 0.0)
    assert names(out) == ["openLogicalChannel"] and a.next_timer() == 10.0
    requested = deliver(out, b)
    assert requested.send == [] and len(requested.events) == 1
    event = requested.events[0]
    assert isinstance(event, ChannelRequested) and event.number == number
    assert (event.channel.codec, event.channel.ptime_ms, event.channel.control) == ("pcmu", 20, RTCP_A)
    ack = b.accept_channel(number, RTP_B, RTCP_B)
    assert names(ack) == ["openLogicalChannelAck"]
    assert deliver(ack, a).events == [ChannelOpened(number, RTP_B, RTCP_B)]
    assert a.next_timer() is None
    close = a.close_channel(number)
    assert names(close) == ["closeLogicalChannel"]
    closed = deliver(close, b)
    assert names(closed) == ["closeLogicalChannelAck"] and closed.events == [ChannelClosed(number, True)]
    assert deliver(closed, a).events == []
    assert b.accept_channel(number, RTP_B, None).events == [ProtocolError(f"no channel {number} to accept")]


def test_channels_refused_unknown_codec_bidirectional_and_peer_reject() -> None:
    a, b = pair()
    b.local = Capabilities((("pcma", 20),))
    _, out = a.open_channel("pcmu", 20, None, 0.0)
    answer = deliver(out, b)                                 # b does not receive PCMU
    assert names(answer) == ["openLogicalChannelReject"]
    assert deliver(answer, a).events == [ChannelRejected(1, "dataTypeNotSupported")]
    both = {"forwardLogicalChannelNumber": 9, "forwardLogicalChannelParameters": {
        "dataType": ("audioData", ("g711Ulaw64k", 20)), "multiplexParameters": (
            "h2250LogicalChannelParameters", {"sessionID": 1})},
        "reverseLogicalChannelParameters": {"dataType": ("audioData", ("g711Ulaw64k", 20))}}
    out = b.receive(encode_h245(("request", ("openLogicalChannel", both))), 0.0)
    assert decode_h245(out.send[0])[1][1]["cause"] == ("unsuitableReverseParameters", 0)


def test_t101_t103_t106_expire_as_errors_and_a_close() -> None:
    a = H245Session(timeout_s=5.0)
    a.start(CAPS, 0.0)
    number, _ = a.open_channel("pcmu", 20, None, 1.0)
    assert a.handle_timer(4.0).events == []
    out = a.handle_timer(6.5)
    assert names(out) == ["masterSlaveDeterminationRelease", "closeLogicalChannel"]
    assert [type(e) for e in out.events] == [ProtocolError, ProtocolError, ChannelRejected]
    assert a.next_timer() is None and number not in a.outgoing


def test_end_session_both_ways_closes_our_channels_once() -> None:
    a, b = pair()
    _, out = a.open_channel("pcmu", 20, None, 0.0)
    deliver(out, b)
    end = a.end_session()
    assert names(end) == ["closeLogicalChannel", "endSessionCommand"]
    assert a.end_session().send == []
    answer = deliver(end, b)
    assert names(answer) == ["closeLogicalChannelAck", "endSessionCommand"]
    assert answer.events[-1] == SessionEnded() and b.ended
    assert deliver(answer, a).events == [SessionEnded()]          # a had already ended: no second command


def test_user_input_both_forms_and_bad_digits() -> None:
    a, b = pair()
    assert deliver(a.user_input("5", 160), b).events == [UserInput("5", 160)]
    alpha = encode_h245(("indication", ("userInput", ("alphanumeric", "#"))))
    assert b.receive(alpha, 0.0).events == [UserInput("#", 100)]
    assert a.user_input("x", 100).events == [ProtocolError("not a DTMF digit: 'x'")]
    other = encode_h245(("indication", ("userInput", ("alphanumeric", "hello"))))
    assert b.receive(other, 0.0).events == []


def test_round_trip_unknown_requests_and_releases() -> None:
    a = H245Session()
    rtd = encode_h245(("request", ("roundTripDelayRequest", {"sequenceNumber": 3})))
    assert decode_h245(a.receive(rtd, 0.0).send[0]) == ("response", ("roundTripDelayResponse",
                                                                       {"sequenceNumber": 3}))
    mode = encode_h245(("request", ("maintenanceLoopRequest", {"type": ("systemLoop", 0)})))
    assert names(a.receive(mode, 0.0)) == ["functionNotSupported"]
    release = encode_h245(("indication", ("masterSlaveDeterminationRelease", {})))
    assert a.receive(release, 0.0).events == [ProtocolError("the peer released master/slave determination")]
    a.start(CAPS, 0.0)
    reject = encode_h245(("response", ("terminalCapabilitySetReject", {"sequenceNumber": 1,
                                                                        "cause": ("unspecified", 0)})))
    assert a.receive(reject, 0.0).events == [ProtocolError("our capabilities were rejected: unspecified")]
    stale = encode_h245(("response", ("terminalCapabilitySetAck", {"sequenceNumber": 9})))
    assert a.receive(stale, 0.0).events == []


def test_request_channel_close_closes_ours() -> None:
    a, b = pair()
    number, out = a.open_channel("pcmu", 20, None, 0.0)
    ask = encode_h245(("request", ("requestChannelClose", {"forwardLogicalChannelNumber": number})))
    answer = a.receive(ask, 0.0)
    assert names(answer) == ["requestChannelCloseAck", "closeLogicalChannel"]
    assert answer.events == [ChannelClosed(number, True)] and not a.outgoing


def test_capabilities_follow_descriptor_order_and_skip_unknown() -> None:
    tcs = {"sequenceNumber": 1, "protocolIdentifier": h245.PROTOCOL_ID, "capabilityTable": [
        {"capabilityTableEntryNumber": 1, "capability": ("receiveAudioCapability", ("g711Alaw64k", 30))},
        {"capabilityTableEntryNumber": 2, "capability": ("receiveAudioCapability", ("g729AnnexA", 2))},
        {"capabilityTableEntryNumber": 3, "capability": ("receiveVideoCapability", ("h261VideoCapability", {
            "qcifMPI": 1, "temporalSpatialTradeOffCapability": False, "maxBitRate": 100,
            "stillImageTransmission": False}))},
        {"capabilityTableEntryNumber": 4, "capability": ("receiveAudioCapability", ("g711Ulaw64k", 20))}],
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": [[2, 1], [3]]}]}
    caps = h245.capabilities_of(tcs)
    assert caps == Capabilities((("g729", 20), ("pcma", 30), ("pcmu", 20)), None, False)
    assert h245.capabilities_of({}) == Capabilities((), None, False)          # an empty TCS: paused


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 40])
def test_garbage_is_a_protocol_error_never_an_exception(data: bytes) -> None:
    out = H245Session().receive(data, 0.0)
    assert out.send == [] and len(out.events) == 1
    assert isinstance(out.events[0], ProtocolError) and out.events[0].reason.startswith("undecodable H.245: ")


def test_bytes_that_happen_to_decode_get_a_real_answer_or_nothing() -> None:
    for data in (b"garbage that is not PER", bytes(range(256))):
        out = H245Session().receive(data, 0.0)
        assert all(decode_h245(message) for message in out.send)


def test_mutated_messages_never_raise() -> None:
    rng = random.Random(245)
    a, b = pair()
    seeds = a.start(CAPS, 0.0).send + [a.open_channel("pcmu", 20, RTCP_A, 0.0)[1].send[0]]
    deliver(Output([seeds[2]]), b)
    seeds += b.accept_channel(1, RTP_B, RTCP_B).send + a.end_session().send + a.user_input("1", 100).send
    for _ in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        session = H245Session()
        session.start(CAPS, 0.0)
        out = session.receive(bytes(data), 0.0)          # must not raise
        assert isinstance(out, Output)
        session.handle_timer(100.0)


def test_well_typed_values_of_a_wrong_shape_are_errors() -> None:
    a = H245Session()
    out = a.handle("request", ("terminalCapabilitySet", {}), 0.0)
    assert out.send == [] and out.events == [ProtocolError(
        "unusable H.245 request: KeyError: 'sequenceNumber'")]
    assert a.handle("request", None, 0.0).send and a.handle("nonsense", 7, 0.0).events == []
    assert a.handle("response", ("openLogicalChannelAck", {"forwardLogicalChannelNumber": "x"}), 0.0).events
    out = a.receive(encode_h245(("request", ("openLogicalChannel", {
        "forwardLogicalChannelNumber": 3, "forwardLogicalChannelParameters": {
            "dataType": ("nullData", 0), "multiplexParameters": ("none", 0)}}))), 0.0)
    assert names(out) == ["openLogicalChannelReject"]
