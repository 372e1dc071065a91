"""The shared ledger (ryu_apps.store.shared) on the in-memory etcd model: what one
admission's transaction compares and writes, and how managers that decide on a stale
view are corrected by the store."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import line_topology

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.calls import CallState, MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager
from ryu_apps.core.replica import RELEASED_ELSEWHERE
from ryu_apps.store.memkv import MemoryKV, MemoryStore
from ryu_apps.core.store import PutLocation
from ryu_apps.store.shared import SHARE_OFFSET, Compare, SharedLedger

PREFIX = "/mam/"
CLAIMS = "/mam#claims/"    # claims live beside the prefix, outside every watch
PCMU = MediaSpec("pcmu")       # 91 kbit/s at Ethernet level with the tags


class Node:
    """One controller: a manager on its own connection to the shared store."""

    def __init__(self, store: MemoryStore, topology, name: str, lane: int = 0, lanes: int | None = None) -> None:
        """``lanes``: claim a lane in the store (the first free from ``lane`` on), as a
        clustered controller does; else take lane ``lane`` of 64 and claim each number."""
        self.kv = MemoryKV(store, PREFIX)
        self.ledger = SharedLedger(self.kv, PREFIX, name, lambda c: topology.community(c).edge)
        self.kv.feed = self.ledger.feed
        self.lane = (lane, 64) if lanes is None else self.ledger.claim_lane(lane, lanes)
        self.manager = MediaAggregationManager(topology, ManagerSettings(tag_lane=self.lane), ledger=self.ledger)

    def sync(self, now: float = 0.0) -> None:
        self.kv.deliver()
        self.manager.apply_remote(self.ledger.take_remote(), now)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def stored_use(store: MemoryStore, pool: str) -> int:
    """A pool's use in the store: every controller's share of it added up."""
    return sum(int(e.value) - SHARE_OFFSET for k, e in store.data.items() if k.startswith(f"{PREFIX}used-by/{pool}/"))


def pair(store, line):
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 182)     # room for two pcmu calls
    b.sync()
    a.manager.drain(), b.manager.drain()
    return a, b


def call(i: int) -> AdmissionRequest:
    return AdmissionRequest(f"c{i}", "site-a", "site-b", PCMU)


def test_an_admission_is_one_transaction_comparing_what_it_relied_on(store, line):
    a, _ = pair(store, line)
    seen = []
    txn = store.txn
    store.txn = lambda compares, success, failure: seen.append((compares, success, failure)) or txn(
        compares, success, failure)
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)
    (compares, success, failure), = seen
    created = {c.key for c in compares if c.target == "version" and c.expected == 0}
    assert created == {PREFIX + "calls/c1", CLAIMS + "serials/1", CLAIMS + "tags/s1/16", CLAIMS + "tags/s3/16",
                       PREFIX + "used-by/ab/a"}                    # a's first share of the pool: it joins
    assert {c.key for c in compares if c.target == "mod"} == {PREFIX + "used/ab", PREFIX + "aggregates/ab"}
    assert sorted(op.key for op in success) == sorted(created | {PREFIX + "used/ab"})
    assert stored_use(store, "ab") == 91 and store.data[PREFIX + "used/ab"].value == "a"
    assert [op.key for op in failure] == [PREFIX + "sync/a"]


def test_two_controllers_deciding_at_once_never_exceed_the_pool(store, line):
    a, b = pair(store, line)
    # both see an empty pool of 182 kbit/s; each admits two calls before hearing of the other's
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)
    assert isinstance(a.manager.admit(call(2), 1.0), Admitted)
    third = b.manager.admit(call(3), 1.0)           # b's view is stale: the store refuses, b catches up
    assert isinstance(third, Rejected) and third.reason is RejectReason.POOL_FULL
    assert b.manager.used_kbps("ab") == 182 and {c.call_id for c in b.manager.calls()} == {"c1", "c2"}
    assert stored_use(store, "ab") == 182


def test_two_controllers_admitting_on_one_roomy_pool_do_not_refuse_each_other(store):
    line = line_topology(reservable=100_000, capacity=1_000_000)
    """Each writes only its own share of the pool and bounds the other's by part of the
    room left, so neither needs the other's latest commit (before: one of the two refused).
    Their serials and tags come from different lanes (as clustered controllers' do)."""
    a, b = Node(store, line, "a"), Node(store, line, "b", lane=32)
    a.manager.create_aggregate("ab", "site-a", "site-b", 40 * 91)
    b.sync()
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)      # each joins the pool once
    assert isinstance(b.manager.admit(call(2), 1.0), Admitted)
    a.sync(), b.sync()
    refused = a.ledger.refused + b.ledger.refused
    for i in range(3, 9, 2):                                   # neither hears of the other meanwhile
        assert isinstance(a.manager.admit(call(i), 2.0), Admitted)
        assert isinstance(b.manager.admit(call(i + 1), 2.0), Admitted)
    assert a.ledger.refused + b.ledger.refused == refused
    assert stored_use(store, "ab") == 8 * 91
    a.sync(), b.sync()
    assert a.manager.used_kbps("ab") == b.manager.used_kbps("ab") == 8 * 91


def test_a_share_that_grew_past_its_part_of_the_room_refuses_the_other(store, line):
    a, b = Node(store, line, "a"), Node(store, line, "b", lane=32)
    a.manager.create_aggregate("ab", "site-a", "site-b", 4 * 91)
    b.sync()
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)
    assert isinstance(b.manager.admit(call(2), 1.0), Admitted)
    a.sync(), b.sync()
    refused = b.ledger.refused
    assert isinstance(a.manager.admit(call(3), 2.0), Admitted)      # the pool is full now
    assert isinstance(a.manager.admit(call(4), 2.0), Admitted)
    late = b.manager.admit(call(5), 2.0)                           # b saw 2 of 4: its bound on a's share fails
    assert isinstance(late, Rejected) and late.reason is RejectReason.POOL_FULL and b.ledger.refused == refused + 1
    assert stored_use(store, "ab") == 4 * 91


def test_a_retried_setup_on_another_controller_is_the_same_admission(store, line):
    a, b = pair(store, line)
    first = a.manager.admit(call(1), 1.0)
    again = b.manager.admit(call(1), 2.0)              # b has not heard of it: its create-only compare fails
    assert again == first
    assert b.manager.counters.admitted == 0 and b.manager.used_kbps("ab") == 91


def test_stale_tags_and_serials_are_not_handed_out_twice(store, line):
    a, b = pair(store, line)
    wide = Node(store, line, "c")
    for node in (a, b, wide):
        node.sync()
    a.manager.resize_aggregate("ab", 1000)
    for i in range(5):                                 # both allocate the lowest free numbers
        for node in (a, b):
            assert isinstance(node.manager.admit(AdmissionRequest(f"{node.ledger.member}{i}", "site-a", "site-b",
                                                                  PCMU), 1.0), Admitted)
    wide.sync()
    calls = wide.manager.calls()
    assert len(calls) == 10
    assert len({c.serial for c in calls}) == len({c.tag_to_caller for c in calls}) == 10


def test_a_release_elsewhere_frees_the_pool_and_removes_the_flows_here(store, line):
    a, b = pair(store, line)
    a.manager.admit(call(1), 1.0)
    a.manager.attach_media("c1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000), 2.0)
    b.sync(2.0)
    added = b.manager.drain().plan.add
    assert b.manager.call("c1").state is CallState.ACTIVE and added     # b's switches get the call's flows
    assert set(added) <= b.manager.expected_plan()
    a.manager.release("c1", 3.0)
    b.sync(3.0)
    changes = b.manager.drain()
    assert set(changes.plan.remove) == set(added)
    assert [(r.call_id, r.cause) for r in changes.released] == [("c1", RELEASED_ELSEWHERE)]
    assert b.manager.used_kbps("ab") == 0 and b.manager.counters.released == 0   # not this controller's release
    b.manager.flows_removed(changes.released[0].serial, 3.5)
    assert not b.manager.releasing()


def test_a_call_admitted_elsewhere_keeps_its_attach_deadline_here(store, line):
    a, b = pair(store, line)
    a.manager.admit(call(1), 100.0)
    b.sync(100.0)
    assert b.manager.call("c1").state is CallState.ADMITTED
    deadline = b.manager.next_timer()
    assert deadline == 100.0 + b.manager.settings.timers.attach_s
    b.manager.handle_timer(deadline)                  # b reclaims it first; a hears of it
    a.sync(deadline)
    assert a.manager.calls() == [] and a.manager.used_kbps("ab") == 0
    a.manager.handle_timer(deadline)                  # a's own timer finds it gone: nothing more
    assert stored_use(store, "ab") == 0


def test_preemption_hands_a_flowless_victims_serial_over_in_one_transaction(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 91, preemption=True)
    a.manager.admit(AdmissionRequest("low", "site-a", "site-b", PCMU, ServiceLevel.VOICE), 1.0)
    decision = a.manager.admit(AdmissionRequest("sos", "site-a", "site-b", PCMU, ServiceLevel.EMERGENCY), 2.0)
    assert isinstance(decision, Admitted) and decision.preempted == ("low",) and decision.serial == 1
    assert json.loads(store.data[PREFIX + "calls/sos"].value)["serial"] == 1
    assert store.data[CLAIMS + "serials/1"].value == "sos" and PREFIX + "calls/low" not in store.data


def test_a_store_that_is_down_refuses_and_changes_nothing(store, line):
    a, _ = pair(store, line)
    a.manager.admit(call(1), 1.0)
    a.manager.drain()
    before = a.manager.snapshot()
    store.down = True
    refused = a.manager.admit(call(2), 2.0)
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.STORE_UNAVAILABLE
    assert a.manager.release("c1", 2.0) is None          # kept, retried every second
    snapshot = a.manager.snapshot()
    assert snapshot.pop("retry_releases") == {"c1": "released"}
    assert {k: v for k, v in snapshot.items() if k not in ("deadlines", "pending")} == {
        k: v for k, v in before.items() if k not in ("retry_releases", "deadlines", "pending")}
    store.down = False                                   # back: the retry goes through, admission works again
    a.manager.handle_timer(a.manager.next_timer())
    assert a.manager.calls() == [] and isinstance(a.manager.admit(call(3), 4.0), Admitted)


def test_a_restart_rebuilds_from_the_store_and_continues_the_watch(store, line):
    a, b = pair(store, line)
    a.manager.admit(call(1), 1.0)
    restarted = Node(store, line, "b")
    assert [c.call_id for c in restarted.manager.calls()] == ["c1"] and restarted.manager.used_kbps("ab") == 91
    restarted.sync()                                      # events up to its snapshot are not applied twice
    assert restarted.manager.used_kbps("ab") == 91
    a.manager.admit(call(2), 2.0)
    restarted.sync()
    assert restarted.manager.used_kbps("ab") == 182


def test_a_call_is_stored_without_its_null_fields_and_read_back_whole(store, line):
    a, b = pair(store, line)
    a.manager.admit(call(1), 1.0)                             # no media yet, no dialog
    stored = json.loads(store.data[PREFIX + "calls/c1"].value)
    assert "caller_media" not in stored and "dialog" not in stored and "explicit_kbps" not in stored["media"]
    b.sync()
    assert b.manager.call("c1") == a.manager.call("c1")
    a.manager.attach_media("c1", MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000), 2.0)
    b.sync()
    here = a.manager.call("c1")
    for there in (b.manager.call("c1"), Node(store, line, "c").manager.call("c1")):    # elsewhere; restarted
        assert replace(there, state=here.state) == here and there.caller_media == MediaEndpoint("10.1.0.5", 4000)


def test_the_memory_model_follows_etcd_rules(store):
    kv = MemoryKV(store, PREFIX)
    from ryu_apps.store.shared import Delete, Put
    assert kv.txn([Compare("/mam/x", "version", 0)], [Put("/mam/x", "1")], []).succeeded
    assert not kv.txn([Compare("/mam/x", "version", 0)], [Put("/mam/x", "2")], []).succeeded
    assert not kv.txn([Compare("/mam/y", "value", "")], [], []).succeeded     # a missing key has no value
    with pytest.raises(ValueError, match="duplicate key"):
        kv.txn([], [Put("/mam/x", "3"), Delete("/mam/x")], [])
    revision, items = kv.snapshot(PREFIX)
    assert revision == 2 and [(i.key, i.value, i.revision) for i in items] == [("/mam/x", "1", 2)]


def test_an_admission_whose_answer_was_lost_is_confirmed_by_reading_it_back(store, line):
    a, b = pair(store, line)
    a.kv.lose_answers = 1
    decision = a.manager.admit(call(1), 1.0)        # applied by the store, answer lost: it landed
    assert isinstance(decision, Admitted) and a.manager.used_kbps("ab") == 91
    a.sync()                                        # its own event is not applied twice
    assert a.manager.used_kbps("ab") == 91 and isinstance(a.manager.admit(call(2), 2.0), Admitted)
    a.manager.release("c2", 2.5)
    store.down = True                               # a store that is really gone: refused, nothing changed
    refused = a.manager.admit(call(3), 3.0)
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.STORE_UNAVAILABLE
    store.down = False
    b.sync()
    assert {c.call_id for c in b.manager.calls()} == {"c1"} and b.manager.used_kbps("ab") == 91


def test_a_watch_that_lost_history_is_made_good_from_a_snapshot(store, line):
    """etcd compacted past what b's watch had seen: b reloads and applies the difference."""
    from ryu_apps.cluster.replication import reload_writes
    a, b = pair(store, line)
    for i in range(3):
        a.manager.admit(call(i), 1.0)
    b.sync()
    b.manager.drain()
    installed = set(b.manager.expected_plan())
    a.manager.release("c0", 2.0)
    a.manager.attach_media("c1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000), 2.0)
    a.manager.resize_aggregate("ab", 364)
    a.manager.admit(call(3), 2.0)
    b.kv.pending.clear()                          # those events are gone for b
    b.manager.apply_remote(reload_writes(b.manager, b.ledger.load()), 3.0)
    changes = b.manager.drain()
    installed -= set(changes.plan.remove)
    installed |= set(changes.plan.add)
    assert installed == set(b.manager.expected_plan())
    assert {c.call_id for c in b.manager.calls()} == {"c1", "c3"}          # c2 never fitted
    assert b.manager.call("c1").caller_media == MediaEndpoint("10.1.0.1", 4000)
    assert b.manager.aggregate("ab").size_kbps == 364 and b.manager.used_kbps("ab") == 182
    assert [r.call_id for r in changes.released] == ["c0"]
    assert isinstance(b.manager.admit(call(4), 4.0), Admitted)   # its view is current: no conflict needed
    assert reload_writes(b.manager, b.ledger.load()) == [PutLocation(x) for x in ()]
