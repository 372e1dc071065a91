"""Aggregates that follow demand (issue 16): autosize, capacity loss, stranded pools,
re-optimisation, schedules. Pure core: time is the ``now`` the tests give."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.autosize import Autosize, resize_bound
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.demand import preemption_order, share_out
from ryu_apps.core.errors import Conflict, InvalidRequest
from ryu_apps.core.flowplan import MeterEntry
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager
from ryu_apps.core.schedule import parse_schedule, scheduled
from ryu_apps.openflow.batch import batch_for

from conftest import line_topology, mesh_topology

PCMU = MediaSpec("pcmu")      # 91 kbit/s
POLICY = Autosize(min_kbps=200, max_kbps=1000, step_kbps=200, grow_at=0.8, shrink_at=0.4, hold_s=60)


def call(call_id: str, level: ServiceLevel = ServiceLevel.VOICE, a: str = "site-a", b: str = "site-b"):
    return AdmissionRequest(call_id, a, b, PCMU, level)


def autosized(reservable: int = 1000, policy: Autosize = POLICY, size: int = 200) -> MediaAggregationManager:
    manager = MediaAggregationManager(line_topology(reservable=reservable))
    manager.create_aggregate("ab", "site-a", "site-b", size, autosize=policy)
    return manager


def assert_within_links(manager: MediaAggregationManager) -> None:
    for hop, reserved in manager.link_reserved().items():
        assert reserved <= manager.link_reservable(hop) or manager.book.blocked(hop), (hop, reserved)


# --- autosize ----------------------------------------------------------------------------------


def test_a_pool_grows_by_steps_before_a_call_would_be_refused_up_to_its_maximum():
    manager = autosized()
    sizes = []
    for i in range(12):
        decision = manager.admit(call(f"c{i}"), now=i)
        sizes.append((type(decision).__name__, manager.aggregate("ab").size_kbps))
    # 91 kbit/s calls: 2 fit in 200 under 80 %? no: the 2nd would be 182 > 160, so it grows first
    assert [s for _, s in sizes[:4]] == [200, 400, 400, 600]
    assert all(kind == "Admitted" for kind, _ in sizes[:10]) and sizes[9][1] == 1000
    assert sizes[10][0] == "Rejected"                         # 11 x 91 = 1001 > max_kbps
    decision = manager.admit(call("late"), now=20)
    assert isinstance(decision, Rejected) and decision.reason is RejectReason.POOL_FULL
    assert manager.counters.resizes == {"grow": 4}
    assert manager.last_resize("ab").reason.startswith("autosize: ")
    assert_within_links(manager)


def test_growth_stops_where_the_path_has_no_room_and_the_pool_never_oversubscribes_a_link():
    manager = autosized(reservable=500)          # the link reserves 500: steps to 400, never 600
    admitted = [manager.admit(call(f"c{i}"), now=i) for i in range(8)]
    assert sum(isinstance(d, Admitted) for d in admitted) == 4          # 4 x 91 = 364 <= 400
    assert manager.aggregate("ab").size_kbps == 400
    assert_within_links(manager)


def test_a_pool_shrinks_one_step_after_use_stayed_low_for_the_hold_and_never_below_its_calls():
    manager = autosized(size=1000)
    for i in range(3):
        manager.admit(call(f"c{i}"), now=0)                   # 273 of 1000: under 40 %
    assert manager.next_timer() == 60
    manager.handle_timer(60)
    assert manager.aggregate("ab").size_kbps == 800
    manager.handle_timer(120)                                 # 273 < 320: still low, another step
    assert manager.aggregate("ab").size_kbps == 600
    manager.handle_timer(180)                                 # 273 < 240? no: it stays
    assert manager.aggregate("ab").size_kbps == 600
    for i in range(3):
        manager.release(f"c{i}", now=200)
    for t in (260, 320, 380, 440):
        manager.handle_timer(t)
    assert manager.aggregate("ab").size_kbps == 200           # min_kbps
    assert manager.counters.resizes == {"shrink": 4}


def test_use_that_rises_again_cancels_the_shrink_hold():
    manager = autosized(size=1000)
    manager.admit(call("c0"), now=0)
    assert manager.next_timer() == 60
    for i in range(1, 6):
        manager.admit(call(f"c{i}"), now=10)                  # 546 of 1000: over 40 %
    assert manager.next_timer() is None or manager.next_timer() > 60 or \
        ("shrink", "ab") not in manager.snapshot()["deadlines"]
    manager.handle_timer(61)
    assert manager.aggregate("ab").size_kbps == 1000


def test_a_shrink_that_would_be_grown_again_by_todays_use_is_not_made():
    policy = Autosize(min_kbps=100, max_kbps=1000, step_kbps=500, grow_at=0.5, shrink_at=0.45, hold_s=10)
    assert policy.shrink_size(1000, 400) is None              # 400 > 0.5 x 500: it would grow right back
    assert policy.shrink_size(1000, 200) == 500


@pytest.mark.parametrize("fields, field", [
    ({"min_kbps": 500, "max_kbps": 100, "step_kbps": 10}, "autosize.min_kbps"),
    ({"min_kbps": 1, "max_kbps": 100, "step_kbps": 10, "grow_at": 0.5, "shrink_at": 0.5}, "autosize.shrink_at"),
    ({"min_kbps": 1, "max_kbps": 100, "step_kbps": 10, "grow_at": 1.5}, "autosize.grow_at"),
    ({"min_kbps": 1, "max_kbps": 100, "step_kbps": 0}, "autosize.step_kbps"),
    ({"min_kbps": 1, "max_kbps": 100, "step_kbps": 10, "hold": 5}, "autosize.hold"),
    ({"min_kbps": 1, "max_kbps": "100", "step_kbps": 10}, "autosize.max_kbps"),
])
def test_a_bad_autosize_policy_is_refused_naming_the_field(fields, field):
    with pytest.raises(InvalidRequest) as caught:
        Autosize.from_dict(fields)
    assert caught.value.field == field


def test_a_size_outside_the_policy_is_refused():
    manager = MediaAggregationManager(line_topology())
    with pytest.raises(InvalidRequest, match="outside autosize's 200..1000"):
        manager.create_aggregate("ab", "site-a", "site-b", 100, autosize=POLICY)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grow_at=st.floats(0.3, 1.0), gap=st.floats(0.01, 0.29), hold=st.sampled_from([30.0, 120.0, 600.0]),
       step=st.sampled_from([91, 100, 250, 500]), load=st.integers(2, 12), seed=st.integers(0, 2 ** 32))
def test_steady_load_with_churn_resizes_a_bounded_number_of_times_per_hour(grow_at, gap, hold, step, load, seed):
    """Poisson arrivals and exponential holding times around a steady mean load: whatever the
    thresholds, the pool resizes at most resize_bound() times an hour, never holds less than
    its calls use, never leaves [min, max], and never oversubscribes the link."""
    policy = Autosize(min_kbps=200, max_kbps=2000, step_kbps=step, grow_at=grow_at,
                      shrink_at=max(0.0, grow_at - gap - 0.01), hold_s=hold)
    manager = MediaAggregationManager(line_topology(reservable=5000))
    manager.create_aggregate("ab", "site-a", "site-b", 200, autosize=policy)
    rng = random.Random(seed)
    mean_hold = 120.0
    now, ends, serial = 0.0, {}, 0
    while now < 3600:
        now += rng.expovariate(load / mean_hold)
        for call_id, end in sorted(ends.items(), key=lambda kv: kv[1]):
            if end <= now:
                manager.handle_timer(end)
                manager.release(call_id, end)
                del ends[call_id]
        manager.handle_timer(now)
        serial += 1
        if isinstance(manager.admit(call(f"c{serial}"), now), Admitted):
            ends[f"c{serial}"] = now + rng.expovariate(1 / mean_hold)
        size = manager.aggregate("ab").size_kbps
        assert manager.used_kbps("ab") <= size and policy.min_kbps <= size <= policy.max_kbps
    assert_within_links(manager)
    resizes = sum(manager.counters.resizes.values())
    assert resizes <= resize_bound(policy, 3600), (resizes, resize_bound(policy, 3600))


def test_an_oscillating_policy_would_break_the_bound():
    """The bound is not vacuous: a pool resized at every threshold crossing (no hold) under
    the same churn goes far past it."""
    policy = Autosize(min_kbps=200, max_kbps=2000, step_kbps=100, grow_at=0.9, shrink_at=0.85, hold_s=600)
    used, size, resizes = 0, 200, 0
    rng = random.Random(7)
    for _ in range(3600):
        used = max(0, min(1800, used + rng.choice((-91, 91))))
        if policy.wants_growth(size, used):
            size, resizes = policy.grow_sizes(size, used)[0], resizes + 1
        elif (smaller := policy.shrink_size(size, used)) is not None:   # shrink with no hold
            size, resizes = smaller, resizes + 1
    assert resizes > resize_bound(policy, 3600)


# --- capacity loss: partial preemption ---------------------------------------------------------


def levels_manager() -> MediaAggregationManager:
    manager = MediaAggregationManager(line_topology(reservable=1000))
    manager.create_aggregate("ab", "site-a", "site-b", 1000, preemption=True)
    plan = [("e1", ServiceLevel.EMERGENCY), ("v1", ServiceLevel.VOICE), ("d1", ServiceLevel.VOICE_BAND_DATA),
            ("v2", ServiceLevel.VOICE), ("d2", ServiceLevel.VOICE_BAND_DATA), ("e2", ServiceLevel.EMERGENCY)]
    for t, (call_id, level) in enumerate(plan):
        assert isinstance(manager.admit(call(call_id, level), now=t), Admitted)
    manager.drain()
    return manager


def test_a_link_that_reserves_less_preempts_lowest_level_newest_first_and_the_pool_shrinks_to_fit():
    manager = levels_manager()                                 # 6 x 91 = 546 in use, 454 headroom
    link = manager.topology.link("s2", "s3")
    manager.set_link_conditions({}, {link: 300}, now=100)
    ended = [r.call_id for r in manager.drain().released]
    # 546 - 300 = 246 to give up after the headroom: 3 calls, the data calls first, newest first
    assert ended == ["d2", "d1", "v2"]
    assert [c.call_id for c in manager.calls()] == ["e1", "v1", "e2"]
    pool = manager.aggregate("ab")
    assert pool.size_kbps == 300 and pool.target_kbps == 1000 and manager.used_kbps("ab") == 273
    assert manager.counters.preempted_by == {"capacity": 3}
    assert_within_links(manager)


def test_causes_say_preempted_and_an_emergency_call_goes_only_when_no_lower_call_is_left():
    manager = levels_manager()
    manager.set_link_conditions({}, {manager.topology.link("s1", "s2"): 100}, now=100)
    released = manager.drain().released
    assert [r.call_id for r in released] == ["d2", "d1", "v2", "v1", "e2"]
    assert all(r.cause.startswith("preempted: capacity: s1->s2 can reserve 100 kbit/s") for r in released)
    assert [c.call_id for c in manager.calls()] == ["e1"]


def test_preemption_order_is_level_then_pool_priority_then_newest():
    manager = levels_manager()
    order = preemption_order(manager.calls(), lambda c: 0)
    assert [c.call_id for c in order] == ["d2", "d1", "v2", "v1", "e2", "e1"]


def test_share_out_is_proportional_and_exact():
    assert share_out(100, {"a": 1, "b": 3}) == {"a": 1, "b": 3}
    assert share_out(10, {"a": 100, "b": 300}) == {"a": 3, "b": 7} or share_out(10, {"a": 100, "b": 300}) == {
        "a": 2, "b": 8}
    assert sum(share_out(999, {"a": 500, "b": 700, "c": 1}).values()) == 999


def test_capacity_back_gives_the_reduced_pool_its_size_back():
    manager = levels_manager()
    link = manager.topology.link("s2", "s3")
    manager.set_link_conditions({}, {link: 300}, now=100)
    manager.set_link_conditions({}, {}, now=200)
    pool = manager.aggregate("ab")
    assert (pool.size_kbps, pool.target_kbps) == (1000, None)


# --- a link fails: moved, reduced, stranded ----------------------------------------------------


def mesh_manager(size: int = 300, **options) -> MediaAggregationManager:
    manager = MediaAggregationManager(mesh_topology(), ManagerSettings(**options))
    manager.create_aggregate("ew", "east", "west", size)
    return manager


def fail(manager: MediaAggregationManager, a: str, b: str, now: float) -> None:
    manager.set_link_conditions({manager.topology.link(a, b): f"link {a}-{b} is down"}, {}, now)


def test_a_pool_with_no_open_path_ends_its_calls_after_the_grace_period_not_before():
    manager = MediaAggregationManager(line_topology())
    manager.create_aggregate("ab", "site-a", "site-b", 500)
    manager.admit(call("c1"), now=0)
    manager.drain()
    manager.set_link_conditions({manager.topology.link("s1", "s2"): "link s1-s2 is down"}, {}, now=100)
    assert manager.drain().released == ()
    manager.handle_timer(109)
    assert manager.drain().released == ()
    manager.handle_timer(110)                                  # path_down_grace_s = 10
    released = manager.drain().released
    assert [(r.call_id, r.cause) for r in released] == [
        ("c1", "preempted: path-down: aggregate ab: link s1-s2 is down")]
    assert manager.counters.preempted_by == {"path-down": 1}


def test_a_stranded_pool_that_a_limited_hop_shrinks_moves_to_an_open_path_that_now_holds_it():
    # Found by the property test: q (50) is stranded on s1-s3-s5-s4 when s1-s3 fails (the
    # other path, s1-s2-s4, is full). When s3-s5 then reserves nothing, fitting shrinks q to
    # 0 kbit/s, which the open path holds: q must move there, not stay stuck on a dead link.
    manager = MediaAggregationManager(mesh_topology())
    for aggregate_id, size in (("r", 250), ("p", 50), ("q", 50)):
        manager.create_aggregate(aggregate_id, "east", "west", size)
    assert manager.aggregate("q").path == ("s1", "s3", "s5", "s4")
    down = {manager.topology.link("s1", "s3"): "link s1-s3 is down"}
    manager.set_link_conditions(down, {}, now=10)
    assert manager.path_fault(manager.aggregate("q")) is not None         # nowhere to go yet
    manager.drain()
    manager.set_link_conditions(down, {manager.topology.link("s3", "s5"): 0}, now=20)
    q = manager.aggregate("q")
    assert (q.size_kbps, q.target_kbps, q.path) == (0, 50, ("s1", "s2", "s4"))
    assert manager.path_fault(q) is None
    notes = manager.drain().notes
    assert any(note.startswith("aggregate q moved from s1-s3-s5-s4 to s1-s2-s4") for note in notes), notes
    assert not any(note.startswith("aggregate q stays") for note in notes), notes


def test_a_path_that_comes_back_within_the_grace_period_ends_nothing():
    manager = MediaAggregationManager(line_topology())
    manager.create_aggregate("ab", "site-a", "site-b", 500)
    manager.admit(call("c1"), now=0)
    manager.set_link_conditions({manager.topology.link("s1", "s2"): "down"}, {}, now=100)
    manager.set_link_conditions({}, {}, now=105)
    manager.handle_timer(200)
    assert [c.call_id for c in manager.calls()] == ["c1"]


def test_a_moved_pool_returns_to_the_shorter_path_once_it_is_stable_and_a_flap_restarts_the_hold():
    manager = mesh_manager(reoptimize_hold_s=30)
    assert manager.aggregate("ew").path == ("s1", "s2", "s4")
    fail(manager, "s2", "s4", now=0)
    assert manager.aggregate("ew").path == ("s1", "s3", "s5", "s4")
    manager.set_link_conditions({}, {}, now=10)                # back ...
    fail(manager, "s2", "s4", now=20)                          # ... and down again (a flap)
    manager.set_link_conditions({}, {}, now=25)
    manager.handle_timer(40)                                   # 30 s after 10, but only 15 after 25
    assert manager.aggregate("ew").path == ("s1", "s3", "s5", "s4")
    manager.handle_timer(55)
    pool = manager.aggregate("ew")
    assert pool.path == ("s1", "s2", "s4") and manager.last_resize("ew").reason.startswith("re-optimised")


def test_reoptimise_on_request_moves_at_once_and_a_pinned_pool_is_refused():
    manager = mesh_manager(reoptimize_hold_s=3600)
    fail(manager, "s2", "s4", now=0)
    manager.set_link_conditions({}, {}, now=1)
    assert manager.reoptimize_aggregate("ew", now=2).path == ("s1", "s2", "s4")
    assert manager.reoptimize_aggregate("ew", now=3).path == ("s1", "s2", "s4")      # already home: unchanged
    manager.create_aggregate("pinned", "east", "west", 100, path=["s1", "s3", "s5", "s4"])
    with pytest.raises(Conflict, match="pinned"):
        manager.reoptimize_aggregate("pinned", now=4)


def test_a_move_keeps_the_meter_and_modifies_it_in_place():
    """Make-before-break for a resize: the ingress meter is modified (OFPMC_MODIFY), never
    deleted and re-added, so no admitted call sees a gap or a smaller meter on the way."""
    manager = autosized()
    manager.drain()
    manager.admit(call("c0"), now=0)
    manager.admit(call("c1"), now=0)                            # grows 200 -> 400
    plan = manager.drain().plan
    for switch in ("s1", "s3"):
        batch = batch_for(plan.for_switch(switch))
        assert not batch.meter_removes and not batch.meter_adds
        assert {m.rate_kbps for m in batch.meter_modifies} == {400}


# --- schedules ---------------------------------------------------------------------------------


def test_schedule_parsing_names_the_bad_entry():
    with pytest.raises(InvalidRequest) as caught:
        parse_schedule([{"at": "08:00", "size_kbps": 100}, {"at": "25:00", "size_kbps": 100}])
    assert caught.value.field == "schedule[1].at"
    with pytest.raises(InvalidRequest) as caught:
        parse_schedule([{"at": "08:00", "size": 100}])
    assert caught.value.field == "schedule[0].size"


def test_the_entry_in_force_and_the_next_boundary_follow_the_sites_time_zone():
    paris = ZoneInfo("Europe/Paris")
    entries = parse_schedule([{"at": "08:00", "size_kbps": 800}, {"at": "18:00", "size_kbps": 200}])
    noon = dt.datetime(2026, 12, 2, 12, 0, tzinfo=paris).timestamp()
    size, upcoming = scheduled(entries, paris, noon)
    assert size == 800 and upcoming == dt.datetime(2026, 12, 2, 18, 0, tzinfo=paris).timestamp()
    night = dt.datetime(2026, 12, 2, 3, 0, tzinfo=paris).timestamp()
    assert scheduled(entries, paris, night) == (200, dt.datetime(2026, 12, 2, 8, 0, tzinfo=paris).timestamp())


def test_a_scheduled_size_applies_at_its_time_like_a_resize():
    paris = ZoneInfo("Europe/Paris")
    manager = MediaAggregationManager(line_topology(), ManagerSettings(timezone=paris))
    morning = dt.datetime(2026, 12, 2, 7, 0, tzinfo=paris).timestamp()
    entries = parse_schedule([{"at": "08:00", "size_kbps": 900}, {"at": "18:00", "size_kbps": 300}])
    manager.create_aggregate("ab", "site-a", "site-b", 300, schedule=entries, now=morning)
    eight = dt.datetime(2026, 12, 2, 8, 0, tzinfo=paris).timestamp()
    assert manager.next_timer() == eight
    manager.handle_timer(eight)
    assert manager.aggregate("ab").size_kbps == 900 and manager.last_resize("ab").reason.startswith("schedule")
    for i in range(5):                                         # 455 in use at 18:00, flows confirmed
        media = (MediaEndpoint(f"10.1.0.{i + 1}", 4000), MediaEndpoint(f"10.2.0.{i + 1}", 4000))
        decision = manager.admit(call(f"c{i}"), now=eight, media=media)
        manager.flows_installed(decision.serial, eight)
    six = dt.datetime(2026, 12, 2, 18, 0, tzinfo=paris).timestamp()
    manager.handle_timer(six)
    assert manager.aggregate("ab").size_kbps == 455            # never below its calls
    assert manager.next_timer() == dt.datetime(2026, 12, 3, 8, 0, tzinfo=paris).timestamp()


# --- the state machine: everything at once -----------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["arrive", "depart", "limit", "unlimit", "fail", "heal", "tick"]),
                          st.integers(0, 10 ** 6)), min_size=5, max_size=80))
def test_no_sequence_of_arrivals_departures_and_capacity_changes_oversubscribes_or_leaks(steps):
    manager = MediaAggregationManager(mesh_topology(), ManagerSettings(reoptimize_hold_s=20, path_down_grace_s=5))
    manager.create_aggregate("ew", "east", "west", 300,
                             autosize=Autosize(min_kbps=100, max_kbps=3000, step_kbps=200, grow_at=0.8,
                                               shrink_at=0.3, hold_s=15))
    manager.create_aggregate("ew2", "east", "west", 500, priority=5)
    links = list(manager.topology.links)
    limits, faults, now, live = {}, {}, 0.0, set()
    for n, (kind, value) in enumerate(steps):
        now += 1 + value % 7
        if kind == "arrive":
            level = list(ServiceLevel)[value % 3]
            if isinstance(manager.admit(AdmissionRequest(f"c{n}", "east", "west", PCMU, level), now), Admitted):
                live.add(f"c{n}")
        elif kind == "depart" and live:
            victim = sorted(live)[value % len(live)]
            manager.release(victim, now)
        elif kind == "limit":
            limits[links[value % len(links)]] = value % 2000
        elif kind == "unlimit":
            limits.clear()
        elif kind == "fail":
            faults[links[value % len(links)]] = "down"
        elif kind == "heal":
            faults.clear()
        if kind in ("limit", "unlimit", "fail", "heal"):
            manager.set_link_conditions(dict(faults), dict(limits), now)
        manager.handle_timer(now)
        live = {c.call_id for c in manager.calls()}
        for pool in manager.aggregates():
            assert manager.used_kbps(pool.id) <= pool.size_kbps
            assert sum(c.kbps for c in manager.calls(pool.id)) == manager.used_kbps(pool.id)
        assert_within_links(manager)
    for call_id in list(live):
        manager.release(call_id, now + 1)
    assert all(manager.used_kbps(pool.id) == 0 for pool in manager.aggregates())


def test_a_shrink_another_controller_made_first_is_not_made_twice():
    """Two controllers on one ledger run the same shrink timer; the second's commit is refused
    (LedgerConflict), it catches up and does not take a second step."""
    from ryu_apps.core.store import LedgerConflict, MemoryLedger

    class Shared(MemoryLedger):
        refuse = False

        def commit(self, writes):
            if self.refuse:
                self.refuse = False
                raise LedgerConflict("another controller came first", fresh=())
            super().commit(writes)

    ledger = Shared()
    manager = MediaAggregationManager(line_topology(), ledger=ledger)
    manager.create_aggregate("ab", "site-a", "site-b", 1000, autosize=POLICY)
    manager.admit(call("c0"), now=0)
    ledger.refuse = True
    manager.handle_timer(60)
    assert manager.aggregate("ab").size_kbps == 1000 and manager.next_timer() != 61
    assert manager.counters.resizes == {}
