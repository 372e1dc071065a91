"""The data-plane valve against a fake OpenFlow 1.3 network: where do packets go?

No framework: the valve's messages (data) are applied to fake switches wired like the
topology (tests/fakes/oftable.py), their answers go back through the shell, and each test
traces packets or compares what the switches hold with the core's expected plan.
"""

from __future__ import annotations

import pytest

from ryu_apps.core.admission import AdmissionRequest
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import COOKIE_PREFIX, CookieKind, FlowEntry, Output, cookie
from ryu_apps.core.locations import Verdict
from ryu_apps.openflow import events as ev
from ryu_apps.openflow import messages as m
from ryu_apps.openflow.reconcile import canonical

from fakes.oftable import CONTROLLER
from fakes.valve_rig import Rig, media

CONFIG = {
    "topology": {
        "switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}, {"name": "s3", "dpid": 3}],
        "links": [{"a": "s1", "a_port": 2, "b": "s2", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s2", "a_port": 2, "b": "s3", "b_port": 1, "capacity_kbps": 100000}],
    },
    "communities": [
        {"name": "a", "edge": "s1", "access_ports": [1, 4], "prefixes": ["10.0.0.0/24"], "domains": ["a.example"]},
        # b and c: the same prefix, even the same terminal address, behind the same edge switch
        {"name": "b", "edge": "s3", "access_ports": [2], "prefixes": ["10.0.0.0/24"], "domains": ["b.example"]},
        {"name": "c", "edge": "s3", "access_ports": [3], "prefixes": ["10.0.0.0/24"], "domains": ["c.example"]},
    ],
    "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 20000},
                   {"id": "a-c", "between": ["a", "c"], "size_kbps": 20000}],
    "dataplane": {"barrier_timeout_s": 2.0, "class_mode": "none", "call_idle_timeout_s": 30},
}


def make(media_idle: str = "both") -> Rig:
    rig = Rig(CONFIG, media_idle=media_idle)
    rig.connect()
    return rig


@pytest.fixture
def rig() -> Rig:
    return make()


def learn(rig: Rig, switch: str, port: int, ip: str, mac: str) -> None:
    conn = rig.network.switches[switch].conn
    assert conn is not None
    rig.event(ev.PacketIn(conn, port, mac, "ff:ff:ff:ff:ff:ff", 0x0806, ip, None, b"arp"))
    rig.deliver()


def test_every_switch_holds_the_plan_after_connecting(rig: Rig) -> None:
    for switch in ("s1", "s2", "s3"):
        assert rig.holds_the_plan(switch), rig.mismatch(switch)


def test_call_media_takes_the_reserved_path_marked_metered_and_tagged(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    assert rig.state("call-1") == "active"
    ingress, core, egress = rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))
    call = rig.service.manager.call("call-1")
    aggregate = rig.service.manager.aggregate("a-b")
    assert ingress.meters == [aggregate.tag * 2]                 # policed by the aggregate's meter
    assert ingress.out_ports == [2]
    on_core = core.packet
    assert on_core.vlans == [(aggregate.tag, 5)] and on_core.labels == [call.tag_to_callee]
    assert on_core.ip_dscp == 46
    assert egress.switch == "s3" and egress.out_ports == [2]
    assert egress.packet.vlans == [] and egress.packet.labels == [] and egress.packet.ip_dscp == 46
    back = rig.network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4000, in_port=2))
    assert [(s, p) for s, p, _ in back] == [("s1", 1), ("s1", 4)]    # location unknown: every access port
    assert back[0][2].labels == [] and back[0][2].vlans == []


def test_core_switch_holds_entries_per_aggregate_never_per_call(rig: Rig) -> None:
    before = rig.network.flow_count("s2")
    for i in range(50):
        rig.admit(f"call-{i}", "a", "b" if i % 2 else "c", caller=("10.0.0.1", 4000 + 2 * i),
                  callee=("10.0.0.2", 20000 + 2 * i), deliver=False)
    rig.deliver()
    assert rig.network.flow_count("s2") == before
    assert rig.network.flow_count("s2", CookieKind.AGGREGATE) == 2 * 2
    assert rig.network.flow_count("s2", CookieKind.CALL) == 0
    assert rig.network.flow_count("s1", CookieKind.CALL) == 50 * 2


def test_overlapping_prefixes_and_addresses_reach_the_right_terminal(rig: Rig) -> None:
    rig.admit("to-b", "a", "b", caller=("10.0.0.1", 4000), callee=("10.0.0.2", 5000))
    rig.admit("to-c", "a", "c", caller=("10.0.0.1", 4002), callee=("10.0.0.2", 6000))
    assert [(s, p) for s, p, _ in rig.network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, 1))] == [("s3", 2)]
    assert [(s, p) for s, p, _ in rig.network.delivered("s1", media("10.0.0.1", "10.0.0.2", 6000, 1))] == [("s3", 3)]


def test_spoofed_ef_from_an_access_port_gets_best_effort(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    hops = rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 7777, in_port=1, ip_dscp=46))
    assert hops[0].meters == [] and hops[0].out_ports == [CONTROLLER]   # table 1 (best effort)
    assert hops[0].packet.ip_dscp == 0 and hops[0].packet.vlans == []


def test_forged_tags_from_an_access_port_are_dropped(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    tag = rig.service.manager.aggregate("a-b").tag
    assert rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, 1, vlans=[(tag, 5)]))[0].out_ports == []
    assert rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, 1, labels=[16]))[0].out_ports == []


# --- barriers: confirmation only after every switch answered ---------------------------------------

def test_call_is_active_only_after_every_switch_answered_its_barrier(rig: Rig) -> None:
    rig.admit("call-1", "a", "b", deliver=False)
    assert rig.state("call-1") == "installing"
    replies = [e for e in rig.network.inbox if isinstance(e, ev.BarrierReply)]
    assert len(replies) == 2                               # one barrier per edge switch, after its flows
    rig.network.inbox = [e for e in rig.network.inbox if e is not replies[1]]
    rig.deliver()
    assert rig.state("call-1") == "installing"             # one edge has not answered
    rig.event(replies[1])
    rig.deliver()
    assert rig.state("call-1") == "active"


def test_barrier_replies_in_any_order_confirm_each_call_once(rig: Rig) -> None:
    for i in range(6):
        rig.admit(f"c{i}", "a", "b", caller=("10.0.0.1", 4000 + 2 * i), callee=("10.0.0.2", 5000 + 2 * i),
                  deliver=False)
    rig.network.inbox.reverse()
    rig.deliver()
    assert all(rig.state(f"c{i}") == "active" for i in range(6))
    assert rig.valve.pending == {}


def test_release_waits_for_the_removal_barrier_before_freeing_the_tags(rig: Rig) -> None:
    flows = {name: rig.network.switches[name].entries() for name in rig.network.switches}
    rig.admit("call-1", "a", "b")
    serial = rig.service.manager.call("call-1").serial
    rig.service.release("call-1", cause="bye")
    assert rig.service.manager.call_by_serial(serial) is not None      # releasing: tags still held
    rig.deliver()
    assert rig.service.manager.call_by_serial(serial) is None          # removal confirmed: ended
    assert {name: rig.network.switches[name].entries() for name in rig.network.switches} == flows


def test_an_openflow_error_releases_the_call_with_the_reason(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.network.switches["s3"].refuse = lambda msg: (5, 0) if isinstance(msg, m.FlowAdd) else None
    rig.admit("call-1", "a", "b")
    assert rig.service.read(lambda mgr: mgr.calls()) == []
    assert rig.service.manager.used_kbps("a-b") == 0
    assert "flow-install-failed on s3: type 5 code 0" in caplog.text


def test_no_barrier_in_time_releases_the_call(rig: Rig) -> None:
    rig.admit("call-1", "a", "b", deliver=False)
    rig.network.inbox.clear()                              # the switches never answer
    assert rig.service.next_timer() == pytest.approx(rig.clock.now + 2.0)   # the core's install deadline
    rig.clock.now += 2.1
    rig.service.handle_timer()
    assert rig.service.read(lambda mgr: mgr.calls()) == []


def test_a_call_to_a_switch_that_is_not_connected_fails_at_once() -> None:
    rig = Rig(CONFIG)
    rig.connect("s1", "s2")
    rig.admit("call-1", "a", "b")
    assert rig.service.read(lambda mgr: mgr.calls()) == []


def test_a_switch_leaving_during_install_fails_the_call(rig: Rig) -> None:
    rig.admit("call-1", "a", "b", deliver=False)
    rig.disconnect("s3")
    assert rig.service.read(lambda mgr: mgr.calls()) == []


# --- reconcile: only the difference ---------------------------------------------------------------

def test_reconnect_sends_nothing_when_the_switch_holds_the_plan(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    fake = rig.network.switches["s1"]
    fake.received.clear()
    rig.disconnect("s1")
    rig.connect("s1")
    writes = [msg for msg in fake.received if m.is_write(msg)]
    assert writes == []
    assert rig.holds_the_plan("s1"), rig.mismatch("s1")
    assert rig.valve.reconciled[-1].flows_added == 0 and rig.valve.reconciled[-1].unchanged > 0


def test_reconnect_removes_stale_entries_replaces_changed_ones_and_leaves_others_alone(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    fake = rig.network.switches["s1"]
    stale = FlowEntry("s1", 0, 3000, (("in_port", 1), ("eth_type", 0x0800), ("ipv4_dst", "10.9.9.9")), (),
                      cookie(CookieKind.CALL, 999))
    foreign = FlowEntry("s1", 0, 10, (("in_port", 7),), (), 0x1234)
    fake.flows[(0, 3000, canonical(stale.match))] = type(next(iter(fake.flows.values())))(stale)
    fake.flows[(0, 10, canonical(foreign.match))] = type(next(iter(fake.flows.values())))(foreign)
    ingress = next(f for f in fake.flows.values() if f.entry.meter is not None)
    changed = FlowEntry(**{**ingress.entry.__dict__, "actions": (Output(9),)})
    ingress.entry = changed                                        # someone rewrote a call's actions
    meter_id = ingress.entry.meter
    assert meter_id is not None
    rate = fake.meters[meter_id]
    fake.meters[meter_id] = type(rate)("s1", meter_id, 1, 1)       # and its meter
    fake.received.clear()
    rig.disconnect("s1")
    rig.connect("s1")
    assert rig.holds_the_plan("s1"), rig.mismatch("s1")
    assert any(f.entry == foreign for f in fake.flows.values())     # not ours: left alone
    writes = [msg for msg in fake.received if m.is_write(msg)]
    assert sorted(type(w).__name__ for w in writes) == ["FlowAdd", "FlowDelete", "MeterAdd"]
    assert rig.network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0][:2] == ("s3", 2)


def test_plan_changes_while_a_switch_is_being_read_are_sent_with_its_reconcile() -> None:
    rig = Rig(CONFIG)
    rig.connect("s2", "s3")
    rig.event(rig.network.connect("s1"))           # s1 asked for its flows and meters; replies not yet delivered
    rig.admit("call-1", "a", "b", deliver=False)
    assert rig.state("call-1") == "installing"
    rig.deliver(shuffle=False)
    assert rig.state("call-1") == "active"
    assert rig.holds_the_plan("s1"), rig.mismatch("s1")


def test_resizing_an_aggregate_modifies_its_meter_and_keeps_the_calls(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    rig.service.resize_aggregate("a-b", 30000)
    rig.deliver()
    aggregate = rig.service.manager.aggregate("a-b")
    assert rig.network.switches["s1"].meters[aggregate.tag * 2].rate_kbps == 30000
    assert rig.network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0][:2] == ("s3", 2)


# --- flows the switch lost; media idle per direction ------------------------------------------------

def _ingress_key(rig: Rig, switch: str, src: str) -> tuple:
    fake = rig.network.switches[switch]
    return next(k for k, f in fake.flows.items() if f.entry.meter is not None and ("ipv4_src", src) in f.entry.match)


def test_one_direction_idle_keeps_the_call_and_puts_its_flow_back(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    s1 = rig.network.switches["s1"]
    key = _ingress_key(rig, "s1", "10.0.0.1")
    rig.network.inbox += s1.idle_out(key)          # the caller is on hold: its direction idles out
    rig.deliver()
    assert rig.state("call-1") == "active"
    assert key in s1.flows                          # back, so resumed media is classified at once
    assert rig.holds_the_plan("s1"), rig.mismatch("s1")


def test_both_directions_idle_release_the_call() -> None:
    rig = make("both")
    rig.admit("call-1", "a", "b")
    s1, s3 = rig.network.switches["s1"], rig.network.switches["s3"]
    rig.network.inbox += s1.idle_out(_ingress_key(rig, "s1", "10.0.0.1"))
    rig.deliver()
    rig.network.inbox += s3.idle_out(_ingress_key(rig, "s3", "10.0.0.2"))
    rig.deliver()                                   # the other direction's counter since it came back: 0
    assert rig.state("call-1") is None
    assert rig.service.manager.used_kbps("a-b") == 0


def test_a_direction_that_resumed_is_not_counted_idle() -> None:
    rig = make("both")
    rig.admit("call-1", "a", "b")
    s1, s3 = rig.network.switches["s1"], rig.network.switches["s3"]
    rig.network.inbox += s1.idle_out(_ingress_key(rig, "s1", "10.0.0.1"))
    rig.deliver()
    rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))   # off hold: media again
    rig.network.inbox += s3.idle_out(_ingress_key(rig, "s3", "10.0.0.2"))
    rig.deliver()
    assert rig.state("call-1") == "active"


def test_with_exact_rtcp_entries_the_call_goes_only_when_all_four_idled() -> None:
    rig = Rig({**CONFIG, "dataplane": {**CONFIG["dataplane"], "rtcp_match": "exact"}})
    rig.connect()
    rig.admit("call-1", "a", "b")
    fakes = [rig.network.switches["s1"], rig.network.switches["s3"]]
    ingress = [(fake, key) for fake in fakes for key, f in fake.flows.items() if f.entry.notify_removed]
    assert len(ingress) == 4                                      # RTP and RTCP, each direction
    for fake, key in ingress[:3]:
        rig.network.inbox += fake.idle_out(key)
        rig.deliver()
    rtcp_back = ingress[0]
    rtcp_back[0].flows[rtcp_back[1]].packets += 1                 # one of them carried a packet since
    fake, key = ingress[3]
    rig.network.inbox += fake.idle_out(key)
    rig.deliver()
    assert rig.state("call-1") == "active"
    rig.network.inbox += rtcp_back[0].idle_out(rtcp_back[1])      # and idles again: now all are silent
    rig.deliver()
    assert rig.state("call-1") is None


def test_policy_either_releases_on_the_first_idle_direction() -> None:
    rig = make("either")
    rig.admit("call-1", "a", "b")
    s1 = rig.network.switches["s1"]
    rig.network.inbox += s1.idle_out(_ingress_key(rig, "s1", "10.0.0.1"))
    rig.deliver()
    assert rig.state("call-1") is None


def test_flow_removed_for_another_match_or_by_deletion_releases_nothing(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    conn = rig.network.switches["s1"].conn
    assert conn is not None
    serial = rig.service.manager.call("call-1").serial
    call_cookie = cookie(CookieKind.CALL, serial)
    other = (("in_port", 1), ("ipv4_src", "10.0.0.9"), ("ipv4_dst", "10.0.0.2"), ("udp_dst", 1))
    rig.event(ev.FlowRemoved(conn, call_cookie, 0, 3000, other, ev.RemovedReason.IDLE))
    key = _ingress_key(rig, "s1", "10.0.0.1")
    entry = rig.network.switches["s1"].flows.pop(key).entry        # someone deleted it
    rig.event(ev.FlowRemoved(conn, entry.cookie, entry.table, entry.priority, entry.match, ev.RemovedReason.DELETE))
    rig.deliver()
    assert rig.state("call-1") == "active"
    assert key in rig.network.switches["s1"].flows                 # the plan wants it: put back


# --- packet-in: best effort and terminal locations ---------------------------------------------------

def test_packet_in_floods_unknown_destinations_and_routes_learned_ones(rig: Rig) -> None:
    s1, s3 = rig.network.switches["s1"], rig.network.switches["s3"]
    assert s1.conn is not None and s3.conn is not None
    rig.event(ev.PacketIn(s1.conn, 1, "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", 0x0806, "10.0.0.1", None, b"x"))
    rig.deliver()
    assert s1.packet_outs[-1].ports == (2, 3, 4)          # every port but the one it came in on
    rig.event(ev.PacketIn(s3.conn, 2, "02:00:00:00:00:02", "02:00:00:00:00:01", 0x0800, "10.0.0.2", None, b"y"))
    rig.deliver()
    assert s3.packet_outs[-1].ports == (1,)               # toward s1, where .01 was learned
    delivered = rig.network.delivered("s3", media("10.0.0.2", "10.0.0.1", 9, in_port=2,
                                                  eth_src="02:00:00:00:00:02", eth_dst="02:00:00:00:00:01"))
    assert [(s, p) for s, p, _ in delivered] == [("s1", 1)]   # learned entries along the path


def test_a_terminal_heard_on_an_access_port_pins_its_calls_flows_there(rig: Rig) -> None:
    learn(rig, "s1", 1, "10.0.0.1", "02:00:00:00:00:01")
    rig.admit("call-1", "a", "b")
    back = rig.network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4000, in_port=2))
    assert [(s, p) for s, p, _ in back] == [("s1", 1)]        # delivered to the phone's port only
    from_elsewhere = rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=4))
    assert from_elsewhere[0].meters == []                     # another port's packets ride best effort


def test_a_spoofed_frame_from_another_access_port_moves_nothing_during_a_call(rig: Rig) -> None:
    learn(rig, "s1", 1, "10.0.0.1", "02:00:00:00:00:01")
    rig.admit("call-1", "a", "b")
    before = {name: rig.network.switches[name].entries() for name in rig.network.switches}
    outs = len(rig.network.switches["s1"].packet_outs)
    learn(rig, "s1", 4, "10.0.0.1", "02:00:00:00:00:66")     # the attacker's ARP claims the phone's address
    assert len(rig.network.switches["s1"].packet_outs) == outs   # not flooded: no far-end ARP cache poisoned
    assert "02:00:00:00:00:66" not in rig.valve.best_effort.hosts
    after = {name: rig.network.switches[name].entries() for name in rig.network.switches}
    assert {n: {e for e in v if e.table == 0} for n, v in after.items()} == \
        {n: {e for e in v if e.table == 0} for n, v in before.items()}
    assert rig.service.manager.location("a", "10.0.0.1") == 1
    assert rig.service.manager.counters.location_moves[Verdict.REFUSED_IN_CALL] == 1
    learn(rig, "s1", 4, "10.0.0.1", "02:00:00:00:00:66")     # each attempt is heard (and counted) again
    assert rig.service.manager.counters.location_moves[Verdict.REFUSED_IN_CALL] == 2
    back = rig.network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4000, in_port=2))
    assert [(s, p) for s, p, _ in back] == [("s1", 1)]


def test_ports_lldp_finds_joined_to_another_switch_leave_the_flood_tree(rig: Rig) -> None:
    rig.service.survey.discovery = True
    best_effort = rig.valve.best_effort
    assert best_effort.learn("s1", 3, "02:00:00:00:00:33")   # s1:3 looks like an access port for now
    s1 = rig.network.switches["s1"]
    s1.received.clear()
    rig.event(ev.LinkHeard(3, 3, 1, 3))                      # LLDP: s3:3 -> s1:3, a cable nobody configured
    rig.deliver()
    assert 3 not in best_effort.flood_ports("s1", 1, [1, 2, 3, 4])
    assert "02:00:00:00:00:33" not in best_effort.hosts
    deletes = [msg for msg in s1.received if isinstance(msg, m.FlowDelete)]
    assert [dict(d.entry.match) for d in deletes] == [{"eth_dst": "02:00:00:00:00:33"}]
    assert rig.service.survey.unconfigured() == [(("s1", 3), ("s3", 3))]


# --- classes, guards ------------------------------------------------------------------------------------

def test_classes_follow_the_plan_and_are_applied_again_when_a_switch_returns() -> None:
    rig = Rig({**CONFIG, "dataplane": {**CONFIG["dataplane"], "class_mode": "tc"}})
    rig.connect()
    assert rig.classes.applied["s1-eth2"] is not None and rig.classes.applied["s1-eth2"].min_kbps == 40000
    rig.service.delete_aggregate("a-c")
    rig.deliver()
    assert rig.classes.applied["s1-eth2"].min_kbps == 20000
    rig.classes.calls.clear()
    rig.disconnect("s2")
    rig.connect("s2")
    assert {name for name, _ in rig.classes.calls} == {"s2-eth1", "s2-eth2"}   # OVS may have lost its qdiscs


def test_an_event_that_breaks_the_valve_is_counted_and_the_next_one_works(rig: Rig) -> None:
    conn = rig.network.switches["s1"].conn
    assert conn is not None
    rig.shell.event("broken", lambda: ev.PacketIn(conn, 1, "not-a-mac", "ff", 0x0800, None, None, b""))
    assert rig.shell.failures["broken"] == 1
    rig.admit("call-1", "a", "b")
    assert rig.state("call-1") == "active"


def test_late_events_from_an_old_connection_are_ignored(rig: Rig) -> None:
    old = rig.network.switches["s1"].conn
    assert old is not None
    rig.disconnect("s1")
    rig.connect("s1")
    rig.event(ev.SwitchGone(old))
    assert "s1" in rig.valve.switches
    assert COOKIE_PREFIX                                        # (the cookie prefix names what is ours)


def test_metrics_show_reconciles_messages_and_failures(rig: Rig) -> None:
    from ryu_apps.metrics import Metrics
    metrics = Metrics(rig.service)
    metrics.shell = rig.shell
    rig.shell.event("broken", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    text = metrics.render()
    assert 'mam_switch_reconciles_total{switch="s1"} 1.0' in text
    assert 'mam_switch_reconcile_entries{change="added",switch="s2"}' in text       # labels sorted
    assert 'mam_shell_failures_total{event="broken"} 1.0' in text
    assert 'mam_openflow_messages_total{kind="barriers"}' in text


@pytest.mark.parametrize("first_to_end", ["call-1", "call-2"])
def test_two_calls_on_the_same_media_keep_it_protected_until_the_last_ends(rig: Rig, first_to_end: str) -> None:
    # Two live calls between the same addresses and ports draw ingress flows with one key:
    # the switch can hold only one. The newest call's is held; when either call ends the
    # other's media must still be policed and tagged, and nothing of the first may linger.
    learn(rig, "s1", 1, "10.0.0.1", "02:00:00:00:00:01")
    rig.admit("call-1", "a", "b")
    rig.admit("call-2", "a", "b")
    assert rig.state("call-1") == rig.state("call-2") == "active"
    for switch in ("s1", "s2", "s3"):
        assert rig.holds_the_plan(switch), rig.mismatch(switch)
    manager = rig.service.manager
    labels = {c: manager.call(c).tag_to_callee for c in ("call-1", "call-2")}
    ingress, core, _ = rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))
    assert core.packet.labels == [labels["call-2"]]                 # the newest call holds the key
    rig.service.release(first_to_end, cause="bye")
    rig.deliver()
    survivor = "call-2" if first_to_end == "call-1" else "call-1"
    assert rig.state(survivor) == "active" and rig.state(first_to_end) is None
    for switch in ("s1", "s2", "s3"):
        assert rig.holds_the_plan(switch), rig.mismatch(switch)
    ingress, core, egress = rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))
    assert ingress.meters and core.packet.labels == [labels[survivor]]
    assert egress.switch == "s3" and egress.out_ports == [2]
    rig.service.release(survivor, cause="bye")
    rig.deliver()
    assert rig.network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0].meters == []
    assert rig.valve._ingress.pinned("s1", "10.0.0.1") is None         # no pin left behind by either call


def test_a_call_whose_every_flow_another_call_holds_becomes_active() -> None:
    # Both communities behind one edge: a call has ingress flows only. When a second call
    # between the same media is drawn in the same change, the older one's flows wait behind
    # the newer's; it is carried by them and must not hang in "installing".
    config = {**CONFIG, "aggregates": [{"id": "b-c", "between": ["b", "c"], "size_kbps": 20000}]}
    rig = Rig(config)
    rig.connect()
    manager = rig.service.manager
    for call_id in ("call-1", "call-2"):
        rig.service.admit(AdmissionRequest(call_id, "b", "c", MediaSpec("pcmu")))
    rig.service._mutate(lambda now: [                 # both drawn in one change
        manager.attach_media(call_id, MediaEndpoint("10.0.0.7", 4000), MediaEndpoint("10.0.0.8", 5000), now)
        for call_id in ("call-1", "call-2")])
    rig.deliver()
    assert rig.state("call-1") == rig.state("call-2") == "active"
    assert rig.holds_the_plan("s3"), rig.mismatch("s3")
