"""The stateful SIP proxy core that asks admission before it forwards a call (sans-IO).

Bytes, their source and ``now`` go in (:meth:`SipProxy.receive`); :class:`Send` outputs
come out. Timers: :meth:`SipProxy.next_timer` / :meth:`SipProxy.handle_timer`. No sockets,
clocks, threads or randomness: branches and tags come from the :class:`IdSource` the
shell passes in (a keyed hash, so equal inputs give equal ids).

This module holds transactions and routing; the call flow (admission, media, release,
ending calls) is :mod:`.calls`. Per call (see docs/sip.md):

* initial INVITE: SDP offer -> :class:`MediaSpec` + caller media address; caller community
  from the From domain, else the source address; callee community from the Request-URI;
  level of service from Resource-Priority / emergency numbers / fax hints; admission.
  Admitted: forward with Record-Route. Rejected: 503 / 488 / 580 / 403 with a Reason header.
* 18x/2xx with SDP: the answerer's media address -> media attached once both are known.
* release on BYE (either side), CANCEL, any final >= 300, timer B/C, ACK/session/lifetime
  timeouts, :meth:`SipProxy.media_idle`; BYEs when the controller ends a call.
* re-INVITE with different media: modify; refused -> 488/503 and the old allocation stays.

Call control is asked through :mod:`.control_jobs`: at once (in-process admission), or,
with ``deferred=True``, by the shell off its loop (``take_jobs`` / ``job_done``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Protocol

from ..call_control import CallControl
from .call_state import CallPhase, CallRecord, InviteContext
from .calls import REJECTIONS, CallFlow, _Pending, _required, reason_header
from .control_jobs import JobResult
from .errors import ParseError
from .ids import IdSource
from .overload import OverloadGate, fast_reject, is_reject_ack
from .message import (Header, Message, NameAddr, Partial, Request, Response, SipUri, Via, build_response,
                      check_addresses, parse_message, parse_name_addr, parse_uri, parse_via, pop_first_value,
                      prepend_header, render_params, serialize, set_header, with_headers)
from .proxy_config import ProxyConfig
from .proxy_stats import ProxyStats
from .sdp import CallMedia
from .transaction import ClientTransaction, Event, Peer, Send, ServerTransaction, State, Timers, server_key

log = logging.getLogger(__name__)


class Normaliser(Protocol):
    """Rewrites messages from and to the PBXs of communities with a profile."""

    def inbound(self, message: Message, source: Peer) -> Message: ...

    def outbound(self, sends: list[Send]) -> list[Send]: ...

    def refuse(self, request: Request, hop: Peer) -> tuple[int, tuple[tuple[str, str], ...]] | None: ...

REASON_PHRASES = {100: "Trying", 200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                  405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
                  416: "Unsupported URI Scheme", 420: "Bad Extension", 422: "Session Interval Too Small",
                  481: "Call/Transaction Does Not Exist",
                  482: "Loop Detected", 483: "Too Many Hops", 487: "Request Terminated",
                  488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable",
                  505: "Version Not Supported", 580: "Precondition Failure"}

__all__ = ["REASON_PHRASES", "REJECTIONS", "SipProxy", "reason_header"]


class SipProxy(CallFlow):
    def __init__(self, config: ProxyConfig, control: CallControl, ids: IdSource, *, deferred: bool = False) -> None:
        self.config = config
        self.control = control
        self.ids = ids
        self.deferred = deferred
        self.stats = ProxyStats()
        self.calls: dict[str, CallRecord] = {}
        self._servers: dict[tuple[str, str, str], ServerTransaction] = {}
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._timers = Timers()
        self._out: list[Send] = []
        self._own_sent_by = f"{config.host}:{config.port}"      # in our Via and Record-Route
        self._record_routes: dict[tuple[str, str], tuple[Header, ...]] = {}   # (in, out transport) -> entries
        self.own_ports = {config.port}     # ports of ours a URI may name (a worker adds the shared one)
        self.overload = OverloadGate(config.overload)
        self._reject_tag = "ovl" + ids("overload-tag")[:12]      # our stateless 503s' To tag
        self._reject_tag_bytes = self._reject_tag.encode()
        self.normaliser: Normaliser | None = None      # per-PBX profiles (gateway/normalise.py)
        self._init_calls()

    # --- entry points (never raise) ---------------------------------------------------

    def receive(self, data: bytes, source: Peer, now: float, waited: float = 0.0) -> list[Send]:
        """One UDP datagram (or one framed TCP message) from ``source``, which ``waited``
        seconds in the kernel before it was read (the shell's measure of its backlog)."""
        self.stats.received += 1
        if waited:
            self.overload.note(waited, now)
        if data[:7] == b"INVITE ":
            refused = self._refuse_fast(data, source, now)
            if refused is not None:
                return refused
        elif data[:4] == b"ACK " and is_reject_ack(data, self._reject_tag_bytes):
            self.stats.overload_acks += 1           # the ACK of one of our stateless 503s
            return []
        if not data.strip(b"\r\n\t \x00"):
            self.stats.keepalives += 1
            return []
        try:
            message: Message | ParseError = parse_message(data, self.config.max_message_bytes)
        except ParseError as error:
            message = error
        return self._run(self._dispatch, message, source, now)

    def receive_message(self, message: Message | ParseError, source: Peer, now: float) -> list[Send]:
        """An item cut from a TCP stream by :class:`~.message.StreamFramer`."""
        self.stats.received += 1
        return self._run(self._dispatch, message, source, now)

    def next_timer(self) -> float | None:
        return self._timers.next()

    def open_transactions(self) -> int:
        return len(self._servers) + len(self._clients)

    def _overloaded(self) -> str | None:
        return self.overload.over(len(self._servers) + len(self._clients), len(self._waiting))

    def _refuse_fast(self, data: bytes, source: Peer, now: float) -> list[Send] | None:
        """Overloaded: a new INVITE gets a stateless 503 from its raw bytes (see overload.py);
        so does a retransmission of one refused before, overloaded or not."""
        reason = self._overloaded()
        if reason is None:
            return None                              # (a refused one's retransmission: see _on_request)
        config = self.config.overload
        refusal = fast_reject(data, self._reject_tag_bytes, config.retry_after_s, self.overload)
        if refusal is None:
            return None                              # in-dialog, or the parser's business
        reply, top = refusal
        try:
            via = parse_via(top.decode("utf-8"))
        except (ParseError, UnicodeDecodeError):
            return None
        key = (via.branch or "", via.sent_by)
        if self.overload.refused_before(key):
            self.stats.overload_retransmissions += 1
            return [Send(reply, source)]
        if (key[0], key[1], "INVITE") in self._servers:
            return None                              # a retransmission of an INVITE in progress
        self.overload.remember(key, now)
        self._count_refusal(reason, now)
        return [Send(reply, source)]

    def _count_refusal(self, reason: str, now: float) -> None:
        stats = self.stats
        stats.overload_rejected += 1
        stats.overload_reasons[reason] = stats.overload_reasons.get(reason, 0) + 1
        self.overload.count(True, now)

    def handle_timer(self, now: float) -> list[Send]:
        return self._run(self._timers_due, now)

    def media_idle(self, call_id: str, now: float) -> list[Send]:
        """The data plane saw no media for the call: release it and BYE both parties."""
        self.stats.media_idle += 1
        return self._run(self._end_call, call_id, now, "media-idle", release=True)

    def call_ended(self, call_id: str, cause: str, now: float, serial: int | None = None) -> list[Send]:
        """Admission ended the call itself (preempted, released over REST, aggregate deleted):
        BYE both parties, if it is the admission we hold (``serial``; None: any)."""
        return self._run(self._controller_ended, call_id, cause, serial, now)

    def reconcile(self, held: Mapping[str, int], as_of: float, now: float) -> list[Send]:
        """The controller's SIP calls (call id -> serial) as they stood at ``as_of``: calls we
        hold from before then that it no longer holds get BYEs (REST mode's view)."""
        return self._run(self._reconcile, held, as_of, now)

    def restore(self, dialogs: Iterable[Mapping[str, Any]], now: float) -> list[Send]:
        """Calls set up before a restart, from their saved dialogs (:meth:`CallRecord.to_dialog`)."""
        return self._run(self._restore, dialogs, now)

    def job_done(self, ticket: int, result: JobResult, now: float) -> list[Send]:
        """Deferred mode: the answer to a job from :meth:`take_jobs`."""
        return self._run(self._job_done, ticket, result, now)

    def _run(self, handler: Callable[..., None], *args: Any, **kwargs: Any) -> list[Send]:
        self._out = []
        try:
            handler(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the proxy must outlive its own bugs
            self.stats.internal_errors += 1
            log.exception("SIP proxy failed in %s", getattr(handler, "__name__", handler))
        out, self._out = self._out, []
        return out if self.normaliser is None else self.normaliser.outbound(out)

    # --- dispatch ---------------------------------------------------------------------

    def _dispatch(self, message: Message | ParseError, source: Peer, now: float) -> None:
        if self.normaliser is not None and not isinstance(message, ParseError):
            message = self.normaliser.inbound(message, source)
        if isinstance(message, ParseError):
            self._malformed(message, source)
        elif isinstance(message, Request):
            self._on_request(message, source, now)
        else:
            self._on_response(message, source, now)

    def _malformed(self, error: ParseError, source: Peer) -> None:
        stats = self.stats
        stats.malformed += 1
        log.debug("malformed message from %s: %s", source, error.message)
        if error.status_hint == 413:
            stats.oversized += 1
        partial = error.partial
        if (partial is not None and partial.method not in (None, "ACK")
                and all(partial.header(h) for h in ("via", "call-id", "cseq", "from", "to"))):
            status = error.status_hint if error.status_hint in REASON_PHRASES else 400
            tag = self.ids("tag", partial.header("call-id") or "", partial.header("via") or "")
            response = build_response(partial, status, REASON_PHRASES[status], to_tag=tag,
                                      extra=[("warning", f'399 {self.config.host} "{_quote(error.message)}"')])
            stats.answered_malformed += 1
            self._out.append(Send(serialize(response), source))
        else:
            stats.dropped += 1

    # --- requests ---------------------------------------------------------------------

    def _on_request(self, request: Request, source: Peer, now: float) -> None:
        try:
            via = request.top_via
            number, cseq_method = request.cseq
            sender = parse_name_addr(_required(request, "from"))
            to = parse_name_addr(_required(request, "to"))
            request.call_id  # noqa: B018 - validates presence
            uri = parse_uri(request.uri)
            if cseq_method != request.method:
                raise ParseError(f"CSeq method {cseq_method} does not match {request.method}")
            check_addresses(request)
        except ParseError as error:
            self._malformed(ParseError(error.message, error.status_hint, Partial(request.method, request.headers)),
                            source)
            return
        if request.method == "INVITE" and to.tag is None:
            reason = self._overloaded()             # (over UDP the fast path answered already)
            refused_before = self.overload.refused_before((via.branch or "", via.sent_by))
            if refused_before or (reason is not None and
                                  server_key(via.branch, via.sent_by, "INVITE", request) not in self._servers):
                if refused_before:
                    self.stats.overload_retransmissions += 1
                else:
                    assert reason is not None
                    self.overload.remember((via.branch or "", via.sent_by), now)
                    self._count_refusal(reason, now)
                response = self._reply(request, 503, reason=(42, "overload: new calls refused"),
                                       extra=[("retry-after", str(self.config.overload.retry_after_s))],
                                       to_tag=self._reject_tag)
                self._out.append(Send(serialize(response), source))
                return
        elif request.method == "ACK" and to.tag == self._reject_tag:
            self.stats.overload_acks += 1
            return
        request = self._stamp_via(request, via.host, via.params, source)
        key = server_key(via.branch, via.sent_by, request.method, request)
        if request.method == "ACK":
            invite = self._servers.get(key)
            if invite is not None and invite.state in (State.COMPLETED, State.CONFIRMED):
                invite.ack(now)                         # ACK of a non-2xx final: ends here
            else:
                self._forward_ack(request, key, sender, now)
            return
        server = self._servers.get(key)
        if server is not None:
            self.stats.retransmissions += 1
            self._out.extend(server.retransmission())
            return
        server = ServerTransaction(key, request, source, self._timers, self.config.timers)
        self._servers[key] = server
        if request.method == "CANCEL" and self._on_cancel(server, now):
            return
        if request.method == "INVITE":
            self._respond(server, 100, now, to_tag=None)
        try:
            self._route_request(server, request, uri, sender, to, number, source, now)
        except ParseError as error:
            self.stats.malformed += 1
            self.stats.answered_malformed += 1
            self._respond(server, error.status_hint if error.status_hint in REASON_PHRASES else 400, now,
                          extra=[("warning", f'399 {self.config.host} "{_quote(error.message)}"')])

    def _route_request(self, server: ServerTransaction, request: Request, uri: SipUri, sender: NameAddr,
                       to: NameAddr, number: int, source: Peer, now: float) -> None:
        hops = _max_forwards(request)
        if hops == 0:
            self._respond(server, 483, now)
            return
        if request.header_values("proxy-require"):
            self._respond(server, 420, now, extra=[("unsupported", ", ".join(request.header_values("proxy-require")))])
            return
        request = self._pop_own_routes(set_header(request, "max-forwards", str(min(hops, 256) - 1)))
        routes = request.header_values("route")
        if not routes and self._is_own(uri):
            self._respond(server, 200 if request.method == "OPTIONS" else 404, now,
                          extra=[("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")])
            return
        hop = self._next_hop(request, uri, routes)
        if hop is None:
            self._respond(server, 404, now, reason=(3, f"no route to {uri.host or uri.user}"))
            return
        refusal = None if self.normaliser is None else self.normaliser.refuse(request, hop)
        if refusal is not None:              # an extension the PBX lacks: its answer, before admission
            self._respond(server, refusal[0], now, extra=list(refusal[1]))
            return
        if request.method == "INVITE":
            if to.tag is None:
                self._initial_invite(server, request, uri, sender, number, source, hop, now)
            else:
                self._reinvite(server, request, sender, number, hop, now)
            return
        call_id = request.call_id
        record = self.calls.get(call_id)
        if record is not None:
            leg = record.caller if record.is_caller(sender.tag) else record.callee
            leg.cseq = max(leg.cseq, number)
        if request.method == "BYE":            # a call we do not hold (a restart, say) is released too
            self._release(call_id, now, "bye" if record is None else
                          "bye-from-caller" if record.is_caller(sender.tag) else "bye-from-callee")
        elif request.method == "CANCEL":       # a CANCEL matching no INVITE of ours (RFC 3261 16.10)
            self._release(call_id, now, "cancel")
        self._forward(server, request, hop, None, now)

    def _forward(self, server: ServerTransaction | None, request: Request, hop: Peer,
                 context: InviteContext | None, now: float) -> str:
        branch = "z9hG4bK" + self.ids("branch", *(server.key if server else ("local", request.call_id)))
        request = prepend_header(request, "via", f"SIP/2.0/{hop.transport.upper()} {self._own_sent_by};branch={branch}")
        client = ClientTransaction((branch, request.method), request, hop, server, self._timers, self.config.timers)
        client.context = context
        self._clients[client.key] = client
        if server is not None:
            server.client = client
            self.stats.requests_forwarded += 1
        self._out.extend(client.start(now))
        return branch

    def _forward_ack(self, request: Request, key: tuple[str, str, str], sender: NameAddr, now: float) -> None:
        """ACK of a 2xx: end to end, statelessly, along the route set."""
        try:
            hops = _max_forwards(request)
            if hops == 0:
                return
            request = self._pop_own_routes(set_header(request, "max-forwards", str(min(hops, 256) - 1)))
            routes = request.header_values("route")
            hop = self._next_hop(request, parse_uri(request.uri), routes)
        except ParseError:
            self.stats.malformed += 1
            self.stats.dropped += 1
            return
        if hop is None:
            self.stats.dropped += 1
            return
        record = self.calls.get(request.call_id)
        if record is not None:
            self._timers.cancel(record, "ack")
            if request.body:
                answer = self._sdp(request)            # late offer: the caller answers in the ACK
                if isinstance(answer, CallMedia) and answer.endpoint is not None:
                    if record.is_caller(sender.tag):
                        record.caller_media = answer.endpoint
                    else:
                        record.callee_media = answer.endpoint
                    self._attach(record, now)
        branch = "z9hG4bK" + self.ids("ack", *key)
        request = prepend_header(request, "via", f"SIP/2.0/{hop.transport.upper()} {self._own_sent_by};branch={branch}")
        self.stats.requests_forwarded += 1
        self._out.append(Send(serialize(request), hop))

    def _on_cancel(self, server: ServerTransaction, now: float) -> bool:
        """A CANCEL of an INVITE we hold: answered here, cancelled downstream. False when it
        matches no INVITE of ours (then it is routed like any request)."""
        invite = self._servers.get((server.key[0], server.key[1], "INVITE"))
        if invite is None:
            return False
        self._respond(server, 200, now)
        if invite.final_sent:
            return True
        client = invite.client
        if client is None:                             # still waiting for admission: answer it now
            self._respond(invite, 487, now)
        elif not client.cancelled:
            if client.state is State.PROCEEDING:
                self._send_cancel(client, now)
            else:
                client.cancel_pending = True           # CANCEL only after a provisional (9.1)
        if invite.request.call_id in self.calls:
            self._release(invite.request.call_id, now, "cancel")
        return True

    def _send_cancel(self, client: ClientTransaction, now: float) -> None:
        cancel = ClientTransaction((client.key[0], "CANCEL"), client.cancel_request(), client.peer, None,
                                   self._timers, self.config.timers)
        self._clients[cancel.key] = cancel
        client.cancel_sent(now)
        self._out.extend(cancel.start(now))

    # --- responses --------------------------------------------------------------------

    def _on_response(self, response: Response, source: Peer, now: float) -> None:
        try:
            via = response.top_via
            _, method = response.cseq
        except ParseError:
            self.stats.malformed += 1
            self.stats.dropped += 1
            return
        client = self._clients.get((via.branch or "", method))
        if client is None:
            self._stray_response(response, via, method, now)
            return
        if client.invite and response.status < 300:
            try:                       # the Contact and Record-Route we may send BYEs to later
                check_addresses(response)
            except ParseError:
                self.stats.malformed += 1
                self.stats.dropped += 1
                return
        forward, sends = client.receive(response, now)
        self._out.extend(sends)
        if not forward:
            self.stats.retransmissions += 1
            return
        context = client.context
        if client.invite:
            if response.status < 200 and client.cancel_pending:
                self._send_cancel(client, now)
            self._invite_response(client, response, now)
        elif method == "UPDATE" and 200 <= response.status < 300:
            record = self.calls.get(response.header("call-id") or "")
            if record is not None:
                self._session_refresh(record, response, now)      # RFC 4028 refresh by UPDATE
        if client.server is None or response.status == 100:
            return                                          # ours, or hop-by-hop
        upstream = pop_first_value(response, "via")
        if not upstream.has("via"):    # a peer that answered from our CANCEL: use the request's Vias
            upstream = with_headers(upstream, tuple(
                (k, v) for k, v in client.server.request.headers if k == "via") + upstream.headers)
        self.stats.responses_forwarded += 1
        self._out.extend(client.server.respond(upstream, now))
        if (isinstance(context, InviteContext) and context.record is not None
                and context.record.extra.pop("bye_after_2xx", False)):   # ended while it rang: end it now
            self._bye_both(context.record, context.record.ended_cause, now)

    def _stray_response(self, response: Response, via: Via, method: str, now: float) -> None:
        """No transaction matches (RFC 6026 drops every such response). Forwarded, statelessly,
        only a 2xx to the INVITE of a call we hold and record-routed, carrying the branch we
        gave that INVITE, and only to where that INVITE came from (not to an address the
        response names). Anything else is dropped and counted: see docs/sip.md."""
        record = self.calls.get(response.header("call-id") or "")
        if (method == "INVITE" and 200 <= response.status < 300 and record is not None
                and record.upstream is not None and via.sent_by == self._own_sent_by
                and via.branch is not None and via.branch == record.invite_branch):
            upstream = pop_first_value(response, "via")
            if upstream.has("via"):
                self.stats.stray_forwarded += 1
                self._out.append(Send(serialize(upstream), record.upstream))
                return
        self.stats.stray_responses += 1

    def _respond(self, server: ServerTransaction, status: int, now: float, *, to_tag: str | None = "",
                 reason: tuple[int, str] | None = None, extra: list[tuple[str, str]] | None = None) -> None:
        response = self._reply(server.request, status, reason=reason, extra=extra, to_tag=to_tag)
        self._out.extend(server.respond(response, now))

    def _reply(self, request: Request, status: int, *, reason: tuple[int, str] | None = None,
               extra: list[tuple[str, str]] | None = None, to_tag: str | None = "") -> Response:
        headers = list(extra or [])
        if reason is not None:
            headers.append(("reason", reason_header(*reason)))
        if to_tag == "":
            to_tag = self.ids("tag", request.header("call-id") or "", request.header("via") or "")
        return build_response(request, status, REASON_PHRASES.get(status, "Unknown"), to_tag=to_tag, extra=headers)

    # --- timers -----------------------------------------------------------------------

    def _timers_due(self, now: float) -> None:
        for owner, name in self._timers.due(now):
            sends, event = owner.on_timer(name, now)  # type: ignore[attr-defined]
            self._out.extend(sends)
            if event is None:
                continue
            if event is Event.TERMINATED:
                self._forget(owner)
            elif event is Event.TIMEOUT:
                self._client_timeout(owner, now)  # type: ignore[arg-type]
            elif event is Event.TIMER_C:
                self._timer_c(owner, now)  # type: ignore[arg-type]
            elif event is Event.CONTROL_TIMEOUT:
                assert isinstance(owner, _Pending)
                self._control_timeout(owner, now)
            else:
                assert isinstance(owner, CallRecord)
                self._call_timer(owner, event, now)

    def _forget(self, owner: object) -> None:
        """Drop a finished transaction (and break the server<->client cycle, so reference
        counting frees the pair without waiting for the cyclic garbage collector)."""
        if isinstance(owner, ServerTransaction):
            if self._servers.get(owner.key) is owner:
                del self._servers[owner.key]
            if owner.client is not None and owner.client.state is State.TERMINATED:
                owner.client.server = None
                owner.client = None
        elif isinstance(owner, ClientTransaction):
            if self._clients.get(owner.key) is owner:
                del self._clients[owner.key]
            server = owner.server
            if server is not None and server.state is State.TERMINATED:
                server.client = None
                owner.server = None

    def _client_timeout(self, client: ClientTransaction, now: float) -> None:
        self._forget(client)
        if client.server is None:
            return
        self.stats.timeouts += 1
        context = client.context
        if isinstance(context, InviteContext):
            record = context.record if context.initial else self.calls.get(context.call_id)
            if context.initial:
                if record is not None and record.phase is not CallPhase.ENDED:
                    self._release(context.call_id, now, "timeout")
            elif record is not None and context.previous_media is not None:
                self._revert(record, context.previous_media, now)
        if not client.server.final_sent:
            self._respond(client.server, 408, now)

    def _timer_c(self, client: ClientTransaction, now: float) -> None:
        self.stats.timer_c += 1
        context = client.context
        if (isinstance(context, InviteContext) and context.initial and context.record is not None
                and context.record.phase is not CallPhase.ENDED):
            self._release(context.call_id, now, "timer-c")
        if client.state is State.PROCEEDING:
            self._send_cancel(client, now)            # the callee's 487 goes upstream
        else:
            client.terminate()
            self._client_timeout(client, now)

    # --- helpers ----------------------------------------------------------------------

    def _stamp_via(self, request: Request, host: str, params: tuple[tuple[str, str | None], ...],
                   source: Peer) -> Request:
        """RFC 3261 18.2.1 / RFC 3581: note where the request really came from."""
        rport = any(k == "rport" for k, _ in params)
        if host.strip("[]") == source.host and not rport:
            return request
        kept = tuple((k, v) for k, v in params if k not in ("received", "rport"))
        kept += (("received", source.host),)
        if rport:
            kept += (("rport", str(source.port)),)
        top = parse_via(request.header_values("via")[0])
        value = f"SIP/2.0/{top.transport} {top.sent_by}{render_params(kept)}"
        return prepend_header(pop_first_value(request, "via"), "via", value)

    def _is_own(self, uri: SipUri) -> bool:
        return uri.host == self.config.host and (uri.port or 5060) in self.own_ports

    def _is_own_route(self, value: str) -> bool:
        try:
            return self._is_own(parse_uri(parse_name_addr(value).uri))
        except ParseError:
            return False

    def _pop_own_routes(self, request: Request) -> Request:
        while True:
            routes = request.header_values("route")
            if not routes or not self._is_own_route(routes[0]):
                return request
            request = pop_first_value(request, "route")

    def _next_hop(self, request: Request, uri: SipUri, routes: list[str]) -> Peer | None:
        target = parse_uri(parse_name_addr(routes[0]).uri) if routes else uri
        return self.config.routes.lookup(target)

    def _record_route(self, request: Request, inbound: str, outbound: str) -> Request:
        entries = self._record_routes.get((inbound, outbound))
        if entries is None:
            def entry(transport: str) -> Header:
                suffix = ";transport=tcp" if transport == "tcp" else ""
                return ("record-route", f"<sip:{self._own_sent_by}{suffix};lr>")
            entries = (entry(outbound), entry(inbound)) if inbound != outbound else (entry(inbound),)  # RFC 5658
            if len(self._record_routes) < 16:
                self._record_routes[(inbound, outbound)] = entries
        headers = request.headers
        index = 0                                  # after the Via headers ...
        for i, (name, _) in enumerate(headers):
            if name == "record-route":             # ... or on top of the Record-Route list
                index = i
                break
            if name == "via":
                index = i + 1
        return with_headers(request, headers[:index] + entries + headers[index:])

    # --- introspection ----------------------------------------------------------------

    def transaction_counts(self) -> tuple[int, int]:
        return len(self._servers), len(self._clients)


def _max_forwards(request: Request) -> int:
    value = request.header("max-forwards")
    if value is None:
        return 70
    value = value.strip()
    if not value.isdigit() or len(value) > 3:
        raise ParseError(f"bad Max-Forwards {value[:10]!r}")
    return int(value)


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


def _quote(text: str) -> str:
    return text.replace("\\", "/").replace('"', "'").replace("\r", " ").replace("\n", " ")[:200]
