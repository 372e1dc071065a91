"""The incrementally evaluated survey says exactly what re-evaluating every link said.

Random sequences of port descriptions, port changes and deletions, switches leaving, and
LLDP heard and lost (between configured ports, crossed ports and unknown ports), with
discovery on and off and speeds below and above the configured capacity: after every
event both surveys return the same transitions (in the same order), conditions, faults,
limits, unconfigured links and link ports. The reference is the survey as it was
(tests/fakes/survey_reference.py).
"""

from __future__ import annotations

import ipaddress

import hypothesis.strategies as st
from hypothesis import given, settings

from fakes.survey_reference import Survey as Reference
from ryu_apps.core.network import Community, Link, Switch, Topology
from ryu_apps.core.survey import PortInfo, Survey

LINKS = (Link("s1", 2, "s2", 1, 100_000, 50_000), Link("s2", 2, "s3", 1, 100_000, 50_000),
         Link("s1", 3, "s4", 1, 100_000, 50_000), Link("s4", 2, "s5", 1, 100_000, 50_000),
         Link("s5", 2, "s3", 2, 100_000, 50_000), Link("s2", 3, "s4", 3, 100_000, 50_000))
TOPOLOGY = Topology(tuple(Switch(f"s{i}", i) for i in range(1, 6)), LINKS,
                    (Community("a", "s1", (1,), (ipaddress.ip_network("10.1.0.0/16"),)),))
SWITCHES = [f"s{i}" for i in range(1, 6)]
PORT_NUMBERS = [1, 2, 3, 4]
PORTS = st.tuples(st.sampled_from(SWITCHES), st.sampled_from(PORT_NUMBERS))
INFOS = st.builds(lambda name, speed, live: PortInfo(name, speed, live),
                  st.sampled_from(["eth", "p"]), st.sampled_from([0, 10_000, 100_000, 1_000_000]), st.booleans())
# LLDP mostly along configured links, in either direction, sometimes anywhere.
CONFIGURED = st.sampled_from([pair for link in LINKS for pair in (((link.a, link.a_port), (link.b, link.b_port)),
                                                                  ((link.b, link.b_port), (link.a, link.a_port)))])
HEARD = st.one_of(CONFIGURED, CONFIGURED, st.tuples(PORTS, PORTS))

EVENTS = st.one_of(
    st.tuples(st.just("describe"), st.sampled_from(SWITCHES),
              st.dictionaries(st.sampled_from(PORT_NUMBERS), INFOS, max_size=4)),
    st.tuples(st.just("port"), PORTS, st.one_of(st.none(), INFOS)),
    st.tuples(st.just("gone"), st.sampled_from(SWITCHES)),
    st.tuples(st.just("heard"), HEARD),
    st.tuples(st.just("lost"), HEARD),
)


def apply(survey, event):
    kind = event[0]
    if kind == "describe":
        return survey.ports_described(event[1], event[2])
    if kind == "port":
        return survey.port_changed(event[1][0], event[1][1], event[2])
    if kind == "gone":
        return survey.switch_gone(event[1])
    if kind == "heard":
        return survey.link_heard(*event[1])
    return survey.link_lost(*event[1])


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.booleans(), st.lists(EVENTS, max_size=40))
def test_incremental_survey_equals_evaluating_every_link(discovery, limit_by_speed, events) -> None:
    survey = Survey(TOPOLOGY, discovery=discovery, limit_by_speed=limit_by_speed)
    reference = Reference(TOPOLOGY, discovery=discovery, limit_by_speed=limit_by_speed)
    assert survey.conditions() == reference.conditions()
    for event in events:
        assert [str(t) for t in apply(survey, event)] == [str(t) for t in apply(reference, event)], event
        assert survey.conditions() == reference.conditions()
        assert list(survey.conditions()) == list(reference.conditions())     # topology order
        assert survey.faults() == reference.faults()
        assert survey.limits() == reference.limits()
        assert survey.unconfigured() == reference.unconfigured()
        assert survey.link_ports() == reference.link_ports()
