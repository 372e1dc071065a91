"""Prometheus metrics (text exposition format 0.0.4), with no extra dependency.

Gauges about pools, calls and link states are read from the service at scrape time; counters of
decisions come from the manager's own counters; the flow-install histogram is fed by
the OpenFlow shell (`observe_flow_install`).
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

from .core.admission import RejectReason, SignallingProtocol
from .core.locations import Verdict
from .core.survey import LinkState
from .service import MamService

BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self.lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.total += value

    def lines(self, name: str) -> list[str]:
        with self.lock:
            counts, total = list(self.counts), self.total
        lines, running = [], 0
        for bound, count in zip(self.buckets, counts):
            running += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        running += counts[-1]
        lines += [f'{name}_bucket{{le="+Inf"}} {running}', f"{name}_sum {total:.6f}", f"{name}_count {running}"]
        return lines


class Metrics:
    def __init__(self, service: MamService) -> None:
        self.service = service
        self.flow_install = Histogram()
        self.shell: Any = None          # the OpenFlow shell (openflow/shell.py), when the app has one

    def observe_flow_install(self, seconds: float) -> None:
        self.flow_install.observe(seconds)

    def render(self) -> str:
        def snapshot(manager: Any) -> Any:
            return ([(a.id, a.size_kbps, manager.used_kbps(a.id), len(manager.calls(a.id)))
                     for a in manager.aggregates()],
                    dict(manager.counters.admitted_by_protocol), dict(manager.counters.rejected_by_protocol),
                    manager.counters.released, dict(manager.counters.location_moves),
                    manager.counters.preempted, len(manager.calls()))
        pools, admitted, rejected, released, moves, preempted, active = self.service.read(snapshot)
        with self.service.lock:
            survey = self.service.survey
            links = [(f"{link.a}-{link.b}", condition.state) for link, condition in survey.conditions().items()]
            unconfigured = len(survey.unconfigured())
        out = [
            "# HELP mam_aggregate_reserved_kbps Bandwidth reserved by the aggregate, per direction (kbit/s).",
            "# TYPE mam_aggregate_reserved_kbps gauge",
            *(f'mam_aggregate_reserved_kbps{{aggregate="{_label(a)}"}} {size}' for a, size, _, _ in pools),
            "# HELP mam_aggregate_used_kbps Bandwidth admitted calls use on the aggregate (kbit/s).",
            "# TYPE mam_aggregate_used_kbps gauge",
            *(f'mam_aggregate_used_kbps{{aggregate="{_label(a)}"}} {used}' for a, _, used, _ in pools),
            "# HELP mam_aggregate_calls Calls riding the aggregate.",
            "# TYPE mam_aggregate_calls gauge",
            *(f'mam_aggregate_calls{{aggregate="{_label(a)}"}} {n}' for a, _, _, n in pools),
            "# HELP mam_calls_admitted_total Calls admitted, by the signalling that asked.",
            "# TYPE mam_calls_admitted_total counter",
            *(f'mam_calls_admitted_total{{protocol="{p.value}"}} {admitted.get(p, 0)}' for p in SignallingProtocol),
            "# HELP mam_calls_rejected_total Calls refused, by reason and the signalling that asked.",
            "# TYPE mam_calls_rejected_total counter",
            *(f'mam_calls_rejected_total{{reason="{r.value}",protocol="{p.value}"}} {rejected.get((r, p), 0)}'
              for r in RejectReason for p in SignallingProtocol),
            "# HELP mam_calls_released_total Calls released (any cause).",
            "# TYPE mam_calls_released_total counter",
            f"mam_calls_released_total {released}",
            "# HELP mam_calls_preempted_total Calls preempted by a higher level of service.",
            "# TYPE mam_calls_preempted_total counter",
            f"mam_calls_preempted_total {preempted}",
            "# HELP mam_terminal_moves_total Terminals heard on another access port, by what was decided.",
            "# TYPE mam_terminal_moves_total counter",
            *(f'mam_terminal_moves_total{{verdict="{v.value}"}} {moves.get(v, 0)}'
              for v in Verdict if v is not Verdict.UNCHANGED),
            "# HELP mam_calls_active Calls holding bandwidth now.",
            "# TYPE mam_calls_active gauge",
            f"mam_calls_active {active}",
            "# HELP mam_link_state The configured link's state (1 for the current one): unknown, up, verified, "
            "down, miswired.",
            "# TYPE mam_link_state gauge",
            *(f'mam_link_state{{link="{_label(name)}",state="{state.value}"}} {int(state is current)}'
              for name, current in links for state in LinkState),
            "# HELP mam_links_unconfigured Links LLDP hears that the configuration does not list.",
            "# TYPE mam_links_unconfigured gauge",
            f"mam_links_unconfigured {unconfigured}",
            "# HELP mam_flow_install_seconds Time from sending a call's flows to every switch's barrier reply.",
            "# TYPE mam_flow_install_seconds histogram",
            *self.flow_install.lines("mam_flow_install_seconds"),
            *self._dataplane_lines(),
        ]
        return "\n".join(out) + "\n"


    def _dataplane_lines(self) -> list[str]:
        if self.shell is None:
            return []
        snap = self.shell.snapshot()
        last = snap["last"]
        return [
            "# HELP mam_switch_reconciles_total Times a switch was read and sent only the difference from the plan.",
            "# TYPE mam_switch_reconciles_total counter",
            *(f'mam_switch_reconciles_total{{switch="{_label(s)}"}} {n}' for s, n in sorted(snap["reconciles"].items())),
            "# HELP mam_switch_reconcile_seconds The last reconcile: from connection to the difference sent.",
            "# TYPE mam_switch_reconcile_seconds gauge",
            *(f'mam_switch_reconcile_seconds{{switch="{_label(s)}"}} {r.seconds:.6f}' for s, r in sorted(last.items())),
            "# HELP mam_switch_reconcile_entries The last reconcile's flow entries: unchanged, added (or replaced), "
            "deleted; meter changes.",
            "# TYPE mam_switch_reconcile_entries gauge",
            *(f'mam_switch_reconcile_entries{{switch="{_label(s)}",change="{change}"}} {value}'
              for s, r in sorted(last.items())
              for change, value in (("unchanged", r.unchanged), ("added", r.flows_added),
                                    ("deleted", r.flows_deleted), ("meters", r.meters_changed))),
            "# HELP mam_openflow_messages_total OpenFlow messages the valve sent, by kind.",
            "# TYPE mam_openflow_messages_total counter",
            *(f'mam_openflow_messages_total{{kind="{k}"}} {snap["counters"].get(k, 0)}'
              for k in ("flow_mods", "meter_mods", "barriers")),
            "# HELP mam_openflow_errors_total OpenFlow error messages the switches sent.",
            "# TYPE mam_openflow_errors_total counter",
            f'mam_openflow_errors_total {snap["counters"].get("errors", 0)}',
            "# HELP mam_shell_failures_total Events or actions whose handling raised (logged; the app carried on).",
            "# TYPE mam_shell_failures_total counter",
            *(f'mam_shell_failures_total{{event="{_label(k)}"}} {n}' for k, n in sorted(snap["failures"].items())),
        ]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
