"""The proxy's call flow: admission of INVITEs, media, release, and ending calls itself.

A mixin of :class:`~.proxy.SipProxy` (which owns transactions and routing); split off by
concept, it shares the proxy's state. Call control is asked only through
:mod:`.control_jobs` values: at once with in-process admission, or later through the
shell (``deferred``), with the same code path and continuations either way.

Calls whose parties vanish are reclaimed here: no ACK for the 2xx within 64·T1, no
RFC 4028 session refresh before the negotiated interval ends, or (without session
timers) ``max_call_s`` after admission: the call is released and both parties get a
BYE. So are calls the controller ended (``call_ended`` with the admission's serial, or
``reconcile`` with the controller's list of calls).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Iterable, Mapping

from ryu_apps.core.admission import Admitted, Decision, Rejected, RejectReason, ServiceLevel

from ..call_control import AttachMedia, CallControl, Modify, Release
from .call_state import CallPhase, CallRecord, InviteContext, Leg
from .control_jobs import (AdmitCall, CallAdmission, ControlFailed, Job, JobResult, SaveDialog, run_job,
                           stores_dialogs)
from .errors import ParseError
from .ids import IdSource
from .overload import OverloadGate
from .message import (Message, NameAddr, Request, Response, SipUri, parse_name_addr, parse_uri, prepend_header)
from .proxy_config import ProxyConfig
from .proxy_stats import ProxyStats
from .routing import is_ip
from .sdp import CallMedia, media_of, parse_sdp
from .transaction import ClientTransaction, Event, Peer, Send, ServerTransaction, State, Timers

log = logging.getLogger(__name__)
Then = Callable[[JobResult, float], None]

#: Admission refusals as SIP answers: (status, Q.850 cause) per reason.
REJECTIONS: dict[RejectReason, tuple[int, int]] = {
    RejectReason.POOL_FULL: (503, 34),            # no circuit/channel available
    RejectReason.NO_AGGREGATE: (503, 47),         # resource unavailable, unspecified
    RejectReason.PATH_DOWN: (503, 38),            # network out of order
    RejectReason.CODEC_NOT_ALLOWED: (488, 65),    # bearer capability not implemented
    RejectReason.UNKNOWN_COMMUNITY: (403, 21),    # call rejected
    RejectReason.UNKNOWN_CALL: (481, 41),         # temporary failure
    RejectReason.INVALID_REQUEST: (400, 100),     # invalid information element contents
    RejectReason.STORE_UNAVAILABLE: (503, 41),    # temporary failure: nothing admitted, try again
    RejectReason.CONTENDED: (503, 41),            # the same: other controllers changed the pool first
}
MIN_SESSION_S = 90             # RFC 4028 Min-SE floor


def reason_header(cause: int, text: str) -> str:
    clean = text.replace("\\", "/").replace('"', "'").replace("\r", " ").replace("\n", " ")
    return f'Q.850;cause={cause};text="{clean[:200]}"'


# RFC 4411 preemption causes: 2 when the call's reserved resources were taken (a link that
# reserves less, a path gone), 3 for a preemption the network made for another call.
_PREEMPTION_CAUSES = {"capacity": (2, "Reserved Resources Preempted"), "path-down": (2, "Reserved Resources Preempted"),
                      "priority": (3, "Generic Preemption")}


def bye_reasons(cause: str) -> list[tuple[str, str]]:
    """Reason headers (RFC 3326) for a BYE the proxy sends because admission ended the call:
    ``preemption`` (RFC 4411) first for a preempted call, then the Q.850 cause and the text."""
    if not cause.startswith("preempted"):
        return [("reason", reason_header(102, cause))]
    kind = cause.split(":", 2)[1].strip() if cause.count(":") >= 2 else "priority"
    number, text = _PREEMPTION_CAUSES.get(kind, (3, "Generic Preemption"))
    return [("reason", f'preemption ;cause={number} ;text="{text}"'), ("reason", reason_header(8, cause))]


class _Pending:
    """A job whose answer the core waits for (deferred mode); a timer owner."""

    __slots__ = ("ticket", "job", "then")

    def __init__(self, ticket: int, job: Job, then: Then | None) -> None:
        self.ticket, self.job, self.then = ticket, job, then

    def on_timer(self, name: str, now: float) -> tuple[list[Send], Event | None]:
        return [], Event.CONTROL_TIMEOUT


class CallFlow:
    config: ProxyConfig
    control: CallControl
    ids: IdSource
    stats: ProxyStats
    calls: dict[str, CallRecord]
    _timers: Timers
    _out: list[Send]
    _clients: dict[tuple[str, str], ClientTransaction]
    _own_sent_by: str
    deferred: bool
    overload: OverloadGate

    def _init_calls(self) -> None:
        self._jobs: list[tuple[int, Job]] = []
        self._waiting: dict[int, _Pending] = {}
        self._tickets = itertools.count(1)
        self._dialogs = stores_dialogs(self.control)

    # --- asking call control ------------------------------------------------------------

    def take_jobs(self) -> list[tuple[int, Job]]:
        """Deferred mode: the jobs to run (in order per call id), each answered by ``job_done``."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def _ask(self, job: Job, then: Then | None = None, now: float = 0.0) -> None:
        if not self.deferred:
            try:
                result = run_job(self.control, job)
            except Exception as error:  # noqa: BLE001 - a failing controller must not take the proxy down
                log.warning("call control %s failed: %s", type(job).__name__, error, exc_info=True)
                result = ControlFailed(f"{type(error).__name__}: {error}")
            self._answered(job, result, then, now)
            return
        ticket = next(self._tickets)
        self._jobs.append((ticket, job))
        if then is not None or isinstance(job, AdmitCall):
            pending = self._waiting[ticket] = _Pending(ticket, job, then)
            self._timers.set(pending, "control", now + self.config.control_timeout_s)

    def _job_done(self, ticket: int, result: JobResult, now: float) -> None:
        pending = self._waiting.pop(ticket, None)
        if pending is None:              # fire-and-forget, or answered after its timeout
            if isinstance(result, ControlFailed):
                self.stats.control_errors += 1
            else:
                self._late_admission(result)
            return
        self._timers.cancel(pending, "control")
        self._answered(pending.job, result, pending.then, now)

    def _control_timeout(self, pending: _Pending, now: float) -> None:
        if self._waiting.pop(pending.ticket, None) is not None:
            self._answered(pending.job, ControlFailed("no answer in time"), pending.then, now)

    def _answered(self, job: Job, result: JobResult, then: Then | None, now: float) -> None:
        if isinstance(result, ControlFailed):
            self.stats.control_errors += 1
        if then is not None:
            then(result, now)

    def _late_admission(self, result: JobResult) -> None:
        """An admission answered after we gave up on it: undo it."""
        decision = result.decision if isinstance(result, CallAdmission) else result
        if isinstance(decision, Admitted):
            self.stats.released += 1
            self._ask(Release(decision.call_id, "admission-too-late"))

    # --- initial INVITE -------------------------------------------------------------------

    def _initial_invite(self, server: ServerTransaction, request: Request, uri: SipUri, sender: NameAddr,
                        number: int, source: Peer, hop: Peer, now: float) -> None:
        self.overload.count(False, now)
        offer = self._sdp(request)
        if isinstance(offer, Response):
            self._out.extend(server.respond(offer, now))
            return
        try:
            caller_domain = parse_uri(sender.uri).host or None
        except ParseError:
            caller_domain = None
        media = offer.spec if offer is not None else self.config.late_offer_media
        level = self._level(request, uri, offer)
        job = AdmitCall(request.call_id, caller_domain, source.host, uri.host or None,
                        uri.host.strip("[]") if is_ip(uri.host) else None, media, level)

        def decided(result: JobResult, when: float) -> None:
            self._admission_decided(server, request, sender, number, source, hop, offer, level, result, when)
        self._ask(job, decided, now)

    def _admission_decided(self, server: ServerTransaction, request: Request, sender: NameAddr, number: int,
                           source: Peer, hop: Peer, offer: CallMedia | None, level: ServiceLevel,
                           result: JobResult, now: float) -> None:
        call_id = request.call_id
        admission = result if isinstance(result, CallAdmission) else None
        decision = admission.decision if admission is not None else None
        if server.final_sent or server.state is State.TERMINATED:     # cancelled while we asked
            if isinstance(decision, Admitted):
                self.stats.released += 1
                self._ask(Release(call_id, "cancel"), now=now)
            return
        if admission is None:
            self._respond(server, 503, now, reason=(41, "admission-unavailable: call control failed"))
            return
        if admission.caller is None:
            self.stats.forbidden += 1
            self._respond(server, 403, now, reason=(21, "caller outside every community"))
            return
        if admission.callee is None:
            self.stats.rejected["unknown-callee"] = self.stats.rejected.get("unknown-callee", 0) + 1
            self._respond(server, 404, now, reason=(3, "callee outside every community"))
            return
        context = InviteContext(call_id, True, True, offer.endpoint if offer is not None else None)
        if decision is None:                                   # one community: nothing to reserve
            self.stats.unmanaged += 1
        elif isinstance(decision, Rejected):
            self._out.extend(server.respond(self._rejection(request, decision, offer is not None and
                                                            offer.preconditions), now))
            return
        else:
            assert isinstance(decision, Admitted)
            self.stats.admitted += 1
            for victim in decision.preempted:
                self._end_call(victim, now, f"preempted by {call_id}", release=False)
            context.record = self._new_record(request, sender, number, source, admission, decision, offer, level,
                                              now)
        request = self._record_route(request, source.transport, hop.transport)
        branch = self._forward(server, request, hop, context, now)
        if context.record is not None:
            context.record.invite_branch = branch

    def _new_record(self, request: Request, sender: NameAddr, number: int, source: Peer,
                    admission: CallAdmission, decision: Admitted, offer: CallMedia | None, level: ServiceLevel,
                    now: float) -> CallRecord:
        old = self.calls.get(request.call_id)
        if old is not None:                  # a retried INVITE (after 401/407) of a call still held
            self._cancel_call_timers(old)
        assert admission.caller is not None and admission.callee is not None
        record = CallRecord(
            request.call_id, admission.caller, admission.callee, level,
            offer.spec if offer is not None else self.config.late_offer_media, caller_tag=sender.tag or "",
            caller=Leg(_required(request, "from"), _contact(request), tuple(request.header_values("record-route")),
                       number),
            callee=Leg(_required(request, "to")), caller_media=offer.endpoint if offer is not None else None,
            transport=source.transport, admitted_at=now, aggregate_id=decision.aggregate_id,
            serial=decision.serial, upstream=source, invite_cseq=number)
        self.calls[record.call_id] = record
        self._timers.set(record, "lifetime", now + self.config.max_call_s)
        return record

    # --- re-INVITE ------------------------------------------------------------------------

    def _reinvite(self, server: ServerTransaction, request: Request, sender: NameAddr, number: int, hop: Peer,
                  now: float) -> None:
        record = self.calls.get(request.call_id)
        if record is None:                                     # not a call we admitted: just forward
            self._forward(server, request, hop, None, now)
            return
        offer = self._sdp(request)
        if isinstance(offer, Response):
            self._out.extend(server.respond(offer, now))
            return
        by_caller = record.is_caller(sender.tag)
        leg = record.caller if by_caller else record.callee
        leg.cseq = max(leg.cseq, number)
        context = InviteContext(record.call_id, False, by_caller, offer.endpoint if offer is not None else None)
        if offer is None or offer.spec == record.media:
            self._forward(server, request, hop, context, now)
            return
        spec = offer.spec

        def decided(result: JobResult, when: float) -> None:
            if server.final_sent or server.state is State.TERMINATED:
                if isinstance(result, Admitted):               # cancelled meanwhile: back to the old media
                    self._ask(Modify(record.call_id, record.media), now=when)
                return
            if isinstance(result, Rejected):
                self.stats.modify_refused += 1
                self._out.extend(server.respond(self._rejection(request, result, offer.preconditions), when))
            elif not isinstance(result, Admitted):
                self._respond(server, 503, when, reason=(41, "admission-unavailable: call control failed"))
            else:
                self.stats.modified += 1
                context.previous_media, record.media = record.media, spec
                self._forward(server, request, hop, context, when)
        self._ask(Modify(record.call_id, spec), decided, now)

    # --- responses to INVITE ----------------------------------------------------------------

    def _invite_response(self, client: ClientTransaction, response: Response, now: float) -> None:
        context = client.context
        if not isinstance(context, InviteContext):
            return
        record = context.record if context.initial else self.calls.get(context.call_id)
        if record is None:
            return
        status = response.status
        if status >= 300:
            if context.initial:
                if record.phase is not CallPhase.ENDED:
                    self._release(record.call_id, now, f"sip-{status}")
            elif context.previous_media is not None:           # failed re-INVITE: back to the old media
                self._revert(record, context.previous_media, now)
                context.previous_media = None
            return
        if 200 <= status < 300:
            if context.initial and record.phase is not CallPhase.CONFIRMED:
                self._confirm(record, response, now)
            else:
                self._session_refresh(record, response, now)
        if record.phase is CallPhase.ENDED or not response.body:
            return
        answer = self._sdp(response)
        if not isinstance(answer, CallMedia):
            return
        if context.offerer_is_caller:
            if context.offer_endpoint is not None:
                record.caller_media = context.offer_endpoint
            if answer.endpoint is not None:
                record.callee_media = answer.endpoint
        else:
            if context.offer_endpoint is not None:
                record.callee_media = context.offer_endpoint
            if answer.endpoint is not None:
                record.caller_media = answer.endpoint
        if context.initial and answer.spec.codec != record.media.codec:
            self._answer_codec(record, answer, now)    # the answer chose another offered codec
        else:
            self._attach(record, now)

    def _confirm(self, record: CallRecord, response: Response, now: float) -> None:
        """The first 2xx: the dialog exists. Note the callee's side, start its deadlines."""
        record.callee.header = response.header("to") or record.callee.header
        record.callee.contact = _contact(response)
        record_routes = response.header_values("record-route")
        own = next((i for i, value in enumerate(record_routes) if self._is_own_route(value)), len(record_routes))
        record.callee.route = tuple(reversed(record_routes[:own]))
        if record.phase is CallPhase.ENDED:           # ended while ringing, answered anyway: BYE once sent up
            record.extra["bye_after_2xx"] = True
            return
        record.phase = CallPhase.CONFIRMED
        self._timers.set(record, "ack", now + self.config.timers.transaction_timeout)
        self._session_refresh(record, response, now)
        if self._dialogs:
            self._ask(SaveDialog(record.call_id, record.to_dialog()), now=now)

    def _session_refresh(self, record: CallRecord, response: Response, now: float) -> None:
        """RFC 4028: a 2xx with Session-Expires (re)starts the session interval; without
        one, the call is bounded by ``max_call_s`` from admission instead."""
        interval = _session_expires(response)
        if interval is not None:
            record.session_expires = interval
            self._timers.cancel(record, "lifetime")
            self._timers.set(record, "session", now + interval)
        elif record.session_expires is not None:
            record.session_expires = None
            self._timers.cancel(record, "session")
            self._timers.set(record, "lifetime", max(record.admitted_at + self.config.max_call_s, now + 32.0))

    def _answer_codec(self, record: CallRecord, answer: CallMedia, now: float) -> None:
        def decided(result: JobResult, when: float) -> None:
            if isinstance(result, Admitted) and self.calls.get(record.call_id) is record:
                record.media = answer.spec
                self.stats.modified += 1
            else:
                self.stats.modify_refused += 1
            self._attach(record, when)
        self._ask(Modify(record.call_id, answer.spec), decided, now)

    def _revert(self, record: CallRecord, previous: Any, now: float) -> None:
        def decided(result: JobResult, when: float) -> None:
            if isinstance(result, Admitted):
                record.media = previous
        self._ask(Modify(record.call_id, previous), decided, now)

    def _attach(self, record: CallRecord, now: float) -> None:
        pair = record.media_pair()
        if pair is not None and record.phase is not CallPhase.ENDED:
            record.attached = pair
            self._ask(AttachMedia(record.call_id, pair[0], pair[1]), now=now)
            self.stats.attached += 1

    # --- ending calls -----------------------------------------------------------------------

    def _release(self, call_id: str, now: float, cause: str) -> CallRecord | None:
        """A SIP event ended the call (BYE, CANCEL, failure, timer): give its bandwidth back.
        Asked even for a call we do not hold (after a restart, say): release is idempotent."""
        record = self.calls.pop(call_id, None)
        if record is not None:
            self._finish(record, cause)
            self.stats.released += 1
        else:
            self.stats.released_unknown += 1
        self._ask(Release(call_id, cause), now=now)
        return record

    def _finish(self, record: CallRecord, cause: str) -> None:
        record.phase = CallPhase.ENDED
        record.ended_cause = cause
        self._cancel_call_timers(record)

    def _cancel_call_timers(self, record: CallRecord) -> None:
        self._timers.cancel(record, "ack", "session", "lifetime")

    def _end_call(self, call_id: str, now: float, cause: str, *, release: bool, serial: int | None = None) -> None:
        """End a call from the proxy's side: release it (unless admission already did) and
        BYE both parties of a confirmed call, or CANCEL the INVITE of a ringing one."""
        record = self.calls.get(call_id)
        if record is None or (serial is not None and serial != record.serial):
            return                    # not a call we hold, or another admission of that call id
        del self.calls[call_id]
        confirmed = record.phase is CallPhase.CONFIRMED
        self._finish(record, cause)
        if release:
            self.stats.released += 1
            self._ask(Release(call_id, cause), now=now)
        if not self.config.bye_on_media_idle:
            return
        if confirmed:
            self._bye_both(record, cause, now)
            return
        invite = self._clients.get((record.invite_branch, "INVITE"))
        if invite is not None and not invite.cancelled and invite.state in (State.CALLING, State.PROCEEDING):
            if invite.state is State.PROCEEDING:
                self._send_cancel(invite, now)         # the callee's 487 goes upstream
            else:
                invite.cancel_pending = True

    def _bye_both(self, record: CallRecord, cause: str, now: float) -> None:
        for toward_callee in (True, False):
            self._bye(record, toward_callee, cause, now)

    def _bye(self, record: CallRecord, toward_callee: bool, cause: str, now: float) -> None:
        leg, other = (record.callee, record.caller) if toward_callee else (record.caller, record.callee)
        if not leg.contact:
            return
        try:
            first = parse_uri(parse_name_addr(leg.route[0]).uri) if leg.route else parse_uri(leg.contact)
        except ParseError:
            return
        hop = self.config.routes.lookup(first)
        if hop is None:
            return
        other.cseq += 1
        headers = [("max-forwards", "70")] + [("route", value) for value in leg.route] + [
            ("from", other.header), ("to", leg.header), ("call-id", record.call_id),
            ("cseq", f"{other.cseq} BYE")] + bye_reasons(cause)
        request = Request("BYE", leg.contact, tuple(headers))
        branch = "z9hG4bK" + self.ids("bye", record.call_id, "callee" if toward_callee else "caller", str(other.cseq))
        request = prepend_header(request, "via", f"SIP/2.0/{hop.transport.upper()} {self._own_sent_by};branch={branch}")
        client = ClientTransaction((branch, "BYE"), request, hop, None, self._timers, self.config.timers)
        self._clients[client.key] = client
        self._out.extend(client.start(now))

    def _call_timer(self, record: CallRecord, event: Event, now: float) -> None:
        """A call's own deadline passed (ACK, session refresh, longest call)."""
        if self.calls.get(record.call_id) is not record:
            return
        if event is Event.ACK_TIMEOUT:
            self.stats.ack_timeouts += 1
        elif event is Event.SESSION_EXPIRED:
            self.stats.session_expired += 1
        else:
            self.stats.lifetime_ended += 1
        self._end_call(record.call_id, now, event.value, release=True)

    # --- what the controller says -------------------------------------------------------------

    def _controller_ended(self, call_id: str, cause: str, serial: int | None, now: float) -> None:
        record = self.calls.get(call_id)
        if record is not None and (serial is None or serial == record.serial):
            self.stats.controller_ended += 1
            self._end_call(call_id, now, cause, release=False, serial=serial)

    def _reconcile(self, held: Mapping[str, int], as_of: float, now: float) -> None:
        """The controller's calls (call id -> serial) as they stood at ``as_of`` (our clock):
        a call admitted before then that is missing, or held under another serial, ended there."""
        for call_id, record in list(self.calls.items()):
            if record.admitted_at <= as_of and held.get(call_id) != record.serial:
                self._controller_ended(call_id, "ended-by-controller", record.serial, now)

    def _restore(self, dialogs: Iterable[Mapping[str, Any]], now: float) -> None:
        for dialog in dialogs:
            try:
                record = CallRecord.from_dialog(dialog, now)
            except (ValueError, KeyError, TypeError) as error:
                log.warning("cannot restore a SIP dialog: %s", error)
                continue
            if record.call_id in self.calls:
                continue
            self.calls[record.call_id] = record
            self.stats.restored += 1
            if record.session_expires is not None:
                self._timers.set(record, "session", now + record.session_expires)
            else:
                self._timers.set(record, "lifetime", now + self.config.max_call_s)

    # --- helpers ----------------------------------------------------------------------------

    def _level(self, request: Request, uri: SipUri, offer: CallMedia | None) -> ServiceLevel:
        for value in request.header_values("resource-priority"):
            if value.split(".", 1)[0].strip().lower() in self.config.emergency_namespaces:
                return ServiceLevel.EMERGENCY
        dialled = (uri.user or "").split(";", 1)[0]
        dialled = "".join(ch for ch in dialled if ch not in "-.() ")
        if dialled in self.config.emergency_numbers:
            return ServiceLevel.EMERGENCY
        if offer is not None and offer.voice_band_data:
            return ServiceLevel.VOICE_BAND_DATA
        return ServiceLevel.VOICE

    def _sdp(self, message: Message) -> CallMedia | Response | None:
        """The media of a message's SDP body; for a bad offer in a request, a 488 to send."""
        if not message.body:
            return None
        content_type = (message.header("content-type") or "application/sdp").lower()
        if "application/sdp" not in content_type:
            return None
        try:
            return media_of(parse_sdp(message.body))
        except ParseError as error:
            self.stats.malformed += 1
            if isinstance(message, Request):
                return self._reply(message, 488, reason=(88, f"invalid-sdp: {error.message}"))
            return None

    def _rejection(self, request: Request, decision: Rejected, preconditions: bool) -> Response:
        reason = decision.reason
        self.stats.rejected[reason.value] = self.stats.rejected.get(reason.value, 0) + 1
        status, cause = REJECTIONS[reason]          # every reason: tests/unit/test_reject_reasons.py
        if preconditions and reason in (RejectReason.POOL_FULL, RejectReason.NO_AGGREGATE, RejectReason.PATH_DOWN):
            status = 580
        return self._reply(request, status, reason=(cause, f"{reason.value}: {decision.detail}"))

    # provided by the proxy
    def _forward(self, server: ServerTransaction | None, request: Request, hop: Peer,
                 context: InviteContext | None, now: float) -> str:
        raise NotImplementedError

    def _respond(self, server: ServerTransaction, status: int, now: float, *, to_tag: str | None = "",
                 reason: tuple[int, str] | None = None, extra: list[tuple[str, str]] | None = None) -> None:
        raise NotImplementedError

    def _reply(self, request: Request, status: int, *, reason: tuple[int, str] | None = None,
               extra: list[tuple[str, str]] | None = None, to_tag: str | None = "") -> Response:
        raise NotImplementedError

    def _record_route(self, request: Request, inbound: str, outbound: str) -> Request:
        raise NotImplementedError

    def _is_own_route(self, value: str) -> bool:
        raise NotImplementedError

    def _send_cancel(self, client: ClientTransaction, now: float) -> None:
        raise NotImplementedError


def _required(message: Message, name: str) -> str:
    value = message.header(name)
    if not value:
        raise ParseError(f"missing {name} header")
    return value


def _contact(message: Message) -> str | None:
    values = message.header_values("contact")
    if not values:
        return None
    try:
        return parse_name_addr(values[0]).uri
    except ParseError:
        return None


def _session_expires(message: Message) -> int | None:
    value = message.header("session-expires")
    if value is None:
        return None
    delta = value.split(";", 1)[0].strip()
    if not delta.isdigit() or len(delta) > 9:
        return None
    return min(max(int(delta), MIN_SESSION_S), 86400)


__all__ = ["CallFlow", "Decision", "REJECTIONS", "reason_header"]
