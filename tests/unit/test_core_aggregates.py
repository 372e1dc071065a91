import pytest

from conftest import line_topology, mesh_topology
from ryu_apps.core.errors import Unprocessable, CapacityError, Conflict, InvalidRequest, MamError, NotFound
from ryu_apps.core.manager import MediaAggregationManager


def test_aggregate_reserves_both_directions_of_every_hop(manager):
    aggregate = manager.create_aggregate("ab", "site-a", "site-b", 400)
    assert aggregate.path == ("s1", "s2", "s3")
    assert manager.link_reserved() == {("s1", "s2"): 400, ("s2", "s1"): 400, ("s2", "s3"): 400, ("s3", "s2"): 400}


def test_path_avoids_a_link_without_enough_reservable_capacity():
    manager = MediaAggregationManager(mesh_topology())
    assert manager.create_aggregate("small", "east", "west", 200).path == ("s1", "s2", "s4")
    assert manager.create_aggregate("big", "east", "west", 1000).path == ("s1", "s3", "s5", "s4")


def test_aggregates_never_oversubscribe_a_link(manager):
    manager.create_aggregate("one", "site-a", "site-b", 600)
    with pytest.raises(CapacityError):
        manager.create_aggregate("two", "site-a", "site-c", 500)
    manager.create_aggregate("two", "site-a", "site-c", 400)
    assert max(manager.link_reserved().values()) == 1000


def test_growing_does_not_count_its_own_bandwidth_twice(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 600)
    assert manager.resize_aggregate("ab", 1000).size_kbps == 1000   # 600 + 1000 > 1000, yet it fits
    with pytest.raises(CapacityError):
        manager.resize_aggregate("ab", 1001)
    assert manager.aggregate("ab").size_kbps == 1000


def test_growing_reroutes_when_the_current_path_is_too_narrow():
    manager = MediaAggregationManager(mesh_topology())
    manager.create_aggregate("a", "east", "west", 200)
    assert manager.resize_aggregate("a", 2000).path == ("s1", "s3", "s5", "s4")
    assert manager.link_reserved()[("s2", "s4")] == 0


def test_shrinking_below_use_is_refused(manager):
    from ryu_apps.core.admission import AdmissionRequest
    from ryu_apps.core.codec import MediaSpec
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), 0)
    manager.admit(AdmissionRequest("c2", "site-a", "site-b", MediaSpec("pcmu")), 0)
    with pytest.raises(Conflict, match="182 kbit/s"):
        manager.resize_aggregate("ab", 100)
    assert manager.resize_aggregate("ab", 182).size_kbps == 182


def test_delete_with_calls_needs_force_and_releases_them(manager):
    from ryu_apps.core.admission import AdmissionRequest
    from ryu_apps.core.codec import MediaSpec
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), 0)
    with pytest.raises(Conflict):
        manager.delete_aggregate("ab")
    manager.drain()
    manager.delete_aggregate("ab", force=True)
    assert [r.call_id for r in manager.drain().released] == ["c1"]
    assert manager.calls() == [] and set(manager.link_reserved().values()) == {0}


@pytest.mark.parametrize("kwargs, field", [
    ({"size_kbps": 0}, "size_kbps"), ({"dscp": 64}, "dscp"), ({"aggregate_id": ""}, "id"),
    ({"levels": []}, "levels"), ({"path": ["s1", "s3"]}, "path"),
])
def test_bad_aggregate_requests_name_the_field(manager, kwargs, field):
    args = {"aggregate_id": "ab", "a": "site-a", "b": "site-b", "size_kbps": 100} | kwargs
    with pytest.raises((InvalidRequest, NotFound, Unprocessable)) as error:
        manager.create_aggregate(args.pop("aggregate_id"), args.pop("a"), args.pop("b"), args.pop("size_kbps"),
                                 **args)
    if field:
        assert error.value.field == field


def test_unknown_community_is_not_found(manager):
    with pytest.raises(NotFound, match="site-z"):
        manager.create_aggregate("az", "site-a", "site-z", 100)


def test_community_of_uses_domain_first_and_refuses_ambiguous_addresses():
    topology = line_topology()
    assert topology.community_of("B.example", None).name == "site-b"
    assert topology.community_of(None, "10.1.2.3").name == "site-a"
    assert topology.community_of(None, "10.2.0.5") is None           # site-b and site-c overlap
    assert topology.community_of("c.example", "10.2.0.5").name == "site-c"
    assert topology.community_of(None, "not-an-ip") is None


def test_reconfiguring_a_pool_keeps_its_tag_and_calls_and_re_marks_their_flows(manager):
    from ryu_apps.core.admission import AdmissionRequest
    from ryu_apps.core.calls import MediaEndpoint
    from ryu_apps.core.codec import MediaSpec
    from ryu_apps.core.flowplan import FlowEntry, SetField
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), 0.0,
                  media=(MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000)))
    tag = manager.aggregate("ab").tag
    manager.drain()
    changed = manager.reconfigure_aggregate("ab", dscp=34, priority=5, preemption=True)
    assert (changed.tag, changed.dscp, changed.priority, changed.preemption) == (tag, 34, 5, True)
    plan = manager.drain().plan
    marks = {a for e in plan.add if isinstance(e, FlowEntry) and e.meter is not None for a in e.actions
             if isinstance(a, SetField) and a.field == "ip_dscp"}
    assert marks == {SetField("ip_dscp", 34)} and [c.call_id for c in manager.calls("ab")] == ["c1"]
    assert manager.reconfigure_aggregate("ab", dscp=34) is changed and not manager.drain()   # nothing to do
    with pytest.raises(MamError, match="must be 0..63"):
        manager.reconfigure_aggregate("ab", dscp=64)
