"""The media aggregation manager: resource manager + admission control, as one object.

It owns the pools (aggregates), the calls admitted onto them and their life
(:mod:`.lifecycle`), the tags, the terminal locations and the flow plan that follows
from them. Every mutation is one transaction: its changes are made in memory
(:mod:`.reservations`, journaled), handed to the ledger in one commit, and undone if
the commit fails, so nothing is acknowledged or published before it is durable. The
shell takes the plan changes and released calls with ``drain()``, and wakes the core
at ``next_timer()`` with ``handle_timer(now)``.

Time: ``now`` is wall-clock seconds since the epoch (UTC), given by the shell.
Not thread-safe by design: shells serialise access (one lock around each call).
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from .admission import (AdmissionRequest, Admitted, Decision, Rejected, RejectReason, ServiceLevel,
                        SignallingProtocol)
from .aggregate import EF, Aggregate, CapacityBook
from .batch import Admission, GroupAdmission
from .calls import Call, CallState, MediaEndpoint
from .changes import Changes, ReleasedCall
from .codec import CodecPolicy, MediaSpec
from .demand import PREEMPTED_PRIORITY, KeepTarget, ResizeRecord
from .errors import CapacityError, NotFound, StoreUnavailable, Unprocessable
from .flowkeys import FlowKeys, carried, resolve
from .flowplan import Entry, PlanDiff, PlanOptions, diff
from .journal import Journal
from .lifecycle import LifecycleTimers
from .locations import Location, PortSecurity, Verdict, judge
from .network import Hop, Link, Topology
from .paths import constrained_path
from .planner import Planner
from .pools import PoolOperations
from .replica import Replica
from .reservations import Reservations
from .store import Ledger, LedgerConflict, MemoryLedger, Write

T = TypeVar("T")


@dataclass(frozen=True)
class ManagerSettings:
    policy: CodecPolicy = field(default_factory=CodecPolicy)
    plan: PlanOptions = field(default_factory=PlanOptions)
    reserved_dscps: tuple[int, ...] = (EF,)
    reroute: bool = True     # move an aggregate off a link that goes down, when another path fits
    timers: LifecycleTimers = field(default_factory=LifecycleTimers)
    port_security: PortSecurity = field(default_factory=PortSecurity)
    conflict_retries: int = 32  # a shared ledger refused a commit (another controller came first): decide again
    tag_lane: tuple[int, int] = (0, 1)   # (index, count): where this controller's serials and tags start
    reoptimize: bool = True              # a moved aggregate returns to a shorter path once it is stable ...
    reoptimize_hold_s: float = 60.0      # ... for this long
    path_down_grace_s: float = 10.0      # an aggregate with no open path at all ends its calls after this
    timezone: dt.tzinfo = dt.timezone.utc   # the site's, for aggregate schedules


@dataclass
class Counters:
    admitted: int = 0
    rejected: dict[RejectReason, int] = field(default_factory=dict)
    released: int = 0
    preempted: int = 0
    preempted_by: dict[str, int] = field(default_factory=dict)     # priority | capacity | path-down
    resizes: dict[str, int] = field(default_factory=dict)          # grow | shrink
    admitted_by_protocol: dict[SignallingProtocol, int] = field(default_factory=dict)
    rejected_by_protocol: dict[tuple[RejectReason, SignallingProtocol], int] = field(default_factory=dict)
    location_moves: dict[Verdict, int] = field(default_factory=dict)

    def count(self, decision: Decision, protocol: SignallingProtocol) -> None:
        if isinstance(decision, Rejected):
            self.rejected[decision.reason] = self.rejected.get(decision.reason, 0) + 1
            key = (decision.reason, protocol)
            self.rejected_by_protocol[key] = self.rejected_by_protocol.get(key, 0) + 1
        else:
            self.admitted += 1
            self.admitted_by_protocol[protocol] = self.admitted_by_protocol.get(protocol, 0) + 1


class MediaAggregationManager(PoolOperations, GroupAdmission):
    def __init__(self, topology: Topology, settings: ManagerSettings | None = None,
                 ledger: Ledger | None = None, now: float = 0.0) -> None:
        self.topology = topology
        self.settings = settings or ManagerSettings()
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.counters = Counters()
        self._journal = Journal()
        self._state = Reservations(topology, self._journal, self.settings.tag_lane)
        self._plans = Planner(topology, self.settings.plan, self.settings.reserved_dscps, self._state)
        self._bandwidth_cache: dict[MediaSpec, int | None] = {}
        self._pending_plan: list[PlanDiff] = []
        self._pending_released: list[ReleasedCall] = []
        self._pending_notes: list[str] = []
        self._faults: dict[Link, str] = {}
        self._retry_releases: dict[str, str] = {}       # call id -> cause, for releases the ledger refused
        self._last_resize: dict[str, ResizeRecord] = {}
        self._hop_counts: dict[tuple[str, str], int] = {}
        self._now = now                                   # the latest time heard (for others' changes)
        self._restore(now)
        self._flow_keys = FlowKeys(self._plans.expected())      # one flow per key on the switches

    # --- state restored from the ledger ------------------------------------------------

    def _restore(self, now: float) -> None:
        state = self.ledger.load()
        book = self._state
        for aggregate in state.aggregates:
            self._validate_path(aggregate.path, aggregate.communities)
            if not book.book.fits(aggregate.hops(), aggregate.size_kbps):
                raise CapacityError(f"stored aggregate {aggregate.id!r} no longer fits the topology")
            book.aggregate_tags.claim(aggregate.tag)
            book.add_aggregate(aggregate, durable=False)
            self._arm(aggregate, now)
        orphans = []
        for call in state.calls:
            if call.aggregate_id not in book.aggregates:
                orphans.append(call.call_id)
                continue
            book.claim_call(call)
            # Flows of a call that had media are on the switches (reconciled when they
            # connect): the call stays active across the restart, no install deadline.
            restored = call.moved_to(CallState.ACTIVE if call.media_attached else CallState.ADMITTED)
            book.add_call(restored, durable=False)
            if not call.media_attached:
                book.set_deadline(call.serial, call.admitted_at + self.settings.timers.attach_s)
        for location in state.locations:
            if self.topology.has_community(location.community):
                book.set_location(location, durable=False)
        if orphans:
            from .store import DeleteCall
            self.ledger.commit([DeleteCall(call_id) for call_id in orphans])

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """All of a mutation or nothing: memory changes are undone unless the ledger
        records them; plan changes and releases are published only after the commit."""
        journal = self._journal
        if journal.active:          # part of an outer mutation
            yield
            return
        marks = (len(self._pending_plan), len(self._pending_released), len(self._pending_notes))
        journal.begin()
        try:
            yield
            writes = journal.writes()
            if writes:
                self.ledger.commit(writes)
        except BaseException as error:
            journal.rollback()
            del self._pending_plan[marks[0]:], self._pending_released[marks[1]:], self._pending_notes[marks[2]:]
            if isinstance(error, LedgerConflict):     # memory catches up with the ledger at once
                Replica(self).apply(error.fresh, self._now)
            raise
        journal.committed()

    def _retrying(self, now: float, attempt: Callable[[], T]) -> T:
        """Run a mutation; when a shared ledger refuses it because another controller
        changed what it relied on, catch up with that change and run it again (a bounded
        number of times: then the conflict is the caller's StoreUnavailable)."""
        self._now = max(self._now, now)
        for _ in range(self.settings.conflict_retries):
            try:
                return attempt()
            except LedgerConflict:
                continue
        return attempt()

    def apply_remote(self, writes: Sequence[Write], now: float) -> None:
        """Changes other controllers committed to a shared ledger, in commit order (see
        :mod:`.replica`); plan changes and releases are drained like the manager's own."""
        assert not self._journal.active, "remote changes arrive between mutations"
        self._now = max(self._now, now)
        Replica(self).apply(writes, now)

    # --- queries --------------------------------------------------------------------

    def aggregates(self) -> list[Aggregate]:
        return sorted(self._state.aggregates.values(), key=lambda a: a.id)

    def aggregate(self, aggregate_id: str) -> Aggregate:
        try:
            return self._state.aggregates[aggregate_id]
        except KeyError:
            raise NotFound(f"no aggregate {aggregate_id!r}") from None

    def used_kbps(self, aggregate_id: str) -> int:
        self.aggregate(aggregate_id)
        return self._state.used[aggregate_id]

    def calls(self, aggregate_id: str | None = None) -> list[Call]:
        """Live calls (admitted, installing, active), oldest serial first."""
        state = self._state
        source = state.calls.values() if aggregate_id is None else state.calls_on.get(aggregate_id, {}).values()
        return sorted(source, key=lambda c: c.serial)

    def call(self, call_id: str) -> Call:
        try:
            return self._state.calls[call_id]
        except KeyError:
            raise NotFound(f"no call {call_id!r}") from None

    def call_by_serial(self, serial: int) -> Call | None:
        """The live or releasing call with this serial."""
        return self._state.by_serial.get(serial)

    def release_pending(self, call_id: str) -> bool:
        """A release the ledger refused is waiting to be retried."""
        return call_id in self._retry_releases

    def releasing(self) -> list[Call]:
        return sorted(self._state.releasing.values(), key=lambda c: c.serial)

    def location(self, community: str, ip: str) -> int | None:
        return self._state.locations.get((community, ip))

    @property
    def book(self) -> CapacityBook:
        """The per-link book of reservations (read it; change it through the manager)."""
        return self._state.book

    def link_reserved(self) -> dict[Hop, int]:
        return dict(self._state.book.snapshot())

    def link_reservable(self, hop: Hop) -> int:
        """What ``hop`` may reserve now: the configured share, or less if its port is slower."""
        return self._state.book.reservable(hop)

    def link_faults(self) -> dict[Link, str]:
        return dict(self._faults)

    def path_fault(self, aggregate: Aggregate) -> str | None:
        """Why calls cannot cross ``aggregate``'s path now (a link down or miswired), or None."""
        if not self._faults:
            return None
        for here, there in zip(aggregate.path, aggregate.path[1:]):
            fault = self._faults.get(self.topology.link(here, there))
            if fault is not None:
                return fault
        return None

    def expected_plan(self) -> frozenset[Entry]:
        """Everything the switches should hold now (for a (re)connecting switch)."""
        return resolve(self._plans.expected())

    def drain(self) -> Changes:
        """Take the plan changes and call releases committed since the last drain."""
        plan, waiting = self._flow_keys.apply(PlanDiff.chain(self._pending_plan))
        changes = Changes(plan, tuple(self._pending_released), tuple(self._pending_notes), carried(plan, waiting))
        self._pending_plan.clear()
        self._pending_released.clear()
        self._pending_notes.clear()
        return changes

    def bandwidth_kbps(self, media: MediaSpec) -> int | None:
        try:
            return self._bandwidth_cache[media]
        except KeyError:
            kbps = self._bandwidth_cache[media] = self.settings.policy.bandwidth_kbps(media)
            return kbps

    def snapshot(self) -> dict[str, Any]:
        """The whole in-memory state as comparable values (tests: a failed mutation changes none of it)."""
        return {**self._state.snapshot(), "retry_releases": dict(self._retry_releases),
                "pending": (list(self._pending_plan), list(self._pending_released), list(self._pending_notes))}

    # --- timers -----------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` has something to do (wall-clock seconds), or None."""
        return self._state.deadlines.next()

    def handle_timer(self, now: float) -> None:
        """Run what is due: reclaim calls that never got media or whose flows were never
        confirmed, forget releasing calls whose removal was never confirmed, retry what
        the ledger refused. Each is its own transaction."""
        for key in self._state.deadlines.due(now):
            if isinstance(key, int):
                self._call_deadline(key, now)
            elif key == ("retry", "releases"):
                for call_id, cause in list(self._retry_releases.items()):
                    del self._retry_releases[call_id]
                    self.release(call_id, now, cause)
            elif key == ("retry", "reroute"):
                self._try_reroute(now, report_stuck=False)
            elif isinstance(key, tuple) and len(key) == 2:
                try:
                    self._demand_timer(key, now)
                except LedgerConflict:
                    # another controller sharing the ledger changed the pool first (it runs the
                    # same timers): its change stands, ours is not made twice; the timer is armed
                    # again by the next change of use, from the state the ledger now holds
                    continue
                except StoreUnavailable as error:
                    self._pending_notes.append(f"aggregate {key[1]}: {key[0]} not recorded: {error.message}; retrying")
                    self._state.deadlines.set(key, now + self.settings.timers.retry_s)

    def _call_deadline(self, serial: int, now: float) -> None:
        call = self._state.by_serial.get(serial)
        if call is None:
            return
        if call.state is CallState.RELEASING:
            self._end(serial)
        elif call.state is CallState.ADMITTED:
            self.release(call.call_id, now, "no-media: both media addresses were never given "
                                            f"within {self.settings.timers.attach_s:g} s")
        elif call.state is CallState.INSTALLING:
            self.release(call.call_id, now, "flow-install-timeout: the switches did not confirm the call's "
                                            f"flows within {self.settings.timers.install_s:g} s")

    def _end(self, serial: int) -> None:
        with self._transaction():
            self._state.end_release(serial)
            self._state.set_deadline(serial, None)

    def _retry(self, what: str, now: float) -> None:
        key = ("retry", what)
        if self._state.deadlines.get(key) is None:
            self._state.deadlines.set(key, now + self.settings.timers.retry_s)

    # --- what the network shows -----------------------------------------------------

    def set_link_conditions(self, faults: Mapping[Link, str], limits: Mapping[Link, int],
                            now: float = 0.0) -> None:
        """Links that are down or miswired (no new calls or reservations cross them) and
        links whose port speed lowers what they may reserve. Admitted calls stay; with
        ``settings.reroute`` an aggregate on a closed link moves, calls and all, to the
        fewest-hop path that is open and can hold it (higher priority first). What
        happened to each aggregate on a closed link is in the drained notes."""
        changed = dict(faults) != self._faults
        self._faults = dict(faults)                 # observations: they hold whether or not a move is recorded
        self._state.book.set_conditions(limits, self._faults)
        self._try_reroute(now, report_stuck=True, network_changed=changed)

    def _try_reroute(self, now: float, report_stuck: bool, network_changed: bool = False) -> None:
        """After the network or the reservations changed: move pools off closed links
        (shrunk to what fits, or stranded), shrink pools on links that reserve less,
        give reduced pools back what fits again, and (re)start re-optimisation holds."""
        try:
            with self._transaction():
                self._reroute(False, now)
                self._fit_capacity(now)
                # a stranded pool that fitting shrank (a limited hop on its closed path) may now
                # fit an open path: move it, and only then say which ones stay
                self._reroute(report_stuck, now)
                self._restore_reduced(now)
                self._plan_reoptimize(now, restart=network_changed)
        except StoreUnavailable as error:
            self._pending_notes.append(f"aggregates on closed links not moved yet: {error.message}; retrying")
            self._retry("reroute", now)

    def _reroute(self, report_stuck: bool, now: float) -> None:
        """Move the aggregates on closed links: whole to the fewest-hop open path that
        can hold them, else shrunk to the widest open path (the calls that no longer fit
        preempted), else stranded (its calls end after ``path_down_grace_s``). Also run
        when capacity frees up, so a pool stuck on a closed link leaves as soon as it can."""
        if not self._faults:
            return
        shared_before: set[Entry] | None = None
        for aggregate in sorted(self._state.aggregates.values(), key=lambda a: (-a.priority, a.id)):
            fault = self.path_fault(aggregate)
            if fault is None:
                if self._state.deadlines.get(("stranded", aggregate.id)) is not None:
                    self._state.set_deadline(("stranded", aggregate.id), None)
                continue
            old_path = "-".join(aggregate.path)
            if not self.settings.reroute:
                if report_stuck:
                    self._pending_notes.append(f"aggregate {aggregate.id} stays on {old_path}, refusing calls "
                                               f"({fault}): dataplane.reroute is off")
                self._strand(aggregate, now)
                continue
            if shared_before is None:
                shared_before = self._plans.shared()
            found = constrained_path(self.topology, self._state.book, aggregate.path[0], aggregate.path[-1],
                                     aggregate.size_kbps, own=aggregate)
            if found is not None:
                self._resize(aggregate, aggregate.size_kbps, found, f"moved: {fault}", now, target=KeepTarget,
                             shared=False, note=f"aggregate {aggregate.id} moved from {old_path} to {'-'.join(found)} "
                             f"with its {len(self._state.calls_on[aggregate.id])} call(s) ({fault})")
            elif self._move_or_give_way(aggregate, fault, now) is None:
                if report_stuck:
                    self._pending_notes.append(
                        f"aggregate {aggregate.id} stays on {old_path}, refusing calls ({fault}): no open path; "
                        f"its calls end in {self.settings.path_down_grace_s:g} s unless the path comes back")
                self._strand(aggregate, now)
                continue
            self._state.set_deadline(("stranded", aggregate.id), None)
        if shared_before is not None:
            self._queue(diff(shared_before, self._plans.shared()))

    # --- calls ----------------------------------------------------------------------

    def admit(self, request: AdmissionRequest, now: float,
              media: tuple[MediaEndpoint, MediaEndpoint] | None = None) -> Decision:
        """Admit a call onto an aggregate between its communities, or say why not; with
        ``media`` (both parties' media addresses) its flows are planned in the same
        transaction, so a client never sees a call admitted without the flows it asked for.

        Idempotent per call id: a retransmitted setup gets the same decision and
        allocates nothing more (on any controller sharing the ledger). A ledger that
        cannot record the admission refuses it (``store-unavailable``) and leaves
        everything as it was. Several at once, in one commit: ``admit_all`` (:mod:`.batch`)."""
        outcome, = self.admit_all([Admission(request, media)], now)
        return outcome.result()

    def _decide(self, request: AdmissionRequest, now: float) -> Decision:
        policy = self.settings.policy
        for name in (request.caller_community, request.callee_community):
            if not self.topology.has_community(name):
                return Rejected(request.call_id, RejectReason.UNKNOWN_COMMUNITY, f"no community {name!r}")
        media = request.media
        if not policy.is_allowed(media.codec):
            return Rejected(request.call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"codec {media.codec!r} is not allowed by the codec policy")
        kbps = self.bandwidth_kbps(media)
        if kbps is None:
            return Rejected(request.call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"unknown codec {media.codec!r} with no declared bandwidth")
        state = self._state
        candidates = [a for a in state.by_pair.get(frozenset((request.caller_community, request.callee_community)), ())
                      if request.level in a.levels]
        if not candidates:
            return Rejected(request.call_id, RejectReason.NO_AGGREGATE,
                            f"no aggregate between {request.caller_community} and {request.callee_community} "
                            f"carries {request.level.label} calls")
        if self._faults:
            healthy = [a for a in candidates if self.path_fault(a) is None]
            if not healthy:
                first = candidates[0]
                return Rejected(request.call_id, RejectReason.PATH_DOWN,
                                f"aggregate {first.id} (path {'-'.join(first.path)}): {self.path_fault(first)}")
            candidates = healthy
        for aggregate in candidates:
            if aggregate.size_kbps - state.used[aggregate.id] >= kbps:
                return self._allocate(request, self._grow_for(aggregate, kbps, now), kbps, now, ())
        for aggregate in candidates:                    # a pool that follows demand grows before it refuses
            grown = self._grow_for(aggregate, kbps, now)
            if grown.size_kbps - state.used[aggregate.id] >= kbps:
                return self._allocate(request, grown, kbps, now, ())
        for aggregate in candidates:
            aggregate = state.aggregates[aggregate.id]
            if aggregate.preemption:
                victims = self._victims(aggregate, request.level, kbps)
                if victims is not None:
                    for victim in victims:
                        self._preempt(victim, PREEMPTED_PRIORITY, f"a {request.level.label} call needed "
                                      f"{kbps} kbit/s of aggregate {aggregate.id}", now, by=request.call_id)
                    return self._allocate(request, aggregate, kbps, now, tuple(v.call_id for v in victims))
        best = state.aggregates[candidates[0].id]
        return Rejected(request.call_id, RejectReason.POOL_FULL,
                        f"aggregate {best.id}: {state.used[best.id]} of {best.size_kbps} kbit/s in use, "
                        f"call needs {kbps}")

    def _victims(self, aggregate: Aggregate, level: ServiceLevel, kbps: int) -> list[Call] | None:
        lower = sorted((c for c in self._state.calls_on[aggregate.id].values() if c.level < level),
                       key=lambda c: (c.level, -c.admitted_at, -c.serial))
        free = aggregate.size_kbps - self._state.used[aggregate.id]
        chosen: list[Call] = []
        for call in lower:
            if free >= kbps:
                break
            chosen.append(call)
            free += call.kbps
        return chosen if free >= kbps else None

    def _allocate(self, request: AdmissionRequest, aggregate: Aggregate, kbps: int, now: float,
                  preempted: tuple[str, ...]) -> Admitted:
        tags = self._state.take_call_tags(self._edge(request.caller_community), self._edge(request.callee_community))
        if tags is None:  # pragma: no cover - a million labels per edge
            raise CapacityError("no free call tag")
        call = Call(request.call_id, tags.serial, aggregate.id, request.caller_community, request.callee_community,
                    request.level, request.media, kbps, tags.to_caller, tags.to_callee, now, protocol=request.protocol)
        self._state.add_call(call)
        self._state.set_deadline(call.serial, now + self.settings.timers.attach_s)
        self._watch(aggregate, now)
        return Admitted(call.call_id, aggregate.id, kbps, preempted, call.serial)

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint, now: float) -> Call:
        """Both media addresses are known (SDP answer): plan the call's flows; the call
        is ``installing`` until the data plane confirms them (``flows_installed``)."""
        call = self.call(call_id)
        if (call.caller_media, call.callee_media) == (caller, callee):
            return call
        with self._transaction():
            return self._attach(call, caller, callee, now)

    def _attach(self, call: Call, caller: MediaEndpoint, callee: MediaEndpoint, now: float) -> Call:
        version = _ip_version(caller.ip)
        if version != _ip_version(callee.ip):
            raise Unprocessable(f"the caller's media address {caller.ip} and the callee's {callee.ip} are of "
                                "different IP versions: no flow can carry the call between them", field="callee")
        if version != call.media.ip_version:        # IPv6 headers cost more: the call is re-sized first
            call = self._resize_for(call, replace(call.media, ip_version=version))
        old_entries = self._plans.call(call)
        updated = call.with_media(caller, callee)
        self._state.update_call(call, updated)
        self._state.set_deadline(call.serial, now + self.settings.timers.install_s)
        self._queue(diff(old_entries, self._plans.call(updated)))
        return updated

    def _resize_for(self, call: Call, media: MediaSpec) -> Call:
        kbps = self.bandwidth_kbps(media)
        assert kbps is not None, "the same codec with another IP version has a figure"
        aggregate = self._state.aggregates[call.aggregate_id]
        free = aggregate.size_kbps - self._state.used[aggregate.id] + call.kbps
        if kbps > free:
            raise CapacityError(f"IPv{media.ip_version} media needs {kbps} kbit/s; aggregate {aggregate.id} has "
                                f"{free} kbit/s free for this call", field="media")
        resized = replace(call, media=media, kbps=kbps)
        self._state.update_call(call, resized)
        return resized

    def save_dialog(self, call_id: str, dialog: Mapping[str, Any]) -> Call:
        """Keep what the call's front end needs to end it after a restart."""
        call = self.call(call_id)
        with self._transaction():
            updated = replace(call, dialog=dict(dialog))
            self._state.update_call(call, updated)
        return updated

    def modify(self, call_id: str, media: MediaSpec, now: float) -> Decision:
        """Re-admit a call whose media changed (re-INVITE). A refused upgrade leaves the
        call on its old allocation."""
        call = self._state.calls.get(call_id)
        if call is None:
            return Rejected(call_id, RejectReason.UNKNOWN_CALL, f"no call {call_id!r}")
        if not self.settings.policy.is_allowed(media.codec):
            return Rejected(call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"codec {media.codec!r} is not allowed by the codec policy")
        kbps = self.bandwidth_kbps(media)
        if kbps is None:
            return Rejected(call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"unknown codec {media.codec!r} with no declared bandwidth")
        def attempt() -> Decision:
            call = self._state.calls.get(call_id)
            if call is None:
                return Rejected(call_id, RejectReason.UNKNOWN_CALL, f"no call {call_id!r}")
            aggregate = self._state.aggregates[call.aggregate_id]
            free = aggregate.size_kbps - self._state.used[aggregate.id] + call.kbps
            if kbps > free:
                return Rejected(call_id, RejectReason.POOL_FULL,
                                f"aggregate {aggregate.id}: {free} kbit/s free for this call, new media needs {kbps}")
            with self._transaction():
                self._state.update_call(call, replace(call, media=media, kbps=kbps))
            return Admitted(call_id, aggregate.id, kbps, serial=call.serial)
        try:
            return self._retrying(now, attempt)
        except StoreUnavailable as error:
            return Rejected(call_id, RejectReason.STORE_UNAVAILABLE, error.message)

    def release(self, call_id: str, now: float, cause: str = "released") -> ReleasedCall | None:
        """Give a call's bandwidth back. Unknown ids are ignored (None). When the ledger
        cannot record it, the call keeps its bandwidth and the release is retried."""
        def attempt() -> ReleasedCall | None:
            call = self._state.calls.get(call_id)
            if call is None:
                return None
            with self._transaction():
                return self._release(call, cause, now)
        if call_id not in self._state.calls:
            return None
        try:
            return self._retrying(now, attempt)
        except StoreUnavailable as error:
            self._retry_releases[call_id] = cause
            self._pending_notes.append(f"release of call {call_id} ({cause}) not recorded yet: {error.message}; "
                                       "retrying")
            self._retry("releases", now)
            return None

    def release_by_serial(self, serial: int, now: float, cause: str) -> ReleasedCall | None:
        call = self._state.by_serial.get(serial)
        if call is None or call.state is CallState.RELEASING:
            return None
        return self.release(call.call_id, now, cause)

    # --- what the data plane reports ----------------------------------------------------

    def flows_installed(self, serial: int, now: float) -> Call | None:
        """Every switch confirmed the call's flows: installing -> active."""
        call = self._state.by_serial.get(serial)
        if call is None or call.state is not CallState.INSTALLING:
            return call
        with self._transaction():
            active = call.moved_to(CallState.ACTIVE)
            self._state.update_call(call, active, durable=False)   # restored calls with media are active anyway
            self._state.set_deadline(serial, None)
        return active

    def flows_failed(self, serial: int, now: float, reason: str) -> ReleasedCall | None:
        """A switch refused the call's flows, or was not there to take them."""
        call = self._state.by_serial.get(serial)
        if call is None or call.state is CallState.RELEASING:
            return None
        return self.release(call.call_id, now, reason)

    def flows_removed(self, serial: int, now: float) -> None:
        """Every switch confirmed the removal of a releasing call's flows: its serial and
        tags are free again."""
        call = self._state.by_serial.get(serial)
        if call is not None and call.state is CallState.RELEASING:
            self._end(serial)

    def learn_terminal(self, community: str, ip: str, port: int, now: float = 0.0,
                       port_down: Callable[[str, int], bool] = lambda switch, port: False) -> Verdict:
        """A terminal was heard on an access port (see :mod:`.locations` for the rules);
        the calls that involve it follow an accepted move."""
        where = self.topology.community(community)
        key = (community, ip)
        current_port = self._state.locations.get(key)
        current = None if current_port is None else Location(community, ip, current_port)
        affected = [c for c in self._state.calls.values() if c.caller_media is not None and c.callee_media is not None
                    and ((c.caller_community, c.caller_media.ip) == key
                         or (c.callee_community, c.callee_media.ip) == key)]
        static = where.terminal_port_of(ip)
        verdict = judge(port, static_port=static, current=current, in_call=bool(affected),
                        old_port_down=current_port is not None and port_down(where.edge, current_port),
                        terminals_on_port=sum(1 for (name, _), p in self._state.locations.items()
                                              if name == community and p == port),
                        policy=self.settings.port_security)
        if verdict is not Verdict.UNCHANGED:
            self.counters.location_moves[verdict] = self.counters.location_moves.get(verdict, 0) + 1
        if verdict.refused:
            self._pending_notes.append(
                f"terminal {ip} of {community} heard on {where.edge}:{port}, kept on "
                f"{where.edge}:{static if static is not None else current_port}: {verdict.value}")
        if not verdict.accepted:
            return verdict
        try:
            with self._transaction():
                before = {e for c in affected for e in self._plans.call(c)}
                self._state.set_location(Location(community, ip, port))
                self._queue(diff(before, {e for c in affected for e in self._plans.call(c)}))
        except StoreUnavailable as error:
            self._pending_notes.append(f"terminal {ip} of {community}: location not recorded: {error.message}")
        return verdict

    # --- internals ------------------------------------------------------------------

    def _release(self, call: Call, cause: str, now: float, count: bool = True,
                 preempted_by: str | None = None) -> ReleasedCall:
        """live -> releasing (bandwidth returned); ended at once when no flow was ever planned."""
        entries = self._plans.call(call)
        state = self._state
        state.start_release(call)
        if entries:
            self._queue(PlanDiff(remove=tuple(entries)))
            state.set_deadline(call.serial, now + self.settings.timers.release_s)
        else:
            state.end_release(call.serial)
            state.set_deadline(call.serial, None)
        released = ReleasedCall(call.call_id, call.aggregate_id, call.kbps, cause, call.serial, call, preempted_by)
        self._pending_released.append(released)
        self._watch(state.aggregates[call.aggregate_id], now)
        if count:
            self._journal.after(self._count_released)
        return released

    def _count_released(self) -> None:
        self.counters.released += 1

    def _queue(self, plan: PlanDiff) -> None:
        if plan:
            self._pending_plan.append(plan)

    def _edge(self, community: str) -> str:
        return self.topology.community(community).edge

def _ip_version(address: str) -> int:
    return 6 if ":" in address else 4
