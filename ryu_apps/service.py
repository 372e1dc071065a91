"""The service every shell talks to: the manager behind one lock, with the clock.

REST handlers, the signalling front ends and the OpenFlow shell may run on different
threads (os-ken's native hub) or greenlets (ryu's eventlet hub); each call here takes
the lock, asks the manager with ``now`` from the clock (wall-clock seconds), drains
what the mutation committed and hands it to the subscribed listeners (the data-plane
shell renders plan changes; the front ends hear about calls that ended). Listeners run
under the lock, in order, so plan changes reach the data plane in the order they were
decided. The manager queues only what its ledger committed: a mutation that raised
publishes nothing of itself.

The core's timers (``next_timer()`` / ``handle_timer()``) are run by one shell loop
that sleeps until the next deadline; ``on_timer_change`` tells it to look again when a
mutation may have set an earlier one.

Admissions are committed in groups (:mod:`.group_commit`): those that arrive while one is
being committed wait and are decided and committed together by the next holder of the
lock, one ledger transaction for the group.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from .core.activity import (Activity, CallAdmitted, CallAnswered, CallRefused, CallReleased, LinkChanged,
                            aggregate_changes)
from .core.admission import AdmissionRequest, Admitted, Decision, Rejected, ServiceLevel
from .core.aggregate import ALL_LEVELS, EF, Aggregate
from .core.autosize import Autosize
from .core.calls import Call, MediaEndpoint
from .core.codec import MediaSpec
from .core.errors import NotFound
from .core.flowplan import Entry
from .core.locations import Verdict
from .core.batch import Admission, Outcome
from .core.changes import Changes, ReleasedCall
from .core.manager import MediaAggregationManager
from .core.pools import Keep
from .core.schedule import ScheduleEntry
from .core.store import Write
from .core.survey import Survey, Transition
from .store.shared import ThreadWaiter, Waiter
from .group_commit import GROUP_LIMIT, GroupCommit, Ticket

T = TypeVar("T")
Listener = Callable[[Changes], None]
ActivityListener = Callable[[Activity], None]
log = logging.getLogger(__name__)


class MamService:
    def __init__(self, manager: MediaAggregationManager, clock: Callable[[], float] = time.time,
                 survey: Survey | None = None, lock: Any = None, wakeup: Callable[[], Waiter] = ThreadWaiter) -> None:
        self.manager = manager
        self.clock = clock
        self.survey = survey if survey is not None else Survey(manager.topology)
        # under ryu's eventlet hub a green lock (compat.rlock()): a threading.RLock lets every green
        # thread in, and a shared ledger's commit yields to the hub while it holds the lock
        self.lock = lock if lock is not None else threading.RLock()
        self._listeners: list[Listener] = []
        self._timer_listeners: list[Callable[[], None]] = []
        self._next_timer: float | None = manager.next_timer()
        self._watchers: list[ActivityListener] = []
        self._activity: list[Activity] = []
        self._pools = {a.id: a for a in manager.aggregates()}
        self._admission_timers: list[Callable[[float], None]] = []
        # admissions committed together; followers sleep on ``wakeup()`` (compat.Wakeup under ryu)
        self.group = GroupCommit(int(getattr(manager.ledger, "group_limit", GROUP_LIMIT)), wakeup)

    def time_admissions(self, observe: Callable[[float], None]) -> None:
        """``observe(seconds)`` hears how long each admission took, lock wait included
        (called outside the lock)."""
        with self.lock:
            self._admission_timers.append(observe)

    def watch(self, listener: ActivityListener) -> None:
        """``listener(activity)`` hears what each mutation did (:mod:`.core.activity`), under
        the lock, after the plan listeners: calls admitted, answered, refused and released,
        pools changed, links changed. It must not block (records buffer, streams queue)."""
        with self.lock:
            self._watchers.append(listener)

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def on_timer_change(self, wake: Callable[[], None]) -> None:
        """``wake()`` is called (under the lock: it must only signal) when the next
        deadline moved earlier."""
        with self.lock:
            self._timer_listeners.append(wake)

    def read(self, query: Callable[[MediaAggregationManager], T]) -> T:
        with self.lock:
            return query(self.manager)

    def _mutate(self, action: Callable[[float], T]) -> T:
        with self.lock:
            now = self.clock()
            try:
                return action(now)
            finally:        # only committed changes are ever pending: a mutation that raised left none
                self._publish(now)

    def _publish(self, now: float = 0.0) -> None:
        changes = self.manager.drain()
        for note in changes.notes:
            log.warning("%s", note)
        if changes:
            for listener in list(self._listeners):
                try:
                    listener(changes)
                except Exception:  # a broken listener must not undo a decision
                    log.exception("listener %r failed on %r", listener, changes)
        if self._watchers:
            self._tell(changes, now)
        when = self.manager.next_timer()
        earlier = when is not None and (self._next_timer is None or when < self._next_timer)
        self._next_timer = when
        if earlier:
            for wake in list(self._timer_listeners):
                try:
                    wake()
                except Exception:
                    log.exception("timer listener %r failed", wake)

    def _tell(self, changes: Changes, now: float) -> None:
        activity: list[Activity] = [CallReleased(now, released) for released in changes.released]
        activity += self._activity
        self._activity = []
        if changes.plan:
            pools = {a.id: a for a in self.manager.aggregates()}
            activity += aggregate_changes(self._pools, pools, now)
            self._pools = pools
        for event in activity:
            for watcher in list(self._watchers):
                try:
                    watcher(event)
                except Exception:  # a broken watcher must not undo a decision nor silence the others
                    log.exception("watcher %r failed on %r", watcher, event)

    def _known(self, call_id: str) -> Call | None:
        try:
            return self.manager.call(call_id)
        except NotFound:
            return None

    def apply_remote(self, take: Callable[[], Sequence[Write]]) -> None:
        """Changes other controllers committed to a shared ledger: ``take()`` (the
        ledger's, under this lock) hands them over and the manager applies them; their
        plan changes and releases reach the listeners like local ones."""
        self._mutate(lambda now: self.manager.apply_remote(take(), now))

    # --- the core's timers ------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When the core has something to do (clock seconds), or None."""
        with self.lock:
            return self.manager.next_timer()

    def handle_timer(self) -> None:
        self._mutate(self.manager.handle_timer)

    # --- what the switches say ------------------------------------------------------------

    def observe(self, update: Callable[[Survey], list[Transition]]) -> list[Transition]:
        """Fold what a switch said (ports, LLDP) into the survey; hand the manager the
        links no call may cross and the links a slow port limits. Aggregates the manager
        moves off a closed link reach the listeners like any other plan change."""
        def apply(now: float) -> list[Transition]:
            transitions = update(self.survey)
            if self._watchers:
                self._activity += [LinkChanged(now, t) for t in transitions]
            if transitions:
                self.manager.set_link_conditions(self.survey.faults(), self.survey.limits(), now)
            return transitions
        return self._mutate(apply)

    def flows_installed(self, serial: int) -> Call | None:
        return self._mutate(lambda t: self.manager.flows_installed(serial, t))

    def flows_failed(self, serial: int, reason: str) -> ReleasedCall | None:
        return self._mutate(lambda t: self.manager.flows_failed(serial, t, reason))

    def flows_removed(self, serial: int) -> None:
        self._mutate(lambda t: self.manager.flows_removed(serial, t))

    def learn_terminal(self, community: str, ip: str, port: int) -> Verdict:
        """A terminal heard on an access port; the survey knows whether its old port is down."""
        def port_down(switch: str, number: int) -> bool:
            info = self.survey.port(switch, number)
            return info is not None and not info.live
        return self._mutate(lambda t: self.manager.learn_terminal(community, ip, port, t, port_down))

    # --- calls (this is also the signalling front ends' CallControl) -------------------

    def admit(self, request: AdmissionRequest,
              media: tuple[MediaEndpoint, MediaEndpoint] | None = None) -> Decision:
        """Admit (and, given both media addresses, plan the flows of) a call in one step;
        committed with the admissions queued beside it (:mod:`.group_commit`)."""
        started = time.perf_counter()
        group = self.group
        ticket = group.join(Admission(request, media))
        while ticket.outcome is None:
            if group.take_lead():
                try:
                    with self.lock:
                        self._lead(ticket)
                finally:
                    group.hand_over()
            elif self.lock.acquire(blocking=False):     # free, or held by this very thread (reentrant)
                try:
                    self._lead(ticket)
                finally:
                    self.lock.release()
            else:
                group.follow(ticket)
        outcome = ticket.outcome
        if self._admission_timers:
            elapsed = time.perf_counter() - started
            for observe in list(self._admission_timers):
                try:
                    observe(elapsed)
                except Exception:
                    log.exception("admission timer %r failed", observe)
        return outcome.result()

    def _lead(self, ticket: Ticket) -> None:
        if ticket.outcome is None:
            self._mutate(lambda now: self.group.lead(ticket, lambda group: self._admit_all(group, now)))

    def _admit_all(self, group: Sequence[Admission], now: float) -> list[Outcome]:
        # a shared ledger's watch brought other controllers' changes: decide on them (the store
        # would refuse a decision that missed them), not after the applier thread's turn
        ledger: Any = self.manager.ledger
        if hasattr(ledger, "take_remote") and ledger.pending():
            self.manager.apply_remote(ledger.take_remote(), now)
        outcomes = self.manager.admit_all(group, now)
        if self._watchers:
            for admission, outcome in zip(group, outcomes):
                if outcome.decision is None:
                    continue
                if not isinstance(outcome.decision, Admitted) or outcome.new:
                    self._activity += self._decided(admission.request, outcome.decision, now, outcome.call)
                elif outcome.answered and outcome.call is not None:
                    self._activity.append(CallAnswered(now, outcome.call))
        return outcomes

    def _decided(self, request: AdmissionRequest, decision: Decision, now: float,
                 call: Call | None = None) -> list[Activity]:
        manager = self.manager
        if isinstance(decision, Admitted):
            call = call or manager.call(decision.call_id)
            admitted: list[Activity] = [CallAdmitted(now, call, decision.preempted)]
            return admitted + ([CallAnswered(now, call)] if call.media_attached else [])
        assert isinstance(decision, Rejected)
        pair = {request.caller_community, request.callee_community}
        pools = [a.id for a in manager.aggregates() if set(a.communities) == pair and request.level in a.levels]
        return [CallRefused(now, request, decision, manager.bandwidth_kbps(request.media), pools[0] if pools else None)]

    def _answered(self, call_id: str, now: float) -> None:
        call = self._known(call_id)
        if call is not None and call.media_attached:
            self._activity.append(CallAnswered(now, call))

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> Call:
        def attach(now: float) -> Call:
            before = self._known(call_id) if self._watchers else None
            call = self.manager.attach_media(call_id, caller, callee, now)
            if before is not None and not before.media_attached:
                self._answered(call_id, now)
            return call
        return self._mutate(attach)

    def modify(self, call_id: str, media: MediaSpec) -> Decision:
        return self._mutate(lambda t: self.manager.modify(call_id, media, t))

    def release(self, call_id: str, cause: str = "released") -> ReleasedCall | None:
        return self._mutate(lambda t: self.manager.release(call_id, t, cause))

    def release_by_serial(self, serial: int, cause: str) -> ReleasedCall | None:
        return self._mutate(lambda t: self.manager.release_by_serial(serial, t, cause))

    def save_dialog(self, call_id: str, dialog: Mapping[str, Any]) -> Call:
        return self._mutate(lambda t: self.manager.save_dialog(call_id, dialog))

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        community = self.manager.topology.community_of(domain, address)
        return None if community is None else community.name

    # --- aggregates -----------------------------------------------------------------

    def create_aggregate(self, aggregate_id: str, a: str, b: str, size_kbps: int, *, dscp: int = EF,
                         priority: int = 0, levels: Iterable[ServiceLevel] = ALL_LEVELS,
                         preemption: bool = False, path: Iterable[str] | None = None,
                         autosize: Autosize | None = None, schedule: Iterable[ScheduleEntry] = ()) -> Aggregate:
        return self._mutate(lambda t: self.manager.create_aggregate(
            aggregate_id, a, b, size_kbps, dscp=dscp, priority=priority, levels=levels,
            preemption=preemption, path=path, autosize=autosize, schedule=schedule, now=t))

    def resize_aggregate(self, aggregate_id: str, size_kbps: int) -> Aggregate:
        return self._mutate(lambda t: self.manager.resize_aggregate(aggregate_id, size_kbps, t))

    def change_aggregate(self, aggregate_id: str, size_kbps: int | None = None,
                         autosize: Autosize | None | type[Keep] = Keep,
                         schedule: Iterable[ScheduleEntry] | None = None,
                         path: Iterable[str] | None = None) -> Aggregate:
        return self._mutate(lambda t: self.manager.change_aggregate(
            aggregate_id, size_kbps=size_kbps, autosize=autosize, schedule=schedule, path=path, now=t))

    def reoptimize_aggregate(self, aggregate_id: str) -> Aggregate:
        return self._mutate(lambda t: self.manager.reoptimize_aggregate(aggregate_id, t))

    def delete_aggregate(self, aggregate_id: str, force: bool = False) -> None:
        self._mutate(lambda t: self.manager.delete_aggregate(aggregate_id, force=force, now=t))

    def expected_plan(self) -> frozenset[Entry]:
        with self.lock:
            return self.manager.expected_plan()
