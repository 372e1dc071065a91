"""Group commit on the shared ledger (ryu_apps/core/batch.py, ryu_apps/group_commit.py)
against the in-memory etcd model: a group of admissions is ONE transaction comparing every
touched pool's ``used`` and every new call's keys; its boundaries (a group of one, a full
group, a group over etcd's --max-txn-ops, a group where one pool conflicts and the other
does not, one admission that fails alone) and the leader-follower queue of the service."""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import line_topology
from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.batch import Admission
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import Unprocessable
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.service import MamService
from ryu_apps.store.memkv import MemoryKV, MemoryStore
from ryu_apps.store.shared import SHARE_OFFSET, SharedLedger

PREFIX = "/mam/"
CLAIMS = "/mam#claims/"    # claims live beside the prefix, outside every watch
PCMU = MediaSpec("pcmu")       # 91 kbit/s


class Node:
    def __init__(self, store: MemoryStore, topology, name: str, max_txn_ops: int = 128) -> None:
        self.kv = MemoryKV(store, PREFIX)
        self.ledger = SharedLedger(self.kv, PREFIX, name, lambda c: topology.community(c).edge,
                                   max_txn_ops=max_txn_ops)
        self.kv.feed = self.ledger.feed
        self.manager = MediaAggregationManager(topology, ledger=self.ledger)

    def sync(self, now: float = 0.0) -> None:
        self.kv.deliver()
        self.manager.apply_remote(self.ledger.take_remote(), now)


def request(call_id: str, callee: str = "site-b") -> AdmissionRequest:
    return AdmissionRequest(call_id, "site-a", callee, PCMU)


def record(store: MemoryStore) -> list[tuple]:
    """Every transaction sent to the store: (compares, success ops, succeeded)."""
    sent: list[tuple] = []
    txn = store.txn

    def recording(compares, success, failure):
        result = txn(compares, success, failure)
        sent.append((compares, success, result.succeeded))
        return result
    store.txn = recording
    return sent


def stored_use(store: MemoryStore) -> dict[str, tuple[int, int]]:
    """Per pool: (its controllers' shares added up, the sum of its stored calls)."""
    calls = [json.loads(e.value) for k, e in store.data.items() if k.startswith(PREFIX + "calls/")]
    pools = {k[len(PREFIX + "used/"):] for k in store.data if k.startswith(PREFIX + "used/")}
    return {pool: (sum(int(e.value) - SHARE_OFFSET for k, e in store.data.items()
                       if k.startswith(f"{PREFIX}used-by/{pool}/")),
                   sum(c["kbps"] for c in calls if c["aggregate_id"] == pool)) for pool in pools}


def claims_once(store: MemoryStore) -> None:
    holders = {k: e.value for k, e in store.data.items() if k.startswith((CLAIMS + "serials/", CLAIMS + "tags/"))}
    calls = {k[len(PREFIX + "calls/"):] for k in store.data if k.startswith(PREFIX + "calls/")}
    assert set(holders.values()) == calls
    assert len(holders) == 3 * len(calls)          # a serial and two tags each, none shared


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def line():
    return line_topology(reservable=100_000, capacity=1_000_000)


def test_a_group_of_one_is_the_single_admission_transaction(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 182)
    sent = record(store)
    outcome, = a.manager.admit_all([Admission(request("c1"))], 1.0)
    assert isinstance(outcome.result(), Admitted) and outcome.new
    (compares, success, ok), = sent
    assert ok and {c.key for c in compares if c.target == "mod"} == {PREFIX + "used/ab", PREFIX + "aggregates/ab"}
    assert sorted(op.key for op in success) == sorted([PREFIX + "calls/c1", CLAIMS + "serials/1",
                                                       CLAIMS + "tags/s1/16", CLAIMS + "tags/s3/16",
                                                       PREFIX + "used/ab", PREFIX + "used-by/ab/a"])
    assert a.manager.counters.admitted == 1


def test_a_full_group_is_one_transaction_under_etcds_limit(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 100 * 91)
    a.manager.create_aggregate("ac", "site-a", "site-c", 100 * 91)
    limit = a.ledger.group_limit
    assert limit == 30
    sent = record(store)
    group = [Admission(request(f"c{i}", "site-b" if i % 2 else "site-c")) for i in range(limit)]
    outcomes = a.manager.admit_all(group, 1.0)
    assert all(isinstance(o.result(), Admitted) for o in outcomes)
    (compares, success, ok), = sent
    assert ok and len(compares) <= 128 and len(success) <= 128
    used = [c for c in compares if c.key.startswith(PREFIX + "used/")]
    assert sorted(c.key for c in used) == [PREFIX + "used/ab", PREFIX + "used/ac"]    # each pool once
    assert {c.key for c in compares if c.target == "version"} >= {PREFIX + f"calls/c{i}" for i in range(limit)}
    assert stored_use(store) == {"ab": (15 * 91, 15 * 91), "ac": (15 * 91, 15 * 91)}
    claims_once(store)


def test_a_group_over_the_limit_is_committed_in_halves(store, line):
    a = Node(store, line, "a", max_txn_ops=40)        # room for 8 new calls on one pool
    a.manager.create_aggregate("ab", "site-a", "site-b", 100 * 91)
    sent = record(store)
    outcomes = a.manager.admit_all([Admission(request(f"c{i}")) for i in range(20)], 1.0)
    assert [o.result().call_id for o in outcomes] == [f"c{i}" for i in range(20)]
    assert all(ok and len(compares) <= 40 and len(success) <= 40 for compares, success, ok in sent)
    # 20 too many, 10 too many, 5 committed; of the 15 left 7 committed; then the last 8
    assert [sum(1 for op in success if op.key.startswith(PREFIX + "calls/")) for _, success, _ in sent] == [5, 7, 8]
    assert stored_use(store) == {"ab": (20 * 91, 20 * 91)} and a.manager.counters.admitted == 20
    claims_once(store)


def test_one_admission_too_large_alone_is_refused_store_unavailable(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 182)
    a.ledger.max_txn_ops = 3
    decision = a.manager.admit(request("c1"), 1.0)
    assert isinstance(decision, Rejected) and decision.reason is RejectReason.STORE_UNAVAILABLE
    assert "max-txn-ops" in decision.detail and not a.manager.calls()


def test_one_pool_conflicts_the_other_does_not(store, line):
    """b fills pool ab while a's view is stale: a's group (ab and ac calls) is refused as a
    whole, a catches up and decides again: the ab call no longer fits (pool-full), the ac
    calls are admitted in the retried transaction."""
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 182)
    a.manager.create_aggregate("ac", "site-a", "site-c", 182)
    b.sync()
    assert isinstance(b.manager.admit(request("b1"), 1.0), Admitted)
    assert isinstance(b.manager.admit(request("b2"), 1.0), Admitted)      # ab is full; a has not heard
    sent = record(store)
    outcomes = a.manager.admit_all([Admission(request("a1", "site-b")), Admission(request("a2", "site-c")),
                                    Admission(request("a3", "site-c"))], 2.0)
    assert [ok for _, _, ok in sent] == [False, True]
    first, retried = sent[0][0], sent[1][0]
    assert {c.key for c in first if c.target == "mod" and "used/" in c.key} == {PREFIX + "used/ab",
                                                                                PREFIX + "used/ac"}
    assert not any(c.key == PREFIX + "used/ab" for c in retried)    # nothing lands on ab now
    refused = outcomes[0].result()
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.POOL_FULL
    assert all(isinstance(o.result(), Admitted) for o in outcomes[1:])
    assert stored_use(store) == {"ab": (182, 182), "ac": (182, 182)}
    assert a.manager.used_kbps("ab") == 182 and a.manager.counters.admitted == 2
    assert a.manager.counters.rejected == {RejectReason.POOL_FULL: 1}
    claims_once(store)


def test_one_admission_that_raises_is_undone_alone(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 1000)
    a.manager.drain()
    mixed = (MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("2001:db8::1", 4002))   # IPv4 to IPv6: no flow
    outcomes = a.manager.admit_all([Admission(request("c1")), Admission(request("c2"), mixed),
                                    Admission(request("c3"))], 1.0)
    assert isinstance(outcomes[0].result(), Admitted) and isinstance(outcomes[2].result(), Admitted)
    with pytest.raises(Unprocessable):
        outcomes[1].result()
    assert sorted(c.call_id for c in a.manager.calls()) == ["c1", "c3"]
    assert stored_use(store) == {"ab": (182, 182)} and a.manager.used_kbps("ab") == 182
    assert not a.manager.drain().plan             # c2's flows were never published
    claims_once(store)


def test_a_retransmission_in_the_same_group_is_the_same_admission(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 1000)
    first, again = a.manager.admit_all([Admission(request("c1")), Admission(request("c1"))], 1.0)
    assert first.result() == again.result() and first.new and not again.new
    assert a.manager.counters.admitted == 1 and stored_use(store) == {"ab": (91, 91)}


def test_a_group_the_store_cannot_record_is_refused_whole(store, line):
    a = Node(store, line, "a")
    a.manager.create_aggregate("ab", "site-a", "site-b", 1000)
    store.down = True
    outcomes = a.manager.admit_all([Admission(request(f"c{i}")) for i in range(3)], 1.0)
    assert {o.result().reason for o in outcomes} == {RejectReason.STORE_UNAVAILABLE}
    store.down = False
    assert not a.manager.calls() and a.manager.used_kbps("ab") == 0
    assert stored_use(store) == {"ab": (0, 0)}


def rival_first(b: Node, rival: Node, times: int) -> list[int]:
    """Before each of b's next ``times`` transactions, ``rival`` admits a call on pool ab
    (its commit lands first: b's compare on used/ab fails). Returns b's transaction count."""
    txn, sent, left = b.kv.txn, [0], [times]

    def first_the_rival(compares, success, failure):
        sent[0] += 1
        if left[0]:
            left[0] -= 1
            assert isinstance(rival.manager.admit(request(f"r{left[0]}-{sent[0]}"), 1.0), Admitted)
        return txn(compares, success, failure)
    b.kv.txn = first_the_rival
    return sent


def test_a_contended_pool_is_decided_again_not_refused_store_unavailable(store, line):
    """The store answers every time: another controller just came first, 20 times in a row
    (more than the 8 retries that used to end in ``store-unavailable`` on a busy pool)."""
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 100 * 91)
    b.sync()
    sent = rival_first(b, a, 20)
    outcome, = b.manager.admit_all([Admission(request("b1"))], 2.0)
    assert isinstance(outcome.result(), Admitted) and sent == [21]
    assert stored_use(store) == {"ab": (21 * 91, 21 * 91)} and b.manager.used_kbps("ab") == 21 * 91
    claims_once(store)


def test_a_pool_contended_past_every_retry_is_refused_contended_and_nothing_changes(store, line):
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 100 * 91)
    b.sync()
    retries = b.manager.settings.conflict_retries
    sent = rival_first(b, a, 10_000)
    outcomes = b.manager.admit_all([Admission(request("b1")), Admission(request("b2"))], 2.0)
    assert sent == [retries + 1]                                    # bounded
    assert {o.result().reason for o in outcomes} == {RejectReason.CONTENDED}     # the store was there
    assert b.manager.counters.rejected == {RejectReason.CONTENDED: 2}
    assert "b1" not in {c.call_id for c in b.manager.calls()} and stored_use(store)["ab"][0] == sent[0] * 91
    claims_once(store)


class SlowKV(MemoryKV):
    """A store that takes a while to answer, so admissions queue up behind a commit; its
    first commit waits (up to 5 s) until ``ready()``, so at least one group forms whatever
    the machine's load does to the threads' timing."""

    ready = staticmethod(lambda: True)

    def txn(self, compares, success, failure):
        deadline = time.monotonic() + 5
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        self.ready = staticmethod(lambda: True)
        time.sleep(0.005)
        return super().txn(compares, success, failure)


def test_threads_admitting_at_once_are_committed_in_groups(store, line):
    kv = SlowKV(store, PREFIX)
    ledger = SharedLedger(kv, PREFIX, "a", lambda c: line.community(c).edge)
    kv.feed = ledger.feed
    service = MamService(MediaAggregationManager(line, ledger=ledger))
    service.create_aggregate("ab", "site-a", "site-b", 50 * 91)
    sent = record(store)
    decisions: dict[str, object] = {}
    kv.ready = lambda: service.group.queued() >= 7          # the 7 other threads wait behind the first

    def admit(worker: int) -> None:
        for i in range(worker, 80, 8):
            decisions[f"c{i}"] = service.admit(request(f"c{i}"))
    threads = [threading.Thread(target=admit, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(decisions) == 80
    admitted = [d for d in decisions.values() if isinstance(d, Admitted)]
    refused = [d for d in decisions.values() if isinstance(d, Rejected)]
    assert len(admitted) == 50 and {d.reason for d in refused} == {RejectReason.POOL_FULL}
    assert len({d.serial for d in admitted}) == 50
    assert stored_use(store) == {"ab": (50 * 91, 50 * 91)}
    # several in flight, one txn each: the first commit held until the other 7 queued, so at
    # least one group of 7 (on an idle machine groups are larger still: ~12 for 80)
    assert service.group.admissions == 80 and service.group.groups <= 80 - 6
    assert len(sent) == sum(1 for _, success, _ in sent if success)           # no conflict on one controller
    claims_once(store)


def test_a_leader_decides_on_what_the_watch_brought_and_is_not_refused(store, line):
    """b admitted; a's watch has delivered it but a's applier has not had the lock yet: the
    leader applies it before deciding, so a's one transaction is accepted (before, it was
    refused for certain and decided again)."""
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 2 * 91)
    b.sync()
    assert isinstance(b.manager.admit(request("b1"), 1.0), Admitted)
    a.kv.deliver()                                           # fed to a's ledger, not applied
    assert a.ledger.pending() and a.manager.used_kbps("ab") == 0
    service = MamService(a.manager)
    sent = record(store)
    assert isinstance(service.admit(request("a1")), Admitted)
    assert [ok for _, _, ok in sent] == [True] and a.ledger.refused == 0
    refused = service.admit(request("a2"))                   # and b's call counts: the pool is full
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.POOL_FULL
    assert stored_use(store) == {"ab": (2 * 91, 2 * 91)}


def test_a_call_preempted_by_the_group_and_set_up_again_starts_a_new_transaction(store, line):
    """call-1 preempts c2 (taking its tags); c2's setup again, in the same group, is the next
    transaction: the other controller sees c2 go before it comes back with new tags."""
    a, b = Node(store, line, "a"), Node(store, line, "b")
    a.manager.create_aggregate("ab", "site-a", "site-b", 182, preemption=True)
    low = ServiceLevel.VOICE_BAND_DATA
    for call_id in ("c1", "c2"):
        assert isinstance(a.manager.admit(AdmissionRequest(call_id, "site-a", "site-b", PCMU, low), 1.0), Admitted)
    b.sync()
    sent = record(store)
    outcomes = a.manager.admit_all([Admission(request("c3")), Admission(request("c2"))], 2.0)
    assert outcomes[0].result().preempted == ("c2",) and outcomes[1].result().preempted == ("c1",)
    assert [ok for _, _, ok in sent] == [True, True]
    b.sync()                                              # applies both without a clash of tags
    assert sorted(c.call_id for c in b.manager.calls()) == ["c2", "c3"] == sorted(c.call_id for c in a.manager.calls())
    assert stored_use(store) == {"ab": (182, 182)}
    claims_once(store)


def test_the_echo_of_own_commits_wakes_nobody_and_is_forgotten(store, line):
    a = Node(store, line, "a")
    woken = []
    a.ledger.on_events = lambda: woken.append(1)
    a.manager.create_aggregate("ab", "site-a", "site-b", 1000 * 91)
    for i in range(200):
        assert isinstance(a.manager.admit(request(f"c{i}"), 1.0), Admitted)
        if i % 2:
            assert a.manager.release(f"c{i - 1}", 1.0) is not None
        a.kv.deliver()
    assert not woken and not a.ledger.pending()
    assert len(a.ledger._own) <= 2 and len(a.ledger._seen) <= 8 and len(a.ledger._own_claims) <= 8
    b = Node(store, line, "b")                       # what another controller commits still wakes it
    b.manager.admit(request("b1"), 1.0)
    a.kv.deliver()
    assert woken and a.ledger.pending()
    a.sync()
    assert "b1" in {c.call_id for c in a.manager.calls()} and a.manager.used_kbps("ab") == 101 * 91
