"""Lanes: each controller on a shared ledger claims, once, a block of serials and of each
edge's call tags that only it hands out, so a new call claims no number of its own
(ryu_apps/store/shared.py, core/tags.py)."""

from __future__ import annotations

import pytest

import test_shared_ledger as shared_ledger_test
from conftest import line_topology

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason
from ryu_apps.core.batch import Admission
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import CapacityError
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.core.reservations import CALL_SERIALS, CALL_TAGS
from ryu_apps.core.tags import TagAllocator, lane_range
from ryu_apps.store.memkv import MemoryKV, MemoryStore
from ryu_apps.store.shared import Compare, Delete, Put, SharedLedger

PREFIX = "/mam/"
CLAIMS = "/mam#claims/"
PCMU = MediaSpec("pcmu")
SMALL = (CALL_TAGS[1] - CALL_TAGS[0] + 1) // 2     # lanes of 2 call tags per edge


def Node(store: MemoryStore, topology, name: str, preferred: int = 0, lanes: int = 64) -> shared_ledger_test.Node:
    return shared_ledger_test.Node(store, topology, name, preferred, lanes)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def call(i: int) -> AdmissionRequest:
    return AdmissionRequest(f"c{i}", "site-a", "site-b", PCMU)


def in_lane(span: tuple[int, int], lane: tuple[int, int], number: int) -> bool:
    start, size = lane_range(*span, lane)
    return start <= number < start + size


def test_controllers_preferring_one_lane_hold_different_lanes_and_keep_them(store, line):
    a, b = Node(store, line, "a", 7), Node(store, line, "b", 7)
    assert (a.lane, b.lane) == ((7, 64), (8, 64))          # b found 7 taken and took the next
    assert {k: e.value for k, e in store.data.items() if k.startswith(CLAIMS + "lanes/")} == {
        CLAIMS + "lanes/7": "a", CLAIMS + "lanes/8": "b"}
    assert Node(store, line, "b", 3).lane == (8, 64)          # a restart takes its lane back
    assert Node(store, line, "c", 8).lane == (9, 64)


def test_a_restart_fences_the_process_it_replaces(store, line):
    """A controller restarted while its old process still runs (a stale one, same name,
    same lane): the restart puts the lane's claim again, so the old one, which would hand
    out the same numbers, admits nothing more."""
    old = Node(store, line, "a", 2)
    old.manager.create_aggregate("ab", "site-a", "site-b", 10 * 91)
    assert isinstance(old.manager.admit(call(1), 1.0), Admitted)
    new = Node(store, line, "a", 9)
    assert new.lane == old.lane == (2, 64)
    assert isinstance(new.manager.admit(call(2), 2.0), Admitted)
    stale = old.manager.admit(call(3), 2.0)
    assert isinstance(stale, Rejected) and stale.reason is RejectReason.CONTENDED
    assert sorted(k for k in store.data if k.startswith(PREFIX + "calls/")) == [PREFIX + "calls/c1", PREFIX + "calls/c2"]
    assert new.manager.call("c2").serial != new.manager.call("c1").serial


def test_every_lane_held_refuses_to_start(store, line):
    Node(store, line, "a", 0, lanes=2), Node(store, line, "b", 0, lanes=2)
    with pytest.raises(Exception, match="lanes"):
        Node(store, line, "c", 0, lanes=2)


def test_a_new_call_is_one_key_and_the_group_compares_the_lane_once(store, line):
    a = Node(store, line, "a", 5)
    a.manager.create_aggregate("ab", "site-a", "site-b", 910)
    seen = []
    txn = store.txn
    store.txn = lambda compares, success, failure: seen.append((compares, success)) or txn(compares, success, failure)
    outcomes = a.manager.admit_all([Admission(call(i)) for i in range(3)], 1.0)
    assert all(isinstance(o.result(), Admitted) for o in outcomes)
    (compares, success), = seen
    assert not [c for c in compares if c.key.startswith((CLAIMS + "serials", CLAIMS + "tags"))]
    assert [c.key for c in compares if c.key.startswith(CLAIMS)] == [CLAIMS + "lanes/5"]
    assert sorted(op.key for op in success if op.key.startswith(PREFIX + "calls/")) == [
        PREFIX + f"calls/c{i}" for i in range(3)]
    assert not [op for op in success if op.key.startswith(CLAIMS)]
    assert len(success) == 3 + 2                         # the calls, a's share and its joining the pool
    for o in outcomes:
        c = a.manager.call(o.result().call_id)
        assert in_lane(CALL_SERIALS, a.lane, c.serial)
        assert in_lane(CALL_TAGS, a.lane, c.tag_to_caller) and in_lane(CALL_TAGS, a.lane, c.tag_to_callee)


def test_two_controllers_never_hand_out_one_number(store):
    """Neither hears of the other's calls: only their lanes keep their numbers apart."""
    line = line_topology(reservable=100_000, capacity=1_000_000)
    a, b = Node(store, line, "a", 0), Node(store, line, "b", 0)
    a.manager.create_aggregate("ab", "site-a", "site-b", 40 * 91)
    b.sync()
    for i in range(0, 20, 2):
        assert isinstance(a.manager.admit(call(i), 1.0), Admitted)
        assert isinstance(b.manager.admit(call(i + 1), 1.0), Admitted)
    a.sync(), b.sync()
    calls = a.manager.calls()
    assert len(calls) == 20 and {c.call_id for c in calls} == {c.call_id for c in b.manager.calls()}
    assert len({c.serial for c in calls}) == 20
    assert len({c.tag_to_caller for c in calls}) == len({c.tag_to_callee for c in calls}) == 20


def test_a_lane_out_of_tags_admits_no_more_and_reuses_a_tag_only_once_its_call_is_gone(store, line):
    a, b = Node(store, line, "a", 0, SMALL), Node(store, line, "b", 0, SMALL)
    a.manager.create_aggregate("ab", "site-a", "site-b", 10 * 91)
    b.sync()
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)
    assert isinstance(a.manager.admit(call(2), 1.0), Admitted)
    with pytest.raises(CapacityError, match="no free call tag"):       # not one of b's numbers
        a.manager.admit(call(3), 1.0)
    assert isinstance(b.manager.admit(call(3), 1.0), Admitted)          # b's lane has room
    a.sync(), b.sync()
    held = a.manager.call("c1").tag_to_caller
    b.manager.release("c1", 2.0, "bye")                                 # another controller ends a's call
    with pytest.raises(CapacityError):                                  # a has not heard yet: still held
        a.manager.admit(call(4), 2.0)
    a.sync(2.0)
    assert isinstance(a.manager.admit(call(4), 3.0), Admitted)
    assert a.manager.call("c4").tag_to_caller == held                    # back in a's lane, once free
    b.sync(3.0)
    assert len({c.tag_to_caller for c in b.manager.calls()}) == len(b.manager.calls()) == 3


def test_a_lane_taken_over_refuses_and_writes_nothing(store, line):
    """Its claim is compared: a controller whose lane an operator gave to another
    admits nothing more with it."""
    a = Node(store, line, "a", 4)
    a.manager.create_aggregate("ab", "site-a", "site-b", 10 * 91)
    assert isinstance(a.manager.admit(call(1), 1.0), Admitted)
    kv = MemoryKV(store, PREFIX)
    kv.txn([], [Delete(CLAIMS + "lanes/4")], [])
    assert kv.txn([Compare(CLAIMS + "lanes/4", "version", 0)], [Put(CLAIMS + "lanes/4", "z")], []).succeeded
    before = {k: e.value for k, e in store.data.items() if k.startswith(PREFIX + "calls/")}
    refused = a.manager.admit(call(2), 2.0)
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.CONTENDED
    assert {k: e.value for k, e in store.data.items() if k.startswith(PREFIX + "calls/")} == before


def test_an_allocator_hands_out_its_lane_only():
    tags = TagAllocator(10, 19, start=14, limit=3)
    assert [tags.allocate() for _ in range(4)] == [14, 15, 16, None]
    tags.claim(11)                                   # another lane's number, restored from the store
    tags.release(11)
    tags.release(15)
    assert [tags.allocate(), tags.allocate()] == [15, None]       # 11 is not this lane's to hand out
    assert lane_range(16, 1_048_575, (0, 1)) == (16, 1_048_560)
    assert lane_range(*CALL_TAGS, (63, 64)) == (16 + 63 * 16383, 16383)


def test_without_a_lane_every_number_is_claimed(store):
    line = line_topology()
    ledger = SharedLedger(MemoryKV(store, PREFIX), PREFIX, "a", lambda c: line.community(c).edge)
    manager = MediaAggregationManager(line, ledger=ledger)
    manager.create_aggregate("ab", "site-a", "site-b", 182)
    assert isinstance(manager.admit(call(1), 1.0), Admitted)
    assert sorted(k for k in store.data if k.startswith(CLAIMS)) == [
        CLAIMS + "aggtags/2", CLAIMS + "serials/1", CLAIMS + "tags/s1/16", CLAIMS + "tags/s3/16"]
