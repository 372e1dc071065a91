"""Early media on calls without fastStart, H.323 caller -> SIP callee (late offer).

The gateway's INVITE has no SDP and says ``Supported: 100rel``. The SIP callee's first
SDP is then an offer (RFC 3261 13.2.1), and where it may come is RFC 3262 / RFC 6337 3.1:

* a **reliable** 18x (``Require: 100rel``, ``RSeq``) with SDP: the offer is answered in the
  PRACK. The gateway tells the H.323 caller at once (Progress, or Alerting for a 180, with
  progress indicator 8 "in-band information available", carrying our TerminalCapabilitySet
  of the offer's codecs), runs the H.245 exchange as for an offer in a 200 (our channel with
  the callee's codec, the caller's channel acknowledged with the callee's address), and when
  the caller's OpenLogicalChannelAck gives its address sends the PRACK with the answer and
  attaches the media: early media flows both ways before the answer. The 200 then carries no
  new offer: Connect, ACK without SDP.
* an **unreliable** 18x with SDP: an offer that cannot be answered before the 200 (no PRACK,
  and an answer may go only in a PRACK or the ACK), so the SIP callee has nowhere to send
  media yet. It becomes Progress with progress indicator 1 (not end-to-end ISDN; no promise
  of in-band information), its SDP is kept, and the 200 (which must repeat it, RFC 6337 3.1)
  is answered in the ACK as ever; a 200 without SDP uses the kept one.
* a reliable 18x without SDP (or once the offer is known) is PRACKed at once, empty.

SIP caller with an SDP offer -> H.323 callee that refuses fastStart and starts H.245
(:meth:`..h245_leg.H245Leg.callee_without_faststart`): when its Alerting or Progress says
progress indicator 8 (in-band information), the SIP caller gets a 183 with the SDP answer
(the callee's address from its OpenLogicalChannelAck, the codec of our channel) instead of
a 180, as soon as that address is known; the callee's own channel is acknowledged with the
SIP caller's address from the offer, so its tones reach the caller. The 200 repeats the
same answer byte for byte (RFC 3261 13.2.1).

A retransmitted reliable 18x (an RSeq already seen) is dropped: our PRACK is retransmitted
by its own transaction. Admission is the usual one: ``attach_media`` as soon as both
addresses are known (here before the answer), ``release`` once in ``Gateway._finish``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..h323.q931 import IN_BAND_INFORMATION, NOT_END_TO_END_ISDN, MessageType
from ..sip.message import Response
from .bridge import Bridge, Phase

if TYPE_CHECKING:
    from .interwork import Gateway

#: What the gateway's late-offer INVITE says it supports (RFC 3262).
SUPPORTED = "100rel"


def reliable_rseq(response: Response) -> int | None:
    """The RSeq of a reliable provisional response (``Require: 100rel``), else None."""
    required = {t.strip().lower() for t in ",".join(response.header_values("require")).split(",")}
    rseq = (response.header("rseq") or "").strip()
    if "100rel" not in required or not rseq.isdigit() or not 0 < int(rseq) < 1 << 32:
        return None
    return int(rseq)


class EarlyMedia:
    """18x responses to the gateway's late-offer INVITE (H.323 caller without fastStart)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def provisional(self, bridge: Bridge, response: Response, now: float) -> None:
        rseq = reliable_rseq(response)
        if rseq is not None:
            if rseq <= bridge.rseq:
                self.gw.count("sip-18x-repeated")         # a retransmission: our PRACK repeats on its own
                return
            bridge.rseq = rseq
            self.gw.dialog.learn_dialog(bridge, response)   # the early dialog the PRACK goes in
        ringing = response.status == 180
        kind, name = (MessageType.ALERTING, "alerting") if ringing else (MessageType.PROGRESS, "progress")
        if response.body and rseq is not None and bridge.sip_offer is None:
            bridge.prack_rseq = rseq                          # answered in the PRACK once H.245 gives it
            if not self.gw.h245.offered(bridge, response.body, now):
                return
            self.gw.count("early-media-offered")
            if ringing:
                bridge.phase = Phase.RINGING
            self.gw.h323.send_to_caller(bridge, kind, name, None, h245=self.gw.h245.take(bridge),
                                        progress=IN_BAND_INFORMATION)
            self.gw.arm(bridge, "h245", now + self.gw.settings.h245_timeout_s)
            self.gw.h245.progress(bridge, now)
            self.gw.h245.flush(bridge)
            return
        if rseq is not None:
            self.prack(bridge, rseq, b"", now)
        if response.body and rseq is None and bridge.sip_offer is None:
            bridge.early_sdp = response.body                  # not answerable before the 200 (RFC 6337 3.1)
            self.gw.count("early-offer-unreliable")
        if not ringing and response.body:
            self.gw.h323.send_to_caller(bridge, kind, name, None, progress=NOT_END_TO_END_ISDN)
        elif (ringing or response.status != 183) and bridge.phase is not Phase.RINGING:
            bridge.phase = Phase.RINGING
            self.gw.h323.send_to_caller(bridge, MessageType.ALERTING, "alerting", None)

    def from_callee(self, bridge: Bridge, kind: int, progress: int | None, now: float) -> bool:
        """S->H: the H.323 callee's Alerting/Progress on a call it takes with H.245 while the
        SIP caller offered. False: not such a call (the usual mapping applies)."""
        if bridge.h245 is None or not bridge.answering:
            return False
        self.gw.disarm(bridge, "t303")
        if bridge.phase in (Phase.SETUP, Phase.PROCEEDING):
            self.gw.arm(bridge, "no-answer", now + self.gw.settings.no_answer_s)
        ringing = kind == MessageType.ALERTING and bridge.phase is not Phase.RINGING
        if ringing:
            bridge.phase = Phase.RINGING
        if progress == IN_BAND_INFORMATION:
            bridge.early_wanted = True                        # 183 + answer once the callee's address is known
            self.gw.h245.progress(bridge, now)
            self.gw.h245.flush(bridge)
        elif ringing and not bridge.sip_answer:
            self.gw.dialog.respond_invite(bridge, 180, now, with_sdp=False)
        return True

    def answer_in_prack(self, bridge: Bridge, body: bytes, now: float) -> None:
        """The answer to a reliable 18x's offer is ready (the H.323 caller's address known)."""
        rseq, bridge.prack_rseq = bridge.prack_rseq, None
        if rseq is None:
            return
        bridge.early_answered = True
        self.prack(bridge, rseq, body, now)
        self.gw.count("early-media-answered")

    def prack(self, bridge: Bridge, rseq: int, body: bytes, now: float) -> None:
        assert bridge.invite is not None
        extra: tuple[tuple[str, str], ...] = (("rack", f"{rseq} {bridge.invite.cseq[0]} INVITE"),)
        if body:
            extra += (("content-type", "application/sdp"),)
        self.gw.dialog.in_dialog(bridge, "PRACK", extra, body, now)
