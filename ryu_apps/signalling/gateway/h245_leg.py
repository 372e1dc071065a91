"""Calls without fastStart: H.245 tunnelled in H.225.0 on the H.323 leg, late offer on the SIP leg.

One :class:`~..h323.h245.H245Session` per bridge. Its messages ride in ``h245Control`` of
the next H.225.0 message the gateway sends (Setup, Connect, ReleaseComplete) or in a
Facility (``transportedInformation``), or, when the H.323 party does not tunnel and gives
an ``h245Address``, on a TCP connection the gateway opens to it (TPKT, no Q.931); its
events drive :meth:`H245Leg.progress`, the one
place that decides what can be done next, whatever order the messages came in.

H.323 caller (Setup without fastStart, ``h245Tunnelling``) -> SIP callee: the INVITE goes
without SDP (RFC 3261 late offer: the H.323 caller's RTP address is known only from its
OpenLogicalChannelAck, so no honest offer can be built earlier). The SIP callee offers in
its 200; the gateway sends Connect and its TerminalCapabilitySet (the offer's codecs),
opens its channel (the first offered codec the caller can receive), acknowledges the
caller's channel with the SIP callee's address, and when the caller's Ack gives its
address, answers in the ACK (RFC 3264).

SIP caller (INVITE without SDP) -> H.323 callee: Setup without fastStart, tunnelling, our
TerminalCapabilitySet (the codecs the gateway can carry) and MasterSlaveDetermination.
The callee's capabilities choose our channel's codec; its Ack gives its RTP address; after
its Connect the 200 carries an SDP offer of that codec at that address; the ACK's answer
gives the SIP caller's address, with which the callee's own channel is acknowledged.

RFC 4733: when the SIP community's profile says ``dtmf: rfc4733``, telephone-events are
advertised (receiveRTPAudioTelephonyEventCapability <-> ``a=rtpmap:N telephone-event``)
where the other side offers them; userInputIndication <-> INFO is carried as well.
"""

from __future__ import annotations

import logging
import zlib
from random import Random
from typing import TYPE_CHECKING, Any

from ryu_apps.core.calls import MediaEndpoint

from ..h323.h245 import (Capabilities, CapabilitiesReceived, ChannelClosed, ChannelOpened, ChannelRejected,
                         ChannelRequested, H245Session, ModeAnswered, ModeRequested, Output, ProtocolError,
                         SessionEnded, UserInput)
from ..h323.media import OFFER_CHOICES
from ..h323.actions import StreamClose, StreamOpen, StreamSend
from ..h323.q931 import MessageType, TpktFramer, tpkt
from ..h323.ras import PROTOCOL_ID
from ..sip.message import Request, Response
from .bridge import BEARER_NOT_IMPLEMENTED, NORMAL, TIMER_EXPIRY, Bridge, Phase, now_id
from .media_map import MediaError, SdpMedia, build_sdp, read_sdp
from .profile import GENERIC

if TYPE_CHECKING:
    from .interwork import Gateway

log = logging.getLogger(__name__)

#: What the gateway offers an H.323 callee for a SIP caller that has not said (late offer).
LATE_CODECS = (("pcmu", 20), ("pcma", 20), ("g729", 20), ("g722", 20))
TELEPHONE_EVENT_PT = 101


def rtcp_of(media: MediaEndpoint | None) -> MediaEndpoint | None:
    return None if media is None else MediaEndpoint(media.ip, media.port + 1)


class H245Leg:
    """Tunnelled H.245 and the late-offer SIP choreography of every bridge without fastStart."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # -- setting up -------------------------------------------------------------------------
    def session(self, bridge: Bridge) -> H245Session:
        bridge.h245 = H245Session(rng=Random(zlib.crc32(bridge.guid)))
        return bridge.h245

    def rfc4733(self, bridge: Bridge) -> bool:
        community = bridge.callee_community if bridge.h323_caller else bridge.caller_community
        return self.gw.settings.profiles.get(community, GENERIC).dtmf == "rfc4733"

    def late_codecs(self, bridge: Bridge) -> tuple[tuple[str, int], ...]:
        """S->H: what the gateway can offer the H.323 callee (the SIP profile's codecs, if it limits them)."""
        profile = self.gw.settings.profiles.get(bridge.caller_community, GENERIC)
        allowed = [c for c in profile.sdp.codecs if c in OFFER_CHOICES]
        if not allowed:
            return LATE_CODECS
        ptime = profile.sdp.ptime_ms or 20
        return tuple((codec, 30 if codec == "g723" else ptime) for codec in allowed)

    def setup_messages(self, bridge: Bridge, now: float) -> list[bytes]:
        """S->H: the TerminalCapabilitySet and MasterSlaveDetermination to tunnel in the Setup."""
        session = self.session(bridge)
        profile = self.gw.settings.profiles.get(bridge.caller_community, GENERIC)
        event_pt = (profile.sdp.telephone_event_pt or TELEPHONE_EVENT_PT) if self.rfc4733(bridge) else None
        out = session.start(Capabilities(self.late_codecs(bridge), event_pt, t38=True), now)
        self.events(bridge, out, now)
        return self.take(bridge)

    def callee_without_faststart(self, bridge: Bridge, now: float) -> None:
        """S->H, the SIP caller offered: the H.323 callee answered our fastStart Setup with
        H.245 instead (no fastStart accepted; its capabilities tunnelled, or an h245Address).
        The same session as a late offer; our capabilities are the SIP offer's codecs."""
        assert bridge.offer is not None
        session = self.session(bridge)
        te = bridge.sip_payload_types.get("telephone-event", "")
        event_pt = int(te) if te.isdigit() and self.rfc4733(bridge) else None
        self.events(bridge, session.start(Capabilities(bridge.offer.codecs, event_pt), now), now)
        self.gw.count("faststart-refused")

    def caller_setup(self, bridge: Bridge, controls: Any, now: float) -> None:
        """H->S: an H.323 caller's Setup without fastStart: its tunnelled H.245 so far, and our MSD."""
        session = self.session(bridge)
        self.feed(bridge, controls, now, flush=False)
        self.events(bridge, session.determine(now), now)

    def admission_codec(self, bridge: Bridge) -> tuple[str, int]:
        caps = bridge.h245.remote if bridge.h245 is not None else None
        return caps.audio[0] if caps is not None and caps.audio else LATE_CODECS[0]

    # -- H.245 in and out ------------------------------------------------------------------
    def feed(self, bridge: Bridge, controls: Any, now: float, *, flush: bool = True) -> None:
        """The h245Control octet strings of one H.225.0 message from the H.323 leg."""
        session = bridge.h245
        if session is None or not isinstance(controls, list):
            return
        for data in controls:
            if not isinstance(data, (bytes, bytearray)):
                self.gw.count("h245-undecodable")
                continue
            self.events(bridge, session.receive(bytes(data), now), now)
            if bridge.phase is Phase.ENDED:
                return
        self.progress(bridge, now)
        if flush:
            self.flush(bridge)

    def events(self, bridge: Bridge, out: Output, now: float) -> None:
        session = bridge.h245
        assert session is not None
        bridge.h245_queue += out.send
        for event in out.events:
            if bridge.phase is Phase.ENDED:
                return
            if isinstance(event, CapabilitiesReceived):
                self.gw.count("h245-capabilities")
            elif isinstance(event, ChannelRequested) and event.channel.codec == "t38":
                self.gw.t38.their_channel(bridge, session, event.number, now)
            elif isinstance(event, ChannelRequested):
                bridge.their_channels[event.number] = event.channel
            elif isinstance(event, (ChannelOpened, ChannelRejected)) and bridge.t38 is not None and \
                    event.number == bridge.t38.our_number:
                if isinstance(event, ChannelOpened):
                    self.gw.t38.channel_opened(bridge, event.media, now)
                else:
                    self.gw.t38.failed(bridge, f"our T.38 channel refused ({event.cause})", now)
            elif isinstance(event, ModeRequested):
                self.gw.t38.mode_requested(bridge, session, event.sequence, event.mode, now)
            elif isinstance(event, ModeAnswered):
                self.gw.t38.mode_answered(bridge, session, event.accepted, now)
            elif isinstance(event, ChannelOpened) and event.number == bridge.our_channel:
                if event.media is None:
                    self.fail(bridge, "h245: OpenLogicalChannelAck without a media address", now)
                elif bridge.h323_caller:
                    bridge.caller_media = event.media
                    self.gw.attach(bridge)
                else:
                    bridge.callee_media = event.media
                    self.gw.attach(bridge)
            elif isinstance(event, ChannelRejected) and event.number == bridge.our_channel:
                self.fail(bridge, f"h245: our channel refused ({event.cause})", now)
            elif isinstance(event, ChannelClosed):
                bridge.their_channels.pop(event.number, None)
                self.gw.count("h245-channel-closed")
            elif isinstance(event, UserInput):
                self.gw.h323.dtmf_to_sip(bridge, event.digit, event.duration_ms, now)
            elif isinstance(event, SessionEnded):
                self.gw.end(bridge, NORMAL, "h245: EndSessionCommand", now)
            elif isinstance(event, ProtocolError):
                self.gw.count("h245-errors")
                log.debug("H.245 on %s: %s", bridge.call_id, event.reason)

    def connect(self, bridge: Bridge, address: tuple[str, int]) -> None:
        """H.245 on its own TCP connection (the peer gave an h245Address and does not tunnel)."""
        conn = self.gw.new_conn()
        bridge.h245_conn = conn
        self.gw.by_h245[conn] = bridge
        self.gw.framers[conn] = TpktFramer()
        self.gw.count("h245-connections")
        self.gw.emit(StreamOpen(conn, address[0], address[1]))

    def close_connection(self, bridge: Bridge, last: list[bytes]) -> None:
        conn = bridge.h245_conn
        if conn is None:
            return
        for data in last:
            self.gw.emit(StreamSend(conn, tpkt(data)))
        self.gw.emit(StreamClose(conn))
        self.gw.by_h245.pop(conn, None)
        self.gw.framers.pop(conn, None)
        bridge.h245_conn = None

    def flush(self, bridge: Bridge, extra: list[bytes] | None = None) -> None:
        """Send what is queued: on the H.245 connection, or tunnelled in a Facility (when no
        other H.225.0 message carried it)."""
        if extra:
            bridge.h245_queue[:0] = extra
        if bridge.h245_conn is not None and bridge.h245_queue:
            queued, bridge.h245_queue = bridge.h245_queue, []
            for data in queued:
                self.gw.emit(StreamSend(bridge.h245_conn, tpkt(data)))
            return
        if not bridge.h245_queue or not bridge.h323_open or bridge.phase is Phase.ENDED:
            return
        queued, bridge.h245_queue = bridge.h245_queue, []
        body = ("facility", {"protocolIdentifier": PROTOCOL_ID, "reason": ("transportedInformation", 0),
                             "callIdentifier": {"guid": bridge.guid}})
        self.gw.h323.send(bridge.conn, bridge.crv, bridge.h323_caller, MessageType.FACILITY, body, h245=queued)

    def take(self, bridge: Bridge) -> list[bytes]:
        """What to tunnel in the H.225.0 message about to go (nothing: H.245 has its own connection)."""
        if bridge.h245_conn is not None:
            self.flush(bridge)
            return []
        queued, bridge.h245_queue = bridge.h245_queue, []
        return queued

    def ending(self, bridge: Bridge) -> list[bytes]:
        """What to tunnel in the ReleaseComplete: our channels closed, EndSessionCommand."""
        if bridge.h245 is None:
            return []
        self.events(bridge, bridge.h245.end_session(), 0.0)
        return self.take(bridge)

    def fail(self, bridge: Bridge, why: str, now: float) -> None:
        self.gw.count("h245-failed")
        self.reject_answer(bridge)
        self.gw.end(bridge, BEARER_NOT_IMPLEMENTED, why, now)

    # -- the one decision point --------------------------------------------------------------
    def progress(self, bridge: Bridge, now: float) -> None:
        session = bridge.h245
        if session is None or bridge.phase is Phase.ENDED:
            return
        if bridge.h323_caller:
            self.progress_h323_caller(bridge, session, now)
        else:
            self.progress_sip_caller(bridge, session, now)

    def progress_h323_caller(self, bridge: Bridge, session: H245Session, now: float) -> None:
        offer = bridge.sip_offer
        if offer is None or session.remote is None:
            return                                   # no 200 yet, or the caller's capabilities not yet
        offered = [(name, ptime) for name, _, ptime in offer.codecs if name in OFFER_CHOICES]
        if bridge.our_channel is None and bridge.t38 is None:
            codec = next(((n, p) for n, p in offered if n in session.remote.codecs()), None)
            if codec is None:
                self.fail(bridge, "no codec both sides receive", now)
                return
            bridge.codec = codec
            bridge.our_channel, out = session.open_channel(codec[0], codec[1], rtcp_of(offer.receive), now)
            self.events(bridge, out, now)
            if bridge.offer is not None and bridge.offer.codecs[:1] != (codec,):
                self.gw.modify(bridge, codec)
        self.accept_theirs(bridge, session, offer.receive, {n for n, _ in offered}, now)
        if bridge.caller_media is not None and bridge.codec is not None and \
                (bridge.answer_200 is not None or bridge.prack_rseq is not None):
            event_pt = self.event_pt(offer) if self.rfc4733(bridge) and session.remote.telephone_event_pt else None
            codecs = [bridge.codec] + [(c.codec, c.ptime_ms) for c in session.incoming.values()
                                       if c.codec and c.codec != bridge.codec[0]]
            body = build_sdp(bridge.caller_media, codecs, now_id(now), payload_types=bridge.sip_payload_types,
                             telephone_event_pt=event_pt)
            if bridge.answer_200 is not None:
                self.send_ack(bridge, body)
                self.gw.count("late-offer-answered")
            else:
                self.gw.early.answer_in_prack(bridge, body, now)
            bridge.telephone_event_pt = event_pt
            self.gw.disarm(bridge, "h245")
            self.gw.attach(bridge)

    def progress_sip_caller(self, bridge: Bridge, session: H245Session, now: float) -> None:
        offer = bridge.offer if bridge.answering else None        # the SIP caller's offer: we answer
        offered = {c for c, _ in offer.codecs} if offer is not None else None
        if session.remote is not None and bridge.our_channel is None and bridge.t38 is None:
            ours = [c for c, _ in (offer.codecs if offer is not None else self.late_codecs(bridge))]
            codec = next(((n, p) for n, p in session.remote.audio if n in ours), None)
            if codec is None:
                self.fail(bridge, "no codec both sides receive", now)
                return
            bridge.codec = codec
            bridge.our_channel, out = session.open_channel(codec[0], codec[1], None, now)
            self.events(bridge, out, now)
            if bridge.offer is not None and bridge.offer.codecs[:1] != (codec,):
                self.gw.modify(bridge, codec)
        if bridge.caller_media is not None:
            self.accept_theirs(bridge, session, bridge.caller_media, offered, now)
            if offered is None:
                return
        if bridge.callee_media is None or bridge.codec is None or bridge.phase is Phase.CONNECTED:
            return
        if bridge.early_wanted and offered is not None and not bridge.sip_answer:
            self.gw.dialog.respond_invite(bridge, 183, now, with_sdp=False, body=self.sdp_to_caller(bridge, now))
            self.gw.count("early-media-sent")
        if bridge.connect_seen:
            body = self.sdp_to_caller(bridge, now)
            bridge.phase = Phase.CONNECTED
            self.gw.disarm(bridge, "h245", "t303", "no-answer")
            self.gw.dialog.respond_invite(bridge, 200, now, with_sdp=False, body=body)
            self.gw.arm(bridge, "ack", now + 64 * self.gw.settings.t1)
            self.gw.count("late-offer-sent" if offered is None else "answer-sent")

    def sdp_to_caller(self, bridge: Bridge, now: float) -> bytes:
        """S->H: the SDP of our 183/200: an answer to the SIP caller's offer (built once: the
        200 repeats the 183's), or, for a late offer, our offer."""
        if bridge.sip_answer and bridge.answering:
            return bridge.sip_answer
        assert bridge.callee_media is not None and bridge.codec is not None and bridge.h245 is not None
        remote = bridge.h245.remote
        events = remote is not None and remote.telephone_event_pt is not None and self.rfc4733(bridge)
        if bridge.answering:
            te = bridge.sip_payload_types.get("telephone-event", "")
            event_pt = int(te) if events and te.isdigit() else None
            body = build_sdp(bridge.callee_media, [bridge.codec], now_id(now), payload_types=bridge.sip_payload_types,
                             telephone_event_pt=event_pt)
            bridge.sip_answer = body
        else:
            event_pt = remote.telephone_event_pt if events and remote is not None else None
            codecs = [bridge.codec] + [(c.codec, c.ptime_ms) for c in bridge.their_channels.values()
                                       if c.codec and c.codec != bridge.codec[0]]
            body = build_sdp(bridge.callee_media, codecs, now_id(now), telephone_event_pt=event_pt)
        bridge.telephone_event_pt = event_pt
        return body

    def accept_theirs(self, bridge: Bridge, session: H245Session, receive: MediaEndpoint | None,
                      codecs: set[str] | None, now: float) -> None:
        """Acknowledge the H.323 party's channels with where the SIP party receives."""
        if receive is None:
            return
        for number, channel in list(bridge.their_channels.items()):
            del bridge.their_channels[number]
            if codecs is not None and channel.codec not in codecs:
                self.events(bridge, session.reject_channel(number), now)
            else:
                self.events(bridge, session.accept_channel(number, receive, rtcp_of(receive)), now)

    @staticmethod
    def event_pt(offer: SdpMedia) -> int | None:
        pt = next((pt for name, pt, _ in offer.codecs if name == "telephone-event"), None)
        return int(pt) if pt is not None and pt.isdigit() else None

    # -- the SIP side ----------------------------------------------------------------------
    def on_200(self, bridge: Bridge, response: Response, now: float) -> None:
        """H->S: the SIP callee's 200 to our INVITE without SDP: its offer (or, when a reliable
        18x offered and our PRACK answered, nothing new: the call is answered)."""
        if bridge.phase is Phase.CONNECTED:
            if bridge.late_ack is not None:                  # a retransmitted 200: our ACK again
                self.gw.dialog.send(bridge, bridge.late_ack)
            return
        bridge.phase = Phase.CONNECTED                       # a 200: whatever follows, ACK and BYE it
        if bridge.early_answered:                            # offer/answer done in the PRACK (RFC 3262)
            bridge.late_ack = self.gw.dialog.ack(bridge, response)
            self.gw.dialog.send(bridge, bridge.late_ack)
            self.gw.h323.send_to_caller(bridge, MessageType.CONNECT, "connect", None, h245=self.take(bridge))
            self.gw.count("early-media-connected")
            return
        bridge.answer_200 = response
        if bridge.sip_offer is None:
            if not self.offered(bridge, response.body or bridge.early_sdp, now):
                return
        else:                                                # a 200 before our PRACK: answer in the ACK
            bridge.prack_rseq = None
        self.gw.h323.send_to_caller(bridge, MessageType.CONNECT, "connect", None, h245=self.take(bridge))
        self.gw.arm(bridge, "h245", now + self.gw.settings.h245_timeout_s)
        self.progress(bridge, now)
        self.flush(bridge)

    def offered(self, bridge: Bridge, body: bytes, now: float) -> bool:
        """H->S: the SIP callee's offer (in its 200, or a reliable 18x): our TerminalCapabilitySet
        says its codecs. False: no usable offer, the call is ended (cause 65)."""
        try:
            offer = read_sdp(body) if body else None
        except MediaError:
            offer = None
        if offer is None or offer.receive is None or not offer.offer().codecs:
            self.fail(bridge, "sip: no usable offer", now)
            return False
        bridge.sip_offer = offer
        bridge.callee_media = offer.receive
        bridge.sip_payload_types = {name: pt for name, pt, _ in offer.codecs}
        session = bridge.h245
        assert session is not None
        event_pt = self.event_pt(offer) if self.rfc4733(bridge) else None
        self.events(bridge, session.send_capabilities(Capabilities(offer.offer().codecs, event_pt, t38=True), now),
                    now)
        return True

    def send_ack(self, bridge: Bridge, body: bytes) -> None:
        response, bridge.answer_200 = bridge.answer_200, None
        if response is None:
            return
        ack = self.gw.dialog.ack(bridge, response)
        bridge.late_ack = Request("ACK", ack.uri, ack.headers + (("content-type", "application/sdp"),), body)
        self.gw.dialog.send(bridge, bridge.late_ack)

    def reject_answer(self, bridge: Bridge) -> None:
        """H->S: a 200's offer we cannot use still gets an answer in the ACK (every stream
        refused, port 0), then the BYE (RFC 3261 13.2.2.4)."""
        if bridge.answer_200 is None:
            return
        host = MediaEndpoint(self.gw.settings.sip_host, 0)
        codecs = bridge.sip_offer.offer().codecs if bridge.sip_offer is not None else ()
        self.send_ack(bridge, build_sdp(host, codecs or LATE_CODECS[:1], 1))

    def on_ack(self, bridge: Bridge, request: Request, now: float) -> None:
        """S->H: the SIP caller's ACK carries its answer to the offer in our 200."""
        if bridge.caller_media is not None or bridge.h245 is None:
            return
        try:
            answer = read_sdp(request.body) if request.body else None
        except MediaError:
            answer = None
        if answer is None or answer.receive is None or bridge.codec is None or \
                all(name != bridge.codec[0] for name, _, _ in answer.codecs):
            self.fail(bridge, "sip: ACK without a usable answer", now)
            return
        bridge.caller_media = answer.receive
        bridge.sip_payload_types = {name: pt for name, pt, _ in answer.codecs}
        if bridge.telephone_event_pt is not None and self.event_pt(answer) is None:
            bridge.telephone_event_pt = None                  # refused: tell the H.323 side again
            local = bridge.h245.local or Capabilities(self.late_codecs(bridge))
            self.events(bridge, bridge.h245.send_capabilities(
                Capabilities(local.audio, None, local.user_input, local.t38), now), now)
        self.progress(bridge, now)
        self.gw.attach(bridge)
        self.flush(bridge)
        self.gw.count("late-offer-answered")
