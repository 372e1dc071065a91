"""A call's life as the core owns it: states, deadlines (virtual time), tags held while
flows are removed, retries of what the ledger refused, terminal locations as security state."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import CallState, MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import StoreUnavailable
from ryu_apps.core.lifecycle import TRANSITIONS, CallState as State, Deadlines, IllegalTransition, LifecycleTimers
from ryu_apps.core.locations import PortSecurity, Verdict
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager
from ryu_apps.core.network import Terminal, Topology
from ryu_apps.core.store import MemoryLedger

T0 = 1_764_000_000.0
TIMERS = LifecycleTimers(attach_s=60.0, install_s=2.0, release_s=3.0, retry_s=1.0)
CALLER, CALLEE = MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000)


def build(line: Topology, ledger=None, **settings) -> MediaAggregationManager:
    manager = MediaAggregationManager(line, ManagerSettings(timers=TIMERS, **settings), ledger)
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    manager.drain()
    return manager


def admit(manager: MediaAggregationManager, call_id: str, now: float = T0) -> Admitted:
    decision = manager.admit(AdmissionRequest(call_id, "site-a", "site-b", MediaSpec("pcmu")), now)
    assert isinstance(decision, Admitted)
    return decision


def test_the_state_machine_has_one_way_to_end():
    assert TRANSITIONS[State.RELEASING] == {State.ENDED} and not TRANSITIONS[State.ENDED]
    for state in (State.ADMITTED, State.INSTALLING, State.ACTIVE):
        assert State.RELEASING in TRANSITIONS[state] and State.ENDED not in TRANSITIONS[state]


def test_a_call_goes_admitted_installing_active_releasing_ended(line):
    manager = build(line)
    serial = admit(manager, "c1").serial
    assert manager.call("c1").state is CallState.ADMITTED and manager.next_timer() == T0 + 60
    manager.attach_media("c1", CALLER, CALLEE, T0 + 1)
    assert manager.call("c1").state is CallState.INSTALLING and manager.next_timer() == T0 + 3
    manager.flows_installed(serial, T0 + 1.5)
    assert manager.call("c1").state is CallState.ACTIVE and manager.next_timer() is None
    released = manager.release("c1", T0 + 10, "bye")
    assert released.serial == serial and manager.used_kbps("ab") == 0        # bandwidth back at once
    (releasing,) = manager.releasing()
    assert releasing.state is CallState.RELEASING and manager.call_by_serial(serial) is releasing
    assert manager.next_timer() == T0 + 13
    manager.flows_removed(serial, T0 + 10.2)
    assert manager.releasing() == [] and manager.call_by_serial(serial) is None and manager.next_timer() is None


def test_tags_of_a_releasing_call_are_not_handed_out_until_its_flows_are_gone(line):
    manager = build(line)
    first = admit(manager, "c1")
    manager.attach_media("c1", CALLER, CALLEE, T0)
    manager.flows_installed(first.serial, T0)
    old = manager.call("c1")
    manager.release("c1", T0 + 1)
    second = admit(manager, "c2", T0 + 1)
    new = manager.call("c2")
    assert second.serial != first.serial and new.tag_to_callee != old.tag_to_callee
    manager.flows_removed(first.serial, T0 + 1.1)
    manager.release("c2", T0 + 2)                      # no media: ends at once
    third = admit(manager, "c3", T0 + 2)
    assert third.serial == first.serial and manager.call("c3").tag_to_callee == old.tag_to_callee


def test_the_same_call_id_may_be_admitted_again_while_the_old_one_is_releasing(line):
    manager = build(line)
    first = admit(manager, "c1")
    manager.attach_media("c1", CALLER, CALLEE, T0)
    manager.release("c1", T0 + 1)
    second = admit(manager, "c1", T0 + 2)
    assert second.serial != first.serial and manager.call("c1").serial == second.serial
    manager.flows_removed(first.serial, T0 + 2)         # the old one's removal does not touch the new one
    assert manager.call("c1").state is CallState.ADMITTED
    assert manager.release_by_serial(first.serial, T0 + 3, "late") is None


@pytest.mark.parametrize("stage, deadline, cause", [
    ("admitted", 60.0, "no-media"),
    ("installing", 2.0, "flow-install-timeout"),
])
def test_a_call_stuck_in_a_waiting_state_is_reclaimed_exactly_once(line, stage, deadline, cause):
    manager = build(line)
    start = T0 + 5
    serial = admit(manager, "c1", start).serial
    if stage == "installing":
        manager.attach_media("c1", CALLER, CALLEE, start)
    manager.drain()
    manager.handle_timer(start + deadline - 0.001)
    assert manager.call("c1").state.value == stage
    manager.handle_timer(start + deadline)
    assert manager.calls() == [] and manager.used_kbps("ab") == 0
    (released,) = manager.drain().released
    assert released.serial == serial and released.cause.startswith(cause)
    for later in (start + deadline + 1, start + deadline + 100):
        manager.handle_timer(later)
        assert not manager.drain().released and manager.counters.released == 1


def test_a_removal_nobody_confirms_frees_the_tags_after_the_release_timeout(line):
    manager = build(line)
    serial = admit(manager, "c1").serial
    manager.attach_media("c1", CALLER, CALLEE, T0)
    manager.flows_installed(serial, T0)
    manager.release("c1", T0 + 1)
    manager.handle_timer(T0 + 3.9)
    assert [c.serial for c in manager.releasing()] == [serial]
    manager.handle_timer(T0 + 4)
    assert manager.releasing() == [] and manager.next_timer() is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["admit", "attach", "installed", "release", "removed", "tick"]),
                          st.integers(0, 4), st.floats(0, 30)), max_size=40))
def test_every_deadline_fires_at_most_once_and_every_call_ends(events):
    """Random events against the lifecycle: each admission is released at most once (its
    release reported once), and after the longest deadlines have passed every call that the
    switches did not confirm has ended (nothing leaks). Serials are reused after a call ends."""
    from conftest import line_topology
    manager = build(line_topology())
    now = T0
    serials: dict[str, int] = {}
    for kind, n, step in events:
        now += step
        call_id = f"c{n}"
        if kind == "admit":
            decision = manager.admit(AdmissionRequest(call_id, "site-a", "site-b", MediaSpec("pcmu")), now)
            if isinstance(decision, Admitted):
                serials[call_id] = decision.serial
        elif kind == "attach" and call_id in {c.call_id for c in manager.calls()}:
            manager.attach_media(call_id, CALLER, replace(CALLEE, port=5000 + n), now)
        elif kind == "installed" and call_id in serials:
            manager.flows_installed(serials[call_id], now)
        elif kind == "release":
            manager.release(call_id, now, "bye")
        elif kind == "removed" and call_id in serials:
            manager.flows_removed(serials[call_id], now)
        else:
            manager.handle_timer(now)
    manager.handle_timer(now + 1000)      # reclaims what waits; a release made now starts its own deadline
    manager.handle_timer(now + 2000)
    released = manager.drain().released
    assert len(released) == manager.counters.released == manager.counters.admitted - len(manager.calls())
    assert all(c.state is CallState.ACTIVE for c in manager.calls())      # only confirmed calls may stay
    assert manager.releasing() == [] and manager.next_timer() is None


class Flaky(MemoryLedger):
    down = False

    def commit(self, writes):
        if self.down:
            raise StoreUnavailable("the ledger is down")
        super().commit(writes)


def test_a_release_the_ledger_refuses_is_retried_and_nothing_is_freed_before(line):
    ledger = Flaky()
    manager = build(line, ledger)
    admit(manager, "c1")
    ledger.down = True
    assert manager.release("c1", T0 + 1, "bye") is None
    assert manager.used_kbps("ab") == 91 and "c1" in ledger.calls       # still held: freeing it is not durable
    changes = manager.drain()
    assert not changes.released and "not recorded yet" in changes.notes[0]
    assert manager.next_timer() == T0 + 2
    manager.handle_timer(T0 + 2)                                        # still down: tried again later
    assert manager.used_kbps("ab") == 91 and manager.next_timer() == T0 + 3
    ledger.down = False
    manager.handle_timer(T0 + 3)
    assert manager.used_kbps("ab") == 0 and "c1" not in ledger.calls
    assert [r.cause for r in manager.drain().released] == ["bye"]


def test_an_admission_the_ledger_refuses_is_a_clear_refusal(line):
    ledger = Flaky()
    manager = build(line, ledger)
    ledger.down = True
    decision = manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), T0)
    assert decision.reason.value == "store-unavailable" and "down" in decision.detail
    assert manager.calls() == [] and manager.used_kbps("ab") == 0 and not manager.drain()


def test_deadlines_keep_one_per_key_and_pop_in_order():
    deadlines = Deadlines()
    deadlines.set("a", 5.0)
    deadlines.set("b", 3.0)
    assert deadlines.set("a", 1.0) == 5.0 and deadlines.next() == 1.0
    deadlines.set("b", None)
    assert deadlines.due(10.0) == ["a"] and deadlines.next() is None and len(deadlines) == 0


def test_cleared_deadlines_do_not_pile_up_in_the_heap():
    """A call's 240 s media deadline is cleared seconds after it is set: 50,000 calls must
    not leave 50,000 stale entries (each holding its key) until they would fall due."""
    deadlines = Deadlines()
    kept = {f"kept-{n}": 1000.5 + n for n in range(100)}
    for key, at in kept.items():
        deadlines.set(key, at)
    for n in range(50_000):
        deadlines.set(f"call-{n}", 240.0 + n)
        deadlines.set(f"call-{n}", None if n % 10 else 5.0 + n)     # most cleared, some moved
    live = len(deadlines)
    assert live == 100 + 5_000
    assert len(deadlines._heap) <= 2 * live + Deadlines.COMPACT_SLACK
    due = deadlines.due(2000.0)
    expected = sorted([(5.0 + n, f"call-{n}") for n in range(0, 50_000, 10) if 5.0 + n <= 2000.0]
                      + [(at, key) for key, at in kept.items()])
    assert due == [key for _, key in expected]


def test_an_illegal_transition_is_a_bug_not_a_state():
    from ryu_apps.core.lifecycle import check_transition
    with pytest.raises(IllegalTransition):
        check_transition(State.RELEASING, State.ACTIVE)


# --- terminal locations --------------------------------------------------------------------

def shared_site(line: Topology, terminals=()) -> Topology:
    """site-a with three access ports, where terminals are learned (or bound)."""
    site_a, *others = line.communities
    return Topology(line.switches, line.links,
                    (replace(site_a, access_ports=(1, 4, 5), terminals=tuple(terminals)), *others))


def test_a_spoofed_frame_from_another_port_cannot_move_a_terminal_in_a_call(line):
    manager = build(shared_site(line))
    assert manager.learn_terminal("site-a", "10.1.0.5", 4, T0) is Verdict.LEARNED
    serial = admit(manager, "c1").serial
    manager.attach_media("c1", CALLER, CALLEE, T0)
    manager.flows_installed(serial, T0)
    flows = manager.drain().plan.add
    ingress = [f for f in flows if getattr(f, "switch", "") == "s1" and ("ipv4_src", "10.1.0.5") in f.match]
    assert ("in_port", 4) in ingress[0].match
    assert manager.learn_terminal("site-a", "10.1.0.5", 5, T0 + 1) is Verdict.REFUSED_IN_CALL
    changes = manager.drain()
    assert not changes.plan and "refused-in-call" in changes.notes[0]
    assert manager.location("site-a", "10.1.0.5") == 4
    assert manager.counters.location_moves[Verdict.REFUSED_IN_CALL] == 1
    # the phone was re-plugged: its old port is down, the move is allowed and the flows follow
    verdict = manager.learn_terminal("site-a", "10.1.0.5", 5, T0 + 2, port_down=lambda sw, port: (sw, port) == ("s1", 4))
    assert verdict is Verdict.MOVED and manager.location("site-a", "10.1.0.5") == 5
    plan = manager.drain().plan
    assert any(("in_port", 5) in f.match for f in plan.add) and any(("in_port", 4) in f.match for f in plan.remove)


def test_without_a_call_a_terminal_moves_and_a_static_binding_never_does(line):
    bound = Terminal(__import__("ipaddress").ip_address("10.1.0.9"), 5)
    manager = build(shared_site(line, [bound]))
    assert manager.learn_terminal("site-a", "10.1.0.5", 4, T0) is Verdict.LEARNED
    assert manager.learn_terminal("site-a", "10.1.0.5", 4, T0) is Verdict.UNCHANGED
    assert manager.learn_terminal("site-a", "10.1.0.5", 1, T0) is Verdict.MOVED
    assert manager.learn_terminal("site-a", "10.1.0.9", 4, T0) is Verdict.REFUSED_STATIC
    assert manager.location("site-a", "10.1.0.9") is None


def test_one_port_cannot_claim_more_than_its_share_of_terminals(line):
    manager = build(shared_site(line), port_security=PortSecurity(max_terminals_per_port=2))
    verdicts = [manager.learn_terminal("site-a", f"10.1.0.{n}", 4, T0) for n in range(1, 5)]
    assert verdicts == [Verdict.LEARNED, Verdict.LEARNED, Verdict.REFUSED_PORT_FULL, Verdict.REFUSED_PORT_FULL]
    assert manager.learn_terminal("site-a", "10.1.0.3", 5, T0) is Verdict.LEARNED
