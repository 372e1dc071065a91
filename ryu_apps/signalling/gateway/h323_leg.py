"""The gateway's H.323 leg: Q.931/H.225.0 on one TCP connection per call (fastStart media,
or H.245 tunnelled in it or on a connection of its own: :mod:`.h245_leg`).

Reads TPKT-framed Q.931 from the H.323 PBX, turns a Setup into a bridge (H.323 -> SIP) or
sends the Setup of a SIP caller's call (SIP -> H.323), and maps the callee's
CallProceeding/Alerting/Progress/Connect onto the SIP caller's responses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ryu_apps.core.admission import AdmissionRequest, SignallingProtocol
from ryu_apps.core.calls import MediaEndpoint

from ..h323.actions import StreamClose, StreamOpen, StreamSend
from ..h323.asn1 import Asn1Error, decode_h245, decode_uu, encode_uu
from ..h323.q931 import (IE, IN_BAND_INFORMATION, SPEECH_BEARER, MessageType, Q931, Q931Error, TpktFramer,
                         cause_ie, number_ie, parse, progress_ie, serialize as q931_bytes, tpkt)
from ..h323.ras import PROTOCOL_ID
from ..h323.reasons import release_reason
from ..sip.errors import ParseError
from ..sip.message import Request, parse_name_addr, parse_uri
from .media_map import MediaError, Offer, accepted_of, build_sdp, faststart_offer, offer_of, parse_faststart
from .bridge import (BEARER_NOT_IMPLEMENTED, Bridge, INVALID_IE, NORMAL, NO_ROUTE, Phase, TEMPORARY_FAILURE,
                     UNALLOCATED, address_of, alias, dialled, gateway_type, guid_of, now_id, packed)
from .dtmf import user_input
from .early_media import SUPPORTED

if TYPE_CHECKING:
    from .interwork import Gateway

log = logging.getLogger(__name__)


class H323Leg:
    """The H.323 side of every bridge: what arrives on, and what is sent over, H.225.0."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def data(self, conn: int, data: bytes, now: float) -> None:
        framer = self.gw.framers.get(conn)
        if framer is None:
            return
        if conn in self.gw.by_h245:                       # H.245 on its own connection: no Q.931 around it
            self.gw.h245.feed(self.gw.by_h245[conn], framer.feed(data), now)
            if framer.broken:
                self.gw.count("tpkt-broken")
                self.closed(conn, now)
            return
        for payload in framer.feed(data):
            try:
                message = parse(payload)
            except Q931Error as error:
                self.gw.count("q931-malformed")
                log.debug("malformed Q.931 on %d: %s", conn, error)
                continue
            self.on_message(conn, message, now)
        if framer.broken:
            self.gw.count("tpkt-broken")
            self.gw.emit(StreamClose(conn))
            self.closed(conn, now)

    def uu_pdu(self, message: Q931) -> dict[str, Any] | None:
        raw = message.user_user
        if raw is None:
            return None
        try:
            pdu = decode_uu(raw)["h323-uu-pdu"]
        except (Asn1Error, KeyError, TypeError):
            self.gw.count("uuie-undecodable")
            return None
        return pdu if isinstance(pdu, dict) else None

    def uu_body(self, message: Q931, pdu: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]] | None:
        pdu = self.uu_pdu(message) if pdu is None else pdu
        body = None if pdu is None else pdu.get("h323-message-body")
        if isinstance(body, tuple) and len(body) == 2 and isinstance(body[1], dict):
            return body[0], body[1]
        return None

    def on_message(self, conn: int, message: Q931, now: float) -> None:
        bridge = self.gw.by_conn.get(conn)
        if message.message_type == MessageType.SETUP and bridge is None:
            self.on_setup(conn, message, now)
            return
        if bridge is None or message.call_ref != bridge.crv:
            self.gw.count("q931-unknown-call")
            return
        kind = message.message_type
        if kind == MessageType.RELEASE_COMPLETE:
            cause = message.cause if message.cause is not None else NORMAL
            self.gw.end(bridge, cause, f"h323: {'caller' if bridge.h323_caller else 'callee'} ReleaseComplete", now,
                      from_h323=True)
            return
        pdu = self.uu_pdu(message)
        controls = None if pdu is None else pdu.get("h245Control")
        body = self.uu_body(message, pdu)
        fields = body[1] if body is not None else {}
        h245_address = None if bridge.h323_caller else address_of(fields.get("h245Address"))
        pbx = self.gw.settings.h323_pbx.get(bridge.callee_community, ("", 0))[0]
        if h245_address is not None and not self.h245_allowed(h245_address[0], pbx, bridge.callee_community):
            self.gw.count("h245-address-refused")
            h245_address = None
        if bridge.h245 is None and not bridge.h323_caller and bridge.callee_media is None and \
                not fields.get("fastStart") and ((isinstance(controls, list) and controls) or h245_address):
            self.gw.h245.callee_without_faststart(bridge, now)   # our fastStart refused: H.245 instead
        if bridge.h245 is not None:
            self.gw.h245.feed(bridge, controls, now)
            if bridge.phase is Phase.ENDED:
                return
        elif isinstance(controls, list) and controls:
            self.h245_in(bridge, controls, now)
        if bridge.h323_caller:
            return                        # H->S: the caller's Facility, Information ... are not carried over
        if bridge.h245 is not None and bridge.h245_conn is None and pdu is not None and \
                pdu.get("h245Tunnelling") is not True and h245_address is not None:
            self.gw.h245.connect(bridge, h245_address)    # it does not tunnel: what the Setup carried, again
            self.gw.h245.flush(bridge, bridge.setup_h245)
        if kind in (MessageType.ALERTING, MessageType.PROGRESS) and bridge.phase is not Phase.CONNECTED and \
                self.gw.early.from_callee(bridge, kind, message.progress, now):
            return                        # S->H without fastStart: early media, or waiting for it
        if kind == MessageType.ALERTING and bridge.phase in (Phase.SETUP, Phase.PROCEEDING):
            early = self.answer_media(bridge, fields) and message.progress == IN_BAND_INFORMATION
            self.gw.dialog.respond_invite(bridge, 183 if early else 180, now, with_sdp=early)
            bridge.phase = Phase.RINGING
            self.gw.arm(bridge, "no-answer", now + self.gw.settings.no_answer_s)
            self.gw.disarm(bridge, "t303")
        elif kind == MessageType.CALL_PROCEEDING and bridge.phase is Phase.SETUP:
            bridge.phase = Phase.PROCEEDING
            self.gw.disarm(bridge, "t303")
            self.gw.arm(bridge, "no-answer", now + self.gw.settings.no_answer_s)
        elif kind == MessageType.PROGRESS and bridge.phase in (Phase.SETUP, Phase.PROCEEDING, Phase.RINGING):
            self.gw.disarm(bridge, "t303")
            if self.answer_media(bridge, fields):
                self.gw.dialog.respond_invite(bridge, 183, now, with_sdp=True)
        elif kind == MessageType.CONNECT and bridge.h245 is not None and not bridge.connect_seen:
            bridge.connect_seen = True                     # the 200 goes when H.245 has the media
            self.gw.disarm(bridge, "t303", "no-answer")
            self.gw.arm(bridge, "h245", now + self.gw.settings.h245_timeout_s)
            self.gw.h245.progress(bridge, now)
            self.gw.h245.flush(bridge)
        elif kind == MessageType.CONNECT and bridge.phase is not Phase.CONNECTED and bridge.h245 is None:
            self.answer_media(bridge, fields)
            if bridge.callee_media is None or bridge.offer is None:
                self.gw.end(bridge, BEARER_NOT_IMPLEMENTED, "h323: Connect without fastStart media", now)
                return
            self.gw.disarm(bridge, "t303", "no-answer")
            bridge.phase = Phase.CONNECTED
            self.gw.dialog.respond_invite(bridge, 200, now, with_sdp=True)
            self.gw.arm(bridge, "ack", now + 64 * self.gw.settings.t1)

    def answer_media(self, bridge: Bridge, fields: dict[str, Any]) -> bool:
        """S->H: the callee's accepted fastStart channels (if any) -> callee media."""
        elements = fields.get("fastStart")
        if not isinstance(elements, list) or not elements:
            return bridge.callee_media is not None
        try:
            spec, receive = accepted_of(parse_faststart(elements))
        except MediaError:
            self.gw.count("faststart-undecodable")
            return bridge.callee_media is not None
        if spec is not None and receive is not None and bridge.offer is not None:
            bridge.callee_media = receive
            bridge.offer = Offer(((spec.codec, spec.ptime_ms),), bridge.offer.receive)
            bridge.codec = (spec.codec, spec.ptime_ms)
            self.gw.attach(bridge)
            return True
        return bridge.callee_media is not None

    def on_setup(self, conn: int, message: Q931, now: float) -> None:
        self.gw.count("h323-setups")
        pdu = self.uu_pdu(message)
        body = self.uu_body(message, pdu)
        if body is None or body[0] != "setup":
            self.refuse(conn, message.call_ref, b"", INVALID_IE)
            return
        fields = body[1]
        guid = guid_of(fields)
        if guid is None:
            self.refuse(conn, message.call_ref, b"", INVALID_IE)
            return
        call_id = "gw-" + guid.hex()
        if call_id in self.gw.bridges:
            self.gw.count("setup-duplicate")
            return
        called = message.called_number or dialled(fields.get("destinationAddress"))
        calling = message.calling_number or dialled(fields.get("sourceAddress"))
        self.send(conn, message.call_ref, True, MessageType.CALL_PROCEEDING, ("callProceeding", {
            "protocolIdentifier": PROTOCOL_ID, "destinationInfo": gateway_type(),
            "callIdentifier": {"guid": guid}}),
            tunnelling=pdu is not None and pdu.get("h245Tunnelling") is True and not fields.get("fastStart"))
        peer = self.gw.peers.get(conn, ("", 0))
        trusted = peer[0] in self.gw.settings.trusted         # relayed by our gatekeeper: admitted there
        caller = self.gw.directory.by_address(peer[0]) or ("" if trusted else None)
        callee = self.gw.directory.by_number(called) if called else None
        if caller is None or callee is None or not called:
            self.refuse(conn, message.call_ref, guid, UNALLOCATED if caller is not None else 21)
            return
        sip_peer = self.gw.settings.sip_pbx.get(callee)
        if sip_peer is None:
            self.refuse(conn, message.call_ref, guid, NO_ROUTE)
            return
        try:
            proposals = parse_faststart(fields.get("fastStart") or [])
        except MediaError:
            self.gw.count("faststart-undecodable")
            proposals = []
        offer = offer_of(proposals)
        tunnelled = pdu is not None and pdu.get("h245Tunnelling") is True and not proposals
        h245_address = None if tunnelled or proposals else address_of(fields.get("h245Address"))
        if h245_address is not None and not self.h245_allowed(h245_address[0], peer[0], caller):
            self.gw.count("h245-address-refused")
            h245_address = None
        if (not offer.codecs or offer.receive is None) and not tunnelled and h245_address is None:
            self.refuse(conn, message.call_ref, guid, BEARER_NOT_IMPLEMENTED)   # no media, no H.245
            return
        sip_call_id = f"{self.gw.ids('call-id', call_id)}@{self.gw.settings.sip_host}"
        bridge = Bridge(call_id, guid, True, caller, callee, conn, message.call_ref, sip_peer, sip_call_id,
                        self.gw.ids("tag", call_id), proposals=tuple(proposals), offer=offer,
                        caller_media=offer.receive,
                        trusted=trusted)
        if tunnelled or h245_address is not None:           # no fastStart: H.245, and a late offer
            if h245_address is not None:
                self.gw.h245.connect(bridge, h245_address)
            self.gw.h245.caller_setup(bridge, pdu.get("h245Control") if pdu else None, now)
            offer = bridge.offer = Offer((self.gw.h245.admission_codec(bridge),), None)
        domain = self.gw.settings.domains.get(callee, sip_peer.host)
        number = "+" + called.lstrip("+")                 # it matched e164_prefixes: an E.164 number
        if calling and calling.lstrip("+").isdigit() and self.gw.directory.by_number(calling) is not None:
            calling = "+" + calling.lstrip("+")
        uri = f"sip:{number}@{domain}"
        sdp = b"" if offer.receive is None else build_sdp(offer.receive, offer.codecs, now_id(now))
        headers: list[tuple[str, str]] = [
            ("via", self.gw.dialog.via(self.gw.ids("branch", call_id, "invite"))),
            ("max-forwards", "70"),
            ("from", f"<sip:{calling or 'anonymous'}@{self.gw.settings.sip_host}>;tag={bridge.local_tag}"),
            ("to", f"<{uri}>"), ("call-id", sip_call_id), ("cseq", "1 INVITE"),
            ("contact", self.gw.dialog.contact()),
            ("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO" + ("" if sdp else ", PRACK")),
        ]
        if not sdp:                                       # late offer: an offer in a reliable 18x is answered
            headers.append(("supported", SUPPORTED))      # in the PRACK (early media, .early_media)
        if calling:
            headers.append(("p-asserted-identity", f"<sip:{calling}@{self.gw.settings.sip_host}>"))
        if sdp:
            headers.append(("content-type", "application/sdp"))
        invite = Request("INVITE", uri, tuple(headers), sdp)
        self.gw.register(bridge)
        self.gw.h245.flush(bridge)

        def decided(bridge: Bridge, result: Any, now: float) -> None:
            if not self.gw.admitted(bridge, result, now):
                return
            bridge.invite = invite
            self.gw.dialog.send(bridge, invite)
            bridge.interval = self.gw.settings.t1
            self.gw.arm(bridge, "retransmit", now + bridge.interval)
            self.gw.arm(bridge, "timer-b", now + 64 * self.gw.settings.t1)
        self.gw.decide(bridge, AdmissionRequest(call_id, caller, callee, offer.spec(),
                                                protocol=SignallingProtocol.H323),
                     decided, now)

    def h245_allowed(self, host: str, peer: str, community: str) -> bool:
        """The gateway connects only to an h245Address of the party it talks to: the
        connection's own peer address, or an address of the same community (never an
        address a message could point anywhere)."""
        return host == peer or (bool(community) and self.gw.directory.by_address(host) == community)

    def refuse(self, conn: int, crv: int, guid: bytes, cause: int) -> None:
        self.gw.count(f"h323-refused-{cause}")
        self.send_release(conn, crv, True, guid, cause)
        self.gw.emit(StreamClose(conn))
        self.gw.framers.pop(conn, None)
        self.gw.peers.pop(conn, None)

    def closed(self, conn: int, now: float) -> None:
        h245 = self.gw.by_h245.pop(conn, None)
        if h245 is not None:                               # losing H.245 ends the call (H.323 8.5)
            self.gw.framers.pop(conn, None)
            h245.h245_conn = None
            if h245.phase is not Phase.ENDED:
                self.gw.end(h245, TEMPORARY_FAILURE, "h245: its connection closed", now)
            return
        self.gw.framers.pop(conn, None)
        self.gw.peers.pop(conn, None)
        bridge = self.gw.by_conn.get(conn)
        if bridge is not None and bridge.phase is not Phase.ENDED:
            self.gw.end(bridge, TEMPORARY_FAILURE, "h323: connection closed", now, from_h323=True, closed=True)

    def send_setup(self, bridge: Bridge, user: str, request: Request, target: tuple[str, int], now: float) -> None:
        """S->H, admitted: open the connection to the H.323 PBX and send the Setup."""
        offer, guid, conn, crv = bridge.offer, bridge.guid, bridge.conn, bridge.crv
        assert offer is not None
        called = user.lstrip("+") if user.lstrip("+").isdigit() else user
        try:
            calling = parse_uri(parse_name_addr(request.header("from") or "").uri).user or ""
        except ParseError:                                   # a From URI that does not parse: no calling number
            calling = ""
        self.gw.framers[conn] = TpktFramer()
        bridge.h323_open = True
        self.gw.emit(StreamOpen(conn, target[0], target[1]))
        setup: tuple[str, dict[str, Any]] = ("setup", {
            "protocolIdentifier": PROTOCOL_ID,
            "sourceAddress": [alias(calling)] if calling else [("h323-ID", "mam-gw")],
            "sourceInfo": gateway_type(), "destinationAddress": [alias(called)], "activeMC": False,
            "conferenceID": guid, "conferenceGoal": ("create", 0), "callType": ("pointToPoint", 0),
            "sourceCallSignalAddress": ("ipAddress", {"ip": packed(self.gw.settings.h323_host),
                                                      "port": self.gw.settings.h323_port}),
            "callIdentifier": {"guid": guid},
            "mediaWaitForConnect": False, "canOverlapSend": False, "multipleCalls": False,
            "maintainConnection": False})
        h245: list[bytes] = []
        if offer.receive is not None:
            setup[1]["fastStart"] = faststart_offer(offer, MediaEndpoint(offer.receive.ip, offer.receive.port + 1))
        else:                                               # late offer: H.245 tunnelled in the Setup
            h245 = bridge.setup_h245 = self.gw.h245.setup_messages(bridge, now)
        ies: list[tuple[int, bytes]] = [(IE.BEARER_CAPABILITY, SPEECH_BEARER)]
        if calling.lstrip("+").isdigit():
            ies.append((IE.CALLING_PARTY_NUMBER, number_ie(calling.lstrip("+"), calling=True)))
        if called.isdigit():
            ies.append((IE.CALLED_PARTY_NUMBER, number_ie(called)))
        self.send(conn, crv, False, MessageType.SETUP, setup, ies=ies, h245=h245, tunnelling=bool(h245))
        self.gw.arm(bridge, "t303", now + self.gw.settings.t303)

    def send_to_caller(self, bridge: Bridge, kind: int, name: str, faststart: list[bytes] | None, *,
                       h245: list[bytes] | None = None, progress: int | None = None) -> None:
        fields: dict[str, Any] = {"protocolIdentifier": PROTOCOL_ID, "destinationInfo": gateway_type(),
                                  "callIdentifier": {"guid": bridge.guid}}
        if kind == MessageType.CONNECT:
            fields["conferenceID"] = bridge.guid
        if faststart and not bridge.faststart_sent:
            fields["fastStart"] = faststart
            bridge.faststart_sent = True
        ies: list[tuple[int, bytes]] | None = \
            [(IE.PROGRESS_INDICATOR, progress_ie(progress))] if progress is not None else None
        self.send(bridge.conn, bridge.crv, True, kind, (name, fields), ies=ies, h245=h245,
                  tunnelling=bridge.tunnelling)

    def h245_in(self, bridge: Bridge, controls: list[Any], now: float) -> None:
        """Tunnelled H.245 from the H.323 leg: each userInputIndication becomes a SIP INFO."""
        for data in controls:
            try:
                kind, value = decode_h245(bytes(data))
            except (Asn1Error, TypeError, ValueError):
                self.gw.count("h245-undecodable")
                continue
            digit, duration = user_input(kind, value)
            if digit is None:
                continue                                 # other H.245 (capabilities ...): not carried
            self.dtmf_to_sip(bridge, digit, duration, now)

    def dtmf_to_sip(self, bridge: Bridge, digit: str, duration: int, now: float) -> None:
        """A userInputIndication's digit -> an INFO in the SIP dialog (after the answer)."""
        if bridge.phase is not Phase.CONNECTED:
            self.gw.count("dtmf-before-answer")
            return
        self.gw.count("dtmf-h323-to-sip")
        body = f"Signal={digit}\r\nDuration={duration}\r\n".encode("ascii")
        self.gw.dialog.in_dialog(bridge, "INFO", (("content-type", "application/dtmf-relay"),), body, now)

    def send(self, conn: int, crv: int, to_originator: bool, kind: int, body: tuple[str, dict[str, Any]],
                   *, cause: int | None = None, ies: list[tuple[int, bytes]] | None = None,
                   h245: list[bytes] | None = None, tunnelling: bool = False) -> None:
        """One Q.931 message with its UUIE. ``h245Tunnelling`` is said only on calls that
        tunnel H.245 (``tunnelling``) or when the message carries some: a fastStart call's
        messages do not claim it, so its H.323 party never waits on tunnelled H.245 answers."""
        message = Q931(kind, crv, to_originator, tuple(ies or ()))
        if cause is not None:
            message = message.with_ie(IE.CAUSE, cause_ie(cause))
        pdu: dict[str, Any] = {"h323-message-body": body}
        if h245 or tunnelling:
            pdu["h245Tunnelling"] = True
        if h245:
            pdu["h245Control"] = h245
        message = message.with_user_user(encode_uu({"h323-uu-pdu": pdu}))
        self.gw.emit(StreamSend(conn, tpkt(q931_bytes(message))))

    def send_release(self, conn: int, crv: int, to_originator: bool, guid: bytes, cause: int, *,
                     h245: list[bytes] | None = None, tunnelling: bool = False) -> None:
        fields: dict[str, Any] = {"protocolIdentifier": PROTOCOL_ID, "reason": (release_reason(cause), 0)}
        if len(guid) == 16:
            fields["callIdentifier"] = {"guid": guid}
        self.send(conn, crv, to_originator, MessageType.RELEASE_COMPLETE, ("releaseComplete", fields),
                  cause=cause, h245=h245, tunnelling=tunnelling)
