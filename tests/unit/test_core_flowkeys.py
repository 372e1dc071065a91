"""One flow per key: the arbiter between calls that draw flows with the same match."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_apps.core.admission import AdmissionRequest
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowkeys import FlowKeys, carried, resolve
from ryu_apps.core.flowplan import CookieKind, Entry, FlowEntry, MeterEntry, Output, PlanDiff, cookie
from ryu_apps.core.manager import MediaAggregationManager
from ryu_apps.openflow.batch import batch_for

T0 = 1_764_000_000.0


def flow(serial: int, match: int = 1, port: int = 2) -> FlowEntry:
    """A call's ingress entry (metered, call priority): the kind two calls can both want."""
    return FlowEntry("s1", 0, 3000, (("udp_dst", match),), (Output(port),), cookie(CookieKind.CALL, serial), meter=4)


class Switch:
    """What an OpenFlow switch does with a batch: one flow per key, an add replaces, a strict
    delete removes whatever holds the key."""

    def __init__(self) -> None:
        self.flows: dict[tuple, FlowEntry] = {}

    def apply(self, change: PlanDiff) -> None:
        batch = batch_for(change)
        for entry in batch.flow_removes:
            self.flows.pop(entry.key, None)
        for entry in batch.flow_adds:
            self.flows[entry.key] = entry

    def held(self) -> set[FlowEntry]:
        return set(self.flows.values())


def test_the_newest_call_holds_a_contested_key_and_the_other_takes_it_back_when_it_ends() -> None:
    keys = FlowKeys()
    old, new = flow(1), flow(2)
    assert keys.apply(PlanDiff(add=(old,))) == (PlanDiff(add=(old,)), ())
    change, waiting = keys.apply(PlanDiff(add=(new,)))
    assert change == PlanDiff(add=(new,), remove=(old,)) and waiting == ()
    assert keys.contested() == {new.key: (new, old)}
    change, _ = keys.apply(PlanDiff(remove=(new,)))
    assert change == PlanDiff(add=(old,), remove=(new,))             # one replacement on the switch
    assert keys.contested() == {}
    assert keys.apply(PlanDiff(remove=(old,))) == (PlanDiff(remove=(old,)), ())


def test_an_older_entry_waits_and_leaves_without_touching_the_switch() -> None:
    keys = FlowKeys([flow(2)])
    change, waiting = keys.apply(PlanDiff(add=(flow(1),)))
    assert change == PlanDiff() and waiting == (flow(1),)
    assert carried(change, waiting) == {1}
    assert keys.apply(PlanDiff(remove=(flow(1),))) == (PlanDiff(), ())
    assert keys.contested() == {}


def test_uncontested_entries_and_meters_pass_through_in_order() -> None:
    meter = MeterEntry("s1", 4, 100, 64)
    egress = FlowEntry("s1", 0, 3000, (("mpls_label", 16),), (), cookie(CookieKind.CALL, 3))   # never tracked
    keys = FlowKeys()
    change = PlanDiff(add=(meter, egress, flow(1, match=10), flow(2, match=20)))
    assert keys.apply(change) == (change, ())
    removal = PlanDiff(remove=(flow(1, match=10), meter))
    out, _ = keys.apply(removal)
    assert set(out.remove) == set(removal.remove) and out.add == ()


def test_a_call_with_some_flows_of_its_own_is_not_carried() -> None:
    keys = FlowKeys([flow(2)])
    change, waiting = keys.apply(PlanDiff(add=(flow(1), flow(1, match=9))))
    assert change.add == (flow(1, match=9),) and carried(change, waiting) == frozenset()


entries = st.builds(flow, serial=st.integers(1, 4), match=st.integers(1, 2), port=st.integers(1, 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(entries, max_size=3, unique=True)), max_size=12))
def test_the_switch_always_holds_exactly_the_winners_of_the_live_entries(steps) -> None:
    # Any sequence of plan changes (adds of new entries, removes of live ones), each passed
    # through the arbiter and applied the way a switch applies a batch, leaves the switch
    # holding resolve(live): one entry per key, the newest call's.
    keys, switch, live = FlowKeys(), Switch(), set()
    for adding, chosen in steps:
        if adding:
            change = PlanDiff(add=tuple(e for e in chosen if e not in live))
        else:
            change = PlanDiff(remove=tuple(e for e in chosen if e in live))
        live = (live | set(change.add)) - set(change.remove)
        out, _ = keys.apply(change)
        switch.apply(out)
        assert switch.held() == set(resolve(live))
        assert len(switch.held()) == len({e.key for e in live})


def _manager(line) -> MediaAggregationManager:
    manager = MediaAggregationManager(line)
    manager.create_aggregate("ab", "site-a", "site-b", 500)
    return manager


def _call(manager: MediaAggregationManager, call_id: str) -> None:
    manager.admit(AdmissionRequest(call_id, "site-a", "site-b", MediaSpec("pcmu")), T0)
    manager.attach_media(call_id, MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000), T0)


def test_the_manager_plans_one_flow_per_key_for_two_calls_on_the_same_media(line) -> None:
    for first_to_end in ("c1", "c2"):
        manager, switches = _manager(line), Switch()
        manager.drain()
        switches.apply(PlanDiff(add=tuple(manager.expected_plan())))
        for call_id in ("c1", "c2"):
            _call(manager, call_id)
            switches.apply(manager.drain().plan)
        flows = {e for e in manager.expected_plan() if isinstance(e, FlowEntry)}
        assert switches.held() == flows
        manager.release(first_to_end, T0)
        switches.apply(manager.drain().plan)
        survivor = manager.calls()[0]
        held: set[Entry] = switches.held()
        assert held == {e for e in manager.expected_plan() if isinstance(e, FlowEntry)}
        assert {e.cookie for e in held if e.meter is not None} == {cookie(CookieKind.CALL, survivor.serial)}
