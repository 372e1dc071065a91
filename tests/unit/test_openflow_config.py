"""The data-plane settings the valve and its shell read: media_idle and the OVSDB address."""

from __future__ import annotations

import pytest

from ryu_apps.config import ConfigError, build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import FlowEntry, PortClass

from fakes.valve_rig import Rig
from test_openflow_valve import CONFIG


def with_dataplane(**dataplane: object) -> dict:
    return {**CONFIG, "dataplane": {**CONFIG["dataplane"], **dataplane}}


def test_media_idle_off_draws_call_flows_without_an_idle_timeout() -> None:
    config = parse_config(with_dataplane(media_idle="off", call_idle_timeout_s=30))
    assert config.dataplane.media_idle == "off"
    manager = build_manager(config)
    manager.admit(AdmissionRequest("c", "a", "b", MediaSpec("pcmu")), 0.0)
    manager.attach_media("c", MediaEndpoint("10.0.0.1", 4000), MediaEndpoint("10.0.0.2", 5000), 0.0)
    ingress = [e for e in manager.expected_plan() if isinstance(e, FlowEntry) and e.notify_removed]
    assert ingress and all(e.idle_timeout == 0 for e in ingress)
    assert parse_config(CONFIG).dataplane.media_idle == "both"


@pytest.mark.parametrize("address", ["unix:/var/run/openvswitch/db.sock", "tcp:192.0.2.10:6640",
                                     "tcp:[2001:db8::1]:6640"])
def test_ovsdb_addresses_that_are_accepted(address: str) -> None:
    assert parse_config(with_dataplane(ovsdb=address)).dataplane.ovsdb == address


@pytest.mark.parametrize("address", ["db.sock", "unix:relative.sock", "tcp:switch.example:6640", "tcp:192.0.2.10",
                                     "tcp:192.0.2.10:0", "ssl:192.0.2.10:6640", "ptcp:6640", "", 6640])
def test_ovsdb_addresses_that_are_refused_name_the_key(address: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(with_dataplane(ovsdb=address))
    assert "dataplane.ovsdb" in str(error.value)


@pytest.mark.parametrize("policy", ["sometimes", "", 1])
def test_unknown_media_idle_policies_are_refused(policy: object) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(with_dataplane(media_idle=policy))
    assert "dataplane.media_idle" in str(error.value)


def test_classes_are_applied_outside_the_service_lock() -> None:
    rig = Rig(with_dataplane(class_mode="tc"))
    held: list[bool] = []

    class Probe:
        def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
            held.append(rig.service.lock._is_owned())      # type: ignore[attr-defined]
            return []

    rig.shell.classes = Probe()
    rig.connect()
    rig.service.resize_aggregate("a-b", 30000)          # a plan change (under the service's lock) moves a class
    rig.deliver()
    assert len(held) >= 4 and not any(held)
