"""Make-before-break: an aggregate that moves (a link fails, a shorter path returns) or
resizes keeps every admitted call's media flowing at every moment of the change.

The valve sends such a plan change in stages, each after the switches confirmed the one
before (barriers): new entries, then entries changed in place (the ingress switch-over,
meters modified), then removals. Here the fake switches apply each message as it arrives
and the test hands the valve one round of replies at a time, checking after every round
that the call's packets still reach the callee, both ways."""

from __future__ import annotations

from ryu_apps.core.survey import PortInfo
from ryu_apps.openflow import messages as m

from fakes.valve_rig import Rig, media

SQUARE = {
    "topology": {
        "switches": [{"name": f"s{i}", "dpid": i} for i in range(1, 6)],
        # s1-s2-s3 is short; s1-s4-s5-s3 the way round
        "links": [{"a": "s1", "a_port": 2, "b": "s2", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s2", "a_port": 2, "b": "s3", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s1", "a_port": 3, "b": "s4", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s4", "a_port": 2, "b": "s5", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s5", "a_port": 2, "b": "s3", "b_port": 3, "capacity_kbps": 100000}],
    },
    "communities": [
        {"name": "a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
        {"name": "b", "edge": "s3", "access_ports": [2], "prefixes": ["10.0.2.0/24"]},
    ],
    "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 2000,
                    "autosize": {"min_kbps": 2000, "max_kbps": 8000, "step_kbps": 2000}}],
    "dataplane": {"barrier_timeout_s": 2.0, "class_mode": "none", "reoptimize_hold_s": 3600},
}


def both_ways(rig: Rig) -> list[tuple[str, int]]:
    there = rig.network.delivered("s1", media("10.0.1.1", "10.0.2.1", 5000, in_port=1))
    back = rig.network.delivered("s3", media("10.0.2.1", "10.0.1.1", 4000, in_port=2))
    return [(s, p) for s, p, _ in there + back]


def rounds(rig: Rig, sent: list[m.Message]) -> list[list[str]]:
    """Deliver the switches' replies one round at a time; after every round the call's
    media still gets through. Returns the kinds of message sent in each round."""
    seen: list[list[str]] = []
    for _ in range(50):
        rig.shell.drain()
        seen.append([type(message).__name__ for message in sent])
        sent.clear()
        assert both_ways(rig) == [("s3", 2), ("s1", 1)], f"media lost after round {len(seen)}: {seen}"
        if not rig.network.inbox:
            return seen
        events, rig.network.inbox = rig.network.inbox, []
        for event in events:
            rig.event(event)
    raise AssertionError("never quiet")


def spy(rig: Rig, check: bool = False) -> list[m.Message]:
    """Record what the valve sends; with ``check``, the media must get through after every
    single message the switches apply (not only between rounds)."""
    sent: list[m.Message] = []
    transmit = rig.network.transmit

    def record(send):
        sent.append(send.message)
        done = transmit(send)
        if check:
            assert both_ways(rig) == [("s3", 2), ("s1", 1)], f"media lost after {send.message!r}"
        return done
    rig.shell.transmit = record
    return sent


def test_a_move_off_a_failed_link_and_back_never_breaks_the_calls_media():
    rig = Rig(SQUARE)
    rig.connect()
    rig.admit("c1", "a", "b", caller=("10.0.1.1", 4000), callee=("10.0.2.1", 5000))
    assert both_ways(rig) == [("s3", 2), ("s1", 1)]
    sent = spy(rig, check=True)
    # s1-s2 goes down in the survey (the fake keeps forwarding: a planned move, as a re-optimisation is)
    rig.service.observe(lambda survey: survey.port_changed("s1", 2, PortInfo("s1-eth2", live=False)))
    assert rig.service.read(lambda mgr: mgr.aggregate("a-b").path) == ("s1", "s4", "s5", "s3")
    stages = [kinds for kinds in rounds(rig, sent) if kinds]
    assert len(stages) == 3, stages
    assert "FlowDelete" not in stages[0] + stages[1] and "FlowDelete" in stages[2]
    assert rig.valve.counters["staged_changes"] == 1
    for name in ("s1", "s2", "s3", "s4", "s5"):
        assert rig.holds_the_plan(name), rig.mismatch(name)
    # back home on request once the link is up again: the same discipline the other way
    rig.service.observe(lambda survey: survey.port_changed("s1", 2, PortInfo("s1-eth2", live=True)))
    rounds(rig, sent)
    assert rig.service.reoptimize_aggregate("a-b").path == ("s1", "s2", "s3")
    stages = [kinds for kinds in rounds(rig, sent) if kinds]
    assert len(stages) == 3 and "FlowDelete" in stages[2], stages
    for name in ("s1", "s2", "s3", "s4", "s5"):
        assert rig.holds_the_plan(name), rig.mismatch(name)


def test_a_pool_that_grows_modifies_its_meters_in_place():
    rig = Rig(SQUARE)
    rig.connect()
    sent = spy(rig)
    for n in range(20):                                # 20 x 91 = 1820 > 0.9 x 2000: it grows to 4000
        rig.admit(f"c{n}", "a", "b", caller=("10.0.1.1", 4000 + 2 * n), callee=("10.0.2.1", 5000 + 2 * n),
                  deliver=False)
    rounds(rig, sent)
    assert rig.service.read(lambda mgr: mgr.aggregate("a-b").size_kbps) == 4000
    meters = {(name, mid): meter.rate_kbps for name, fake in rig.network.switches.items()
              for mid, meter in fake.meters.items()}
    assert set(meters.values()) == {4000}, meters
    for name in ("s1", "s3"):
        assert rig.holds_the_plan(name), rig.mismatch(name)
