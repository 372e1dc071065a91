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
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from .core.admission import AdmissionRequest, Decision, ServiceLevel
from .core.aggregate import ALL_LEVELS, EF, Aggregate
from .core.calls import Call, MediaEndpoint
from .core.codec import MediaSpec
from .core.flowplan import Entry
from .core.locations import Verdict
from .core.manager import Changes, MediaAggregationManager, ReleasedCall
from .core.store import Write
from .core.survey import Survey, Transition

T = TypeVar("T")
Listener = Callable[[Changes], None]
log = logging.getLogger(__name__)


class MamService:
    def __init__(self, manager: MediaAggregationManager, clock: Callable[[], float] = time.time,
                 survey: Survey | None = None, lock: Any = None) -> None:
        self.manager = manager
        self.clock = clock
        self.survey = survey if survey is not None else Survey(manager.topology)
        # under ryu's eventlet hub a green lock (compat.rlock()): a threading.RLock lets every green
        # thread in, and a shared ledger's commit yields to the hub while it holds the lock
        self.lock = lock if lock is not None else threading.RLock()
        self._listeners: list[Listener] = []
        self._timer_listeners: list[Callable[[], None]] = []
        self._next_timer: float | None = manager.next_timer()

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
            try:
                return action(self.clock())
            finally:        # only committed changes are ever pending: a mutation that raised left none
                self._publish()

    def _publish(self) -> None:
        changes = self.manager.drain()
        for note in changes.notes:
            log.warning("%s", note)
        if changes:
            for listener in list(self._listeners):
                try:
                    listener(changes)
                except Exception:  # a broken listener must not undo a decision
                    log.exception("listener %r failed on %r", listener, changes)
        when = self.manager.next_timer()
        earlier = when is not None and (self._next_timer is None or when < self._next_timer)
        self._next_timer = when
        if earlier:
            for wake in list(self._timer_listeners):
                try:
                    wake()
                except Exception:
                    log.exception("timer listener %r failed", wake)

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
        """Admit (and, given both media addresses, plan the flows of) a call in one step."""
        return self._mutate(lambda t: self.manager.admit(request, t, media))

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> Call:
        return self._mutate(lambda t: self.manager.attach_media(call_id, caller, callee, t))

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
                         preemption: bool = False, path: Iterable[str] | None = None) -> Aggregate:
        return self._mutate(lambda t: self.manager.create_aggregate(
            aggregate_id, a, b, size_kbps, dscp=dscp, priority=priority, levels=levels,
            preemption=preemption, path=path))

    def resize_aggregate(self, aggregate_id: str, size_kbps: int) -> Aggregate:
        return self._mutate(lambda t: self.manager.resize_aggregate(aggregate_id, size_kbps, t))

    def delete_aggregate(self, aggregate_id: str, force: bool = False) -> None:
        self._mutate(lambda t: self.manager.delete_aggregate(aggregate_id, force=force, now=t))

    def expected_plan(self) -> frozenset[Entry]:
        with self.lock:
            return self.manager.expected_plan()
