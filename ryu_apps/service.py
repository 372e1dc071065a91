"""The service every shell talks to: the manager behind one lock, with the clock.

REST handlers, the SIP proxy and the OpenFlow app may run on different threads (os-ken's
native hub) or greenlets (ryu's eventlet hub); each call here takes the lock, asks the
manager with ``now`` from the clock, drains the resulting changes and hands them to the
subscribed listeners (the OpenFlow shell renders plan changes; the SIP proxy hears about
calls that ended). Listeners run under the lock, in order, so plan changes reach the
data plane in the order they were decided.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, TypeVar

from .core.admission import AdmissionRequest, Decision, ServiceLevel
from .core.aggregate import ALL_LEVELS, EF, Aggregate
from .core.calls import Call, MediaEndpoint
from .core.codec import MediaSpec
from .core.manager import Changes, MediaAggregationManager, ReleasedCall
from .core.survey import Survey, Transition

T = TypeVar("T")
Listener = Callable[[Changes], None]
log = logging.getLogger(__name__)


class MamService:
    def __init__(self, manager: MediaAggregationManager, clock: Callable[[], float] = time.monotonic,
                 survey: Survey | None = None) -> None:
        self.manager = manager
        self.clock = clock
        self.survey = survey if survey is not None else Survey(manager.topology)
        self.lock = threading.RLock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def read(self, query: Callable[[MediaAggregationManager], T]) -> T:
        with self.lock:
            return query(self.manager)

    def _mutate(self, action: Callable[[float], T], now: float | None = None) -> T:
        with self.lock:
            try:
                return action(self.clock() if now is None else now)
            finally:
                changes = self.manager.drain()
                for note in changes.notes:
                    log.warning("%s", note)
                if changes:
                    for listener in list(self._listeners):
                        try:
                            listener(changes)
                        except Exception:  # a broken listener must not undo a decision
                            log.exception("listener %r failed on %r", listener, changes)

    def observe(self, update: Callable[[Survey], list[Transition]]) -> list[Transition]:
        """Fold what a switch said (ports, LLDP) into the survey; hand the manager the
        links no call may cross and the links a slow port limits. Aggregates the manager
        moves off a closed link reach the listeners like any other plan change."""
        def apply(now: float) -> list[Transition]:
            transitions = update(self.survey)
            if transitions:
                self.manager.set_link_conditions(self.survey.faults(), self.survey.limits())
            return transitions
        return self._mutate(apply)

    # --- calls (this is also the signalling front ends' CallControl) -------------------

    def admit(self, request: AdmissionRequest) -> Decision:
        return self._mutate(lambda t: self.manager.admit(request, t))

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> Call:
        return self._mutate(lambda t: self.manager.attach_media(call_id, caller, callee, t))

    def modify(self, call_id: str, media: MediaSpec) -> Decision:
        return self._mutate(lambda t: self.manager.modify(call_id, media, t))

    def release(self, call_id: str, cause: str = "released") -> ReleasedCall | None:
        return self._mutate(lambda t: self.manager.release(call_id, t, cause))

    def release_by_serial(self, serial: int, cause: str) -> ReleasedCall | None:
        return self._mutate(lambda t: self.manager.release_by_serial(serial, t, cause))

    def confirm_flows(self, call_id: str) -> Call | None:
        return self._mutate(lambda t: self.manager.confirm_flows(call_id))

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        community = self.manager.topology.community_of(domain, address)
        return None if community is None else community.name

    def learn_terminal(self, community: str, ip: str, port: int) -> None:
        self._mutate(lambda t: self.manager.learn_terminal(community, ip, port))

    # --- aggregates -----------------------------------------------------------------

    def create_aggregate(self, aggregate_id: str, a: str, b: str, size_kbps: int, *, dscp: int = EF,
                         priority: int = 0, levels: Iterable[ServiceLevel] = ALL_LEVELS,
                         preemption: bool = False, path: Iterable[str] | None = None) -> Aggregate:
        return self._mutate(lambda t: self.manager.create_aggregate(
            aggregate_id, a, b, size_kbps, dscp=dscp, priority=priority, levels=levels,
            preemption=preemption, path=path))

    def resize_aggregate(self, aggregate_id: str, size_kbps: int) -> Aggregate:
        return self._mutate(lambda t: self.manager.resize_aggregate(aggregate_id, size_kbps))

    def delete_aggregate(self, aggregate_id: str, force: bool = False) -> None:
        self._mutate(lambda t: self.manager.delete_aggregate(aggregate_id, force=force, now=t))

    def expected_plan(self):
        with self.lock:
            return self.manager.expected_plan()
