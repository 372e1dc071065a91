"""T.38 fax switch-over on calls with H.245 (no fastStart): SIP re-INVITE ``m=image udptl t38``
<-> H.245 requestMode (T.38) and a T.38 logical channel each way.

The gateway carries signalling only: the fax (UDPTL) flows end to end, and the call's one
allocation is refined to T.38 (``modify``) and its flows moved to the T.38 addresses
(``attach_media``).

SIP party first (its re-INVITE offers T.38): requestMode to the H.323 party; on its Ack
the gateway closes its audio channel and opens a T.38 one; the H.323 party's
OpenLogicalChannelAck gives where it receives T.38, and its own T.38 channel is acked with
the re-INVITE's address; the 200 answers with the H.323 party's address. A refusal or no
answer in ``h245_timeout_s``: 488 (``Reason: Q.850;cause=65``) and the call goes on in audio.

H.323 party first (its requestMode asks for T.38): the gateway acks it, closes its audio
channel, opens a T.38 one, and with the address of the Ack sends a re-INVITE offering
``m=image``; the 200's answer gives where the SIP party receives, with which the H.323
party's T.38 channel is acked. A SIP refusal puts the H.323 leg back on audio: our T.38
channel closed, its T.38 channel refused, requestMode audio, our audio channel reopened.

Calls with fastStart have no H.245 session: their T.38 re-INVITE stays a 488.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from ryu_apps.core.calls import MediaEndpoint

from ..h323.h245 import H245Session
from ..sip.errors import ParseError
from ..sip.message import Request, Response, build_response, serialize
from ..sip.sdp import parse_sdp
from ..sip.transaction import Peer, Send
from .bridge import BEARER_NOT_IMPLEMENTED, Bridge, Phase, T38State, now_id

if TYPE_CHECKING:
    from .interwork import Gateway

log = logging.getLogger(__name__)

T38_ATTRIBUTES = ("a=T38FaxVersion:0", "a=T38MaxBitRate:14400", "a=T38FaxRateManagement:transferredTCF",
                  "a=T38FaxMaxBuffer:200", "a=T38FaxMaxDatagram:72", "a=T38FaxUdpEC:t38UDPRedundancy")


def t38_offer(body: bytes) -> tuple[MediaEndpoint | None, tuple[str, ...]] | None:
    """An SDP with an active ``m=image udptl t38``: (its address, every m= line's kind), else None."""
    try:
        session = parse_sdp(body)
    except ParseError:
        return None
    kinds = tuple(m.kind for m in session.media)
    for media in session.media:
        if media.kind == "image" and media.proto.lower() == "udptl" and "t38" in media.formats and media.port:
            address = media.connection or session.connection
            try:
                ipaddress.ip_address(address or "")
            except ValueError:
                return None, kinds
            return MediaEndpoint(address or "", media.port), kinds
    return None


def t38_sdp(at: MediaEndpoint, kinds: tuple[str, ...], session_id: int) -> bytes:
    """An SDP with T.38 at ``at``: one image stream, other offered streams refused (port 0)."""
    family = "IP6" if ipaddress.ip_address(at.ip).version == 6 else "IP4"
    lines = ["v=0", f"o=mam-gw {session_id} {session_id} IN {family} {at.ip}", "s=mam gateway",
             f"c=IN {family} {at.ip}", "t=0 0"]
    done = False
    for kind in kinds or ("image",):
        if kind == "image" and not done:
            lines += [f"m=image {at.port} udptl t38", *T38_ATTRIBUTES]
            done = True
        else:
            lines.append(f"m={kind} 0 RTP/AVP 0")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class T38Leg:
    """The fax switch-over of every bridge with H.245."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # -- the SIP party asks ---------------------------------------------------------------
    def wants(self, request: Request) -> bool:
        offer = t38_offer(request.body) if request.body else None
        return offer is not None

    def from_sip(self, bridge: Bridge, request: Request, source: Peer, now: float) -> None:
        offer = t38_offer(request.body)
        session = bridge.h245
        state = bridge.t38
        if state is not None and state.request is not None and state.request.cseq == request.cseq:
            return                                          # a retransmission: answered when the switch is done
        if offer is not None and state is not None and state.request is None and state.h323_address is not None \
                and offer[0] == state.sip_address:              # on T.38 already: a session refresh
            self.answer(request, source, state.h323_address, offer[1], now)
            return
        if offer is None or offer[0] is None or session is None or bridge.t38 is not None or \
                (session.remote is not None and not session.remote.t38):
            why = "no H.245 on the H.323 leg (fastStart call)" if session is None else \
                "the H.323 party cannot do T.38" if bridge.t38 is None else "a switch-over is under way"
            self.gw.count("t38-refused")
            self.gw.dialog.reply(request, source, 488 if bridge.t38 is None else 491, bridge,
                                 reason=(BEARER_NOT_IMPLEMENTED, why))
            return
        bridge.t38 = T38State(True, request, source, offer[0], kinds=offer[1])
        self.gw.h245.events(bridge, session.request_mode("t38", now), now)
        self.gw.h245.flush(bridge)
        self.gw.arm(bridge, "t38", now + self.gw.settings.h245_timeout_s)

    # -- the H.323 party asks, or answers ---------------------------------------------------
    def mode_requested(self, bridge: Bridge, session: H245Session, sequence: int, mode: str, now: float) -> None:
        if mode != "t38" or bridge.t38 is not None or bridge.phase is not Phase.CONNECTED:
            self.gw.h245.events(bridge, session.answer_mode(sequence, False), now)
            return
        bridge.t38 = T38State(False)
        self.gw.h245.events(bridge, session.answer_mode(sequence, True), now)
        self.switch_channels(bridge, session, now)
        self.gw.arm(bridge, "t38", now + self.gw.settings.h245_timeout_s)

    def mode_answered(self, bridge: Bridge, session: H245Session, accepted: bool, now: float) -> None:
        state = bridge.t38
        if state is None or not state.from_sip or state.our_number is not None:
            return
        if not accepted:
            self.refuse(bridge, "the H.323 party refused T.38", now)
            return
        self.switch_channels(bridge, session, now)

    def switch_channels(self, bridge: Bridge, session: H245Session, now: float) -> None:
        """Our audio channel closed, a T.38 channel opened in its place."""
        assert bridge.t38 is not None
        if bridge.our_channel is not None:
            self.gw.h245.events(bridge, session.close_channel(bridge.our_channel), now)
            bridge.our_channel = None
        bridge.t38.our_number, out = session.open_channel("t38", 20, None, now, session_id=3)
        self.gw.h245.events(bridge, out, now)

    def channel_opened(self, bridge: Bridge, media: MediaEndpoint | None, now: float) -> None:
        state = bridge.t38
        assert state is not None
        if media is None:
            self.failed(bridge, "T.38 channel acked without an address", now)
            return
        state.h323_address = media
        if state.from_sip:
            self.settle(bridge, now)
        else:
            self.reinvite(bridge, media, now)

    def their_channel(self, bridge: Bridge, session: H245Session, number: int, now: float) -> None:
        """The H.323 party's T.38 channel: acked with where the SIP party receives T.38."""
        state = bridge.t38
        if state is None:
            self.gw.h245.events(bridge, session.reject_channel(number), now)
            return
        state.their_number = number
        if state.sip_address is not None:
            self.gw.h245.events(bridge, session.accept_channel(number, state.sip_address, None), now)

    def failed(self, bridge: Bridge, why: str, now: float) -> None:
        """A T.38 channel of ours refused or never answered."""
        state = bridge.t38
        if state is not None and state.from_sip:
            self.refuse(bridge, why, now)
        else:
            self.gw.end(bridge, BEARER_NOT_IMPLEMENTED, f"t38: {why}", now)

    def refuse(self, bridge: Bridge, why: str, now: float) -> None:
        state, bridge.t38 = bridge.t38, None
        self.gw.disarm(bridge, "t38")
        self.gw.count("t38-refused")
        if state is not None and state.request is not None and state.source is not None:
            self.gw.dialog.reply(state.request, state.source, 488, bridge, reason=(BEARER_NOT_IMPLEMENTED, why))

    def settle(self, bridge: Bridge, now: float) -> None:
        """Both T.38 addresses known: answer the SIP party (if it asked), move admission to T.38."""
        state = bridge.t38
        assert state is not None and state.h323_address is not None and state.sip_address is not None
        session = bridge.h245
        if session is not None and state.their_number is not None:
            self.gw.h245.events(bridge, session.accept_channel(state.their_number, state.sip_address, None), now)
            state.their_number = None
        if state.request is not None and state.source is not None:
            self.answer(state.request, state.source, state.h323_address, state.kinds, now)
            state.request = None
        self.gw.disarm(bridge, "t38")
        self.gw.count("t38-switched")
        bridge.codec = ("t38", 20)
        self.gw.modify(bridge, ("t38", 20))
        if bridge.h323_caller:
            bridge.caller_media, bridge.callee_media = state.h323_address, state.sip_address
        else:
            bridge.caller_media, bridge.callee_media = state.sip_address, state.h323_address
        self.gw.attach(bridge)

    def answer(self, request: Request, source: Peer, at: MediaEndpoint, kinds: tuple[str, ...], now: float) -> None:
        body = t38_sdp(at, kinds, now_id(now))
        response = build_response(request, 200, "OK", body=body, extra=(
            ("contact", self.gw.dialog.contact()), ("content-type", "application/sdp")))
        self.gw.emit(Send(serialize(response), source))

    def back_to_audio(self, bridge: Bridge, why: str, now: float) -> None:
        """The H.323 party asked for T.38 and the SIP party refused it: our T.38 channel
        closed, its T.38 channel refused, requestMode audio, our audio channel opened again
        (the H.323 party's new audio channel is acked by :meth:`.H245Leg.progress`)."""
        state, bridge.t38 = bridge.t38, None
        session = bridge.h245
        self.gw.disarm(bridge, "t38")
        self.gw.count("t38-refused")
        log.info("%s: back to audio: %s", bridge.call_id, why)
        if state is None or session is None or bridge.codec is None:
            return
        if state.our_number is not None:
            self.gw.h245.events(bridge, session.close_channel(state.our_number), now)
        if state.their_number is not None:
            self.gw.h245.events(bridge, session.reject_channel(state.their_number), now)
        self.gw.h245.events(bridge, session.request_mode("audio", now), now)
        sip_media = bridge.callee_media if bridge.h323_caller else bridge.caller_media
        control = None if sip_media is None else MediaEndpoint(sip_media.ip, sip_media.port + 1)
        bridge.our_channel, out = session.open_channel(bridge.codec[0], bridge.codec[1], control, now)
        self.gw.h245.events(bridge, out, now)
        self.gw.h245.flush(bridge)

    # -- the gateway's re-INVITE (the H.323 party asked) --------------------------------------
    def reinvite(self, bridge: Bridge, at: MediaEndpoint, now: float) -> None:
        state = bridge.t38
        assert state is not None
        bridge.local_cseq += 1
        state.cseq = bridge.local_cseq
        body = t38_sdp(at, ("image",), now_id(now))
        self.gw.dialog.in_dialog(bridge, "INVITE", (("contact", self.gw.dialog.contact()),
                                                    ("content-type", "application/sdp")), body, now,
                                 cseq=state.cseq)

    def on_response(self, bridge: Bridge, response: Response, now: float) -> bool:
        """A response to our T.38 re-INVITE (True if it was one)."""
        state = bridge.t38
        if state is None or state.cseq is None or response.cseq != (state.cseq, "INVITE"):
            return False
        if response.status < 200:
            return True
        self.gw.dialog.ack_in_dialog(bridge, state.cseq)
        if state.sip_address is not None:
            return True                                     # a retransmitted 2xx: ACKed again
        if response.status >= 300:
            self.back_to_audio(bridge, f"the SIP party refused T.38 ({response.status})", now)
            return True
        offer = t38_offer(response.body) if response.body else None
        if offer is None or offer[0] is None:
            self.gw.end(bridge, BEARER_NOT_IMPLEMENTED, "t38: the SIP party answered without T.38", now)
            return True
        state.sip_address = offer[0]
        self.settle(bridge, now)
        self.gw.h245.flush(bridge)
        return True
