"""The gateway's SIP leg: requests and responses that arrive from the SIP PBX.

An INVITE starts a bridge (SIP -> H.323); responses to the gateway's INVITE (H.323 ->
SIP) become Alerting/Progress/Connect or a ReleaseComplete; BYE, CANCEL, INFO and
re-INVITE/UPDATE act on a bridged call. What the gateway sends is :mod:`.sip_dialog`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ryu_apps.core.admission import AdmissionRequest, SignallingProtocol

from ..h323.asn1 import encode_h245
from ..h323.q931 import MessageType
from ..h323.ras import PROTOCOL_ID
from ..sip.errors import ParseError
from ..sip.message import (Partial, Request, Response, build_response, parse_message, parse_name_addr, parse_uri,
                           serialize)
from ..sip.transaction import Peer, Send
from . import normalise
from .causes import q850_of_reason, q850_of_status
from .h245_leg import LATE_CODECS
from .media_map import MediaError, Offer, answer_faststart, build_sdp, read_sdp
from .profile import GENERIC
from .bridge import BEARER_NOT_IMPLEMENTED, Bridge, NORMAL, NO_ROUTE, Phase, now_id
from .dtmf import dtmf_body

if TYPE_CHECKING:
    from .interwork import Gateway

log = logging.getLogger(__name__)


class SipLeg:
    """The SIP side of every bridge: what arrives from the SIP PBX."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def receive(self, data: bytes, source: Peer, now: float) -> None:
        if not data.strip(b"\r\n\t \x00"):
            return
        try:
            message = parse_message(data)
        except ParseError as error:
            self.malformed(error, error.partial, source)
            return
        try:
            message.call_id, message.cseq                   # noqa: B018 - validated here, used below
            parse_name_addr(message.header("from") or "").tag
            parse_name_addr(message.header("to") or "")
            message.top_via
        except ParseError as error:
            method = message.method if isinstance(message, Request) else None
            self.malformed(error, Partial(method, message.headers), source)
            return
        community = self.gw.directory.by_address(source.host)
        profile = self.gw.settings.profiles.get(community or "", GENERIC)
        if not profile.changes_nothing:
            message = normalise.inbound(message, profile)
        if isinstance(message, Response):
            self.on_response(message, now)
        else:
            self.on_request(message, source, now)

    def malformed(self, error: ParseError, partial: Partial | None, source: Peer) -> None:
        self.gw.count("sip-malformed")
        if partial is not None and partial.method not in (None, "ACK") and \
                all(partial.header(h) for h in ("via", "call-id", "cseq", "from", "to")):
            text = error.message[:100].replace('"', "'")
            response = build_response(partial, 400, "Bad Request", to_tag=self.gw.ids("tag", "400"),
                                      extra=(("warning", f'399 mam-gw "{text}"'),))
            self.gw.emit(Send(serialize(response), source))

    def on_request(self, request: Request, source: Peer, now: float) -> None:
        bridge = self.gw.by_sip.get(request.call_id)
        method = request.method
        if bridge is None:
            if method == "INVITE" and parse_name_addr(request.header("to") or "").tag is None:
                self.on_invite(request, source, now)
            elif method == "OPTIONS":
                self.gw.dialog.reply(request, source, 200)
            elif method != "ACK":
                self.gw.dialog.reply(request, source, 481)
            return
        if method == "INVITE" and not bridge.h323_caller and request.cseq == (bridge.invite.cseq if bridge.invite
                                                                               else None):
            if bridge.last_response is not None:                      # a retransmission
                self.gw.emit(Send(bridge.last_response, bridge.sip_peer))
            return
        if method == "ACK":
            if not bridge.h323_caller and bridge.phase is Phase.CONNECTED:
                bridge.acked = True
                self.gw.disarm(bridge, "ack", "retransmit")
                if bridge.h245 is not None:
                    self.gw.h245.on_ack(bridge, request, now)
            elif not bridge.h323_caller and bridge.final_sent:
                self.gw.disarm(bridge, "retransmit")
                self.gw.forget_later(bridge, now)
            return
        if method == "BYE":
            self.gw.dialog.reply(request, source, 200, bridge)
            cause = q850_of_reason(request.header_values("reason")) or NORMAL
            self.gw.end(bridge, cause, f"sip: BYE from {'callee' if bridge.h323_caller else 'caller'}", now,
                      from_sip=True)
        elif method == "CANCEL" and not bridge.h323_caller:
            self.gw.dialog.reply(request, source, 200, bridge)
            if bridge.phase is not Phase.CONNECTED and not bridge.final_sent:
                cause = q850_of_reason(request.header_values("reason")) or NORMAL
                self.gw.end(bridge, cause, "sip: CANCEL", now, from_sip=True, status=487)
        elif method == "OPTIONS":
            self.gw.dialog.reply(request, source, 200, bridge)
        elif method == "INFO":
            self.on_info(bridge, request, source, now)
        elif method in ("INVITE", "UPDATE"):
            self.refresh(bridge, request, source, now)
        else:
            self.gw.dialog.reply(request, source, 501, bridge)

    def on_invite(self, request: Request, source: Peer, now: float) -> None:
        self.gw.count("sip-invites")
        try:
            uri = parse_uri(request.uri)
        except ParseError:
            self.gw.dialog.reply(request, source, 416)
            return
        user = uri.user or ""
        trusted = source.host in self.gw.settings.trusted      # relayed by our SIP proxy: admitted there
        caller = self.gw.directory.by_address(source.host) or ("" if trusted else None)
        callee = (self.gw.directory.by_number(user) if user.lstrip("+").isdigit() else None) or \
            self.gw.directory.by_domain(uri.host)
        if caller is None:
            self.gw.dialog.reply(request, source, 403, reason=(21, "caller outside every community"))
            return
        target = self.gw.settings.h323_pbx.get(callee or "")
        if callee is None or target is None:
            self.gw.dialog.reply(request, source, 404, reason=(NO_ROUTE, "no H.323 route"))
            return
        try:
            sdp = read_sdp(request.body) if request.body else None       # None: a late offer (H.245 follows)
        except MediaError as error:
            self.gw.dialog.reply(request, source, 488, reason=(88, str(error)))
            return
        offer = sdp.offer() if sdp is not None else Offer(LATE_CODECS[:1], None)
        if sdp is not None and (not offer.codecs or offer.receive is None):
            self.gw.dialog.reply(request, source, 488, reason=(BEARER_NOT_IMPLEMENTED, "no codec H.245 can carry"))
            return
        ids = self.gw.ids
        guid = bytes.fromhex(ids("guid", request.call_id, source.host) + ids("guid2", request.call_id))[:16]
        call_id = "gw-" + guid.hex()
        conn = self.gw.new_conn()
        crv = int.from_bytes(guid[:2], "big") & 0x7FFF or 1
        bridge = Bridge(call_id, guid, False, caller, callee, conn, crv, source, request.call_id,
                        self.gw.ids("tag", call_id), offer=offer, caller_media=offer.receive, invite=request,
                        sip_payload_types={name: pt for name, pt, _ in sdp.codecs} if sdp else {}, trusted=trusted)
        if sdp is None:
            bridge.offer = offer = Offer(self.gw.h245.late_codecs(bridge)[:1], None)
        bridge.h323_open = False
        self.gw.register(bridge)
        self.gw.dialog.respond_invite(bridge, 100, now, with_sdp=False)

        def decided(bridge: Bridge, result: Any, now: float) -> None:
            if self.gw.admitted(bridge, result, now):
                self.gw.h323.send_setup(bridge, user, request, target, now)
        self.gw.decide(bridge, AdmissionRequest(call_id, caller, callee, offer.spec(), protocol=SignallingProtocol.SIP),
                     decided, now)

    def on_response(self, response: Response, now: float) -> None:
        bridge = self.gw.by_sip.get(response.call_id)
        if bridge is None:
            self.gw.count("sip-stray-responses")
            return
        number, method = response.cseq
        if method == "INVITE" and self.gw.t38.on_response(bridge, response, now):
            if response.status >= 200:
                bridge.pending.pop(response.top_via.branch or "", None)
            return
        if method != "INVITE":
            branch = response.top_via.branch or ""
            if response.status >= 200:
                bridge.pending.pop(branch, None)
                if not bridge.pending:
                    self.gw.disarm(bridge, "request-retransmit", "request-timeout")
            return
        if not bridge.h323_caller or bridge.invite is None or number != bridge.invite.cseq[0]:
            return
        status = response.status
        if bridge.phase is Phase.ENDED:
            if 200 <= status < 300:            # a 2xx crossing our CANCEL: ACK and BYE it
                self.gw.dialog.learn_dialog(bridge, response)
                self.gw.dialog.send(bridge, self.gw.dialog.ack(bridge, response))
                self.gw.dialog.bye(bridge, NORMAL, now)
            elif status >= 300:
                self.gw.dialog.send(bridge, self.gw.dialog.ack(bridge, response))
            return
        self.gw.disarm(bridge, "retransmit")
        if status < 200:
            self.gw.disarm(bridge, "timer-b")
            if status == 100:
                return
            if bridge.phase in (Phase.SETUP, Phase.PROCEEDING):
                self.gw.arm(bridge, "no-answer", now + self.gw.settings.no_answer_s)
            if bridge.h245 is not None:                    # no fastStart: the offer may come here
                self.gw.early.provisional(bridge, response, now)
                return
            media = self.answer(bridge, response)
            if status == 180 or (status != 183 and media is None):
                if bridge.phase is not Phase.RINGING:
                    bridge.phase = Phase.RINGING
                    self.gw.h323.send_to_caller(bridge, MessageType.ALERTING, "alerting", media)
            elif media is not None:
                self.gw.h323.send_to_caller(bridge, MessageType.PROGRESS, "progress", media)
            return
        self.gw.disarm(bridge, "timer-b", "no-answer")
        if status < 300 and bridge.h245 is not None:
            self.gw.dialog.learn_dialog(bridge, response)
            self.gw.h245.on_200(bridge, response, now)       # offer in the 200: answer in the ACK
            return
        if status < 300:
            self.gw.dialog.learn_dialog(bridge, response)
            self.gw.dialog.send(bridge, self.gw.dialog.ack(bridge, response))
            if bridge.phase is Phase.CONNECTED:
                return                                     # a retransmitted 2xx: ACKed again
            media = self.answer(bridge, response)
            if media is None and not bridge.faststart_sent:
                self.gw.dialog.bye(bridge, BEARER_NOT_IMPLEMENTED, now)
                self.gw.end(bridge, BEARER_NOT_IMPLEMENTED, "sip: 200 without a usable answer", now, bye_sent=True)
                return
            bridge.phase = Phase.CONNECTED
            self.gw.h323.send_to_caller(bridge, MessageType.CONNECT, "connect", media)
            return
        self.gw.dialog.send(bridge, self.gw.dialog.ack(bridge, response))
        cause = q850_of_reason(response.header_values("reason")) or q850_of_status(status)
        self.gw.end(bridge, cause, f"sip-{status}", now, from_sip=True)

    def answer(self, bridge: Bridge, response: Response) -> list[bytes] | None:
        """H->S: the SIP answer in a 18x/2xx -> accepted fastStart channels (None: no SDP)."""
        if not response.body:
            return None
        try:
            sdp = read_sdp(response.body)
        except MediaError:
            self.gw.count("sip-answer-unreadable")
            return None
        chosen = next(((name, ptime) for name, _, ptime in sdp.codecs
                       if any(c == name for c, _ in (bridge.offer.codecs if bridge.offer else ()))), None)
        if chosen is None or sdp.receive is None:
            return None
        try:
            elements = answer_faststart(bridge.proposals, chosen[0], chosen[1], sdp.receive)
        except MediaError:
            return None
        bridge.callee_media = sdp.receive
        bridge.codec = chosen
        bridge.sip_payload_types = {name: pt for name, pt, _ in sdp.codecs}
        if bridge.offer is not None and bridge.offer.codecs[0][0] != chosen[0]:
            self.gw.modify(bridge, chosen)
        self.gw.attach(bridge)
        return elements

    def refresh(self, bridge: Bridge, request: Request, source: Peer, now: float) -> None:
        """A re-INVITE or UPDATE on a bridged call. The H.323 leg's media cannot be changed
        without H.245, so: an offer that keeps the call's codec and address (a session
        refresh, RFC 4028), or puts it on hold (no address), or no offer at all, is answered
        200 with the gateway's side of the media as it is; anything else 488."""
        if bridge.phase is not Phase.CONNECTED or bridge.codec is None:
            self.gw.dialog.reply(request, source, 491 if request.method == "INVITE" else 200, bridge)
            return
        if request.method == "INVITE" and self.gw.t38.wants(request):
            self.gw.t38.from_sip(bridge, request, source, now)
            return
        ours = bridge.callee_media if not bridge.h323_caller else bridge.caller_media
        theirs = bridge.caller_media if not bridge.h323_caller else bridge.callee_media
        if request.body:
            try:
                offer = read_sdp(request.body)
            except MediaError as error:
                self.gw.dialog.reply(request, source, 488, bridge, reason=(88, str(error)))
                return
            same_codec = any(name == bridge.codec[0] for name, _, _ in offer.codecs)
            if not same_codec or (offer.receive is not None and offer.receive != theirs):
                self.gw.count("reinvite-refused")
                self.gw.dialog.reply(request, source, 488, bridge,
                            reason=(BEARER_NOT_IMPLEMENTED, "the H.323 leg's media cannot change"))
                return
            bridge.sip_payload_types.update({name: pt for name, pt, _ in offer.codecs})
        if ours is None:
            self.gw.dialog.reply(request, source, 488, bridge, reason=(BEARER_NOT_IMPLEMENTED, "no media to describe"))
            return
        self.gw.count("session-refreshed")
        extra: list[tuple[str, str]] = [("contact", self.gw.dialog.contact()),
                                        ("content-type", "application/sdp")]
        expires = request.header("session-expires")
        if expires:
            delta = expires.split(";")[0].strip()
            if delta.isdigit():
                extra.append(("session-expires", f"{delta};refresher=uac"))
                if "timer" in [t.strip().lower() for t in ",".join(request.header_values("supported")).split(",")]:
                    extra.append(("require", "timer"))
        body = build_sdp(ours, (bridge.codec,), now_id(now), payload_types=bridge.sip_payload_types)
        response = build_response(request, 200, "OK", extra=extra, body=body)
        self.gw.emit(Send(serialize(response), source))

    def on_info(self, bridge: Bridge, request: Request, source: Peer, now: float) -> None:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if not request.body:
            self.gw.dialog.reply(request, source, 200, bridge)          # an empty INFO: a keep-alive
            return
        if content_type not in ("application/dtmf-relay", "application/dtmf"):
            self.gw.dialog.reply(request, source, 415, bridge)
            return
        digit, duration = dtmf_body(request.body, content_type)
        if digit is None:
            self.gw.dialog.reply(request, source, 400, bridge)
            return
        self.gw.dialog.reply(request, source, 200, bridge)
        if bridge.phase is not Phase.CONNECTED:
            return
        self.gw.count("dtmf-sip-to-h323")
        uii = encode_h245(("indication", ("userInput", ("signal", {"signalType": digit, "duration": duration}))))
        body = ("facility", {"protocolIdentifier": PROTOCOL_ID, "reason": ("transportedInformation", 0),
                             "callIdentifier": {"guid": bridge.guid}})
        self.gw.h323.send(bridge.conn, bridge.crv, bridge.h323_caller, MessageType.FACILITY, body, h245=[uii])
