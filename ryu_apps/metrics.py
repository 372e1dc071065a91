"""Prometheus metrics through ``prometheus_client`` (text exposition format 0.0.4).

Each :class:`Metrics` has its own registry (several controllers' services may live in one
process in tests). Four sources:

* state read from the service at scrape time (pools, calls, link states, the manager's
  decision counters, the OpenFlow shell's counters): a custom collector, so what is
  exposed is always what the service holds;
* latencies observed by the shells: ``mam_admission_seconds`` (an admission request, from
  the service's lock to its decision committed) and ``mam_flow_install_seconds`` (a call's
  flows sent to every switch's barrier reply);
* the process's garbage collections (``gc_tuning.PAUSES``, timed through ``gc.callbacks``
  once the controller ran ``gc_tuning.tune()``): ``mam_gc_pause_seconds{generation}``, the
  longest (``mam_gc_pause_max_seconds``) and the cyclic garbage found
  (``mam_gc_collected_objects_total``).

Resizes (``mam_aggregate_resizes_total{direction}``) and preemptions
(``mam_calls_preempted_total{reason}``) are the core's own counters
(``Counters.resizes``, ``Counters.preempted_by``): every label takes a bounded set of values.
"""

from __future__ import annotations

from typing import Any, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from . import gc_tuning
from .core.admission import RejectReason, SignallingProtocol
from .core.demand import PREEMPTED_CAPACITY, PREEMPTED_PATH_DOWN, PREEMPTED_PRIORITY
from .core.locations import Verdict
from .core.survey import LinkState
from .service import MamService

# a counter's creation time is one more gauge per family for every scrape: not wanted here
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: flow installs: sub-millisecond (a software switch on loopback) to seconds (a busy hardware switch)
BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: admissions: tens of microseconds (memory) to a second (an etcd ledger's timeout)
ADMISSION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RESIZE_DIRECTIONS = ("grow", "shrink")
PREEMPT_REASONS = (PREEMPTED_PRIORITY, PREEMPTED_CAPACITY, PREEMPTED_PATH_DOWN)


class Metrics:
    def __init__(self, service: MamService) -> None:
        self.service = service
        self.shell: Any = None          # the OpenFlow shell (openflow/shell.py), when the app has one
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StateCollector(self))
        self.flow_install = Histogram("mam_flow_install_seconds",
                                      "Time from sending a call's flows to every switch's barrier reply.",
                                      buckets=BUCKETS, registry=self.registry)
        self.admission = Histogram("mam_admission_seconds",
                                   "Time to decide an admission request (lock wait, decision and ledger commit).",
                                   buckets=ADMISSION_BUCKETS, registry=self.registry)
        service.time_admissions(self.observe_admission)

    # --- what the shells observe ---------------------------------------------------------

    def observe_flow_install(self, seconds: float) -> None:
        self.flow_install.observe(seconds)

    def observe_admission(self, seconds: float) -> None:
        self.admission.observe(seconds)

    # --- exposition ------------------------------------------------------------------------

    def render(self) -> str:
        return prometheus_client.generate_latest(self.registry).decode("utf-8")


class _StateCollector(Collector):
    """Gauges and counters read from the service (and the OpenFlow shell) at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        service = self.metrics.service

        def snapshot(manager: Any) -> Any:
            return ([(a.id, a.size_kbps, manager.used_kbps(a.id), len(manager.calls(a.id)))
                     for a in manager.aggregates()],
                    dict(manager.counters.admitted_by_protocol), dict(manager.counters.rejected_by_protocol),
                    manager.counters.released, dict(manager.counters.location_moves), len(manager.calls()),
                    dict(manager.counters.preempted_by), dict(manager.counters.resizes))
        pools, admitted, rejected, released, moves, active, preempted, resizes = service.read(snapshot)
        with service.lock:
            survey = service.survey
            links = [(f"{link.a}-{link.b}", condition.state) for link, condition in survey.conditions().items()]
            unconfigured = len(survey.unconfigured())
        reserved = GaugeMetricFamily("mam_aggregate_reserved_kbps",
                                     "Bandwidth reserved by the aggregate, per direction (kbit/s).", labels=["aggregate"])
        used = GaugeMetricFamily("mam_aggregate_used_kbps", "Bandwidth admitted calls use on the aggregate (kbit/s).",
                                 labels=["aggregate"])
        calls = GaugeMetricFamily("mam_aggregate_calls", "Calls riding the aggregate.", labels=["aggregate"])
        for name, size, in_use, count in pools:
            reserved.add_metric([name], size)
            used.add_metric([name], in_use)
            calls.add_metric([name], count)
        yield from (reserved, used, calls)
        family = CounterMetricFamily("mam_calls_admitted", "Calls admitted, by the signalling that asked.",
                                     labels=["protocol"])
        for protocol in SignallingProtocol:
            family.add_metric([protocol.value], admitted.get(protocol, 0))
        yield family
        family = CounterMetricFamily("mam_calls_rejected", "Calls refused, by reason and the signalling that asked.",
                                     labels=["reason", "protocol"])
        for reason in RejectReason:
            for protocol in SignallingProtocol:
                family.add_metric([reason.value, protocol.value], rejected.get((reason, protocol), 0))
        yield family
        yield CounterMetricFamily("mam_calls_released", "Calls released (any cause).", value=released)
        family = CounterMetricFamily("mam_calls_preempted", "Calls preempted, by why: a higher level of service "
                                     "needed the bandwidth (priority), a link's capacity fell (capacity), or the "
                                     "aggregate's path went down (path-down).", labels=["reason"])
        for why in PREEMPT_REASONS:
            family.add_metric([why], preempted.get(why, 0))
        yield family
        family = CounterMetricFamily("mam_aggregate_resizes", "Aggregates resized, by direction (any cause).",
                                     labels=["direction"])
        for direction in RESIZE_DIRECTIONS:
            family.add_metric([direction], resizes.get(direction, 0))
        yield family
        family = CounterMetricFamily("mam_terminal_moves",
                                     "Terminals heard on another access port, by what was decided.", labels=["verdict"])
        for verdict in Verdict:
            if verdict is not Verdict.UNCHANGED:
                family.add_metric([verdict.value], moves.get(verdict, 0))
        yield family
        yield GaugeMetricFamily("mam_calls_active", "Calls holding bandwidth now.", value=active)
        gauge = GaugeMetricFamily("mam_link_state", "The configured link's state (1 for the current one): unknown, "
                                   "up, verified, down, miswired.", labels=["link", "state"])
        for name, current in links:
            for state in LinkState:
                gauge.add_metric([name, state.value], int(state is current))
        yield gauge
        yield GaugeMetricFamily("mam_links_unconfigured", "Links LLDP hears that the configuration does not list.",
                                value=unconfigured)
        if self.metrics.shell is not None:
            yield from _dataplane(self.metrics.shell.snapshot())
        yield from _collector(gc_tuning.PAUSES)


def _collector(pauses: gc_tuning.Pauses) -> Iterator[Metric]:
    """The process's garbage collections (timed once ``gc_tuning.tune()`` ran)."""
    histogram = HistogramMetricFamily("mam_gc_pause_seconds", "Garbage collections: how long each stopped the "
                                      "process, by generation (1 includes gc_tuning's sweeps; 2, a full collection: once tuned, only the rare reclaims when the frozen objects doubled).",
                                      labels=["generation"])
    longest = GaugeMetricFamily("mam_gc_pause_max_seconds", "The longest garbage collection since start, by "
                                "generation.", labels=["generation"])
    collected = CounterMetricFamily("mam_gc_collected_objects", "Objects garbage collections freed (cyclic "
                                    "garbage: 0 while nothing on the call path makes reference cycles).",
                                    labels=["generation"])
    for generation in range(3):
        label = [str(generation)]
        counts = pauses.buckets[generation]
        cumulative = [sum(counts[:index + 1]) for index in range(len(counts))]
        histogram.add_metric(label, [(repr(bound), cumulative[index]) for index, bound in enumerate(gc_tuning.BUCKETS)]
                             + [("+Inf", cumulative[-1])], pauses.seconds[generation])
        longest.add_metric(label, pauses.longest[generation])
        collected.add_metric(label, pauses.collected[generation])
    yield from (histogram, longest, collected)


def _dataplane(snap: Any) -> Iterator[Metric]:
    last = snap["last"]
    family = CounterMetricFamily("mam_switch_reconciles", "Times a switch was read and sent only the difference "
                                 "from the plan.", labels=["switch"])
    for switch, count in sorted(snap["reconciles"].items()):
        family.add_metric([switch], count)
    yield family
    gauge = GaugeMetricFamily("mam_switch_reconcile_seconds", "The last reconcile: from connection to the "
                               "difference sent.", labels=["switch"])
    for switch, result in sorted(last.items()):
        gauge.add_metric([switch], result.seconds)
    yield gauge
    gauge = GaugeMetricFamily("mam_switch_reconcile_entries", "The last reconcile's flow entries: unchanged, added "
                               "(or replaced), deleted; meter changes.", labels=["switch", "change"])
    for switch, result in sorted(last.items()):
        for change, value in (("unchanged", result.unchanged), ("added", result.flows_added),
                              ("deleted", result.flows_deleted), ("meters", result.meters_changed)):
            gauge.add_metric([switch, change], value)
    yield gauge
    family = CounterMetricFamily("mam_openflow_messages", "OpenFlow messages the valve sent, by kind.", labels=["kind"])
    for kind in ("flow_mods", "meter_mods", "barriers"):
        family.add_metric([kind], snap["counters"].get(kind, 0))
    yield family
    yield CounterMetricFamily("mam_openflow_removals_skipped", "Flow-removed messages dropped undecoded: a call's "
                              "entry no longer planned (most often deleted by the controller as the call ended).",
                              value=snap["counters"].get("removals_skipped", 0))
    yield CounterMetricFamily("mam_openflow_errors", "OpenFlow error messages the switches sent.",
                              value=snap["counters"].get("errors", 0))
    family = CounterMetricFamily("mam_shell_failures", "Events or actions whose handling raised (logged; the app "
                                 "carried on).", labels=["event"])
    for event, count in sorted(snap["failures"].items()):
        family.add_metric([event], count)
    yield family
