import pytest

from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import CodecPolicy, MediaSpec
from ryu_apps.core.flowplan import CookieKind, FlowEntry, parse_cookie
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager

PCMU = MediaSpec("pcmu")   # 91 kbit/s at Ethernet level with tags


def request(call_id, media=PCMU, level=ServiceLevel.VOICE, a="site-a", b="site-b"):
    return AdmissionRequest(call_id, a, b, media, level)


def test_admits_until_the_pool_is_full_then_rejects_with_the_reason(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    decisions = [manager.admit(request(f"c{i}"), 0) for i in range(4)]
    assert [type(d) for d in decisions] == [Admitted, Admitted, Admitted, Rejected]
    assert decisions[3].reason is RejectReason.POOL_FULL and "273 of 300" in decisions[3].detail
    assert manager.used_kbps("ab") == 273


@pytest.mark.parametrize("req, reason", [
    (request("x", a="site-a", b="nowhere"), RejectReason.UNKNOWN_COMMUNITY),
    (request("x", a="site-a", b="site-c"), RejectReason.NO_AGGREGATE),
    (request("x", media=MediaSpec("x-vendor")), RejectReason.CODEC_NOT_ALLOWED),
    (request("x", level=ServiceLevel.EMERGENCY), RejectReason.NO_AGGREGATE),
])
def test_reject_reasons(line, req, reason):
    manager = MediaAggregationManager(line)
    manager.create_aggregate("ab", "site-a", "site-b", 300, levels=[ServiceLevel.VOICE])
    decision = manager.admit(req, 0)
    assert isinstance(decision, Rejected) and decision.reason is reason
    assert manager.counters.rejected[reason] == 1


def test_codec_policy_refuses_codecs_not_allowed(line):
    manager = MediaAggregationManager(line, ManagerSettings(policy=CodecPolicy(allowed=frozenset({"g729"}))))
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    assert manager.admit(request("x"), 0).reason is RejectReason.CODEC_NOT_ALLOWED
    assert isinstance(manager.admit(request("y", media=MediaSpec("g729")), 0), Admitted)


def test_retransmitted_setup_never_allocates_twice(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    first = manager.admit(request("c1"), 0)
    again = manager.admit(request("c1"), 1)
    assert first == again and manager.used_kbps("ab") == 91 and len(manager.calls()) == 1


def test_release_returns_exactly_what_was_taken(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 300)
    manager.admit(request("c1"), 0)
    manager.admit(request("c2", media=MediaSpec("g729")), 0)
    released = manager.release("c1", 5, "bye")
    assert released.kbps == 91 and manager.used_kbps("ab") == 35
    assert manager.release("c1", 6) is None            # twice: nothing more returned
    manager.release("c2", 7)
    assert manager.used_kbps("ab") == 0


def test_higher_level_preempts_lowest_newest_first_only_where_allowed(line):
    manager = MediaAggregationManager(line)
    manager.create_aggregate("ab", "site-a", "site-b", 182, preemption=True)
    manager.admit(request("fax", level=ServiceLevel.VOICE_BAND_DATA), 1)
    manager.admit(request("voice", level=ServiceLevel.VOICE), 2)
    manager.drain()
    decision = manager.admit(request("911", level=ServiceLevel.EMERGENCY), 3)
    assert isinstance(decision, Admitted) and decision.preempted == ("fax",)
    assert [r.call_id for r in manager.drain().released] == ["fax"]
    # voice cannot preempt voice or emergency
    assert manager.admit(request("v2", level=ServiceLevel.VOICE), 4).reason is RejectReason.POOL_FULL


def test_no_preemption_unless_the_aggregate_allows_it(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 91)
    manager.admit(request("voice"), 1)
    assert manager.admit(request("911", level=ServiceLevel.EMERGENCY), 2).reason is RejectReason.POOL_FULL


def test_higher_priority_aggregate_is_tried_first(manager):
    manager.create_aggregate("low", "site-a", "site-b", 100)
    manager.create_aggregate("high", "site-a", "site-b", 100, priority=5)
    assert manager.admit(request("c1"), 0).aggregate_id == "high"
    assert manager.admit(request("c2"), 0).aggregate_id == "low"


def test_modify_up_and_down_and_a_refused_upgrade_keeps_the_old_allocation(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 150)
    manager.admit(request("c1", media=MediaSpec("g729")), 0)
    assert manager.modify("c1", PCMU, 1).kbps == 91
    manager.admit(request("c2", media=MediaSpec("g729")), 2)
    refused = manager.modify("c2", PCMU, 3)
    assert refused.reason is RejectReason.POOL_FULL
    assert manager.call("c2").kbps == 35 and manager.used_kbps("ab") == 126
    assert manager.modify("c1", MediaSpec("g729"), 4).kbps == 35 and manager.used_kbps("ab") == 70
    assert manager.modify("nope", PCMU, 5).reason is RejectReason.UNKNOWN_CALL


def test_tags_are_unique_per_edge_and_reused_after_release(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 1000)
    for i in range(5):
        manager.admit(request(f"c{i}"), 0)
    calls = manager.calls()
    assert len({c.tag_to_callee for c in calls}) == 5 and len({c.tag_to_caller for c in calls}) == 5
    freed = manager.call("c2").tag_to_callee
    manager.release("c2", 1)
    assert manager.call(manager.admit(request("c9"), 2).call_id).tag_to_callee == freed


def test_flows_appear_with_media_and_leave_with_the_call(manager):
    manager.create_aggregate("ab", "site-a", "site-b", 1000)
    manager.drain()
    manager.admit(request("c1"), 0)
    assert not manager.drain().plan                       # bandwidth held, no flows yet
    manager.attach_media("c1", MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000), 1)
    added = manager.drain().plan.add
    flows = [e for e in added if isinstance(e, FlowEntry)]
    assert len(flows) == 4                                # ingress + egress at each edge
    assert {f.switch for f in flows} == {"s1", "s3"}      # none on the core switch
    assert all(parse_cookie(f.cookie) == (CookieKind.CALL, manager.call("c1").serial) for f in flows)
    manager.release("c1", 2)
    assert set(manager.drain().plan.remove) == set(added)
