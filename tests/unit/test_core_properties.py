"""Invariants under random sequences of operations (hypothesis stateful testing).

Links go down and come back and ports turn out slower than configured, at random: no call is
admitted across a closed link, new reservations respect what the links may reserve now, and
an aggregate left on a closed link is one no open path could hold (it moves otherwise).

After every step: no link direction holds more than its reservable share; no pool admits
more than its size; a pool's use is the sum of its live calls; tags and serials are
unique; replaying every drained plan diff onto an empty set gives exactly
expected_plan(); and a manager rebuilt from the ledger decides exactly as the original.

The fake data plane confirms every install and removal after each step (the lifecycle's
timers are exercised in test_core_lifecycle.py). A ledger that refuses a commit, at any
step, leaves the manager's memory exactly as it was and publishes nothing.
"""

from __future__ import annotations

from collections import Counter

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import mesh_topology
from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.calls import CallState, MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import MamError, StoreUnavailable
from ryu_apps.core.flowplan import FlowEntry
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.core.paths import constrained_path
from ryu_apps.core.store import MemoryLedger

TOPOLOGY = mesh_topology()
CODECS = st.sampled_from([MediaSpec("pcmu"), MediaSpec("g729"), MediaSpec("g722", 30), MediaSpec("t38"),
                          MediaSpec("opus", 20, explicit_kbps=64)])
LEVELS = st.sampled_from(list(ServiceLevel))
SIZES = st.integers(min_value=50, max_value=6000)
IDS = st.sampled_from(["p", "q", "r"])
CALLS = st.integers(min_value=0, max_value=30).map(lambda i: f"call-{i}")
LINKS = st.sampled_from(TOPOLOGY.links)


class FlakyLedger(MemoryLedger):
    """Refuses the next ``failures`` commits, as a full disk or a lost database would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def commit(self, writes):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("injected: the ledger is down")
        super().commit(writes)


def _memory(manager: MediaAggregationManager) -> dict:
    """What a refused mutation must not change (retry bookkeeping aside)."""
    snapshot = manager.snapshot()
    snapshot.pop("retry_releases")
    snapshot["deadlines"] = {k: v for k, v in snapshot["deadlines"].items() if not isinstance(k, tuple)}
    plan, released, _ = snapshot.pop("pending")
    return {**snapshot, "pending": (plan, released)}


class Ledger(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = FlakyLedger()
        self.manager = MediaAggregationManager(TOPOLOGY, ledger=self.ledger)
        self.installed: set = set(self.manager.expected_plan())   # what a connecting switch gets
        self.now = 0.0
        self.faults: dict = {}
        self.limits: dict = {}

    def _apply(self, manager: MediaAggregationManager) -> None:
        changes = manager.drain()
        plan = changes.plan
        for entry in plan.remove:
            assert entry in self.installed, f"removing what was never added: {entry}"
            self.installed.discard(entry)
        for entry in plan.add:
            if isinstance(entry, FlowEntry):
                assert not any(isinstance(e, FlowEntry) and e.key == entry.key and e != entry
                               for e in self.installed if e.switch == entry.switch), "two flows, one key"
            self.installed.add(entry)
        # the switches confirm at once: removed calls end, installing calls become active
        for released in changes.released:
            manager.flows_removed(released.serial, self.now)
        for call in manager.calls():
            if call.state is CallState.INSTALLING:
                manager.flows_installed(call.serial, self.now)
        assert not manager.releasing() and not manager.drain()

    def _both(self, action):
        """Do the same to the manager and to one rebuilt from its ledger; same outcome."""
        twin = MediaAggregationManager(TOPOLOGY, ledger=self.ledger.copy())
        twin.set_link_conditions(self.faults, self.limits)   # already placed as the original: nothing moves
        assert not twin.drain().plan
        outcome = _outcome(action, self.manager)
        assert _outcome(action, twin) == outcome
        self._apply(self.manager)
        self.now += 1
        return outcome

    @rule(aggregate_id=IDS, ends=st.sampled_from([("east", "west"), ("west", "east")]), size=SIZES,
          preemption=st.booleans())
    def create(self, aggregate_id, ends, size, preemption):
        self._placed(self._both(lambda m: m.create_aggregate(aggregate_id, *ends, size, preemption=preemption)))

    @rule(aggregate_id=IDS, size=SIZES)
    def resize(self, aggregate_id, size):
        self._placed(self._both(lambda m: m.resize_aggregate(aggregate_id, size)))

    def _placed(self, outcome) -> None:
        """A pool just placed uses no closed link and no more than the links may reserve now."""
        if outcome[0] != "ok":
            return
        aggregate = outcome[1]
        assert self.manager.path_fault(aggregate) is None
        reserved = self.manager.link_reserved()
        assert all(reserved[hop] <= self.manager.link_reservable(hop) for hop in aggregate.hops())

    @rule(link=LINKS, down=st.booleans(), limit=st.one_of(st.none(), st.integers(min_value=0, max_value=20000)))
    def link_report(self, link, down, limit):
        if down:
            self.faults[link] = f"link {link.a}-{link.b} is down"
        else:
            self.faults.pop(link, None)
        if limit is None:
            self.limits.pop(link, None)
        else:
            self.limits[link] = limit
        self.manager.set_link_conditions(self.faults, self.limits)
        self._apply(self.manager)
        for aggregate in self.manager.aggregates():
            if self.manager.path_fault(aggregate) is not None:   # stuck only when nothing open could hold it
                assert constrained_path(TOPOLOGY, self.manager.book, aggregate.path[0], aggregate.path[-1],
                                        aggregate.size_kbps, own=aggregate) is None

    @rule(aggregate_id=IDS, force=st.booleans())
    def delete(self, aggregate_id, force):
        self._both(lambda m: m.delete_aggregate(aggregate_id, force=force))

    @rule(call_id=CALLS, media=CODECS, level=LEVELS, reverse=st.booleans())
    def admit(self, call_id, media, level, reverse):
        a, b = ("west", "east") if reverse else ("east", "west")
        now = self.now
        fresh = call_id not in {c.call_id for c in self.manager.calls()}
        outcome = self._both(lambda m: m.admit(AdmissionRequest(call_id, a, b, media, level), now))
        if fresh and outcome[0] == "ok" and isinstance(outcome[1], Admitted):
            assert self.manager.path_fault(self.manager.aggregate(outcome[1].aggregate_id)) is None

    @rule(call_id=CALLS, media=CODECS)
    def modify(self, call_id, media):
        now = self.now
        self._both(lambda m: m.modify(call_id, media, now))

    @rule(call_id=CALLS, port=st.integers(min_value=1024, max_value=1100))
    def attach(self, call_id, port):
        now = self.now
        self._both(lambda m: m.attach_media(call_id, MediaEndpoint("10.1.0.1", port),
                                            MediaEndpoint("10.4.0.1", port + 2), now))

    @rule(call_id=CALLS)
    def release(self, call_id):
        now = self.now
        self._both(lambda m: m.release(call_id, now, "bye"))

    @precondition(lambda self: self.manager.calls())
    @rule(data=st.data())
    def release_everything(self, data):
        for call in self.manager.calls():
            self.manager.release(call.call_id, self.now, "bye")
        self._apply(self.manager)
        assert all(self.manager.used_kbps(a.id) == 0 for a in self.manager.aggregates())

    @rule(op=st.sampled_from(["create", "resize", "delete", "admit"]), call_id=CALLS, aggregate_id=IDS, size=SIZES,
          media=CODECS)
    def the_ledger_refuses_a_change(self, op, call_id, aggregate_id, size, media):
        self._refused(op, call_id, aggregate_id, size, media)

    @precondition(lambda self: self.manager.calls())
    @rule(op=st.sampled_from(["modify", "attach", "release", "delete"]), media=CODECS, data=st.data())
    def the_ledger_refuses_a_call_change(self, op, media, data):
        call = data.draw(st.sampled_from(self.manager.calls()))
        self._refused(op, call.call_id, call.aggregate_id, 0, media)

    def _refused(self, op, call_id, aggregate_id, size, media):
        """Any mutation whose commit fails changes nothing in memory and publishes nothing."""
        manager, now = self.manager, self.now
        actions = {
            "create": lambda: manager.create_aggregate(aggregate_id, "east", "west", size),
            "resize": lambda: manager.resize_aggregate(aggregate_id, size),
            "delete": lambda: manager.delete_aggregate(aggregate_id, force=True),
            "admit": lambda: manager.admit(AdmissionRequest(call_id, "east", "west", media), now),
            "modify": lambda: manager.modify(call_id, media, now),
            "attach": lambda: manager.attach_media(call_id, MediaEndpoint("10.1.0.1", 2000),
                                                   MediaEndpoint("10.4.0.1", 2002), now),
            "release": lambda: manager.release(call_id, now, "bye"),
        }
        before, stored = _memory(manager), self.ledger.copy().load()
        self.ledger.failures = 1
        outcome = _outcome(lambda m: actions[op](), manager)
        wrote = self.ledger.failures == 0
        self.ledger.failures = 0
        if wrote:       # it tried to record something: nothing of it may show
            assert _memory(manager) == before and self.ledger.load() == stored
            assert outcome in (("ok", None),) or outcome[0] == "error" and outcome[1] == "StoreUnavailable" or (
                outcome[0] == "ok" and isinstance(outcome[1], Rejected)
                and outcome[1].reason is RejectReason.STORE_UNAVAILABLE), outcome
            retried = manager.snapshot()["retry_releases"]
            assert (op == "release") == bool(retried)
            if retried:            # the ledger is back: the retry timer releases the call
                manager.handle_timer(now + manager.settings.timers.retry_s)   # (not next_timer(): other
                                                                               # deadlines may come first)
                assert call_id not in {c.call_id for c in manager.calls()}
        self._apply(manager)

    @invariant()
    def links_and_pools_are_never_oversubscribed(self):
        reserved = Counter()
        for aggregate in self.manager.aggregates():
            for hop in aggregate.hops():
                reserved[hop] += aggregate.size_kbps
            used = sum(c.kbps for c in self.manager.calls(aggregate.id))
            assert used == self.manager.used_kbps(aggregate.id) <= aggregate.size_kbps
        for hop, kbps in self.manager.link_reserved().items():
            assert kbps == reserved[hop] <= TOPOLOGY.reservable(hop)

    @invariant()
    def tags_and_serials_are_unique(self):
        calls = self.manager.calls()
        per_edge = Counter()
        for call in calls:
            per_edge[(TOPOLOGY.community(call.caller_community).edge, call.tag_to_caller)] += 1
            per_edge[(TOPOLOGY.community(call.callee_community).edge, call.tag_to_callee)] += 1
        assert all(n == 1 for n in per_edge.values())
        assert len({c.serial for c in calls}) == len(calls)
        assert len({a.tag for a in self.manager.aggregates()}) == len(self.manager.aggregates())

    @invariant()
    def replayed_diffs_equal_the_expected_plan(self):
        assert self.installed == set(self.manager.expected_plan())

    @invariant()
    def shared_entries_kept_up_to_date_equal_a_fresh_drawing(self):
        plans = self.manager._plans
        assert plans.shared() == plans.shared_from_scratch()

    @invariant()
    def pools_by_pair_match_a_fresh_index(self):
        state = self.manager._state
        fresh: dict = {}
        for aggregate in state.aggregates.values():
            fresh.setdefault(frozenset(aggregate.communities), []).append(aggregate)
        assert state.by_pair == {pair: sorted(group, key=lambda a: (-a.priority, a.id))
                                 for pair, group in fresh.items()}

    def teardown(self):
        pass


def _outcome(action, manager):
    try:
        return ("ok", action(manager))
    except MamError as error:
        return ("error", type(error).__name__, str(error))


TestLedger = Ledger.TestCase
TestLedger.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


