"""A sans-IO H.245 session (ITU-T H.245) for a call whose H.245 is tunnelled in H.225.0.

Bytes (one MultimediaSystemControlMessage each, as carried in ``h245Control``) and ``now``
go in; :class:`Output` comes out: the messages to send (to tunnel in the next H.225.0
message or a Facility) and :data:`Event`\\ s for the owner (capabilities known, a channel
asked for, where the peer receives, digits, the session ended, errors). Nothing here
raises: undecodable or unexpected input is a :class:`ProtocolError` event.

Procedures (the subset a media gateway needs, unidirectional audio channels):

* capability exchange: our TerminalCapabilitySet (T101), the peer's acknowledged
  (TerminalCapabilitySetAck) and read into :class:`Capabilities`;
* master/slave determination (T106, up to :data:`MSD_RETRIES` on identical numbers); the
  rule of H.245 C.2: the larger terminal type is master, else the status determination
  numbers compared modulo 2**24;
* logical channels: our OpenLogicalChannel (T103) for what our side transmits, its Ack
  giving where the peer receives; the peer's OpenLogicalChannel answered by the owner
  (:meth:`H245Session.accept_channel` with where our side receives, or reject);
  CloseLogicalChannel both ways, requestChannelClose;
* requestMode (T.38 fax over UDP, or back to audio) both ways, with Ack/Reject;
* EndSessionCommand both ways; userInputIndication (alphanumeric, signal) both ways;
  roundTripDelayRequest answered; any other request gets functionNotSupported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Union

from ryu_apps.core.calls import MediaEndpoint

from .asn1 import Asn1Error, decode_h245, encode_h245
from .media import (OFFER_CHOICES, T38_DATA_TYPE, T38_FAX, Channel, audio_capability, channel_of, codec_of_data_type, endpoint_of,
                    h245_address, olc)

PROTOCOL_ID = (0, 0, 8, 245, 0, 13)
TERMINAL_GATEWAY = 60                   # H.245 Table C.1: terminal 50, gateway 60, MC 190 ...
MSD_RETRIES = 3
DIGITS = "0123456789*#ABCD"
_NO_MEDIA_DISTRIBUTION = {"centralizedControl": False, "distributedControl": False, "centralizedAudio": False,
                          "distributedAudio": False, "centralizedVideo": False, "distributedVideo": False}
_MULTIPOINT = {"multicastCapability": False, "multiUniCastConference": False,
               "mediaDistributionCapability": [_NO_MEDIA_DISTRIBUTION]}
H2250_CAPABILITY = {"maximumAudioDelayJitter": 60, "receiveMultipointCapability": _MULTIPOINT,
                    "transmitMultipointCapability": _MULTIPOINT,
                    "receiveAndTransmitMultipointCapability": _MULTIPOINT,
                    "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
                    "rtcpVideoControlCapability": False,
                    "mediaPacketizationCapability": {"h261aVideoPacketization": False}}


@dataclass(frozen=True)
class Capabilities:
    """What one side receives: audio codecs (policy name, packet time) in preference order,
    RFC 4733 telephone-events on a payload type, DTMF as userInputIndication."""

    audio: tuple[tuple[str, int], ...] = ()
    telephone_event_pt: int | None = None
    user_input: bool = True
    t38: bool = False                               # T.38 fax over UDP (receiveDataApplicationCapability)

    def codecs(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.audio)


@dataclass(frozen=True)
class CapabilitiesReceived:
    capabilities: Capabilities


@dataclass(frozen=True)
class CapabilitiesAcked:
    pass


@dataclass(frozen=True)
class MasterSlaveDecided:
    master: bool


@dataclass(frozen=True)
class ChannelRequested:
    """The peer asks to open channel ``number`` (what it will transmit): answer it with
    :meth:`H245Session.accept_channel` or :meth:`H245Session.reject_channel`."""

    number: int
    channel: Channel


@dataclass(frozen=True)
class ChannelOpened:
    """The peer acknowledged our channel ``number``: it receives at ``media``."""

    number: int
    media: MediaEndpoint | None
    control: MediaEndpoint | None


@dataclass(frozen=True)
class ChannelRejected:
    number: int
    cause: str


@dataclass(frozen=True)
class ChannelClosed:
    number: int
    by_peer: bool                   # True: the peer closed its own channel (or asked us to close ours)


@dataclass(frozen=True)
class ModeRequested:
    """The peer asks us to transmit ``mode`` ("t38" or "audio"): answer with
    :meth:`H245Session.answer_mode`."""

    sequence: int
    mode: str


@dataclass(frozen=True)
class ModeAnswered:
    """The peer's answer to our requestMode."""

    accepted: bool


@dataclass(frozen=True)
class UserInput:
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class SessionEnded:
    pass


@dataclass(frozen=True)
class ProtocolError:
    """Input that could not be used (undecodable, unexpected, refused, a timer expired).
    The session goes on; the owner decides whether the call can."""

    reason: str


Event = Union[CapabilitiesReceived, CapabilitiesAcked, MasterSlaveDecided, ChannelRequested, ChannelOpened,
              ChannelRejected, ChannelClosed, ModeRequested, ModeAnswered, UserInput, SessionEnded, ProtocolError]


@dataclass
class Output:
    send: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: Output) -> Output:
        self.send += other.send
        self.events += other.events
        return self


@dataclass
class _OutChannel:
    codec: str
    ptime_ms: int
    deadline: float | None            # T103 while unacknowledged
    open: bool = False


def user_input(kind: str, value: Any) -> tuple[str | None, int]:
    """(digit, duration ms) of a userInputIndication (alphanumeric or signal), or (None, 0)."""
    if kind != "indication" or not isinstance(value, tuple) or value[0] != "userInput":
        return None, 0
    choice = value[1]
    if not isinstance(choice, tuple) or len(choice) != 2:
        return None, 0
    if choice[0] == "alphanumeric" and isinstance(choice[1], str) and choice[1][:1].upper() in DIGITS:
        return choice[1][:1].upper(), 100
    if choice[0] == "signal" and isinstance(choice[1], dict):
        digit = str(choice[1].get("signalType", ""))[:1].upper()
        duration = choice[1].get("duration", 100)
        if digit and digit in DIGITS:
            return digit, duration if isinstance(duration, int) and 1 <= duration <= 65535 else 100
    return None, 0


def user_input_message(digit: str, duration_ms: int) -> bytes:
    """A userInputIndication ``signal`` (digit and duration) to tunnel."""
    return encode_h245(("indication", ("userInput", ("signal", {"signalType": digit,
                                                                 "duration": max(1, min(duration_ms, 65535))}))))


def capabilities_of(tcs: dict[str, Any]) -> Capabilities:
    """A TerminalCapabilitySet -> Capabilities: receive audio codecs in the order the
    descriptors' alternative sets list them (then the table's), telephone-events, DTMF."""
    table: dict[int, Any] = {}
    for entry in tcs.get("capabilityTable") or []:
        if isinstance(entry, dict) and isinstance(entry.get("capabilityTableEntryNumber"), int):
            table[entry["capabilityTableEntryNumber"]] = entry.get("capability")
    order: list[int] = []
    for descriptor in tcs.get("capabilityDescriptors") or []:
        for alternatives in (descriptor.get("simultaneousCapabilities") or []) if isinstance(descriptor, dict) else []:
            order += [n for n in alternatives if isinstance(n, int) and n not in order]
    order += [n for n in table if n not in order]
    audio: list[tuple[str, int]] = []
    event_pt, uii, t38 = None, False, False
    for number in order:
        capability = table.get(number)
        if not isinstance(capability, tuple) or len(capability) != 2:
            continue
        kind, value = capability
        if kind in ("receiveAudioCapability", "receiveAndTransmitAudioCapability"):
            codec, ptime = codec_of_data_type(("audioData", value))
            if codec is not None and codec in OFFER_CHOICES and all(c != codec for c, _ in audio):
                audio.append((codec, ptime))
        elif kind == "receiveRTPAudioTelephonyEventCapability" and isinstance(value, dict):
            pt = value.get("dynamicRTPPayloadType")
            event_pt = pt if isinstance(pt, int) else None
        elif kind in ("receiveUserInputCapability", "receiveAndTransmitUserInputCapability"):
            uii = True
        elif kind in ("receiveDataApplicationCapability", "receiveAndTransmitDataApplicationCapability"):
            t38 = t38 or codec_of_data_type(("data", value))[0] == "t38"
    return Capabilities(tuple(audio), event_pt, uii, t38)


def capability_set(sequence: int, capabilities: Capabilities) -> dict[str, Any]:
    """Capabilities -> a TerminalCapabilitySet (audio, then telephone-events, then DTMF)."""
    entries: list[dict[str, Any]] = []
    audio: list[int] = []
    for codec, ptime in capabilities.audio:
        if codec in OFFER_CHOICES:
            entries.append({"capabilityTableEntryNumber": len(entries) + 1,
                            "capability": ("receiveAudioCapability", audio_capability(codec, ptime))})
            audio.append(len(entries))
    if capabilities.t38:
        entries.append({"capabilityTableEntryNumber": len(entries) + 1,
                        "capability": ("receiveDataApplicationCapability", T38_DATA_TYPE[1])})
        audio.append(len(entries))                  # an alternative to audio (the fax replaces the voice)
    alternatives = [audio] if audio else []
    if capabilities.telephone_event_pt is not None:
        entries.append({"capabilityTableEntryNumber": len(entries) + 1, "capability": (
            "receiveRTPAudioTelephonyEventCapability",
            {"dynamicRTPPayloadType": capabilities.telephone_event_pt, "audioTelephoneEvent": "0-15"})})
        alternatives.append([len(entries)])
    if capabilities.user_input:
        entries.append({"capabilityTableEntryNumber": len(entries) + 1,
                        "capability": ("receiveAndTransmitUserInputCapability", ("dtmf", 0))})
        entries.append({"capabilityTableEntryNumber": len(entries) + 1,
                        "capability": ("receiveAndTransmitUserInputCapability", ("basicString", 0))})
        alternatives.append([len(entries) - 1, len(entries)])
    value: dict[str, Any] = {"sequenceNumber": sequence % 256, "protocolIdentifier": PROTOCOL_ID,
                             "multiplexCapability": ("h2250Capability", H2250_CAPABILITY)}
    if entries:
        value["capabilityTable"] = entries
        value["capabilityDescriptors"] = [{"capabilityDescriptorNumber": 0,
                                           "simultaneousCapabilities": alternatives}]
    return value


class H245Session:
    """One call's H.245 (see the module doc). Every entry point returns an :class:`Output`."""

    def __init__(self, *, terminal_type: int = TERMINAL_GATEWAY, rng: random.Random | None = None,
                 timeout_s: float = 10.0) -> None:
        self.terminal_type = terminal_type
        self._rng = rng or random.Random()
        self.number = self._rng.randrange(1 << 24)          # status determination number
        self.timeout_s = timeout_s
        self.local: Capabilities | None = None
        self.remote: Capabilities | None = None
        self.master: bool | None = None
        self.ended = False                                  # the peer's EndSessionCommand, or ours
        self._tcs_sequence = 0
        self._tcs_deadline: float | None = None
        self._msd_deadline: float | None = None
        self._msd_retries = 0
        self._next_channel = 1
        self._mode_sequence = 0
        self._mode_deadline: float | None = None
        self.outgoing: dict[int, _OutChannel] = {}
        self.incoming: dict[int, Channel] = {}             # the peer's channels, accepted or asked for
        self.accepted: set[int] = set()

    # -- what the owner asks ------------------------------------------------------------
    def start(self, capabilities: Capabilities, now: float) -> Output:
        """Our TerminalCapabilitySet and MasterSlaveDetermination."""
        return self.send_capabilities(capabilities, now).extend(self.determine(now))

    def send_capabilities(self, capabilities: Capabilities, now: float) -> Output:
        self.local = capabilities
        self._tcs_sequence += 1
        self._tcs_deadline = now + self.timeout_s
        return self._out(("request", ("terminalCapabilitySet", capability_set(self._tcs_sequence, capabilities))))

    def determine(self, now: float) -> Output:
        self._msd_deadline = now + self.timeout_s
        return self._out(("request", ("masterSlaveDetermination", {
            "terminalType": self.terminal_type, "statusDeterminationNumber": self.number})))

    def open_channel(self, codec: str, ptime_ms: int, control: MediaEndpoint | None, now: float,
                     session_id: int = 1) -> tuple[int, Output]:
        """Open our transmit channel (forward, ``codec``; ``control``: where our RTCP is)."""
        number = self._next_channel
        self._next_channel = self._next_channel % 65535 + 1
        value = olc(number, codec, ptime_ms, reverse=False, media=None, control=control, session_id=session_id)
        self.outgoing[number] = _OutChannel(codec, ptime_ms, now + self.timeout_s)
        return number, self._out(("request", ("openLogicalChannel", value)))

    def request_mode(self, mode: str, now: float) -> Output:
        """Ask the peer to transmit ``mode``: "t38" (T.38 fax over UDP) or "audio" (back to voice)."""
        self._mode_sequence = self._mode_sequence % 255 + 1
        self._mode_deadline = now + self.timeout_s
        element = {"type": ("dataMode", {"application": ("t38fax", T38_FAX), "bitRate": 144})} if mode == "t38" \
            else {"type": ("audioMode", ("g711Ulaw64k", 0))}
        return self._out(("request", ("requestMode", {"sequenceNumber": self._mode_sequence,
                                                       "requestedModes": [[element]]})))

    def answer_mode(self, sequence: int, accept: bool) -> Output:
        if accept:
            return self._out(("response", ("requestModeAck", {"sequenceNumber": sequence,
                                                               "response": ("willTransmitMostPreferredMode", 0)})))
        return self._out(("response", ("requestModeReject", {"sequenceNumber": sequence,
                                                              "cause": ("modeUnavailable", 0)})))

    def accept_channel(self, number: int, media: MediaEndpoint, control: MediaEndpoint | None) -> Output:
        """Acknowledge the peer's channel ``number``: our side receives it at ``media``."""
        channel = self.incoming.get(number)
        if channel is None:
            return Output(events=[ProtocolError(f"no channel {number} to accept")])
        self.accepted.add(number)
        ack: dict[str, Any] = {"sessionID": channel.session_id or 1, "mediaChannel": h245_address(media)}
        if control is not None:
            ack["mediaControlChannel"] = h245_address(control)
        return self._out(("response", ("openLogicalChannelAck", {
            "forwardLogicalChannelNumber": number,
            "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", ack)})))

    def reject_channel(self, number: int, cause: str = "dataTypeNotSupported") -> Output:
        self.incoming.pop(number, None)
        return self._out(("response", ("openLogicalChannelReject", {"forwardLogicalChannelNumber": number,
                                                                     "cause": (cause, 0)})))

    def close_channel(self, number: int) -> Output:
        if self.outgoing.pop(number, None) is None:
            return Output()
        return self._out(("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": number,
                                                               "source": ("user", 0)})))

    def end_session(self) -> Output:
        """Close our channels and send EndSessionCommand (once)."""
        if self.ended:
            return Output()
        out = Output()
        for number in list(self.outgoing):
            out.extend(self.close_channel(number))
        self.ended = True
        self._tcs_deadline = self._msd_deadline = None
        return out.extend(self._out(("command", ("endSessionCommand", ("disconnect", 0)))))

    def user_input(self, digit: str, duration_ms: int) -> Output:
        if len(digit) != 1 or digit.upper() not in DIGITS:
            return Output(events=[ProtocolError(f"not a DTMF digit: {digit[:8]!r}")])
        return Output([user_input_message(digit.upper(), duration_ms)])

    def next_timer(self) -> float | None:
        deadlines = [d for d in (self._tcs_deadline, self._msd_deadline, self._mode_deadline) if d is not None]
        deadlines += [c.deadline for c in self.outgoing.values() if c.deadline is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> Output:
        out = Output()
        if self._tcs_deadline is not None and self._tcs_deadline <= now:
            self._tcs_deadline = None
            out.events.append(ProtocolError("T101: no answer to our TerminalCapabilitySet"))
        if self._msd_deadline is not None and self._msd_deadline <= now:
            self._msd_deadline = None
            out.extend(self._out(("indication", ("masterSlaveDeterminationRelease", {}))))
            out.events.append(ProtocolError("T106: no answer to our MasterSlaveDetermination"))
        if self._mode_deadline is not None and self._mode_deadline <= now:
            self._mode_deadline = None
            out.extend(self._out(("indication", ("requestModeRelease", {}))))
            out.events.append(ModeAnswered(False))
        for number, channel in list(self.outgoing.items()):
            if channel.deadline is not None and channel.deadline <= now:
                del self.outgoing[number]
                out.extend(self._out(("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": number,
                                                                          "source": ("lcse", 0)}))))
                out.events.append(ChannelRejected(number, "T103: no answer to our OpenLogicalChannel"))
        return out

    # -- what the peer sent --------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> Output:
        try:
            kind, value = decode_h245(bytes(data))
        except (Asn1Error, TypeError, ValueError) as error:
            return Output(events=[ProtocolError(f"undecodable H.245: {error}")])
        return self.handle(kind, value, now)

    def handle(self, kind: str, value: Any, now: float) -> Output:
        """One decoded MultimediaSystemControlMessage (pycrate's value: ``(kind, (name, body))``)."""
        try:
            return self._dispatch(kind, value, now)
        except Exception as error:  # noqa: BLE001 - a value of an unexpected shape: never raised to the owner
            return Output(events=[ProtocolError(f"unusable H.245 {kind}: {type(error).__name__}: {error}")])

    def _dispatch(self, kind: str, value: Any, now: float) -> Output:
        name, body = value if isinstance(value, tuple) and len(value) == 2 else ("", {})
        body = body if isinstance(body, dict) else {}
        if kind == "request":
            handler = _REQUESTS.get(name)
            if handler is None:
                return self._out(("indication", ("functionNotSupported", {"cause": ("unknownFunction", 0)})))
            return handler(self, body, now)
        if kind == "response":
            response = _RESPONSES.get(name)
            return response(self, body, now) if response is not None else Output()
        if kind == "command":
            if name == "endSessionCommand":
                out = Output() if self.ended else self.end_session()
                out.events.append(SessionEnded())
                return out
            return Output()
        digit, duration = user_input(kind, value)
        if digit is not None:
            return Output(events=[UserInput(digit, duration)])
        if name == "masterSlaveDeterminationRelease":
            self._msd_deadline = None
            return Output(events=[ProtocolError("the peer released master/slave determination")])
        if name == "terminalCapabilitySetRelease":
            return Output(events=[ProtocolError("the peer released its capability exchange")])
        return Output()

    def _on_tcs(self, body: dict[str, Any], now: float) -> Output:
        sequence = body["sequenceNumber"]
        self.remote = capabilities_of(body)
        out = self._out(("response", ("terminalCapabilitySetAck", {"sequenceNumber": sequence})))
        out.events.append(CapabilitiesReceived(self.remote))
        return out

    def _on_msd(self, body: dict[str, Any], now: float) -> Output:
        theirs, number = int(body["terminalType"]), int(body["statusDeterminationNumber"])
        if theirs != self.terminal_type:
            master = theirs < self.terminal_type
        else:
            difference = (number - self.number) % (1 << 24)
            if difference in (0, 1 << 23):
                return self._indeterminate(now)
            master = difference < (1 << 23)
        out = self._out(("response", ("masterSlaveDeterminationAck", {
            "decision": ("slave" if master else "master", 0)})))
        return out.extend(self._decided(master))

    def _indeterminate(self, now: float) -> Output:
        out = self._out(("response", ("masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)})))
        self._msd_retries += 1
        if self._msd_retries > MSD_RETRIES:
            self._msd_deadline = None
            out.events.append(ProtocolError("master/slave determination indeterminate"))
            return out
        self.number = self._rng.randrange(1 << 24)
        return out.extend(self.determine(now))

    def _decided(self, master: bool) -> Output:
        self._msd_deadline = None
        if self.master is None:
            self.master = master
            return Output(events=[MasterSlaveDecided(master)])
        if self.master != master:
            return Output(events=[ProtocolError("inconsistent master/slave decision")])
        return Output()

    def _on_olc(self, body: dict[str, Any], now: float) -> Output:
        number = int(body["forwardLogicalChannelNumber"])
        if "reverseLogicalChannelParameters" in body:
            return self.reject_channel(number, "unsuitableReverseParameters")
        channel = channel_of(body)
        if channel.codec is None or (channel.codec not in OFFER_CHOICES and channel.codec != "t38"):
            return self.reject_channel(number, "dataTypeNotSupported")
        if self.local is not None and self.local.audio and channel.codec not in self.local.codecs() and \
                not (channel.codec == "t38" and self.local.t38):
            return self.reject_channel(number, "dataTypeNotSupported")
        self.incoming[number] = channel
        self.accepted.discard(number)
        return Output(events=[ChannelRequested(number, channel)])

    def _on_clc(self, body: dict[str, Any], now: float) -> Output:
        number = int(body["forwardLogicalChannelNumber"])
        known = self.incoming.pop(number, None) is not None
        self.accepted.discard(number)
        out = self._out(("response", ("closeLogicalChannelAck", {"forwardLogicalChannelNumber": number})))
        if known:
            out.events.append(ChannelClosed(number, True))
        return out

    def _on_request_close(self, body: dict[str, Any], now: float) -> Output:
        number = int(body["forwardLogicalChannelNumber"])
        out = self._out(("response", ("requestChannelCloseAck", {"forwardLogicalChannelNumber": number})))
        if number in self.outgoing:
            out.extend(self.close_channel(number))
            out.events.append(ChannelClosed(number, True))
        return out

    def _on_round_trip(self, body: dict[str, Any], now: float) -> Output:
        return self._out(("response", ("roundTripDelayResponse", {"sequenceNumber": body["sequenceNumber"]})))

    def _on_request_mode(self, body: dict[str, Any], now: float) -> Output:
        sequence = int(body["sequenceNumber"])
        first = (body.get("requestedModes") or [[{}]])[0]
        kind = first[0].get("type", ("", None)) if first else ("", None)
        mode = "audio" if kind[0] == "audioMode" else "t38" if kind[0] == "dataMode" and \
            codec_of_data_type(("data", kind[1]))[0] == "t38" else ""
        if not mode:
            return self.answer_mode(sequence, False)
        return Output(events=[ModeRequested(sequence, mode)])

    def _on_mode_ack(self, body: dict[str, Any], now: float) -> Output:
        if self._mode_deadline is None or body["sequenceNumber"] != self._mode_sequence:
            return Output()
        self._mode_deadline = None
        return Output(events=[ModeAnswered(True)])

    def _on_mode_reject(self, body: dict[str, Any], now: float) -> Output:
        if self._mode_deadline is None or body["sequenceNumber"] != self._mode_sequence:
            return Output()
        self._mode_deadline = None
        return Output(events=[ModeAnswered(False)])

    def _on_tcs_ack(self, body: dict[str, Any], now: float) -> Output:
        if body["sequenceNumber"] != self._tcs_sequence % 256 or self._tcs_deadline is None:
            return Output()
        self._tcs_deadline = None
        return Output(events=[CapabilitiesAcked()])

    def _on_tcs_reject(self, body: dict[str, Any], now: float) -> Output:
        self._tcs_deadline = None
        cause = body.get("cause")
        return Output(events=[ProtocolError(f"our capabilities were rejected: {cause[0] if cause else '?'}")])

    def _on_msd_ack(self, body: dict[str, Any], now: float) -> Output:
        return self._decided(body["decision"][0] == "master")

    def _on_msd_reject(self, body: dict[str, Any], now: float) -> Output:
        self._msd_retries += 1
        if self._msd_retries > MSD_RETRIES:
            self._msd_deadline = None
            return Output(events=[ProtocolError("master/slave determination rejected")])
        self.number = self._rng.randrange(1 << 24)
        return self.determine(now)

    def _on_olc_ack(self, body: dict[str, Any], now: float) -> Output:
        number = int(body["forwardLogicalChannelNumber"])
        channel = self.outgoing.get(number)
        if channel is None or channel.open:
            return Output()
        channel.open, channel.deadline = True, None
        params = body.get("forwardMultiplexAckParameters")
        ack = params[1] if isinstance(params, tuple) and params[0] == "h2250LogicalChannelAckParameters" else {}
        media = endpoint_of(ack.get("mediaChannel")) if "mediaChannel" in ack else None
        control = endpoint_of(ack.get("mediaControlChannel")) if "mediaControlChannel" in ack else None
        return Output(events=[ChannelOpened(number, media, control)])

    def _on_olc_reject(self, body: dict[str, Any], now: float) -> Output:
        number = int(body["forwardLogicalChannelNumber"])
        if self.outgoing.pop(number, None) is None:
            return Output()
        cause = body.get("cause")
        return Output(events=[ChannelRejected(number, cause[0] if isinstance(cause, tuple) else "unspecified")])

    def _on_clc_ack(self, body: dict[str, Any], now: float) -> Output:
        return Output()

    def _out(self, message: tuple[str, Any]) -> Output:
        try:
            return Output([encode_h245(message)])
        except Asn1Error as error:
            return Output(events=[ProtocolError(str(error))])


_REQUESTS = {"terminalCapabilitySet": H245Session._on_tcs, "masterSlaveDetermination": H245Session._on_msd,
             "openLogicalChannel": H245Session._on_olc, "closeLogicalChannel": H245Session._on_clc,
             "requestChannelClose": H245Session._on_request_close,
             "roundTripDelayRequest": H245Session._on_round_trip, "requestMode": H245Session._on_request_mode}
_RESPONSES = {"terminalCapabilitySetAck": H245Session._on_tcs_ack,
              "terminalCapabilitySetReject": H245Session._on_tcs_reject,
              "masterSlaveDeterminationAck": H245Session._on_msd_ack,
              "masterSlaveDeterminationReject": H245Session._on_msd_reject,
              "openLogicalChannelAck": H245Session._on_olc_ack,
              "openLogicalChannelReject": H245Session._on_olc_reject,
              "closeLogicalChannelAck": H245Session._on_clc_ack, "requestModeAck": H245Session._on_mode_ack,
              "requestModeReject": H245Session._on_mode_reject}
