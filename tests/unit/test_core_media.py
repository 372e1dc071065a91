"""Media the flows must carry: IPv6 addresses and the calls' RTCP."""

from __future__ import annotations

import pytest

from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.errors import CapacityError, Unprocessable
from ryu_apps.core.flowplan import ETH_IPV4, ETH_IPV6, FlowEntry, PlanOptions, PopMpls, media_ports
from ryu_apps.core.manager import ManagerSettings, MediaAggregationManager

T0 = 1_764_000_000.0


def manager_with(line, size: int = 300, **plan) -> MediaAggregationManager:
    manager = MediaAggregationManager(line, ManagerSettings(plan=PlanOptions(**plan)))
    manager.create_aggregate("ab", "site-a", "site-b", size)
    manager.drain()
    return manager


def flows(manager: MediaAggregationManager) -> list[FlowEntry]:
    return [e for e in manager.drain().plan.add if isinstance(e, FlowEntry)]


def ingress(entries: list[FlowEntry], switch: str) -> list[FlowEntry]:
    return [f for f in entries if f.switch == switch and f.meter is not None]


def test_ipv6_media_gets_ipv6_matches_and_is_sized_for_its_headers(line):
    manager = manager_with(line)
    manager.admit(AdmissionRequest("c6", "site-a", "site-b", MediaSpec("pcmu")), T0)
    assert manager.used_kbps("ab") == 91
    manager.attach_media("c6", MediaEndpoint("2001:db8:1::5", 4000), MediaEndpoint("2001:db8:2::7", 5000), T0)
    assert manager.call("c6").media.ip_version == 6 and manager.used_kbps("ab") == 99
    added = flows(manager)
    (out,) = ingress(added, "s1")
    match = dict(out.match)
    assert match["eth_type"] == ETH_IPV6 and match["ipv6_src"] == "2001:db8:1::5"
    assert match["ipv6_dst"] == "2001:db8:2::7" and "ipv4_src" not in match
    egress = [f for f in added if f.switch == "s3" and f.meter is None]
    assert all(PopMpls(ETH_IPV6) in f.actions for f in egress)


def test_ipv6_media_the_pool_cannot_hold_is_refused_and_the_call_keeps_its_allocation(line):
    manager = manager_with(line, size=95)
    manager.admit(AdmissionRequest("c6", "site-a", "site-b", MediaSpec("pcmu")), T0)
    manager.drain()
    with pytest.raises(CapacityError, match="IPv6 media needs 99 kbit/s"):
        manager.attach_media("c6", MediaEndpoint("2001:db8:1::5", 4000), MediaEndpoint("2001:db8:2::7", 5000), T0)
    call = manager.call("c6")
    assert (call.kbps, call.media.ip_version, call.caller_media) == (91, 4, None) and not manager.drain()


def test_media_of_two_ip_versions_is_refused_clearly(line):
    manager = manager_with(line)
    manager.admit(AdmissionRequest("mix", "site-a", "site-b", MediaSpec("pcmu")), T0)
    manager.drain()
    with pytest.raises(Unprocessable, match="different IP versions") as error:
        manager.attach_media("mix", MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("2001:db8:2::7", 5000), T0)
    assert error.value.status == 422 and manager.call("mix").caller_media is None and not manager.drain()


def test_an_admission_that_says_ipv6_is_sized_for_it_from_the_start(line):
    manager = manager_with(line)
    decision = manager.admit(AdmissionRequest("c6", "site-a", "site-b", MediaSpec("g729", ip_version=6)), T0)
    assert isinstance(decision, Admitted) and decision.kbps == 43      # 34.4 + 8 + 0.3


@pytest.mark.parametrize("mode, port, expected", [
    ("masked", 5000, ((5000, 0xFFFE),)),      # RTP 5000 and RTCP 5001 in one entry
    ("masked", 5001, (5001,)),                # an odd RTP port: the mask would catch 5000 instead
    ("exact", 5000, (5000, 5001)),
    ("off", 5000, (5000,)),
])
def test_rtcp_is_classified_with_the_media(mode, port, expected):
    assert media_ports(port, mode) == expected


@pytest.mark.parametrize("mode, per_direction", [("masked", 1), ("exact", 2), ("off", 1)])
def test_rtcp_entries_per_call(line, mode, per_direction):
    manager = manager_with(line, rtcp_match=mode)
    manager.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), T0, media=(
        MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.7", 5000)))
    added = flows(manager)
    for switch, port in (("s1", 5000), ("s3", 4000)):
        entries = ingress(added, switch)
        assert len(entries) == per_direction
        assert {dict(f.match)["udp_dst"] for f in entries} == set(media_ports(port, mode))
        assert all(dict(f.match)["eth_type"] == ETH_IPV4 for f in entries)
    assert len(added) == 2 * per_direction + 2          # egress entries match the tags, RTCP included
