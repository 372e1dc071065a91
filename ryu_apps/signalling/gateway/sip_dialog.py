"""The gateway's SIP dialog: the requests and responses it sends on a bridge's SIP leg.

Via/Contact of the gateway, ACK, CANCEL, BYE and INFO (retransmitted until answered),
responses to a SIP caller's INVITE (kept for retransmission), the community's profile
applied on the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.errors import ParseError
from ..sip.message import Message, Request, Response, build_response, parse_name_addr, serialize
from ..sip.transaction import Peer, Send
from . import normalise
from .causes import phrase, reason_header
from .media_map import build_sdp
from .profile import GENERIC
from .bridge import Bridge, now_id, strip_tag

if TYPE_CHECKING:
    from .interwork import Gateway


class SipDialog:
    """What the gateway sends on a bridge's SIP leg."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.gw.settings.sip_host}:{self.gw.settings.sip_port};branch=z9hG4bK{branch};rport"

    def contact(self) -> str:
        return f"<sip:gw@{self.gw.settings.sip_host}:{self.gw.settings.sip_port}>"

    def send(self, bridge: Bridge, message: Message) -> None:
        profile = self.gw.settings.profiles.get(bridge.h323_caller and bridge.callee_community or
                                                bridge.caller_community, GENERIC)
        if not profile.changes_nothing:
            message = normalise.outbound(message, profile)
        self.gw.emit(Send(serialize(message), bridge.sip_peer))

    def learn_dialog(self, bridge: Bridge, response: Response) -> None:
        bridge.remote_tag = parse_name_addr(response.header("to") or "").tag
        contact = response.header("contact")
        if contact:
            try:
                bridge.remote_target = parse_name_addr(contact.split(",")[0]).uri
            except ParseError:
                pass

    def ack(self, bridge: Bridge, response: Response) -> Request:
        assert bridge.invite is not None
        invite = bridge.invite
        if 200 <= response.status < 300:
            uri = bridge.remote_target or invite.uri
            via = self.via(self.gw.ids("branch", bridge.call_id, "ack"))
        else:
            uri, via = invite.uri, invite.header("via") or ""
        headers = (("via", via), ("max-forwards", "70"), ("from", invite.header("from") or ""),
                   ("to", response.header("to") or ""), ("call-id", bridge.sip_call_id),
                   ("cseq", f"{invite.cseq[0]} ACK"))
        return Request("ACK", uri, headers)

    def cancel(self, bridge: Bridge, cause: int, now: float) -> None:
        invite = bridge.invite
        if invite is None:
            return
        headers = (("via", invite.header("via") or ""), ("max-forwards", "70"), ("from", invite.header("from") or ""),
                   ("to", invite.header("to") or ""), ("call-id", bridge.sip_call_id),
                   ("cseq", f"{invite.cseq[0]} CANCEL"), ("reason", reason_header(cause)))
        self.send_request(bridge, Request("CANCEL", invite.uri, headers), invite.top_via.branch or "", now)

    def bye(self, bridge: Bridge, cause: int, now: float) -> None:
        self.in_dialog(bridge, "BYE", (("reason", reason_header(cause)),), b"", now)

    def in_dialog(self, bridge: Bridge, method: str, extra: tuple[tuple[str, str], ...], body: bytes,
                  now: float, *, cseq: int | None = None) -> None:
        """A request of ours in the SIP dialog (BYE, INFO, re-INVITE), retransmitted until answered."""
        if cseq is None:
            bridge.local_cseq += 1
        request, branch = self.dialog_request(bridge, method, cseq or bridge.local_cseq, extra, body)
        self.send_request(bridge, request, branch, now)

    def ack_in_dialog(self, bridge: Bridge, cseq: int) -> None:
        """The ACK of a 2xx (or a final) to a re-INVITE of ours."""
        self.send(bridge, self.dialog_request(bridge, "ACK", cseq, (), b"")[0])

    def dialog_request(self, bridge: Bridge, method: str, cseq: int, extra: tuple[tuple[str, str], ...],
                       body: bytes) -> tuple[Request, str]:
        branch = self.gw.ids("branch", bridge.call_id, method.lower(), str(cseq))
        if bridge.h323_caller:
            assert bridge.invite is not None
            uri = bridge.remote_target or bridge.invite.uri
            from_, to = bridge.invite.header("from") or "", f"{bridge.invite.header('to')};tag={bridge.remote_tag}" \
                if bridge.remote_tag else bridge.invite.header("to") or ""
        else:
            assert bridge.invite is not None
            contact = bridge.invite.header("contact") or ""
            try:
                uri = parse_name_addr(contact.split(",")[0]).uri
            except ParseError:
                uri = bridge.invite.uri
            from_ = f"{strip_tag(bridge.invite.header('to') or '')};tag={bridge.local_tag}"
            to = bridge.invite.header("from") or ""
        headers = (("via", self.via(branch)), ("max-forwards", "70"), ("from", from_), ("to", to),
                   ("call-id", bridge.sip_call_id), ("cseq", f"{cseq} {method}")) + extra
        return Request(method, uri, headers, body), "z9hG4bK" + branch

    def send_request(self, bridge: Bridge, request: Request, branch: str, now: float) -> None:
        bridge.pending[branch] = request
        self.send(bridge, request)
        bridge.interval = self.gw.settings.t1
        self.gw.arm(bridge, "request-retransmit", now + bridge.interval)
        self.gw.arm(bridge, "request-timeout", now + 64 * self.gw.settings.t1)

    def respond_invite(self, bridge: Bridge, status: int, now: float, *, with_sdp: bool,
                       body: bytes = b"") -> None:
        """S->H: a response to the caller's INVITE (18x/200 with our To tag and Contact)."""
        invite = bridge.invite
        if invite is None or bridge.h323_caller:
            return
        extra: list[tuple[str, str]] = []
        if body:
            extra.append(("content-type", "application/sdp"))
        if status > 100:
            extra.append(("contact", self.contact()))
        if with_sdp and bridge.callee_media is not None and bridge.offer is not None:
            body = bridge.sip_answer or build_sdp(bridge.callee_media, bridge.offer.codecs[:1], now_id(now),
                                                  payload_types=bridge.sip_payload_types)
            bridge.sip_answer = body                      # a 183's answer: the 200 repeats it (RFC 3261 13.2.1)
            extra.append(("content-type", "application/sdp"))
        reasons = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK"}
        response = build_response(invite, status, reasons.get(status, "OK"),
                                  to_tag=None if status == 100 else bridge.local_tag, extra=extra, body=body)
        self.send_response(bridge, response, now, final=status >= 200)

    def final(self, bridge: Bridge, status: int, cause: int, text: str, now: float) -> None:
        invite = bridge.invite
        if invite is None or bridge.final_sent:
            return
        response = build_response(invite, status, phrase(status), to_tag=bridge.local_tag,
                                  extra=(("reason", reason_header(cause, text)),))
        self.send_response(bridge, response, now, final=True)

    def send_response(self, bridge: Bridge, response: Response, now: float, *, final: bool) -> None:
        profile = self.gw.settings.profiles.get(bridge.caller_community, GENERIC)
        message: Message = response if profile.changes_nothing else normalise.outbound(response, profile)
        data = serialize(message)
        bridge.last_response = data
        self.gw.emit(Send(data, bridge.sip_peer))
        if final:
            bridge.final_sent = True
            bridge.interval = self.gw.settings.t1
            self.gw.arm(bridge, "retransmit", now + bridge.interval)

    def reply(self, request: Request, source: Peer, status: int, bridge: Bridge | None = None, *,
               reason: tuple[int, str] | None = None) -> None:
        extra = [] if reason is None else [("reason", reason_header(*reason))]
        tag = None if parse_name_addr(request.header("to") or "").tag else self.gw.ids("tag", request.call_id)
        response = build_response(request, status, phrase(status) if status != 200 else "OK",
                                  to_tag=tag, extra=extra)
        self.gw.emit(Send(serialize(response), source))
