"""An H.323 endpoint simulator for tests and benchmarks.

Built directly on pycrate's H.225.0/H.245 types with its own Q.931/TPKT code, NOT on the
gatekeeper's modules (so a bug there cannot hide itself here). The one thing shared is
the pycrate aligned-PER workaround (``per_fix``), a patch to the library that tshark
checks independently on both sides' packets.

``Phone`` registers on the gatekeeper's RAS port, places calls (ARQ, Setup with
fastStart on TCP to the address the ACF names) and answers them (ARQ answerCall,
Alerting + Connect with the accepted fastStart channel); it answers the gatekeeper's IRQ,
DRQ and URQ. Without fastStart (``fast_start=False``) it speaks H.245 tunnelled in
H.225.0 (:class:`TunnelledH245`: capabilities, MSD, one audio channel each way, DTMF). Messages are values (pycrate dicts) so tests can also feed them to the
sans-IO core without sockets.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ryu_apps.signalling.h323 import per_fix

PID = (0, 0, 8, 2250, 0, 4)
SETUP, CALL_PROCEEDING, ALERTING, CONNECT, RELEASE_COMPLETE, FACILITY = 0x05, 0x02, 0x01, 0x07, 0x5A, 0x62
PROGRESS = 0x03


def _types() -> tuple[Any, Any, Any, Any]:
    per_fix.install()
    from pycrate_asn1dir import H225, H245
    m, control = H225.H323_MESSAGES, H245.MULTIMEDIA_SYSTEM_CONTROL
    return m.RasMessage, m.H323_UserInformation, control.OpenLogicalChannel, control.MultimediaSystemControlMessage


KINDS = ("ras", "uu", "olc", "h245")


def enc(kind: str, value: Any) -> bytes:
    with per_fix.LOCK:
        asn = dict(zip(KINDS, _types()))[kind]
        asn.set_val(value)
        return bytes(asn.to_aper())


def dec(kind: str, data: bytes) -> Any:
    with per_fix.LOCK:
        asn = dict(zip(KINDS, _types()))[kind]
        asn.from_aper(data)
        return asn.get_val()


def taddr(host: str, port: int) -> tuple[str, dict[str, Any]]:
    return "ipAddress", {"ip": socket.inet_aton(host), "port": port}


def h245addr(host: str, port: int) -> tuple[str, Any]:
    return "unicastAddress", ("iPAddress", {"network": socket.inet_aton(host), "tsapIdentifier": port})


# --- RAS messages --------------------------------------------------------------------------

def grq(seq: int, ras: tuple[str, int], gatekeeper_id: str | None = None) -> tuple[str, dict[str, Any]]:
    fields = {"requestSeqNum": seq, "protocolIdentifier": PID, "rasAddress": taddr(*ras),
              "endpointType": {"terminal": {}, "mc": False, "undefinedNode": False}}
    if gatekeeper_id:
        fields["gatekeeperIdentifier"] = gatekeeper_id
    return "gatekeeperRequest", fields


def rrq(seq: int, ras: tuple[str, int], signal: tuple[str, int], aliases: list[tuple[str, str]],
        ttl: int | None = None, keep_alive_id: str | None = None) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "requestSeqNum": seq, "protocolIdentifier": PID, "discoveryComplete": False,
        "callSignalAddress": [taddr(*signal)], "rasAddress": [taddr(*ras)],
        "terminalType": {"terminal": {}, "mc": False, "undefinedNode": False},
        "endpointVendor": {"vendor": {"t35CountryCode": 9, "t35Extension": 0, "manufacturerCode": 61}},
        "keepAlive": keep_alive_id is not None}
    if aliases:
        fields["terminalAlias"] = aliases
    if ttl is not None:
        fields["timeToLive"] = ttl
    if keep_alive_id is not None:
        fields["endpointIdentifier"] = keep_alive_id
    return "registrationRequest", fields


def arq(seq: int, endpoint_id: str, guid: bytes, destination: list[tuple[str, str]] | None, bandwidth: int = 1280,
        answer: bool = False, crv: int = 1, src: list[tuple[str, str]] | None = None) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "requestSeqNum": seq, "callType": ("pointToPoint", 0), "endpointIdentifier": endpoint_id,
        "srcInfo": src or [("h323-ID", "sim")], "bandWidth": bandwidth, "callReferenceValue": crv,
        "conferenceID": guid, "activeMC": False, "answerCall": answer, "callIdentifier": {"guid": guid}}
    if destination:
        fields["destinationInfo"] = destination
    return "admissionRequest", fields


def brq(seq: int, endpoint_id: str, guid: bytes, bandwidth: int) -> tuple[str, dict[str, Any]]:
    return "bandwidthRequest", {"requestSeqNum": seq, "endpointIdentifier": endpoint_id, "conferenceID": guid,
                                "callReferenceValue": 1, "bandWidth": bandwidth, "callIdentifier": {"guid": guid}}


def drq(seq: int, endpoint_id: str, guid: bytes) -> tuple[str, dict[str, Any]]:
    return "disengageRequest", {"requestSeqNum": seq, "endpointIdentifier": endpoint_id, "conferenceID": guid,
                                "callReferenceValue": 1, "disengageReason": ("normalDrop", 0),
                                "callIdentifier": {"guid": guid}}


def urq(seq: int, endpoint_id: str, signal: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    return "unregistrationRequest", {"requestSeqNum": seq, "callSignalAddress": [taddr(*signal)],
                                     "endpointIdentifier": endpoint_id}


def lrq(seq: int, destination: list[tuple[str, str]], reply: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    return "locationRequest", {"requestSeqNum": seq, "destinationInfo": destination, "replyAddress": taddr(*reply)}


def irr(seq: int, endpoint_id: str, ras: tuple[str, int], signal: tuple[str, int], guids: list[bytes],
        need_response: bool = False) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "requestSeqNum": seq, "endpointType": {"terminal": {}, "mc": False, "undefinedNode": False},
        "endpointIdentifier": endpoint_id, "rasAddress": taddr(*ras), "callSignalAddress": [taddr(*signal)],
        "perCallInfo": [{"callReferenceValue": 1, "conferenceID": g, "originator": True, "h245": {},
                         "callSignalling": {}, "callType": ("pointToPoint", 0), "bandWidth": 1280,
                         "callModel": ("gatekeeperRouted", 0), "callIdentifier": {"guid": g}} for g in guids]}
    if need_response:
        fields["needResponse"] = True
    return "infoRequestResponse", fields


# --- Q.931 / TPKT (independent of the gatekeeper's q931 module) ----------------------------

def olc_audio(number: int, codec: str, frames: int, *, reverse: bool, media: tuple[str, int] | None,
              rtcp: tuple[str, int] | None) -> bytes:
    h2250: dict[str, Any] = {"sessionID": 1}
    if media:
        h2250["mediaChannel"] = h245addr(*media)
    if rtcp:
        h2250["mediaControlChannel"] = h245addr(*rtcp)
    audio = (codec, {"maxAl-sduAudioFrames": frames, "silenceSuppression": False}) if codec == "g7231" \
        else (codec, frames)
    params = {"dataType": ("audioData", audio), "multiplexParameters": ("h2250LogicalChannelParameters", h2250)}
    if reverse:
        value = {"forwardLogicalChannelNumber": number,
                 "forwardLogicalChannelParameters": {"dataType": ("nullData", 0), "multiplexParameters": ("none", 0)},
                 "reverseLogicalChannelParameters": params}
    else:
        value = {"forwardLogicalChannelNumber": number, "forwardLogicalChannelParameters": params}
    return enc("olc", value)


def h245_olc(number: int, codec: str, frames: int, rtcp: tuple[str, int]) -> bytes:
    """A tunnelled H.245 request: OpenLogicalChannel (the sender's transmit channel)."""
    olc = dec("olc", olc_audio(number, codec, frames, reverse=False, media=None, rtcp=rtcp))
    return enc("h245", ("request", ("openLogicalChannel", olc)))


def h245_olc_ack(number: int, media: tuple[str, int], rtcp: tuple[str, int]) -> bytes:
    """A tunnelled H.245 response: OpenLogicalChannelAck with the acker's receive address."""
    return enc("h245", ("response", ("openLogicalChannelAck", {
        "forwardLogicalChannelNumber": number,
        "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
            "mediaChannel": h245addr(*media), "mediaControlChannel": h245addr(*rtcp)})})))


H245_PID = (0, 0, 8, 245, 0, 13)
T38_FAX = {"t38FaxProtocol": ("udp", 0), "t38FaxProfile": {
    "fillBitRemoval": False, "transcodingJBIG": False, "transcodingMMR": False, "version": 0,
    "t38FaxRateManagement": ("transferredTCF", 0),
    "t38FaxUdpOptions": {"t38FaxMaxBuffer": 200, "t38FaxMaxDatagram": 72, "t38FaxUdpEC": ("t38UDPRedundancy", 0)}}}
_H2250_CAP = {"maximumAudioDelayJitter": 60, **{k: {"multicastCapability": False, "multiUniCastConference": False,
                                                    "mediaDistributionCapability": [dict.fromkeys((
                                                        "centralizedControl", "distributedControl",
                                                        "centralizedAudio", "distributedAudio", "centralizedVideo",
                                                        "distributedVideo"), False)]}
                                                for k in ("receiveMultipointCapability",
                                                          "transmitMultipointCapability",
                                                          "receiveAndTransmitMultipointCapability")},
              "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
              "rtcpVideoControlCapability": False, "mediaPacketizationCapability": {"h261aVideoPacketization": False}}


def h245_tcs(seq: int, codecs: list[tuple[str, int]], te_pt: int | None = None, t38: bool = False) -> bytes:
    """A tunnelled TerminalCapabilitySet: receive audio codecs (H.245 names, frames), T.38, RFC 2833
    events, DTMF."""
    table = [{"capabilityTableEntryNumber": i + 1, "capability": ("receiveAudioCapability", (name, frames))}
             for i, (name, frames) in enumerate(codecs)]
    if t38:
        table.append({"capabilityTableEntryNumber": len(table) + 1, "capability": (
            "receiveDataApplicationCapability", {"application": ("t38fax", T38_FAX), "maxBitRate": 144})})
    alternatives = [[e["capabilityTableEntryNumber"] for e in table]]
    if te_pt is not None:
        table.append({"capabilityTableEntryNumber": len(table) + 1, "capability": (
            "receiveRTPAudioTelephonyEventCapability", {"dynamicRTPPayloadType": te_pt, "audioTelephoneEvent": "0-15"})})
        alternatives.append([len(table)])
    table.append({"capabilityTableEntryNumber": len(table) + 1,
                  "capability": ("receiveAndTransmitUserInputCapability", ("dtmf", 0))})
    alternatives.append([len(table)])
    return enc("h245", ("request", ("terminalCapabilitySet", {
        "sequenceNumber": seq, "protocolIdentifier": H245_PID, "multiplexCapability": ("h2250Capability", _H2250_CAP),
        "capabilityTable": table, "capabilityDescriptors": [{"capabilityDescriptorNumber": 0,
                                                             "simultaneousCapabilities": alternatives}]})))


def h245_msd(number: int, terminal_type: int = 50) -> bytes:
    return enc("h245", ("request", ("masterSlaveDetermination", {"terminalType": terminal_type,
                                                                   "statusDeterminationNumber": number})))


@dataclass
class TunnelledH245:
    """The simulator's own H.245 for a call without fastStart (tunnelled in H.225.0): it
    sends its capabilities and MSD, acknowledges the peer's, opens one audio channel (of
    ``codec``) once the peer's capabilities allow it and acknowledges the peer's channel
    with its RTP address. ``seen`` lists every H.245 message name received."""

    rtp: tuple[str, int]
    codec: str = "g711Ulaw64k"
    frames: int = 20
    te_pt: int | None = None
    seen: list[str] = field(default_factory=list)
    peer_codecs: list[str] = field(default_factory=list)
    peer_te_pt: int | None = None
    peer_media: tuple[str, int] | None = None          # from the peer's OpenLogicalChannelAck
    peer_channel: dict[str, Any] | None = None         # the peer's OpenLogicalChannel
    digits: list[str] = field(default_factory=list)
    opened: bool = False
    t38: bool = True                                   # accepts a requestMode for T.38 (fax)
    peer_t38_media: tuple[str, int] | None = None      # from the peer's Ack of our T.38 channel
    peer_t38_channel: dict[str, Any] | None = None
    audio_again: bool = False                          # asked back to audio after T.38

    @property
    def t38_rtp(self) -> tuple[str, int]:
        return self.rtp[0], self.rtp[1] + 10

    def request_t38(self) -> bytes:
        """Our requestMode: T.38 fax (the peer should switch its channel)."""
        return enc("h245", ("request", ("requestMode", {"sequenceNumber": 7, "requestedModes": [
            [{"type": ("dataMode", {"application": ("t38fax", T38_FAX), "bitRate": 144})}]]})))

    def back_to_audio(self) -> list[bytes]:
        """Close our T.38 channel, open audio again (channel 3)."""
        self.audio_again = True
        close = enc("h245", ("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": 2,
                                                                  "source": ("user", 0)})))
        return [close, h245_olc(3, self.codec, self.frames, (self.rtp[0], self.rtp[1] + 1))]

    def switch_to_t38(self) -> list[bytes]:
        """Close our audio channel, open a T.38 one."""
        close = enc("h245", ("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": 1,
                                                                  "source": ("user", 0)})))
        t38 = {"forwardLogicalChannelNumber": 2, "forwardLogicalChannelParameters": {
            "dataType": ("data", {"application": ("t38fax", T38_FAX), "maxBitRate": 144}),
            "multiplexParameters": ("h2250LogicalChannelParameters", {"sessionID": 3})}}
        return [close, enc("h245", ("request", ("openLogicalChannel", t38)))]

    def opening(self) -> list[bytes]:
        return [h245_tcs(1, [(self.codec, self.frames)], self.te_pt, self.t38), h245_msd(4242)]

    def on(self, controls: list[bytes] | None) -> list[bytes]:
        """The answers to a message's h245Control."""
        out: list[bytes] = []
        for data in controls or []:
            kind, (name, body) = dec("h245", data)
            self.seen.append(name)
            if name == "terminalCapabilitySet":
                out.append(enc("h245", ("response", ("terminalCapabilitySetAck",
                                                     {"sequenceNumber": body["sequenceNumber"]}))))
                for entry in body.get("capabilityTable", []):
                    cap = entry["capability"]
                    if cap[0] == "receiveAudioCapability":
                        self.peer_codecs.append(cap[1][0])
                    elif cap[0] == "receiveRTPAudioTelephonyEventCapability":
                        self.peer_te_pt = cap[1]["dynamicRTPPayloadType"]
                if not self.opened and self.codec in self.peer_codecs:
                    self.opened = True
                    out.append(h245_olc(1, self.codec, self.frames, (self.rtp[0], self.rtp[1] + 1)))
            elif name == "masterSlaveDetermination":
                mine = body["terminalType"] > 50     # the larger terminal type is master
                out.append(enc("h245", ("response", ("masterSlaveDeterminationAck",
                                                     {"decision": ("master" if mine else "slave", 0)}))))
            elif name == "openLogicalChannel" and body["forwardLogicalChannelParameters"]["dataType"][0] == "data":
                self.peer_t38_channel = body
                out.append(h245_olc_ack(body["forwardLogicalChannelNumber"], self.t38_rtp, (self.rtp[0], 1)))
            elif name == "openLogicalChannel":
                self.peer_channel = body
                out.append(h245_olc_ack(body["forwardLogicalChannelNumber"], self.rtp, (self.rtp[0], self.rtp[1] + 1)))
            elif name == "openLogicalChannelAck":
                address = body["forwardMultiplexAckParameters"][1]["mediaChannel"][1][1]
                media = (socket.inet_ntoa(address["network"]), address["tsapIdentifier"])
                if body["forwardLogicalChannelNumber"] == 2:
                    self.peer_t38_media = media
                else:
                    self.peer_media = media
            elif name == "requestMode" and body["requestedModes"][0][0]["type"][0] == "audioMode":
                out.append(enc("h245", ("response", ("requestModeAck", {
                    "sequenceNumber": body["sequenceNumber"], "response": ("willTransmitMostPreferredMode", 0)}))))
                out += self.back_to_audio()
            elif name == "requestMode":
                answer = "requestModeAck" if self.t38 else "requestModeReject"
                fields = {"response": ("willTransmitMostPreferredMode", 0)} if self.t38 else \
                    {"cause": ("modeUnavailable", 0)}
                out.append(enc("h245", ("response", (answer, {"sequenceNumber": body["sequenceNumber"], **fields}))))
                if self.t38:
                    out += self.switch_to_t38()
            elif name == "requestModeAck":
                out += self.switch_to_t38()
            elif name == "userInput":
                self.digits.append(body[1]["signalType"] if body[0] == "signal" else body[1])
        return out


def facility(crv: int, from_destination: bool, guid: bytes, h245: list[bytes]) -> bytes:
    """A Facility tunnelling H.245 (transportedInformation)."""
    return q931(FACILITY, crv, from_destination, ("facility", {"protocolIdentifier": PID,
                                                               "reason": ("transportedInformation", 0),
                                                               "callIdentifier": {"guid": guid}}),
                extra_pdu={"h245Tunnelling": True, "h245Control": h245})


def controls_of(message: dict[str, Any]) -> list[bytes]:
    pdu = (message.get("uu") or {}).get("h323-uu-pdu", {})
    return list(pdu.get("h245Control", []))


def tpkt(payload: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, len(payload) + 4) + payload


def untpkt(data: bytes) -> list[bytes]:
    """The TPKT payloads in ``data`` (whole ones)."""
    out = []
    while len(data) >= 4:
        length = struct.unpack("!H", data[2:4])[0]
        out.append(data[4:length])
        data = data[length:]
    return out


def serve_h245(sock: socket.socket, h245: TunnelledH245, stop: Any, timeout: float = 5.0) -> None:
    """H.245 on its own TCP connection (no tunnelling): answer each message until
    ``stop()`` is true or the connection ends."""
    sock.settimeout(timeout)
    for data in h245.opening():
        sock.sendall(tpkt(data))
    while not stop():
        header = _read(sock, 4)
        if header is None:
            return
        body = _read(sock, struct.unpack("!H", header[2:4])[0] - 4)
        if body is None:
            return
        for answer in h245.on([body]):
            sock.sendall(tpkt(answer))


def answer_tunnelled(sock: socket.socket, setup: dict[str, Any], rtp: tuple[str, int], codec: str = "g711Ulaw64k",
                     frames: int = 20) -> TunnelledH245:
    """Answer a Setup without fastStart: Alerting with the answers to its H.245 and our
    capabilities and MSD, then Connect; :func:`converse` runs the rest."""
    guid = body_of(setup)[1]["callIdentifier"]["guid"]
    h245 = TunnelledH245(rtp, codec, frames)
    pdu = {"h245Tunnelling": True, "h245Control": h245.on(controls_of(setup)) + h245.opening()}
    sock.sendall(q931(ALERTING, setup["crv"], True, answer_body("alerting", guid), extra_pdu=pdu))
    sock.sendall(q931(CONNECT, setup["crv"], True, answer_body("connect", guid), extra_pdu={"h245Tunnelling": True}))
    return h245


def converse(sock: socket.socket, crv: int, from_destination: bool, guid: bytes, h245: TunnelledH245,
             stop: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Read messages, answering their tunnelled H.245 in a Facility, until ``stop(seen)`` is
    true or the stream ends (or is silent for ``timeout``). Returns the messages read."""
    seen: list[dict[str, Any]] = []
    while not stop(seen):
        message = read_tpkt(sock, timeout)
        if message is None:
            break
        seen.append(message)
        answers = h245.on(controls_of(message))
        if answers:
            sock.sendall(facility(crv, from_destination, guid, answers))
    return seen


def q931(message_type: int, crv: int, from_destination: bool, uu_body: tuple[str, dict[str, Any]] | None,
         called: str | None = None, cause: int | None = None, extra_pdu: dict[str, Any] | None = None,
         progress: int | None = None) -> bytes:
    ref = (crv & 0x7FFF) | (0x8000 if from_destination else 0)
    out = bytearray((0x08, 2)) + ref.to_bytes(2, "big") + bytes((message_type,))
    if message_type == SETUP:
        out += bytes((0x04, 3, 0x80, 0x90, 0xA3))
    if cause is not None:
        out += bytes((0x08, 2, 0x80, 0x80 | cause))
    if progress is not None:
        out += bytes((0x1E, 2, 0x81, 0x80 | progress))
    if called:
        out += bytes((0x70, len(called) + 1, 0x81)) + called.encode()
    if uu_body is not None:
        pdu: dict[str, Any] = {"h323-message-body": uu_body, **(extra_pdu or {})}
        uu = b"\x05" + enc("uu", {"h323-uu-pdu": pdu})
        out += b"\x7e" + len(uu).to_bytes(2, "big") + uu
    return struct.pack("!BBH", 3, 0, len(out) + 4) + bytes(out)


def parse_q931(payload: bytes) -> dict[str, Any]:
    crl = payload[1]
    ref = int.from_bytes(payload[2:2 + crl], "big")
    at = 2 + crl
    result: dict[str, Any] = {"type": payload[at], "crv": ref & 0x7FFF, "from_destination": bool(ref & 0x8000),
                              "cause": None, "uu": None, "progress": None}
    at += 1
    while at < len(payload):
        ident = payload[at]
        if ident & 0x80:
            at += 1
            continue
        if ident == 0x7E:
            length = int.from_bytes(payload[at + 1:at + 3], "big")
            result["uu"] = dec("uu", payload[at + 4:at + 3 + length])
            at += 3 + length
            continue
        length = payload[at + 1]
        if ident == 0x08:
            result["cause"] = payload[at + 3] & 0x7F
        elif ident == 0x1E and length >= 2:                # progress indicator: its description
            result["progress"] = payload[at + 3] & 0x7F
        at += 2 + length
    return result


def read_tpkt(sock: socket.socket, timeout: float = 5.0) -> dict[str, Any] | None:
    """One message from the stream, or None when the peer closed it."""
    sock.settimeout(timeout)
    header = _read(sock, 4)
    if header is None:
        return None
    body = _read(sock, struct.unpack("!H", header[2:4])[0] - 4)
    return None if body is None else parse_q931(body)


def _read(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except (ConnectionResetError, socket.timeout):
            return None
        if not chunk:
            return None
        data += chunk
    return data


def body_of(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result: tuple[str, dict[str, Any]] = message["uu"]["h323-uu-pdu"]["h323-message-body"]
    return result


def setup_body(guid: bytes, destination: list[tuple[str, str]], source: list[tuple[str, str]],
               fast_start: list[bytes], signal: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "protocolIdentifier": PID, "sourceAddress": source, "sourceInfo": {"terminal": {}, "mc": False,
                                                                          "undefinedNode": False},
        "destinationAddress": destination, "activeMC": False, "conferenceID": guid,
        "conferenceGoal": ("create", 0), "callType": ("pointToPoint", 0),
        "sourceCallSignalAddress": taddr(*signal), "callIdentifier": {"guid": guid}, "mediaWaitForConnect": False,
        "canOverlapSend": False, "multipleCalls": False, "maintainConnection": False}
    if fast_start:
        fields["fastStart"] = fast_start
    return "setup", fields


def answer_body(kind: str, guid: bytes, fast_start: list[bytes] | None = None) -> tuple[str, dict[str, Any]]:
    fields: dict[str, Any] = {"protocolIdentifier": PID, "destinationInfo": {"terminal": {}, "mc": False,
                                                                           "undefinedNode": False},
                              "callIdentifier": {"guid": guid}}
    if kind == "connect":
        fields["conferenceID"] = guid
    if fast_start:
        fields["fastStart"] = fast_start
    return kind, fields


def release_body(guid: bytes) -> tuple[str, dict[str, Any]]:
    return "releaseComplete", {"protocolIdentifier": PID, "callIdentifier": {"guid": guid}}


def new_guid() -> bytes:
    return os.urandom(16)


# --- a phone on real sockets ---------------------------------------------------------------

@dataclass
class Phone:
    """One endpoint: a RAS socket and a call-signalling listener on loopback."""

    alias: str
    gk_ras: tuple[str, int]
    host: str = "127.0.0.1"
    rtp_port: int = 40000
    alias_kind: str = "dialledDigits"          # or h323-ID (user@domain), url-ID, email-ID
    media_host: str | None = None              # where its RTP is (default: host)
    seq: int = 0
    endpoint_id: str | None = None
    ras: socket.socket = field(init=False)
    listener: socket.socket = field(init=False)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ras = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.ras.bind((self.host, 0))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((self.host, 0))
        self.listener.listen(8)

    @property
    def ras_address(self) -> tuple[str, int]:
        return self.ras.getsockname()[:2]

    @property
    def signal_address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def close(self) -> None:
        self.ras.close()
        self.listener.close()

    def request(self, message: tuple[str, dict[str, Any]], timeout: float = 3.0) -> tuple[str, dict[str, Any]]:
        """Send a RAS request; return the answer with its requestSeqNum (RIP is waited through)."""
        seq = message[1]["requestSeqNum"]
        self.ras.sendto(enc("ras", message), self.gk_ras)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {message[0]} #{seq}")
            self.ras.settimeout(left)
            data, _ = self.ras.recvfrom(65535)
            answer = dec("ras", data)
            if answer[1].get("requestSeqNum") == seq and answer[0] != "requestInProgress" \
                    and not answer[0].endswith("Request"):
                return answer
            self.received.append(answer)
            self._serve(answer)

    def poll(self, timeout: float = 0.5) -> list[tuple[str, dict[str, Any]]]:
        """Take what the gatekeeper sent on its own (IRQ, DRQ, URQ) and answer it."""
        got = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.ras.settimeout(left)
            try:
                data, _ = self.ras.recvfrom(65535)
            except socket.timeout:
                break
            answer = dec("ras", data)
            got.append(answer)
            self._serve(answer)
        return got

    def _serve(self, message: tuple[str, dict[str, Any]]) -> None:
        seq = message[1].get("requestSeqNum", 0)
        if message[0] == "disengageRequest":
            self.ras.sendto(enc("ras", ("disengageConfirm", {"requestSeqNum": seq})), self.gk_ras)
        elif message[0] == "unregistrationRequest":
            self.ras.sendto(enc("ras", ("unregistrationConfirm", {"requestSeqNum": seq})), self.gk_ras)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def register(self, ttl: int | None = None) -> tuple[str, dict[str, Any]]:
        answer = self.request(rrq(self.next_seq(), self.ras_address, self.signal_address,
                                  [(self.alias_kind, self.alias)], ttl))
        if answer[0] == "registrationConfirm":
            self.endpoint_id = answer[1]["endpointIdentifier"]
        return answer

    @property
    def rtp_host(self) -> str:
        return self.media_host or self.host

    def place(self, number: str, codec: str = "g711Ulaw64k", frames: int = 20,
              bandwidth: int = 1280, kind: str = "dialledDigits", fast_start: bool = True) -> "OutgoingCall":
        """ARQ, then Setup with fastStart, or (``fast_start=False``) without it, H.245
        tunnelled: our capabilities and MSD in the Setup; :meth:`OutgoingCall.converse` runs it."""
        guid = new_guid()
        assert self.endpoint_id is not None
        answer = self.request(arq(self.next_seq(), self.endpoint_id, guid, [(kind, number)], bandwidth))
        call = OutgoingCall(self, guid, answer)
        if answer[0] != "admissionConfirm":
            return call
        address = answer[1]["destCallSignalAddress"][1]
        sock = socket.create_connection((socket.inet_ntoa(address["ip"]), address["port"]), timeout=3)
        call.sock = sock
        rtp = self.rtp_host
        fast = [olc_audio(1, codec, frames, reverse=False, media=None, rtcp=(rtp, self.rtp_port + 1)),
                olc_audio(2, codec, frames, reverse=True, media=(rtp, self.rtp_port), rtcp=(rtp, self.rtp_port + 1))]
        extra = None
        if not fast_start:
            fast = []
            call.h245 = TunnelledH245((rtp, self.rtp_port), codec, frames)
            extra = {"h245Tunnelling": True, "h245Control": call.h245.opening()}
        sock.sendall(q931(SETUP, call.crv, False, setup_body(guid, [(kind, number)], [(self.alias_kind, self.alias)],
                                                             fast, self.signal_address),
                          called=number if kind == "dialledDigits" else None, extra_pdu=extra))
        return call

    def accept(self, timeout: float = 5.0) -> "IncomingCall":
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        setup = read_tpkt(sock, timeout)
        assert setup is not None and setup["type"] == SETUP, setup
        return IncomingCall(self, sock, setup)


@dataclass
class OutgoingCall:
    phone: Phone
    guid: bytes
    admission: tuple[str, dict[str, Any]]
    crv: int = field(default_factory=lambda: int.from_bytes(os.urandom(2), "big") & 0x7FFF or 1)
    sock: socket.socket | None = None
    h245: TunnelledH245 | None = None                 # no fastStart: the call's tunnelled H.245

    def converse(self, stop: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        assert self.sock is not None and self.h245 is not None
        return converse(self.sock, self.crv, False, self.guid, self.h245, stop, timeout)

    def read(self, timeout: float = 5.0) -> dict[str, Any] | None:
        assert self.sock is not None
        return read_tpkt(self.sock, timeout)

    def until(self, message_type: int, timeout: float = 5.0) -> dict[str, Any] | None:
        """Read until a message of ``message_type`` (or the stream ends)."""
        while True:
            message = self.read(timeout)
            if message is None or message["type"] == message_type:
                return message

    def hang_up(self) -> None:
        assert self.sock is not None
        self.sock.sendall(q931(RELEASE_COMPLETE, self.crv, False, release_body(self.guid), cause=16))

    def disengage(self) -> tuple[str, dict[str, Any]]:
        assert self.phone.endpoint_id is not None
        return self.phone.request(drq(self.phone.next_seq(), self.phone.endpoint_id, self.guid))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@dataclass
class IncomingCall:
    phone: Phone
    sock: socket.socket
    setup: dict[str, Any]
    h245: TunnelledH245 | None = None

    def converse(self, stop: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        assert self.h245 is not None
        return converse(self.sock, self.setup["crv"], True, self.guid, self.h245, stop, timeout)

    @property
    def guid(self) -> bytes:
        guid: bytes = body_of(self.setup)[1]["callIdentifier"]["guid"]
        return guid

    def admit(self, bandwidth: int = 1280) -> tuple[str, dict[str, Any]]:
        assert self.phone.endpoint_id is not None
        return self.phone.request(arq(self.phone.next_seq(), self.phone.endpoint_id, self.guid, None, bandwidth,
                                      answer=True, crv=self.setup["crv"]))

    def answer(self, codec: str = "g711Ulaw64k", frames: int = 20, alert: bool = True,
               fast_start: bool = True) -> None:
        """Alerting, then Connect with the accepted fastStart channels (our RTP address); or,
        ``fast_start=False``, H.245 tunnelled: the answers to the Setup's H.245 and our
        capabilities and MSD in the Alerting (:meth:`converse` runs the rest)."""
        host, port = self.phone.rtp_host, self.phone.rtp_port
        if not fast_start:
            self.h245 = answer_tunnelled(self.sock, self.setup, (host, port), codec, frames)
            return
        fast = [olc_audio(1, codec, frames, reverse=False, media=(host, port), rtcp=(host, port + 1)),
                olc_audio(2, codec, frames, reverse=True, media=None, rtcp=(host, port + 1))]
        if alert:
            self.sock.sendall(q931(ALERTING, self.setup["crv"], True, answer_body("alerting", self.guid)))
        self.sock.sendall(q931(CONNECT, self.setup["crv"], True, answer_body("connect", self.guid, fast)))

    def hang_up(self) -> None:
        self.sock.sendall(q931(RELEASE_COMPLETE, self.setup["crv"], True, release_body(self.guid), cause=16))

    def read(self, timeout: float = 5.0) -> dict[str, Any] | None:
        return read_tpkt(self.sock, timeout)

    def until(self, message_type: int, timeout: float = 5.0) -> dict[str, Any] | None:
        while True:
            message = self.read(timeout)
            if message is None or message["type"] == message_type:
                return message

    def close(self) -> None:
        self.sock.close()
