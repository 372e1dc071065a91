"""prometheus_client metrics: the counters fed by what the service reports, the histograms,
and the bounded labels."""

from __future__ import annotations

import gc

from ryu_apps import gc_tuning
from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, ServiceLevel
from ryu_apps.core.codec import MediaSpec
from ryu_apps.metrics import Metrics
from ryu_apps.service import MamService

from test_rest_api import PCMU_KBPS, config


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, (name, labels)
    return found


def rig(pool: int = 1000, preemption: bool = False) -> tuple[MamService, Metrics]:
    document = config(pool)
    document["aggregates"][0]["preemption"] = preemption
    service = MamService(build_manager(parse_config(document)), clock=lambda: 10.0)
    return service, Metrics(service)


def request(call_id: str, level: ServiceLevel = ServiceLevel.VOICE) -> AdmissionRequest:
    return AdmissionRequest(call_id, "site-a", "site-b", MediaSpec("pcmu"), level)


def test_resizes_are_counted_by_direction_whatever_asked() -> None:
    service, metrics = rig()
    service.resize_aggregate("a-b", 1500)
    service.resize_aggregate("a-b", 1600)
    service.resize_aggregate("a-b", 900)
    service.resize_aggregate("a-b", 900)                 # no change: not a resize
    assert value(metrics, "mam_aggregate_resizes_total", direction="grow") == 2
    assert value(metrics, "mam_aggregate_resizes_total", direction="shrink") == 1


def test_preemptions_are_counted_with_a_bounded_reason() -> None:
    service, metrics = rig(PCMU_KBPS, preemption=True)
    service.admit(request("fax", ServiceLevel.VOICE_BAND_DATA))
    service.admit(request("911", ServiceLevel.EMERGENCY))
    assert value(metrics, "mam_calls_preempted_total", reason="priority") == 1
    assert value(metrics, "mam_calls_preempted_total", reason="capacity") == 0
    assert value(metrics, "mam_calls_preempted_total", reason="path-down") == 0


def test_admission_latency_is_observed_for_every_decision() -> None:
    service, metrics = rig(PCMU_KBPS)
    service.admit(request("c1"))
    service.admit(request("c2"))                          # refused: still a decision, still timed
    assert value(metrics, "mam_admission_seconds_count") == 2
    assert 0 < value(metrics, "mam_admission_seconds_sum") < 1
    assert value(metrics, "mam_admission_seconds_bucket", le="+Inf") == 2
    metrics.observe_flow_install(0.004)
    assert value(metrics, "mam_flow_install_seconds_bucket", le="0.005") == 1


def test_counters_from_the_manager_survive_as_totals_and_text_is_0_0_4() -> None:
    service, metrics = rig()
    service.admit(request("c1"))
    service.release("c1")
    text = metrics.render()
    assert "# TYPE mam_calls_released_total counter" in text and "mam_calls_released_total 1.0" in text
    assert "_created" not in text                        # no creation-time series
    assert value(metrics, "mam_calls_admitted_total", protocol="rest") == 1


def test_the_grafana_dashboard_reads_only_metrics_the_controller_exposes() -> None:
    import json
    import re
    from pathlib import Path
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    service, metrics = rig()
    metrics.observe_flow_install(0.001)

    class Shell:          # the OpenFlow shell's counters (openflow/shell.py), empty
        @staticmethod
        def snapshot() -> dict[str, dict[str, int]]:
            return {"last": {}, "reconciles": {}, "counters": {}, "failures": {}}
    metrics.shell = Shell()
    families = set(re.findall(r"^# TYPE (\w+) ", metrics.render(), re.MULTILINE))
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\b(mam_[a-z_]+)", target["expr"]):
                used.add(name)
                assert re.sub(r"_bucket$", "", name) in families, f"{panel['title']}: {name} is not exposed"
    assert {"mam_admission_seconds_bucket", "mam_flow_install_seconds_bucket", "mam_calls_rejected_total",
            "mam_aggregate_resizes_total", "mam_calls_preempted_total"} <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_garbage_collections_are_exposed_by_generation() -> None:
    _, metrics = rig()
    before = value(metrics, "mam_gc_pause_seconds_count", generation="1")
    gc_tuning.PAUSES.install()
    try:
        gc.collect(1)
    finally:
        gc_tuning.PAUSES.uninstall()
    assert value(metrics, "mam_gc_pause_seconds_count", generation="1") == before + 1
    assert value(metrics, "mam_gc_pause_seconds_bucket", generation="1", le="+Inf") == before + 1
    assert value(metrics, "mam_gc_pause_max_seconds", generation="1") > 0
    assert value(metrics, "mam_gc_collected_objects_total", generation="2") >= 0
