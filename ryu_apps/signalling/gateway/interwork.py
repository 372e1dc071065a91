"""The SIP <-> H.323 interworking core: a sans-IO back-to-back user agent.

One :class:`Bridge` per call joins an H.323 leg (Q.931/H.225.0 over one TCP connection,
fastStart media, or H.245 tunnelled in H.225.0 when there is no fastStart) and a SIP leg (a UA dialog over UDP). Bytes, connection events and
``now`` go in; :class:`~..sip.transaction.Send` (SIP datagrams) and
:mod:`..h323.actions` stream actions come out; timers through :meth:`Gateway.next_timer`
and :meth:`Gateway.handle_timer`.

The parts: :mod:`.bridge` (the per-call record, its phases, settings), :mod:`.h323_leg`
(Q.931/H.225.0 in and out), :mod:`.h245_leg` (tunnelled H.245 and SIP late offer, for
calls without fastStart), :mod:`.sip_leg` (SIP that arrives), :mod:`.sip_dialog` (SIP
the gateway sends), :mod:`.dtmf`; this module holds the entry points, timers, admission
and the one way a call ends.

Admission: exactly one ``admit`` per bridged call, under one call id
(``gw-<32 hex digits of the H.225 callIdentifier>``) covering both legs, and exactly one
``release`` whichever side or timer ends it (:meth:`Gateway._finish` is the only place
that releases). When admission ends a call itself (:meth:`Gateway.call_ended`), both
legs are cleared and nothing is released twice.

Mapping (docs/gateway.md has the ladders):

=============================  =====================================
H.323                          SIP
=============================  =====================================
Setup + fastStart              INVITE + SDP offer
Setup, tunnelled H.245         INVITE without SDP; offer in 200, answer in ACK
Setup, tunnelled H.245         <- INVITE without SDP; offer in 200 (after OLC/Ack)
CallProceeding                 100 Trying
Alerting                       180 Ringing
Progress (fastStart)           183 Session Progress + SDP (early media)
Progress/Alerting, PI 8        reliable 18x + SDP offer (no fastStart): answer in PRACK
Progress, PI 1                 unreliable 18x + SDP offer (no fastStart): answer in ACK
Alerting/Progress PI 8, H.245  <- INVITE + SDP, fastStart refused: 183 + answer, not 180
Connect (fastStart)            200 OK + SDP, ACK
ReleaseComplete (cause N)      BYE / CANCEL / final >= 300, ``Reason: Q.850;cause=N``
=============================  =====================================

Q.850 causes and SIP statuses map per RFC 3398 (:mod:`.causes`); a Reason header's
Q.850 cause wins over the status. Not here yet: T.38 and RFC 4733 on fastStart calls, a
re-INVITE that changes the audio media (488), TCP for SIP.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected
from ryu_apps.core.codec import MediaSpec

from ..call_control import Admit, AttachMedia, CallControl, ControlOp, Modify, Release
from ..h323.actions import Perform, StreamClose
from ..h323.q931 import TpktFramer
from ..h323.reasons import REJECTIONS as H323_REJECTIONS, cause_of_release
from ..sip.ids import IdSource
from ..sip.calls import REJECTIONS as SIP_REJECTIONS
from ..sip.transaction import Peer, Send
from .causes import status_of_q850
from .bridge import (Action, Bridge, Directory, GatewaySettings, NO_ANSWER, Phase, TEMPORARY_FAILURE, TIMER_EXPIRY,
                     TRUSTED, Then)
from .early_media import EarlyMedia
from .h245_leg import H245Leg
from .h323_leg import H323Leg
from .sip_dialog import SipDialog
from .sip_leg import SipLeg
from .t38 import T38Leg

log = logging.getLogger(__name__)

__all__ = ["Action", "Directory", "Gateway", "GatewaySettings"]


class Gateway:
    """The interworking core. Never raises out of an entry point."""

    def __init__(self, settings: GatewaySettings, control: CallControl, directory: Directory, ids: IdSource, *,
                 defer: bool = False) -> None:
        self.settings = settings
        self.control = control
        self.defer = defer                               # admission answered later (Perform / performed)
        self._pending: dict[int, tuple[Bridge, Then]] = {}
        self._ignored: set[int] = set()                  # tickets of modify/attach/release: no continuation
        self._ticket = 0
        self.directory = directory
        self.ids = ids
        self.bridges: dict[str, Bridge] = {}             # admission call id -> bridge
        self.by_sip: dict[str, Bridge] = {}             # SIP Call-ID -> bridge
        self.by_conn: dict[int, Bridge] = {}
        self.by_h245: dict[int, Bridge] = {}            # H.245 connections (no tunnelling) -> bridge
        self.framers: dict[int, TpktFramer] = {}
        self.peers: dict[int, tuple[str, int]] = {}
        self._next_conn = 1 << 20
        self._timers: dict[tuple[str, str], float] = {}  # (call id, name) -> deadline
        self._out: list[Action] = []
        self.stats: dict[str, int] = {}
        self.internal_errors = 0
        self.h323 = H323Leg(self)
        self.sip = SipLeg(self)
        self.dialog = SipDialog(self)
        self.h245 = H245Leg(self)
        self.t38 = T38Leg(self)
        self.early = EarlyMedia(self)

    def h323_accept(self, peer: tuple[str, int]) -> int:
        """A TCP connection to the gateway's H.225 port was accepted: its id."""
        conn = self.new_conn()
        self.framers[conn] = TpktFramer()
        self.peers[conn] = peer
        return conn

    def h323_data(self, conn: int, data: bytes, now: float) -> list[Action]:
        return self._run(self.h323.data, conn, data, now)

    def h323_closed(self, conn: int, now: float) -> list[Action]:
        """The connection closed, was reset, or could not be opened."""
        return self._run(self.h323.closed, conn, now)

    def sip_receive(self, data: bytes, source: Peer, now: float) -> list[Action]:
        return self._run(self.sip.receive, data, source, now)

    def call_ended(self, call_id: str, cause: str, now: float) -> list[Action]:
        """Admission ended the call (preempted, aggregate deleted, media idle, REST)."""
        return self._run(self._admission_ended, call_id, cause, now)

    def reconcile(self, live: set[str], asked_at: float, now: float) -> list[Action]:
        """REST mode: the call ids the controller held at ``asked_at``; admitted calls of ours
        from before then that it no longer holds were ended by it: clear both legs."""
        return self._run(self._reconcile, live, asked_at, now)

    def _reconcile(self, live: set[str], asked_at: float, now: float) -> None:
        for bridge in list(self.bridges.values()):
            if bridge.admitted and not bridge.released and bridge.admitted_at <= asked_at \
                    and bridge.call_id not in live and bridge.phase is not Phase.ENDED:
                self.count("controller-ended")
                self._admission_ended(bridge.call_id, "released by the controller", now)

    def performed(self, ticket: int, result: Any, now: float) -> list[Action]:
        """Deferred mode: the answer (a Decision, None, or the exception) to a Perform."""
        return self._run(self._performed, ticket, result, now)

    def next_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> list[Action]:
        return self._run(self._timers_due, now)

    def _run(self, handler: Callable[..., None], *args: Any) -> list[Action]:
        self._out = []
        try:
            handler(*args)
        except Exception:  # noqa: BLE001 - the gateway must outlive its own bugs
            self.internal_errors += 1
            log.exception("gateway failed in %s", getattr(handler, "__name__", handler))
        out, self._out = self._out, []
        return out

    def emit(self, action: Action) -> None:
        self._out.append(action)

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def new_conn(self) -> int:
        self._next_conn += 1
        return self._next_conn

    def end(self, bridge: Bridge, cause: int, why: str, now: float, *, from_h323: bool = False,
             from_sip: bool = False, closed: bool = False, status: int | None = None, bye_sent: bool = False,
             release: bool = True) -> None:
        """End both legs (the side that ended it is not told again) and release once."""
        if bridge.phase is Phase.ENDED:
            return
        connected = bridge.phase is Phase.CONNECTED
        bridge.phase = Phase.ENDED
        self.count("ended")
        ending = self.h245.ending(bridge)
        if bridge.h245_conn is not None:               # H.245 on its own connection: ended there
            self.h245.close_connection(bridge, ending)
            ending = []
        if not from_h323 and bridge.h323_open:
            self.h323.send_release(bridge.conn, bridge.crv, bridge.h323_caller, bridge.guid, cause,
                                   h245=ending, tunnelling=bridge.tunnelling)
        if bridge.answer_200 is not None:
            self.h245.reject_answer(bridge)             # a 200's offer is answered in its ACK before the BYE
        if not closed and bridge.h323_open:
            self.emit(StreamClose(bridge.conn))
        if not from_sip and not bye_sent:
            if bridge.h323_caller:
                if connected:
                    self.dialog.bye(bridge, cause, now)
                else:
                    self.dialog.cancel(bridge, cause, now)
            elif connected and bridge.acked:
                self.dialog.bye(bridge, cause, now)
            elif connected:
                self.dialog.bye(bridge, cause, now)                      # 200 not yet ACKed: BYE anyway
            else:
                self.dialog.final(bridge, status or status_of_q850(cause), cause, why, now)
        elif from_sip and status is not None and not bridge.h323_caller:
            self.dialog.final(bridge, status, cause, why, now)        # CANCEL: 487 to the INVITE
        self.disarm(bridge, "t303", "no-answer", "timer-b", "ack", "h245")
        keep_final = not bridge.h323_caller and bridge.final_sent and not connected
        if not keep_final:
            self.disarm(bridge, "retransmit")       # (a final to the INVITE repeats until its ACK)
        self._finish(bridge, why, release)
        if bridge.pending or keep_final or bridge.h323_caller:
            self.forget_later(bridge, now)          # absorb the last responses and retransmissions
        else:
            self._forget(bridge)

    def _finish(self, bridge: Bridge, cause: str, release: bool = True) -> None:
        """The one place admission hears that a call ended."""
        if bridge.admitted and not bridge.released:
            bridge.released = True
            if release:
                self._op(Release(bridge.call_id, cause))
                self.count("released")

    def _admission_ended(self, call_id: str, cause: str, now: float) -> None:
        bridge = self.bridges.get(call_id)
        if bridge is None or bridge.phase is Phase.ENDED:
            return
        bridge.released = True                  # admission has already let it go
        self.end(bridge, cause_of_release(cause), cause, now, release=False)

    def forget_later(self, bridge: Bridge, now: float) -> None:
        self.arm(bridge, "forget", now + 64 * self.settings.t1)

    def _forget(self, bridge: Bridge) -> None:
        self.bridges.pop(bridge.call_id, None)
        if self.by_sip.get(bridge.sip_call_id) is bridge:
            del self.by_sip[bridge.sip_call_id]
        if self.by_conn.get(bridge.conn) is bridge:
            del self.by_conn[bridge.conn]
        if bridge.h245_conn is not None and self.by_h245.pop(bridge.h245_conn, None) is not None:
            self.framers.pop(bridge.h245_conn, None)
        self.framers.pop(bridge.conn, None)
        self.peers.pop(bridge.conn, None)
        for key in [k for k in self._timers if k[0] == bridge.call_id]:
            del self._timers[key]

    def arm(self, bridge: Bridge, name: str, when: float) -> None:
        self._timers[(bridge.call_id, name)] = when

    def disarm(self, bridge: Bridge, *names: str) -> None:
        for name in names:
            self._timers.pop((bridge.call_id, name), None)

    def _timers_due(self, now: float) -> None:
        due = sorted((when, key) for key, when in self._timers.items() if when <= now)
        for _, key in due[:256]:
            if self._timers.get(key) is None:
                continue
            del self._timers[key]
            bridge = self.bridges.get(key[0])
            if bridge is None:
                continue
            try:
                self._timer(bridge, key[1], now)
            except Exception:  # noqa: BLE001 - one call's timer never stops the others
                self.internal_errors += 1
                log.exception("gateway timer %s failed", key)

    def _timer(self, bridge: Bridge, name: str, now: float) -> None:
        t1, t2 = self.settings.t1, self.settings.t2
        if name == "retransmit":
            if bridge.h323_caller and bridge.invite is not None and bridge.phase is not Phase.ENDED:
                self.dialog.send(bridge, bridge.invite)
                bridge.interval = min(bridge.interval * 2, 64 * t1)
                self.arm(bridge, name, now + bridge.interval)
            elif not bridge.h323_caller and bridge.last_response is not None and not bridge.acked:
                self.emit(Send(bridge.last_response, bridge.sip_peer))
                bridge.interval = min(bridge.interval * 2, t2)
                self.arm(bridge, name, now + bridge.interval)
        elif name == "request-retransmit":
            for request in bridge.pending.values():
                self.dialog.send(bridge, request)
            bridge.interval = min(bridge.interval * 2, t2)
            self.arm(bridge, name, now + bridge.interval)
        elif name == "request-timeout":
            bridge.pending.clear()
            self.disarm(bridge, "request-retransmit")
        elif name == "timer-b":
            self.end(bridge, TIMER_EXPIRY, "timeout", now, from_sip=True)
        elif name == "t303":
            self.end(bridge, TIMER_EXPIRY, "h323: T303 expired", now)
        elif name == "no-answer":
            self.end(bridge, NO_ANSWER, "no-answer", now, status=480 if not bridge.h323_caller else None)
        elif name == "t38":
            self.t38.failed(bridge, "no answer in time", now)
        elif name == "h245":
            self.end(bridge, TIMER_EXPIRY, "h245: media not settled in time", now)
        elif name == "ack":
            self.end(bridge, TIMER_EXPIRY, "ack-timeout", now)
        elif name == "forget":
            self._forget(bridge)
        elif name == "admission":
            self._admission_timeout(bridge, now)

    def decide(self, bridge: Bridge, request: AdmissionRequest, then: Then, now: float) -> None:
        """Ask admission for ``bridge``: at once (in-process), or by a Perform the shell runs
        off its loop (REST mode), answered through :meth:`performed`."""
        if bridge.trusted:                                   # our own proxy/gatekeeper admitted it
            self.count("admitted-by-front-end")
            then(bridge, TRUSTED, now)
            return
        if not self.defer:
            result: Any
            try:
                result = self.control.admit(request)
            except Exception as error:  # noqa: BLE001 - call control down: refuse this call only
                result = error
            then(bridge, result, now)
            return
        self._ticket += 1
        self._pending[self._ticket] = (bridge, then)
        self.emit(Perform(self._ticket, Admit(request)))
        self.arm(bridge, "admission", now + self.settings.control_timeout_s)

    def _performed(self, ticket: int, result: Any, now: float) -> None:
        if ticket in self._ignored:
            self._ignored.discard(ticket)
            if isinstance(result, Exception):
                log.warning("call control failed: %s", result)
            return
        entry = self._pending.pop(ticket, None)
        if entry is None:                                   # answered after its timeout
            if isinstance(result, Admitted):
                self._op(Release(result.call_id, "admission answered too late"))
            return
        bridge, then = entry
        self.disarm(bridge, "admission")
        if bridge.phase is Phase.ENDED:                      # the call ended while admission thought
            if isinstance(result, Admitted):
                self._op(Release(bridge.call_id, "ended before admission answered"))
            return
        then(bridge, result, now)

    def _admission_timeout(self, bridge: Bridge, now: float) -> None:
        for ticket in [t for t, (b, _) in self._pending.items() if b is bridge]:
            _, then = self._pending.pop(ticket)                # a late yes is released (_performed)
            then(bridge, TimeoutError("call control did not answer in time"), now)

    def admitted(self, bridge: Bridge, result: Any, now: float) -> bool:
        """True if admitted; else the call is refused on the leg that asked (cause and status
        as the proxy and the gatekeeper give them)."""
        if result is TRUSTED:
            return True                                       # nothing of ours to release
        if isinstance(result, Admitted):
            bridge.admitted, bridge.admitted_at = True, now
            self.count("admitted")
            return True
        if isinstance(result, Rejected):
            self.count(f"rejected-{result.reason.value}")
            status, cause = SIP_REJECTIONS[result.reason]
            if bridge.h323_caller:
                cause = H323_REJECTIONS[result.reason][1]
            why = f"{result.reason.value}: {result.detail}"
        else:
            log.warning("admission failed for %s: %s", bridge.call_id, result)
            self.count("control-errors")
            status, cause, why = 503, TEMPORARY_FAILURE, "call control unreachable"
        if bridge.h323_caller:
            self.end(bridge, cause, why, now, from_sip=True)
        else:
            self.end(bridge, cause, why, now, from_h323=True, closed=True, status=status)
        return False

    def _op(self, op: ControlOp) -> None:
        """modify / attach_media / release: at once, or as a Perform whose answer is dropped."""
        if not self.defer:
            try:
                if isinstance(op, Modify):
                    self.control.modify(op.call_id, op.media)
                elif isinstance(op, AttachMedia):
                    self.control.attach_media(op.call_id, op.caller, op.callee)
                elif isinstance(op, Release):
                    self.control.release(op.call_id, op.cause)
            except Exception as error:  # noqa: BLE001 - admission reclaims what it no longer hears of
                log.warning("%s of %s failed: %s", type(op).__name__, getattr(op, "call_id", "?"), error)
            return
        self._ticket += 1
        self._ignored.add(self._ticket)
        self.emit(Perform(self._ticket, op))

    def modify(self, bridge: Bridge, chosen: tuple[str, int]) -> None:
        if not bridge.admitted:
            return                                        # admitted by our proxy/gatekeeper: theirs to tell
        self._op(Modify(bridge.call_id, MediaSpec(chosen[0], chosen[1])))

    def attach(self, bridge: Bridge) -> None:
        if not bridge.admitted or bridge.caller_media is None or bridge.callee_media is None:
            return
        pair = (bridge.caller_media, bridge.callee_media)
        if bridge.attached == pair:
            return
        bridge.attached = pair
        self.count("attached")
        self._op(AttachMedia(bridge.call_id, *pair))

    def register(self, bridge: Bridge) -> None:
        self.bridges[bridge.call_id] = bridge
        self.by_sip[bridge.sip_call_id] = bridge
        self.by_conn[bridge.conn] = bridge
