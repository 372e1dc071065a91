"""The media aggregation manager: resource manager + admission control, as one object.

It owns the pools (aggregates), the calls admitted onto them, the tags, and the flow
plan that follows from them. Every mutation writes through to the ledger and queues the
resulting plan changes; the shell takes them with `drain()` and renders them.

Not thread-safe by design: shells serialise access (one lock around each call).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from .admission import AdmissionRequest, Admitted, Decision, Rejected, RejectReason, ServiceLevel, SignallingProtocol
from .aggregate import ALL_LEVELS, EF, Aggregate, CapacityBook
from .calls import Call, CallState, MediaEndpoint
from .codec import CodecPolicy, MediaSpec
from .errors import CapacityError, Conflict, InvalidRequest, NotFound
from .flowplan import (Entry, PlanDiff, PlanOptions, aggregate_entries, base_entries, call_entries, diff,
                       port_classes)
from .network import Hop, Link, Topology
from .paths import constrained_path
from .store import Ledger, MemoryLedger
from .tags import TagAllocator

AGGREGATE_TAGS = (2, 4094)        # VLAN VIDs
CALL_TAGS = (16, 1_048_575)       # MPLS labels (0-15 are reserved)
CALL_SERIALS = (1, 0xFF_FFFF_FFFF)


@dataclass(frozen=True)
class ManagerSettings:
    policy: CodecPolicy = field(default_factory=CodecPolicy)
    plan: PlanOptions = field(default_factory=PlanOptions)
    reserved_dscps: tuple[int, ...] = (EF,)
    reroute: bool = True     # move an aggregate off a link that goes down, when another path fits


@dataclass(frozen=True)
class ReleasedCall:
    call_id: str
    aggregate_id: str
    kbps: int
    cause: str
    serial: int = 0


@dataclass(frozen=True)
class Changes:
    """What the shell must act on after a mutation: plan changes and calls that ended."""

    plan: PlanDiff = PlanDiff()
    released: tuple[ReleasedCall, ...] = ()
    notes: tuple[str, ...] = ()          # what the operator should hear (an aggregate moved, or could not)

    def __bool__(self) -> bool:
        return bool(self.plan or self.released or self.notes)


@dataclass
class Counters:
    admitted: int = 0
    rejected: dict[RejectReason, int] = field(default_factory=dict)
    released: int = 0
    preempted: int = 0
    admitted_by_protocol: dict[SignallingProtocol, int] = field(default_factory=dict)
    rejected_by_protocol: dict[tuple[RejectReason, SignallingProtocol], int] = field(default_factory=dict)

    def count(self, decision: Decision, protocol: SignallingProtocol) -> None:
        if isinstance(decision, Rejected):
            self.rejected[decision.reason] = self.rejected.get(decision.reason, 0) + 1
            key = (decision.reason, protocol)
            self.rejected_by_protocol[key] = self.rejected_by_protocol.get(key, 0) + 1
        else:
            self.admitted += 1
            self.admitted_by_protocol[protocol] = self.admitted_by_protocol.get(protocol, 0) + 1


class MediaAggregationManager:
    def __init__(self, topology: Topology, settings: ManagerSettings | None = None,
                 ledger: Ledger | None = None) -> None:
        self.topology = topology
        self.settings = settings or ManagerSettings()
        self.ledger: Ledger = ledger if ledger is not None else MemoryLedger()
        self.counters = Counters()
        self._book = CapacityBook(topology)
        self._aggregates: dict[str, Aggregate] = {}
        self._by_pair: dict[frozenset[str], list[Aggregate]] = {}
        self._used: dict[str, int] = {}
        self._calls: dict[str, Call] = {}
        self._calls_on: dict[str, dict[str, Call]] = {}
        self._by_serial: dict[int, Call] = {}
        self._aggregate_tags = TagAllocator(*AGGREGATE_TAGS)
        self._call_tags: dict[str, TagAllocator] = {s.name: TagAllocator(*CALL_TAGS) for s in topology.switches}
        self._serials = TagAllocator(*CALL_SERIALS)
        self._locations: dict[tuple[str, str], int] = {}
        self._bandwidth_cache: dict[MediaSpec, int | None] = {}
        self._pending_plan: list[PlanDiff] = []
        self._pending_released: list[ReleasedCall] = []
        self._pending_notes: list[str] = []
        self._faults: dict[Link, str] = {}
        self._restore(self.ledger.load())

    # --- state restored from the ledger ------------------------------------------------

    def _restore(self, state) -> None:
        for aggregate in state.aggregates:
            self._validate_path(aggregate.path, aggregate.communities)
            if not self._book.fits(_hops(aggregate.path), aggregate.size_kbps):
                raise CapacityError(f"stored aggregate {aggregate.id!r} no longer fits the topology")
            self._aggregate_tags.claim(aggregate.tag)
            self._add_aggregate(aggregate)
        for call in state.calls:
            aggregate = self._aggregates.get(call.aggregate_id)
            if aggregate is None:
                self.ledger.delete_call(call.call_id)
                continue
            self._serials.claim(call.serial)
            self._call_tags[self._edge(call.caller_community)].claim(call.tag_to_caller)
            self._call_tags[self._edge(call.callee_community)].claim(call.tag_to_callee)
            self._add_call(call)
        self._pending_plan.clear()

    # --- queries --------------------------------------------------------------------

    def aggregates(self) -> list[Aggregate]:
        return sorted(self._aggregates.values(), key=lambda a: a.id)

    def aggregate(self, aggregate_id: str) -> Aggregate:
        try:
            return self._aggregates[aggregate_id]
        except KeyError:
            raise NotFound(f"no aggregate {aggregate_id!r}") from None

    def used_kbps(self, aggregate_id: str) -> int:
        self.aggregate(aggregate_id)
        return self._used[aggregate_id]

    def calls(self, aggregate_id: str | None = None) -> list[Call]:
        source = self._calls.values() if aggregate_id is None else self._calls_on.get(aggregate_id, {}).values()
        return sorted(source, key=lambda c: c.serial)

    def call(self, call_id: str) -> Call:
        try:
            return self._calls[call_id]
        except KeyError:
            raise NotFound(f"no call {call_id!r}") from None

    def call_by_serial(self, serial: int) -> Call | None:
        return self._by_serial.get(serial)

    def link_reserved(self) -> dict[Hop, int]:
        return dict(self._book.snapshot())

    def link_reservable(self, hop: Hop) -> int:
        """What ``hop`` may reserve now: the configured share, or less if its port is slower."""
        return self._book.reservable(hop)

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
        entries: set[Entry] = base_entries(self.topology, self._reserved_dscps())
        entries |= port_classes(self._aggregates.values(), self.topology, self.settings.plan)
        for aggregate in self._aggregates.values():
            entries |= aggregate_entries(aggregate, self.topology, self.settings.plan)
        for call in self._calls.values():
            entries |= self._call_entries(call)
        return frozenset(entries)

    def drain(self) -> Changes:
        """Take the plan changes and call releases queued since the last drain."""
        plan = PlanDiff()
        for part in self._pending_plan:
            plan = plan + part
        changes = Changes(plan, tuple(self._pending_released), tuple(self._pending_notes))
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

    # --- what the network shows -----------------------------------------------------

    def set_link_conditions(self, faults: Mapping[Link, str], limits: Mapping[Link, int]) -> None:
        """Links that are down or miswired (no new calls or reservations cross them) and
        links whose port speed lowers what they may reserve. Admitted calls stay; with
        ``settings.reroute`` an aggregate on a closed link moves, calls and all, to the
        fewest-hop path that is open and can hold it (higher priority first). What
        happened to each aggregate on a closed link is in the drained notes."""
        self._faults = dict(faults)
        self._book.set_conditions(limits, self._faults)
        self._reroute(report_stuck=True)

    def _reroute(self, report_stuck: bool) -> None:
        """Move the aggregates on closed links that an open path can hold. Also run when
        capacity frees up, so a pool stuck on a closed link leaves as soon as it can."""
        if not self._faults:
            return
        shared_before: set[Entry] | None = None
        for aggregate in sorted(self._aggregates.values(), key=lambda a: (-a.priority, a.id)):
            fault = self.path_fault(aggregate)
            if fault is None:
                continue
            old_path = "-".join(aggregate.path)
            found = None
            if self.settings.reroute:
                found = constrained_path(self.topology, self._book, aggregate.path[0], aggregate.path[-1],
                                         aggregate.size_kbps, own=aggregate)
            if found is None:
                if report_stuck:
                    self._pending_notes.append(
                        f"aggregate {aggregate.id} stays on {old_path}, refusing calls ({fault}): "
                        + (f"no open path can hold its {aggregate.size_kbps} kbit/s" if self.settings.reroute
                           else "dataplane.reroute is off"))
                continue
            if shared_before is None:
                shared_before = self._shared_entries()
            self._replace_aggregate(aggregate, aggregate.resized(aggregate.size_kbps, found), shared=False)
            self._pending_notes.append(f"aggregate {aggregate.id} moved from {old_path} to {'-'.join(found)} with "
                                       f"its {len(self._calls_on[aggregate.id])} call(s) ({fault})")
        if shared_before is not None:
            self._queue(diff(shared_before, self._shared_entries()))

    # --- aggregates -------------------------------------------------------------------

    def create_aggregate(self, aggregate_id: str, a: str, b: str, size_kbps: int, *, dscp: int = EF,
                         priority: int = 0, levels: Iterable[ServiceLevel] = ALL_LEVELS,
                         preemption: bool = False, path: Iterable[str] | None = None) -> Aggregate:
        if aggregate_id in self._aggregates:
            raise Conflict(f"aggregate {aggregate_id!r} already exists", field="id")
        if not aggregate_id or len(aggregate_id) > 64:
            raise InvalidRequest("must be 1 to 64 characters", field="id")
        if size_kbps <= 0:
            raise InvalidRequest(f"must be a positive number of kbit/s, not {size_kbps}", field="size_kbps")
        if not 0 <= dscp <= 63:
            raise InvalidRequest(f"must be 0..63, not {dscp}", field="dscp")
        levels = frozenset(levels)
        if not levels:
            raise InvalidRequest("must name at least one level of service", field="levels")
        ends = (self.topology.community(a), self.topology.community(b))
        if a == b:
            raise InvalidRequest("an aggregate joins two different communities", field="communities")
        if path is not None:
            route = tuple(path)
            self._validate_path(route, (a, b))
            for here, there in zip(route, route[1:]):
                fault = self._faults.get(self.topology.link(here, there))
                if fault is not None:
                    raise CapacityError(f"path {'-'.join(route)} cannot reserve now: {fault}", field="path")
            if not self._book.fits(_hops(route), size_kbps):
                raise CapacityError(f"path {'-'.join(route)} cannot reserve {size_kbps} kbit/s "
                                    f"({self._narrowest(route)})", field="path")
        else:
            found = constrained_path(self.topology, self._book, ends[0].edge, ends[1].edge, size_kbps)
            if found is None:
                raise CapacityError(f"no path from {ends[0].edge} to {ends[1].edge} can reserve "
                                    f"{size_kbps} kbit/s", field="size_kbps")
            route = found
        tag = self._aggregate_tags.allocate()
        if tag is None:
            raise CapacityError("every aggregate tag is in use")
        aggregate = Aggregate(aggregate_id, (a, b), size_kbps, route, tag, dscp, priority, levels, preemption)
        before = self._shared_entries()
        self._add_aggregate(aggregate)
        self.ledger.save_aggregate(aggregate)
        self._queue(diff(before, self._shared_entries()))
        self._queue(PlanDiff(add=tuple(aggregate_entries(aggregate, self.topology, self.settings.plan))))
        return aggregate

    def resize_aggregate(self, aggregate_id: str, size_kbps: int) -> Aggregate:
        """Grow or shrink a pool. Its own reservation counts as free while a new path is
        sought, so growing never counts the pool's bandwidth twice. Shrinking below what
        admitted calls use is refused."""
        old = self.aggregate(aggregate_id)
        if size_kbps <= 0:
            raise InvalidRequest(f"must be a positive number of kbit/s, not {size_kbps}", field="size_kbps")
        used = self._used[aggregate_id]
        if size_kbps < used:
            raise Conflict(f"aggregate {aggregate_id!r} carries {used} kbit/s of calls; cannot shrink to "
                           f"{size_kbps}", field="size_kbps")
        if self._book.fits(old.hops(), size_kbps, own=old):
            route = old.path
        else:
            found = constrained_path(self.topology, self._book, old.path[0], old.path[-1], size_kbps, own=old)
            if found is None:
                raise CapacityError(f"no path from {old.path[0]} to {old.path[-1]} can reserve {size_kbps} "
                                    f"kbit/s (now {old.size_kbps})", field="size_kbps")
            route = found
        new = self._replace_aggregate(old, old.resized(size_kbps, route))
        self._reroute(report_stuck=False)
        return new

    def _replace_aggregate(self, old: Aggregate, new: Aggregate, *, shared: bool = True) -> Aggregate:
        """The same pool with a new size and/or path; its calls' flows follow. With
        ``shared`` False the caller queues the change to the entries all pools share
        (per-port classes, guards) itself, once for many pools."""
        aggregate_id = old.id
        shared_before = self._shared_entries() if shared else set()
        before = aggregate_entries(old, self.topology, self.settings.plan) | {
            e for call in self._calls_on[aggregate_id].values() for e in self._call_entries(call)}
        self._book.remove(old)
        self._book.add(new)
        self._aggregates[aggregate_id] = new
        self._index_pairs()
        self.ledger.save_aggregate(new)
        after = aggregate_entries(new, self.topology, self.settings.plan) | {
            e for call in self._calls_on[aggregate_id].values() for e in self._call_entries(call)}
        self._queue(diff(before, after))
        if shared:
            self._queue(diff(shared_before, self._shared_entries()))
        return new

    def delete_aggregate(self, aggregate_id: str, *, force: bool = False, now: float = 0.0) -> None:
        aggregate = self.aggregate(aggregate_id)
        calls = list(self._calls_on[aggregate_id].values())
        if calls and not force:
            raise Conflict(f"aggregate {aggregate_id!r} carries {len(calls)} call(s); release them first "
                           "or delete with force")
        for call in calls:
            self._release(call, "aggregate-deleted")
        before = self._shared_entries()
        self._book.remove(aggregate)
        del self._aggregates[aggregate_id], self._used[aggregate_id], self._calls_on[aggregate_id]
        self._aggregate_tags.release(aggregate.tag)
        self._index_pairs()
        self.ledger.delete_aggregate(aggregate_id)
        self._queue(PlanDiff(remove=tuple(aggregate_entries(aggregate, self.topology, self.settings.plan))))
        self._queue(diff(before, self._shared_entries()))
        self._reroute(report_stuck=False)

    # --- calls ----------------------------------------------------------------------

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        """Admit a call onto an aggregate between its communities, or say why not.

        Idempotent per call id: a retransmitted setup gets the same decision and
        allocates nothing more."""
        existing = self._calls.get(request.call_id)
        if existing is not None:
            return Admitted(existing.call_id, existing.aggregate_id, existing.kbps, serial=existing.serial)
        decision = self._decide(request, now)
        self.counters.count(decision, request.protocol)
        return decision

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
        candidates = [a for a in self._by_pair.get(frozenset((request.caller_community, request.callee_community)), ())
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
            if aggregate.size_kbps - self._used[aggregate.id] >= kbps:
                return self._allocate(request, aggregate, kbps, now, ())
        for aggregate in candidates:
            if aggregate.preemption:
                victims = self._victims(aggregate, request.level, kbps)
                if victims is not None:
                    for victim in victims:
                        self._release(victim, f"preempted by {request.level.label} call")
                        self.counters.preempted += 1
                    return self._allocate(request, aggregate, kbps, now, tuple(v.call_id for v in victims))
        best = candidates[0]
        return Rejected(request.call_id, RejectReason.POOL_FULL,
                        f"aggregate {best.id}: {self._used[best.id]} of {best.size_kbps} kbit/s in use, "
                        f"call needs {kbps}")

    def _victims(self, aggregate: Aggregate, level: ServiceLevel, kbps: int) -> list[Call] | None:
        lower = sorted((c for c in self._calls_on[aggregate.id].values() if c.level < level),
                       key=lambda c: (c.level, -c.admitted_at, -c.serial))
        free = aggregate.size_kbps - self._used[aggregate.id]
        chosen: list[Call] = []
        for call in lower:
            if free >= kbps:
                break
            chosen.append(call)
            free += call.kbps
        return chosen if free >= kbps else None

    def _allocate(self, request: AdmissionRequest, aggregate: Aggregate, kbps: int, now: float,
                  preempted: tuple[str, ...]) -> Admitted:
        caller_edge = self._edge(request.caller_community)
        callee_edge = self._edge(request.callee_community)
        serial = self._serials.allocate()
        to_caller = self._call_tags[caller_edge].allocate()
        to_callee = self._call_tags[callee_edge].allocate()
        if serial is None or to_caller is None or to_callee is None:  # pragma: no cover - 1M labels per edge
            for tag, pool in ((serial, self._serials), (to_caller, self._call_tags[caller_edge]),
                              (to_callee, self._call_tags[callee_edge])):
                if tag is not None:
                    pool.release(tag)
            raise CapacityError("no free call tag")
        call = Call(request.call_id, serial, aggregate.id, request.caller_community, request.callee_community,
                    request.level, request.media, kbps, to_caller, to_callee, now, protocol=request.protocol)
        self._add_call(call)
        self.ledger.save_call(call)
        return Admitted(call.call_id, aggregate.id, kbps, preempted, serial)

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint, now: float) -> Call:
        """Both media addresses are known (SDP answer): plan the call's flows."""
        call = self.call(call_id)
        if (call.caller_media, call.callee_media) == (caller, callee):
            return call
        old_entries = self._call_entries(call)
        updated = call.with_media(caller, callee)
        self._store_call(updated)
        self._queue(diff(old_entries, self._call_entries(updated)))
        return updated

    def confirm_flows(self, call_id: str) -> Call | None:
        """The switches confirmed (barrier) the call's flows: the call is active."""
        call = self._calls.get(call_id)
        if call is None or call.state is not CallState.INSTALLING:
            return call
        updated = replace(call, state=CallState.ACTIVE)
        self._store_call(updated)
        return updated

    def modify(self, call_id: str, media: MediaSpec, now: float) -> Decision:
        """Re-admit a call whose media changed (re-INVITE). A refused upgrade leaves the
        call on its old allocation."""
        call = self._calls.get(call_id)
        if call is None:
            return Rejected(call_id, RejectReason.UNKNOWN_CALL, f"no call {call_id!r}")
        if not self.settings.policy.is_allowed(media.codec):
            return Rejected(call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"codec {media.codec!r} is not allowed by the codec policy")
        kbps = self.bandwidth_kbps(media)
        if kbps is None:
            return Rejected(call_id, RejectReason.CODEC_NOT_ALLOWED,
                            f"unknown codec {media.codec!r} with no declared bandwidth")
        aggregate = self._aggregates[call.aggregate_id]
        free = aggregate.size_kbps - self._used[aggregate.id] + call.kbps
        if kbps > free:
            return Rejected(call_id, RejectReason.POOL_FULL,
                            f"aggregate {aggregate.id}: {free} kbit/s free for this call, new media needs {kbps}")
        self._used[aggregate.id] += kbps - call.kbps
        self._store_call(replace(call, media=media, kbps=kbps))
        return Admitted(call_id, aggregate.id, kbps, serial=call.serial)

    def release(self, call_id: str, now: float, cause: str = "released") -> ReleasedCall | None:
        """Give a call's bandwidth and tags back. Unknown ids are ignored (None)."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        return self._release(call, cause)

    def release_by_serial(self, serial: int, now: float, cause: str) -> ReleasedCall | None:
        call = self._by_serial.get(serial)
        return None if call is None else self._release(call, cause)

    def learn_terminal(self, community: str, ip: str, port: int) -> None:
        """Where a terminal is (learned by the shell); replans the calls that involve it."""
        self.topology.community(community)
        key = (community, ip)
        if self._locations.get(key) == port:
            return
        affected = [c for c in self._calls.values() if c.media_attached and (
            (c.caller_community, c.caller_media.ip) == key or (c.callee_community, c.callee_media.ip) == key)]
        before = {e for c in affected for e in self._call_entries(c)}
        self._locations[key] = port
        self._queue(diff(before, {e for c in affected for e in self._call_entries(c)}))

    # --- internals ------------------------------------------------------------------

    def _release(self, call: Call, cause: str) -> ReleasedCall:
        entries = self._call_entries(call)
        del self._calls[call.call_id], self._calls_on[call.aggregate_id][call.call_id]
        del self._by_serial[call.serial]
        self._used[call.aggregate_id] -= call.kbps
        self._serials.release(call.serial)
        self._call_tags[self._edge(call.caller_community)].release(call.tag_to_caller)
        self._call_tags[self._edge(call.callee_community)].release(call.tag_to_callee)
        self.ledger.delete_call(call.call_id)
        if entries:
            self._queue(PlanDiff(remove=tuple(entries)))
        released = ReleasedCall(call.call_id, call.aggregate_id, call.kbps, cause, call.serial)
        self._pending_released.append(released)
        self.counters.released += 1
        return released

    def _add_aggregate(self, aggregate: Aggregate) -> None:
        self._book.add(aggregate)
        self._aggregates[aggregate.id] = aggregate
        self._used[aggregate.id] = 0
        self._calls_on[aggregate.id] = {}
        self._index_pairs()

    def _index_pairs(self) -> None:
        index: dict[frozenset[str], list[Aggregate]] = {}
        for aggregate in self._aggregates.values():
            index.setdefault(frozenset(aggregate.communities), []).append(aggregate)
        for group in index.values():
            group.sort(key=lambda a: (-a.priority, a.id))
        self._by_pair = index

    def _add_call(self, call: Call) -> None:
        self._calls[call.call_id] = call
        self._calls_on[call.aggregate_id][call.call_id] = call
        self._by_serial[call.serial] = call
        self._used[call.aggregate_id] += call.kbps

    def _store_call(self, call: Call) -> None:
        self._calls[call.call_id] = call
        self._calls_on[call.aggregate_id][call.call_id] = call
        self._by_serial[call.serial] = call
        self.ledger.save_call(call)

    def _call_entries(self, call: Call) -> set[Entry]:
        if not call.media_attached:
            return set()
        return call_entries(call, self._aggregates[call.aggregate_id], self.topology, self.settings.plan,
                            self._locations)

    def _shared_entries(self) -> set[Entry]:
        """Entries that depend on all aggregates together: per-port classes, guards."""
        return (port_classes(self._aggregates.values(), self.topology, self.settings.plan)
                | base_entries(self.topology, self._reserved_dscps()))

    def _reserved_dscps(self) -> set[int]:
        return set(self.settings.reserved_dscps) | {a.dscp for a in self._aggregates.values()}

    def _queue(self, plan: PlanDiff) -> None:
        if plan:
            self._pending_plan.append(plan)

    def _edge(self, community: str) -> str:
        return self.topology.community(community).edge

    def _validate_path(self, path: tuple[str, ...], communities: tuple[str, str]) -> None:
        ends = (self._edge(communities[0]), self._edge(communities[1]))
        if not path or (path[0], path[-1]) != ends:
            raise InvalidRequest(f"must run from {ends[0]} to {ends[1]}", field="path")
        if len(set(path)) != len(path):
            raise InvalidRequest("must not visit a switch twice", field="path")
        for a, b in zip(path, path[1:]):
            self.topology.link(a, b)

    def _narrowest(self, path: tuple[str, ...]) -> str:
        hop = min(_hops(path), key=self._book.residual)
        return f"{hop[0]}->{hop[1]} has {self._book.residual(hop)} kbit/s free"


def _hops(path: tuple[str, ...]) -> list[Hop]:
    return [hop for a, b in zip(path, path[1:]) for hop in ((a, b), (b, a))]
