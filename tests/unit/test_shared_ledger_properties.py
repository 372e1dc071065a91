"""The shared-ledger protocol under interleaved controllers (hypothesis stateful testing).

Three managers share one in-memory etcd model (ryu_apps.store.memkv: revisions, versions,
compare-and-swap transactions); each one's watch delivers only when a rule says so, so a
controller often decides on a stale view, exactly as two controllers admitting at the same
instant do. Admissions also come in groups committed as one transaction (group commit,
``admit_all``); the third controller's transactions are capped low (etcd's --max-txn-ops)
so its groups are split. A model of what was acknowledged (every Admitted for a new call, every release
and preemption) is kept beside them.

After every step: the store holds exactly the acknowledged calls (nothing admitted is lost,
nothing is admitted twice); no pool holds more than its size and the controllers' shares of
each pool (``used-by/<pool>/<member>``) add up to its calls; serials and per-edge tags are claimed once each, by the call that
holds them; every controller's memory never oversubscribes a pool; replaying each
controller's drained plan diffs gives its expected plan. When every watch has delivered,
every controller's calls, pools and use equal the store's, and a controller rebuilt from
the store (a restart) decides exactly as the one it replaces.

The same machine runs twice: controllers that claim per-number claims (a ledger without a
lane), and controllers that each claim a lane of serials and tags in the store (as every
clustered controller does) and claim no number per call; their lanes hold 5 tags per edge
(LANES lanes), so they run out of tags and numbers are handed over by preemption.
"""

from __future__ import annotations

import json
from collections import Counter

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import mesh_topology
from ryu_apps.core.admission import AdmissionRequest, Admitted, Decision, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.batch import Admission
from ryu_apps.core.calls import CallState, MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import CapacityError, MamError
from ryu_apps.core.flowplan import FlowEntry
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager
from ryu_apps.core.reservations import CALL_TAGS
from ryu_apps.store.memkv import MemoryKV, MemoryStore
from ryu_apps.store.shared import SHARE_OFFSET, SharedLedger

TOPOLOGY = mesh_topology()
PREFIX = "/mam/"
CLAIMS = "/mam#claims/"    # claims live beside the prefix, outside every watch
CONTROLLERS = st.integers(min_value=0, max_value=2)
CODECS = st.sampled_from([MediaSpec("pcmu"), MediaSpec("g729"), MediaSpec("g722", 30),
                          MediaSpec("opus", 20, explicit_kbps=64)])
LEVELS = st.sampled_from(list(ServiceLevel))
SIZES = st.integers(min_value=50, max_value=2500)
IDS = st.sampled_from(["p", "q"])
CALLS = st.integers(min_value=0, max_value=20).map(lambda i: f"call-{i}")


TXN_OPS = {"c2": 24}           # room for about four new calls: its groups are split
OUT_OF_TAGS = ("error", "CapacityError", "no free call tag")
LANED_TXN_OPS = {"c2": 12}     # a new call costs one compare and one put there: split still
LANES = (CALL_TAGS[1] - CALL_TAGS[0] + 1) // 5     # a lane of 5 tags per edge (and many serials)


def stored_use(store: MemoryStore, pool_id: str) -> int:
    """The pool's use in the store: the sum of every controller's share."""
    shares = PREFIX + "used-by/" + pool_id + "/"
    return sum(int(e.value) - SHARE_OFFSET for k, e in store.data.items() if k.startswith(shares))


class Controller:
    def __init__(self, store: MemoryStore, name: str, now: float, lanes: bool = False) -> None:
        self.kv = MemoryKV(store, PREFIX)
        self.ledger = SharedLedger(self.kv, PREFIX, name, lambda c: TOPOLOGY.community(c).edge,
                                   max_txn_ops=(LANED_TXN_OPS if lanes else TXN_OPS).get(name, 128))
        self.kv.feed = self.ledger.feed
        if lanes:       # every controller prefers lane 0: the second and third probe on
            lane = self.ledger.claim_lane(0, LANES)
        settings = ManagerSettings(tag_lane=lane) if lanes else ManagerSettings()
        self.manager = MediaAggregationManager(TOPOLOGY, settings, ledger=self.ledger, now=now)
        self.installed: set = set(self.manager.expected_plan())
        self.manager.drain()

    def sync(self, now: float, revisions: int | None = None) -> None:
        self.kv.deliver(revisions)
        self.manager.apply_remote(self.ledger.take_remote(), now)

    def settle(self, now: float) -> None:
        """Apply drained plan diffs to a fake data plane that confirms at once."""
        manager = self.manager
        changes = manager.drain()
        for entry in changes.plan.remove:
            assert entry in self.installed, f"removing what was never added: {entry}"
            self.installed.discard(entry)
        for entry in changes.plan.add:
            if isinstance(entry, FlowEntry):
                assert not any(isinstance(e, FlowEntry) and e.key == entry.key and e != entry
                               for e in self.installed if e.switch == entry.switch), "two flows, one key"
            self.installed.add(entry)
        for released in changes.released:
            manager.flows_removed(released.serial, now)
        for call in manager.calls():
            if call.state is CallState.INSTALLING:
                manager.flows_installed(call.serial, now)
        assert not manager.drain().plan


class SharedLedgerMachine(RuleBasedStateMachine):
    lanes = False

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.now = 1000.0
        self.controllers = [Controller(self.store, f"c{i}", self.now, self.lanes) for i in range(3)]
        self.acknowledged: dict[str, tuple[int, str]] = {}     # call id -> (serial, aggregate)

    def _step(self, index: int, action):
        controller = self.controllers[index]
        try:
            outcome = ("ok", action(controller.manager))
        except MamError as error:
            outcome = ("error", type(error).__name__, str(error))
        self.now += 1
        for c in self.controllers:
            c.settle(self.now)
        return outcome

    # --- pools ----------------------------------------------------------------------------

    @rule(index=CONTROLLERS, aggregate_id=IDS, size=SIZES, preemption=st.booleans())
    def create(self, index, aggregate_id, size, preemption):
        self._step(index, lambda m: m.create_aggregate(aggregate_id, "east", "west", size, preemption=preemption))

    @rule(index=CONTROLLERS, aggregate_id=IDS, size=SIZES)
    def resize(self, index, aggregate_id, size):
        self._step(index, lambda m: m.resize_aggregate(aggregate_id, size, self.now))

    @rule(index=CONTROLLERS, aggregate_id=IDS)
    def delete(self, index, aggregate_id):
        manager = self.controllers[index].manager
        doomed = {c.call_id for c in manager.calls(aggregate_id)} if aggregate_id in {
            a.id for a in manager.aggregates()} else set()
        outcome = self._step(index, lambda m: m.delete_aggregate(aggregate_id, force=True, now=self.now))
        if outcome[0] == "ok":
            for call_id in doomed:
                self.acknowledged.pop(call_id, None)

    # --- calls ----------------------------------------------------------------------------

    @rule(index=CONTROLLERS, call_id=CALLS, media=CODECS, level=LEVELS)
    def admit(self, index, call_id, media, level):
        now = self.now
        controller = self.controllers[index]
        stale = bool(controller.kv.pending)       # its watch has not delivered everything yet
        known = call_id in {c.call_id for c in controller.manager.calls()}
        outcome = self._step(index, lambda m: m.admit(AdmissionRequest(call_id, "east", "west", media, level), now))
        if outcome == OUT_OF_TAGS:      # its lane has no tag left at an edge: nothing admitted
            assert self.lanes
            return
        assert outcome[0] == "ok", outcome
        self._acknowledge(call_id, outcome[1], stale, known)

    @rule(index=CONTROLLERS, calls=st.lists(st.tuples(CALLS, CODECS, LEVELS), min_size=1, max_size=6))
    def admit_group(self, index, calls):
        """Several admissions committed together (group commit): one transaction."""
        now = self.now
        controller = self.controllers[index]
        stale = bool(controller.kv.pending)
        group = [Admission(AdmissionRequest(call_id, "east", "west", media, level)) for call_id, media, level in calls]
        outcome = self._step(index, lambda m: m.admit_all(group, now))
        assert outcome[0] == "ok", outcome
        for (call_id, _, _), result in zip(calls, outcome[1]):
            if isinstance(result.error, CapacityError) and str(result.error) == OUT_OF_TAGS[2]:
                assert self.lanes
                continue
            # answered from memory (a retransmission) or decided: what the group's memory held at its turn
            self._acknowledge(call_id, result.result(), stale, known=not result.new)

    def _acknowledge(self, call_id: str, decision: Decision, stale: bool, known: bool) -> None:
        if isinstance(decision, Admitted):
            if known and self.acknowledged.get(call_id) not in (None, (decision.serial, decision.aggregate_id)) \
                    or known and call_id not in self.acknowledged:
                # answered from memory: a retransmission of a call released (and perhaps set up again with
                # another serial) elsewhere, within the watch's delay
                assert stale
                return
            if call_id in self.acknowledged:     # a retried setup, on any controller: the same admission
                assert self.acknowledged[call_id] == (decision.serial, decision.aggregate_id)
            for victim in decision.preempted:
                del self.acknowledged[victim]
            self.acknowledged[call_id] = (decision.serial, decision.aggregate_id)
        else:
            assert isinstance(decision, Rejected)
            # a controller that has heard everything never refuses an admitted call's retry; one that has
            # not yet heard of the pool may (nothing is admitted twice either way)
            assert call_id not in self.acknowledged or stale or decision.reason in (RejectReason.STORE_UNAVAILABLE,
                                                                                      RejectReason.CONTENDED)

    @rule(index=CONTROLLERS, call_id=CALLS)
    def release(self, index, call_id):
        outcome = self._step(index, lambda m: m.release(call_id, self.now, "bye"))
        if outcome == ("ok", None):
            return
        assert outcome[0] == "ok", outcome
        released = outcome[1]
        assert self.acknowledged.pop(call_id)[0] == released.serial

    @rule(index=CONTROLLERS, call_id=CALLS, media=CODECS)
    def modify(self, index, call_id, media):
        self._step(index, lambda m: m.modify(call_id, media, self.now))

    @rule(index=CONTROLLERS, call_id=CALLS, port=st.integers(min_value=1024, max_value=1100))
    def attach(self, index, call_id, port):
        self._step(index, lambda m: m.attach_media(call_id, MediaEndpoint("10.1.0.1", port),
                                                   MediaEndpoint("10.4.0.1", port + 2), self.now))

    # --- the watches and restarts -------------------------------------------------------------

    @rule(index=CONTROLLERS, revisions=st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
    def watch_delivers(self, index, revisions):
        self.controllers[index].sync(self.now, revisions)
        self.controllers[index].settle(self.now)

    @rule(index=CONTROLLERS)
    def restart(self, index):
        lane = self.controllers[index].ledger.lane
        self.controllers[index] = Controller(self.store, f"c{index}", self.now, self.lanes)
        assert self.controllers[index].ledger.lane == lane        # a restart keeps its lane

    @precondition(lambda self: self.acknowledged)
    @rule()
    def everyone_catches_up(self):
        for c in self.controllers:
            c.sync(self.now)
            c.settle(self.now)
        stored = self._stored_calls()
        for c in self.controllers:
            manager = c.manager
            assert {call.call_id: (call.serial, call.aggregate_id, call.kbps, call.caller_media)
                    for call in manager.calls()} == {
                i: (d["serial"], d["aggregate_id"], d["kbps"], manager.call(i).caller_media) for i, d in stored.items()}
            assert [(a.id, a.size_kbps, a.path) for a in manager.aggregates()] == self._stored_pools()
        # a restarted controller decides as the one it replaces
        twin = Controller(self.store, "twin", self.now, self.lanes)
        request = AdmissionRequest("probe", "east", "west", MediaSpec("pcmu"))
        first = self.controllers[0].manager
        assert [a.id for a in twin.manager.aggregates()] == [a.id for a in first.aggregates()]
        assert {a.id: twin.manager.used_kbps(a.id) for a in twin.manager.aggregates()} == {
            a.id: first.used_kbps(a.id) for a in first.aggregates()}
        assert type(twin.manager._decide(request, self.now)).__name__ in ("Admitted", "Rejected")

    # --- invariants -------------------------------------------------------------------------

    def _stored_calls(self) -> dict[str, dict]:
        return {k[len(PREFIX + "calls/"):]: json.loads(e.value) for k, e in self.store.data.items()
                if k.startswith(PREFIX + "calls/")}

    def _stored_pools(self) -> list[tuple]:
        pools = [json.loads(e.value) for k, e in sorted(self.store.data.items())
                 if k.startswith(PREFIX + "aggregates/")]
        return [(p["id"], p["size_kbps"], tuple(p["path"])) for p in pools]

    @invariant()
    def the_store_holds_exactly_what_was_acknowledged(self):
        stored = self._stored_calls()
        assert {i: (d["serial"], d["aggregate_id"]) for i, d in stored.items()} == self.acknowledged

    @invariant()
    def no_pool_is_oversubscribed_and_use_is_exact(self):
        calls = self._stored_calls().values()
        for pool_id, size, _ in self._stored_pools():
            used = sum(d["kbps"] for d in calls if d["aggregate_id"] == pool_id)
            assert used <= size
            assert stored_use(self.store, pool_id) == used      # the controllers' shares add up to its calls
        for c in self.controllers:
            for aggregate in c.manager.aggregates():
                assert sum(x.kbps for x in c.manager.calls(aggregate.id)) == c.manager.used_kbps(aggregate.id) \
                    <= aggregate.size_kbps

    @invariant()
    def claims_are_unique_and_held_by_their_calls(self):
        stored = self._stored_calls()
        claims = {k: e.value for k, e in self.store.data.items()
                  if k.startswith(CLAIMS + "serials/") or k.startswith(CLAIMS + "tags/")}
        expected = {}
        per_edge = Counter()
        for call_id, d in stored.items():
            caller_edge = TOPOLOGY.community(d["caller_community"]).edge
            callee_edge = TOPOLOGY.community(d["callee_community"]).edge
            expected[f"{CLAIMS}serials/{d['serial']}"] = call_id
            expected[f"{CLAIMS}tags/{caller_edge}/{d['tag_to_caller']}"] = call_id
            expected[f"{CLAIMS}tags/{callee_edge}/{d['tag_to_callee']}"] = call_id
            per_edge[(caller_edge, d["tag_to_caller"])] += 1
            per_edge[(callee_edge, d["tag_to_callee"])] += 1
        assert all(n == 1 for n in per_edge.values())
        assert len({d["serial"] for d in stored.values()}) == len(stored)
        if self.lanes:                  # no number is claimed on its own; each lane has one holder
            assert claims == {}
            lanes = {k: e.value for k, e in self.store.data.items() if k.startswith(CLAIMS + "lanes/")}
            assert len(set(lanes.values())) == len(lanes)
            assert {self.controllers[i].ledger.lane for i in range(3)} == {(i, LANES) for i in range(3)}
        else:
            assert claims == expected

    @invariant()
    def replayed_diffs_equal_each_expected_plan(self):
        for c in self.controllers:
            assert c.installed == set(c.manager.expected_plan())


class LanedMachine(SharedLedgerMachine):
    lanes = True


TestSharedLedger = SharedLedgerMachine.TestCase
TestSharedLedger.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestSharedLedgerLanes = LanedMachine.TestCase
TestSharedLedgerLanes.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
