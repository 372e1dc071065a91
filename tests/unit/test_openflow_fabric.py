"""The OpenFlow shell against a fake OpenFlow 1.3 network: where do packets go?

Real rendered messages (ryu's OFPFlowMod / OFPMeterMod built by ryu_apps.openflow) are
applied to fake switches wired like the topology; each test traces packets through.
"""

from __future__ import annotations

import pytest

pytest.importorskip("ryu", reason="the fake table applies ryu's message classes")

from ryu_apps.config import build_manager, parse_config  # noqa: E402
from ryu_apps.core.admission import AdmissionRequest, Admitted  # noqa: E402
from ryu_apps.core.calls import CallState, MediaEndpoint  # noqa: E402
from ryu_apps.core.codec import MediaSpec  # noqa: E402
from ryu_apps.core.flowplan import CookieKind  # noqa: E402
from ryu_apps.openflow.fabric import Fabric  # noqa: E402
from ryu_apps.service import MamService  # noqa: E402
from fakes.oftable import CONTROLLER, FakeNetwork, Packet  # noqa: E402

CONFIG = {
    "topology": {
        "switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}, {"name": "s3", "dpid": 3}],
        "links": [{"a": "s1", "a_port": 2, "b": "s2", "b_port": 1, "capacity_kbps": 100000},
                  {"a": "s2", "a_port": 2, "b": "s3", "b_port": 1, "capacity_kbps": 100000}],
    },
    "communities": [
        {"name": "a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.0.0/24"], "domains": ["a.example"]},
        # b and c: the same prefix, even the same terminal address, behind the same edge switch
        {"name": "b", "edge": "s3", "access_ports": [2], "prefixes": ["10.0.0.0/24"], "domains": ["b.example"]},
        {"name": "c", "edge": "s3", "access_ports": [3], "prefixes": ["10.0.0.0/24"], "domains": ["c.example"]},
    ],
    "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 20000},
                   {"id": "a-c", "between": ["a", "c"], "size_kbps": 20000}],
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig():
    clock = Clock()
    config = parse_config({**CONFIG, "dataplane": {"barrier_timeout_s": 2.0}})
    service = MamService(build_manager(config), clock=clock)
    fabric = Fabric(service, class_mode="none", clock=clock)
    service.subscribe(fabric.on_changes)
    network = FakeNetwork(service.manager.topology)
    for datapath in network.datapaths.values():
        fabric.switch_connected(datapath)
    return service, fabric, network, clock


def confirm(fabric: Fabric, network: FakeNetwork) -> None:
    for datapath in network.datapaths.values():
        while datapath.barriers:
            fabric.barrier_reply(datapath, datapath.barriers.pop(0))


def admit(service: MamService, call_id: str, callee_community: str, caller=("10.0.0.1", 4000),
          callee=("10.0.0.2", 5000)) -> Admitted:
    decision = service.admit(AdmissionRequest(call_id, "a", callee_community, MediaSpec("pcmu")))
    assert isinstance(decision, Admitted), decision
    service.attach_media(call_id, MediaEndpoint(*caller), MediaEndpoint(*callee))
    return decision


def media(src: str, dst: str, dport: int, in_port: int, **extra) -> Packet:
    return Packet(in_port=in_port, ipv4_src=src, ipv4_dst=dst, udp_dst=dport, **extra)


def test_call_media_takes_the_reserved_path_marked_metered_and_tagged(rig):
    service, fabric, network, _ = rig
    admit(service, "call-1", "b")
    hops = network.trace("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))
    ingress, core, egress = hops
    call = service.manager.call("call-1")
    aggregate = service.manager.aggregate("a-b")
    assert ingress.meters == [aggregate.tag * 2]                 # policed by the aggregate's meter
    assert ingress.out_ports == [2]
    on_core = core.packet                                        # as it left the core switch
    assert on_core.vlans == [(aggregate.tag, 5)] and on_core.labels == [call.tag_to_callee]
    assert on_core.ip_dscp == 46
    assert egress.switch == "s3" and egress.out_ports == [2]
    assert egress.packet.vlans == [] and egress.packet.labels == [] and egress.packet.ip_dscp == 46

    back = network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4000, in_port=2))
    assert [(s, p) for s, p, _ in back] == [("s1", 1)]
    assert back[0][2].labels == [] and back[0][2].vlans == []


def test_core_switch_holds_entries_per_aggregate_never_per_call(rig):
    service, _, network, _ = rig
    before = network.flow_count("s2")
    for i in range(100):
        admit(service, f"call-{i}", "b" if i % 2 else "c", caller=("10.0.0.1", 4000 + 2 * i),
              callee=("10.0.0.2", 20000 + 2 * i))
    assert network.flow_count("s2") == before
    assert network.flow_count("s2", CookieKind.AGGREGATE) == 2 * 2          # 2 aggregates x 2 directions
    assert network.flow_count("s2", CookieKind.CALL) == 0
    assert network.flow_count("s1", CookieKind.CALL) == 100 * 2              # ingress + egress per call


def test_overlapping_prefixes_and_addresses_reach_the_right_terminal(rig):
    service, _, network, _ = rig
    admit(service, "to-b", "b", caller=("10.0.0.1", 4000), callee=("10.0.0.2", 5000))
    admit(service, "to-c", "c", caller=("10.0.0.1", 4002), callee=("10.0.0.2", 6000))
    to_b = network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))
    to_c = network.delivered("s1", media("10.0.0.1", "10.0.0.2", 6000, in_port=1))
    assert [(s, p) for s, p, _ in to_b] == [("s3", 2)]
    assert [(s, p) for s, p, _ in to_c] == [("s3", 3)]
    # and back from the two terminals that share 10.0.0.2, told apart by their ports
    assert [(s, p) for s, p, _ in network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4000, in_port=2))] \
        == [("s1", 1)]
    assert [(s, p) for s, p, _ in network.delivered("s3", media("10.0.0.2", "10.0.0.1", 4002, in_port=3))] \
        == [("s1", 1)]


def test_spoofed_ef_from_an_access_port_gets_best_effort(rig):
    service, _, network, _ = rig
    admit(service, "call-1", "b")
    # marked EF but not an admitted call's media (another port)
    hops = network.trace("s1", media("10.0.0.1", "10.0.0.2", 7777, in_port=1, ip_dscp=46))
    assert hops[0].meters == [] and hops[0].out_ports == [CONTROLLER]   # table 1 (best effort)
    assert hops[0].packet.ip_dscp == 0 and hops[0].packet.vlans == []


def test_forged_tags_from_an_access_port_are_dropped(rig):
    service, _, network, _ = rig
    admit(service, "call-1", "b")
    aggregate = service.manager.aggregate("a-b")
    forged_vlan = media("10.0.0.1", "10.0.0.2", 5000, in_port=1, vlans=[(aggregate.tag, 5)])
    forged_label = media("10.0.0.1", "10.0.0.2", 5000, in_port=1, labels=[16])
    assert network.trace("s1", forged_vlan)[0].out_ports == []
    assert network.trace("s1", forged_label)[0].out_ports == []


def test_release_removes_exactly_the_calls_flows(rig):
    service, _, network, _ = rig
    flows = {name: sorted(map(repr, ((f.table, f.priority, f.match) for f in sw.flows)))
             for name, sw in network.switches.items()}
    admit(service, "call-1", "b")
    assert network.flow_count("s1", CookieKind.CALL) == 2
    service.release("call-1", cause="bye")
    assert {name: sorted(map(repr, ((f.table, f.priority, f.match) for f in sw.flows)))
            for name, sw in network.switches.items()} == flows
    assert network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0][1] == CONTROLLER


def test_call_is_active_only_after_every_switch_confirmed(rig):
    service, fabric, network, _ = rig
    admit(service, "call-1", "b")
    assert service.manager.call("call-1").state is CallState.INSTALLING
    s1 = network.datapaths["s1"]
    fabric.barrier_reply(s1, s1.barriers.pop())
    assert service.manager.call("call-1").state is CallState.INSTALLING     # s3 has not answered
    confirm(fabric, network)
    assert service.manager.call("call-1").state is CallState.ACTIVE


def test_an_openflow_error_releases_the_call_with_the_reason(rig):
    service, fabric, network, _ = rig
    admit(service, "call-1", "b")
    s3 = network.datapaths["s3"]
    flow_mod = [m for m in s3.sent if type(m).__name__ == "OFPFlowMod"][-1]
    fabric.error(s3, flow_mod.xid, "type 5 code 0")
    fabric.tick()
    assert service.read(lambda m: m.calls()) == []
    assert service.manager.used_kbps("a-b") == 0


def test_no_barrier_in_time_releases_the_call(rig):
    service, fabric, network, clock = rig
    admit(service, "call-1", "b")
    assert service.next_timer() == clock.now + 2.0       # the core's install deadline, not a polling loop
    clock.now += 1.9
    service.handle_timer()
    assert [c.call_id for c in service.read(lambda m: m.calls())] == ["call-1"]
    clock.now += 0.2
    service.handle_timer()
    assert service.read(lambda m: m.calls()) == []


def test_reconnect_restores_full_state_without_duplicates_or_stale_entries(rig):
    service, fabric, network, _ = rig
    admit(service, "call-1", "b")
    s1 = network.switches["s1"]
    before = sorted(repr((f.table, f.priority, f.match, f.cookie)) for f in s1.flows)
    # a stale entry of ours from an earlier run, and one that is not ours
    from ryu.ofproto import ofproto_v1_3_parser as parser
    datapath = network.datapaths["s1"]
    stale_cookie = 0x4D41 << 48 | 3 << 40 | 999
    datapath.send_msg(parser.OFPFlowMod(datapath, cookie=stale_cookie, table_id=0, priority=3000,
                                        match=parser.OFPMatch(in_port=1, eth_type=0x0800, ipv4_dst="10.9.9.9"),
                                        instructions=[]))
    datapath.send_msg(parser.OFPFlowMod(datapath, cookie=0x1234, table_id=0, priority=10,
                                        match=parser.OFPMatch(in_port=7), instructions=[]))
    fabric.switch_connected(datapath)
    after = sorted(repr((f.table, f.priority, f.match, f.cookie)) for f in s1.flows if f.cookie != 0x1234)
    assert after == before
    assert any(f.cookie == 0x1234 for f in s1.flows)          # not ours: left alone
    assert network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0][:2] == ("s3", 2)


def test_resizing_an_aggregate_modifies_its_meter_and_keeps_the_calls(rig):
    service, _, network, _ = rig
    admit(service, "call-1", "b")
    service.resize_aggregate("a-b", 30000)
    aggregate = service.manager.aggregate("a-b")
    assert network.switches["s1"].meters[aggregate.tag * 2][0] == 30000
    assert network.delivered("s1", media("10.0.0.1", "10.0.0.2", 5000, in_port=1))[0][:2] == ("s3", 2)


def test_media_idle_releases_only_the_call_whose_media_it_was(rig):
    service, fabric, network, _ = rig
    admit(service, "call-1", "b")
    serial = service.manager.call("call-1").serial
    cookie = 0x4D41 << 48 | int(CookieKind.CALL) << 40 | serial
    datapath = network.datapaths["s1"]
    fabric.flow_removed(datapath, cookie, True, {"ipv4_src": "10.0.0.9", "ipv4_dst": "10.0.0.2", "udp_dst": 1})
    assert len(service.read(lambda m: m.calls())) == 1                      # someone else's media
    fabric.flow_removed(datapath, cookie, False, {"ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "udp_dst": 5000})
    assert len(service.read(lambda m: m.calls())) == 1                      # deleted by us, not idle
    fabric.flow_removed(datapath, cookie, True, {"ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "udp_dst": 5000})
    assert service.read(lambda m: m.calls()) == []


def test_ports_lldp_finds_joined_to_another_switch_leave_the_flood_tree_and_forget_hosts_learned_there(rig):
    from ryu_apps.core.survey import PortInfo
    service, fabric, network, _ = rig
    service.survey.discovery = True
    for name, datapath in network.datapaths.items():
        fabric.ports_described(datapath, {p: PortInfo(f"{name}-eth{p}") for p in (1, 2, 3, 7)})
    best_effort = fabric.best_effort
    # before LLDP: s1:7 looks like an access port; a host "appears" there (it is really s3's side of a cable)
    assert best_effort.learn("s1", 7, "02:00:00:00:00:33")
    assert 7 in best_effort.flood_ports("s1", 1, [1, 2, 3, 7])
    datapath = network.datapaths["s1"]
    sent = len(datapath.sent)
    fabric.link_heard(3, 7, 1, 7)           # LLDP: s3:7 -> s1:7, a cable the configuration does not list
    assert best_effort.flood_ports("s1", 1, [1, 2, 3, 7]) == [2, 3]   # the tree link s1:2 stays; 7 is out
    assert best_effort.flood_ports("s1", 7, [1, 2, 3, 7]) == []       # a flood arriving over it is dropped
    assert "02:00:00:00:00:33" not in best_effort.hosts
    deletes = [m for m in datapath.sent[sent:] if type(m).__name__ == "OFPFlowMod"
               and m.command == datapath.ofproto.OFPFC_DELETE_STRICT]
    assert [dict(m.match.items()) for m in deletes] == [{"eth_dst": "02:00:00:00:00:33"}]
    assert service.survey.unconfigured() == [(("s1", 7), ("s3", 7))]
    assert service.manager.link_faults() == {}
