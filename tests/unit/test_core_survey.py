"""The survey: configured links against what switches report (ports, speeds, LLDP), and
what admission and reservations make of it."""

from __future__ import annotations

import ipaddress

import pytest

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import CapacityError
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.flowplan import FlowEntry
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager
from ryu_apps.core.network import Community, Link, Switch, Topology
from ryu_apps.core.survey import LinkState, PortInfo, Survey
from ryu_apps.service import MamService

# s1 -- s2 -- s3, and a longer way round s1 -- s4 -- s5 -- s3
S1S2 = Link("s1", 2, "s2", 1, 100_000, 50_000)
S2S3 = Link("s2", 2, "s3", 1, 100_000, 50_000)
S1S4 = Link("s1", 3, "s4", 1, 100_000, 50_000)
S4S5 = Link("s4", 2, "s5", 1, 100_000, 50_000)
S5S3 = Link("s5", 2, "s3", 2, 100_000, 50_000)
TOPOLOGY = Topology(
    switches=tuple(Switch(f"s{i}", i) for i in range(1, 6)),
    links=(S1S2, S2S3, S1S4, S4S5, S5S3),
    communities=(Community("a", "s1", (1,), (ipaddress.ip_network("10.1.0.0/16"),)),
                 Community("b", "s3", (9,), (ipaddress.ip_network("10.2.0.0/16"),))))
PORTS = {"s1": (1, 2, 3), "s2": (1, 2), "s3": (1, 2, 9), "s4": (1, 2), "s5": (1, 2)}


def describe_all(survey: Survey, speed_kbps: int = 0) -> None:
    for switch, ports in PORTS.items():
        survey.ports_described(switch, {p: PortInfo(f"{switch}-eth{p}", speed_kbps) for p in ports})


def state(survey: Survey, link: Link) -> LinkState:
    return survey.conditions()[link].state


def test_links_are_unknown_until_both_switches_describe_their_ports_then_up():
    survey = Survey(TOPOLOGY)
    assert {c.state for c in survey.conditions().values()} == {LinkState.UNKNOWN}
    transitions = survey.ports_described("s1", {p: PortInfo(f"s1-eth{p}") for p in PORTS["s1"]})
    assert state(survey, S1S2) is LinkState.UNKNOWN and "switch s2 has not connected" in str(transitions)
    describe_all(survey)
    assert {c.state for c in survey.conditions().values()} == {LinkState.UP}
    assert survey.faults() == {} and survey.limits() == {}


def test_a_port_going_down_takes_its_link_down_and_back_up():
    survey = Survey(TOPOLOGY)
    describe_all(survey)
    transitions = survey.port_changed("s2", 2, PortInfo("s2-eth2", live=False))
    assert [str(t) for t in transitions] == ["link s2-s3: up -> down (port s2:2 (s2-eth2) is down)"]
    assert transitions[0].worse
    assert survey.faults() == {S2S3: "link s2-s3 is down: port s2:2 (s2-eth2) is down"}
    assert state(survey, S1S2) is LinkState.UP
    transitions = survey.port_changed("s2", 2, PortInfo("s2-eth2"))
    assert [(t.old, t.new) for t in transitions] == [("down", "up")] and not transitions[0].worse
    assert survey.faults() == {}


def test_a_down_port_counts_even_while_the_far_switch_is_away_and_a_missing_port_is_named():
    survey = Survey(TOPOLOGY)
    survey.ports_described("s1", {1: PortInfo("s1-eth1"), 2: PortInfo("s1-eth2", live=False)})
    conditions = survey.conditions()
    assert conditions[S1S2].state is LinkState.DOWN
    assert conditions[S1S4].detail == "switch s1 has no port 3"   # a config typo, or a cable never plugged
    survey.switch_gone("s1")
    assert state(survey, S1S2) is LinkState.UNKNOWN


def test_port_news_before_the_description_is_left_to_the_description():
    survey = Survey(TOPOLOGY)
    assert survey.port_changed("s1", 2, PortInfo("s1-eth2", live=False)) == []
    assert not survey.described("s1")


def test_lldp_verifies_configured_links_and_is_ignored_when_discovery_is_off():
    off = Survey(TOPOLOGY)
    describe_all(off)
    assert off.link_heard(("s1", 2), ("s2", 1)) == []
    assert state(off, S1S2) is LinkState.UP

    survey = Survey(TOPOLOGY, discovery=True)
    describe_all(survey)
    transitions = survey.link_heard(("s2", 1), ("s1", 2))   # either direction verifies
    assert [(t.subject, t.new) for t in transitions] == [("s1-s2", "verified")]
    assert survey.link_ports() == {("s1", 2), ("s2", 1)}


def test_lldp_from_a_configured_port_arriving_elsewhere_is_miswired_and_closes_the_link():
    survey = Survey(TOPOLOGY, discovery=True)
    describe_all(survey)
    survey.link_heard(("s1", 3), ("s5", 1))   # the cable meant for s4 went into s5
    conditions = survey.conditions()
    assert conditions[S1S4].state is LinkState.MISWIRED
    assert conditions[S1S4].detail == "LLDP from s1:3 arrives at s5:1; configured s1:3-s4:1"
    assert conditions[S4S5].state is LinkState.MISWIRED   # s5:1 is S4S5's port
    assert set(survey.faults()) == {S1S4, S4S5}
    assert survey.unconfigured() == [(("s1", 3), ("s5", 1))]


def test_unconfigured_links_are_listed_once_and_their_ports_are_link_ports():
    survey = Survey(TOPOLOGY, discovery=True)
    describe_all(survey)
    survey.ports_described("s2", {1: PortInfo("s2-eth1"), 2: PortInfo("s2-eth2"), 7: PortInfo("s2-eth7")})
    survey.ports_described("s4", {1: PortInfo("s4-eth1"), 2: PortInfo("s4-eth2"), 7: PortInfo("s4-eth7")})
    first = survey.link_heard(("s2", 7), ("s4", 7))
    assert [(t.subject, t.old, t.new) for t in first] == [("s2:7-s4:7", "absent", "unconfigured")]
    assert first[0].worse
    assert survey.link_heard(("s4", 7), ("s2", 7)) == []     # the other direction: nothing new
    assert survey.unconfigured() == [(("s2", 7), ("s4", 7))]
    assert {("s2", 7), ("s4", 7)} <= survey.link_ports()
    assert survey.faults() == {}                           # an extra cable breaks no configured link
    gone = survey.port_changed("s2", 7, None)              # the port is deleted: what LLDP heard there goes
    assert [(t.subject, t.new) for t in gone] == [("s2:7-s4:7", "absent")]
    assert survey.unconfigured() == [] and ("s4", 7) not in survey.link_ports()


def test_lldp_losing_a_verified_link_takes_it_down_until_heard_again_or_its_port_returns():
    survey = Survey(TOPOLOGY, discovery=True)
    describe_all(survey)
    survey.link_heard(("s1", 2), ("s2", 1))
    survey.link_heard(("s2", 1), ("s1", 2))
    assert survey.link_lost(("s1", 2), ("s2", 1)) == []            # the other direction still verifies it
    assert state(survey, S1S2) is LinkState.VERIFIED
    transitions = survey.link_lost(("s2", 1), ("s1", 2))
    assert [(t.old, t.new, t.detail) for t in transitions] == [("verified", "down", "LLDP stopped hearing it")]
    assert S1S2 in survey.faults()
    survey.link_heard(("s1", 2), ("s2", 1))
    assert state(survey, S1S2) is LinkState.VERIFIED
    survey.link_lost(("s1", 2), ("s2", 1))
    survey.port_changed("s1", 2, PortInfo("s1-eth2", live=False))
    survey.port_changed("s1", 2, PortInfo("s1-eth2"))   # the port came back: give LLDP its chance again
    assert state(survey, S1S2) is LinkState.UP


def test_a_port_slower_than_the_configured_capacity_limits_the_reservable_share():
    survey = Survey(TOPOLOGY)
    describe_all(survey, speed_kbps=10_000_000)
    assert survey.limits() == {}
    survey.port_changed("s2", 2, PortInfo("s2-eth2", speed_kbps=10_000))   # 10 Mbit/s against 100 Mbit/s
    condition = survey.conditions()[S2S3]
    assert condition.speed_kbps == 10_000 and condition.reservable_kbps == 5_000   # half, as configured
    assert condition.problems == ("capacity_kbps 100000 exceeds the speed of port s2:2 (s2-eth2), 10000 kbit/s; "
                                  "reserving at most 5000 kbit/s (the configured share of the port speed)",)
    assert survey.limits() == {S2S3: 5_000}
    warn = Survey(TOPOLOGY, limit_by_speed=False)
    describe_all(warn)
    transitions = warn.port_changed("s2", 2, PortInfo("s2-eth2", speed_kbps=10_000))
    assert warn.limits() == {} and [t.new for t in transitions] == ["too-slow"]
    assert "not limited (dataplane.port_speeds: warn)" in transitions[0].detail


# --- what admission and reservations make of it ---------------------------------------------------

def manager_with(*aggregates: tuple[str, tuple[str, ...]], reroute: bool = True, size: int = 1000) -> MamService:
    manager = MediaAggregationManager(TOPOLOGY, ManagerSettings(reroute=reroute))
    for name, path in aggregates:
        manager.create_aggregate(name, "a", "b", size, path=path)
    service = MamService(manager, clock=lambda: 1.0, survey=Survey(TOPOLOGY, discovery=True))
    service.observe(lambda survey: [t for switch in PORTS for t in survey.ports_described(
        switch, {p: PortInfo(f"{switch}-eth{p}") for p in PORTS[switch]})])
    return service


def admit(service: MamService, call_id: str):
    return service.admit(AdmissionRequest(call_id, "a", "b", MediaSpec("pcmu")))


def test_calls_are_refused_with_path_down_while_the_only_aggregate_crosses_a_down_link():
    service = manager_with(("short", ("s1", "s2", "s3")), reroute=False)
    assert isinstance(admit(service, "before"), Admitted)
    service.observe(lambda survey: survey.port_changed("s2", 2, PortInfo("s2-eth2", live=False)))
    refused = admit(service, "during")
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.PATH_DOWN
    assert refused.detail == "aggregate short (path s1-s2-s3): link s2-s3 is down: port s2:2 (s2-eth2) is down"
    # the admitted call keeps its allocation; nothing is torn down by a link state
    assert service.read(lambda m: (m.used_kbps("short"), [c.call_id for c in m.calls()])) == (91, ["before"])
    service.observe(lambda survey: survey.port_changed("s2", 2, PortInfo("s2-eth2")))
    assert isinstance(admit(service, "after"), Admitted)


def test_admission_uses_another_aggregate_whose_path_is_whole():
    service = manager_with(("short", ("s1", "s2", "s3")), ("long", ("s1", "s4", "s5", "s3")), reroute=False)
    service.observe(lambda survey: survey.link_heard(("s1", 2), ("s3", 1)))   # miswired: s1:2 reaches s3
    decision = admit(service, "c1")
    assert isinstance(decision, Admitted) and decision.aggregate_id == "long"


def test_new_aggregates_route_around_closed_links_and_an_explicit_path_over_one_is_refused():
    service = manager_with()
    service.observe(lambda survey: survey.port_changed("s1", 2, PortInfo("s1-eth2", live=False)))
    around = service.create_aggregate("around", "a", "b", 1000)
    assert around.path == ("s1", "s4", "s5", "s3")
    with pytest.raises(CapacityError, match=r"path s1-s2-s3 cannot reserve now: link s1-s2 is down: "
                                            r"port s1:2 \(s1-eth2\) is down"):
        service.create_aggregate("direct", "a", "b", 1000, path=["s1", "s2", "s3"])


def test_a_slow_port_shrinks_the_pools_on_it_to_what_it_reserves_and_they_grow_back_with_its_speed():
    """RFC 4495's spirit: a pool that no longer fits gives up what it must, not all. Equal
    priorities give up their headroom in proportion; the size they had is kept as a target."""
    service = manager_with(("big", ("s1", "s2", "s3")))
    service.create_aggregate("bigger", "a", "b", 40_000, path=["s1", "s2", "s3"])   # 41000 of 50000 on s2-s3
    service.observe(lambda survey: survey.port_changed("s3", 1, PortInfo("s3-eth1", speed_kbps=10_000)))
    assert service.read(lambda m: (m.link_reservable(("s2", "s3")), m.link_reserved()[("s2", "s3")])) == (5000, 5000)
    sizes = service.read(lambda m: {a.id: (a.size_kbps, a.target_kbps) for a in m.aggregates()})
    assert sizes == {"big": (122, 1000), "bigger": (4878, 40000)}       # 1000:40000 of the 5000 left
    with pytest.raises(CapacityError):
        service.create_aggregate("more", "a", "b", 1000, path=["s1", "s2", "s3"])
    assert service.create_aggregate("more", "a", "b", 1000).path == ("s1", "s4", "s5", "s3")
    service.observe(lambda survey: survey.port_changed("s3", 1, PortInfo("s3-eth1", speed_kbps=1_000_000)))
    assert service.read(lambda m: sorted((a.id, a.size_kbps, a.target_kbps) for a in m.aggregates())) == [
        ("big", 1000, None), ("bigger", 40000, None), ("more", 1000, None)]


def test_an_aggregate_on_a_link_that_goes_down_moves_with_its_calls_to_an_open_path():
    service = manager_with(("short", ("s1", "s2", "s3")))
    assert isinstance(admit(service, "c1"), Admitted)
    service.attach_media("c1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000))
    seen = []
    service.subscribe(seen.append)
    service.observe(lambda survey: survey.port_changed("s2", 2, PortInfo("s2-eth2", live=False)))
    moved = service.manager.aggregate("short")
    assert moved.path == ("s1", "s4", "s5", "s3") and moved.size_kbps == 1000
    # the reservation moved: nothing left on s1-s2, the detour holds it; the call rides along
    reserved = service.read(lambda m: m.link_reserved())
    assert reserved[("s1", "s2")] == reserved[("s2", "s3")] == 0 and reserved[("s4", "s5")] == 1000
    assert service.read(lambda m: [c.call_id for c in m.calls("short")]) == ["c1"]
    # the listeners got the plan change: the call's ingress entry now leaves s1 toward s4 (port 3)
    added = [e for changes in seen for e in changes.plan.add if isinstance(e, FlowEntry) and e.switch == "s1"]
    assert any(e.match and ("ipv4_dst", "10.2.0.1") in e.match and any(
        getattr(a, "port", None) == 3 for a in e.actions) for e in added), added
    assert isinstance(admit(service, "c2"), Admitted)          # and new calls are admitted on it


def test_an_aggregate_no_open_path_can_hold_whole_moves_reduced_and_takes_its_size_back_later():
    service = manager_with(("short", ("s1", "s2", "s3")), size=30_000)
    service.create_aggregate("blocker", "a", "b", 30_000, path=["s1", "s4", "s5", "s3"])   # 20000 left round
    with_notes = []
    service.subscribe(lambda changes: with_notes.extend(changes.notes))
    service.observe(lambda survey: survey.port_changed("s1", 2, PortInfo("s1-eth2", live=False)))
    short = service.manager.aggregate("short")
    assert (short.path, short.size_kbps, short.target_kbps) == (("s1", "s4", "s5", "s3"), 20_000, 30_000)
    assert with_notes == ["aggregate short moved from s1-s2-s3 to s1-s4-s5-s3, 30000 to 20000 kbit/s (moved, "
                          "reduced: link s1-s2 is down: port s1:2 (s1-eth2) is down)"]
    service.resize_aggregate("blocker", 25_000)                                         # 5000 more for short
    assert service.manager.aggregate("short").size_kbps == 25_000
    service.delete_aggregate("blocker", force=True)                                     # all of it back
    short = service.manager.aggregate("short")
    assert (short.path, short.size_kbps, short.target_kbps) == (("s1", "s4", "s5", "s3"), 30_000, None)
    decision = admit(service, "c2")
    assert isinstance(decision, Admitted) and decision.aggregate_id == "short"
