"""Keeps the connected switches in step with the plan, and confirms calls by barrier.

Framework-agnostic: it is handed datapath objects (ryu's or os-ken's) and calls only
``send_msg`` / ``set_xid`` on them. The app feeds it events; the service feeds it plan
changes (as a listener, under the service's lock).

A call's flows count only once every switch that received them has answered a barrier
sent after them; then ``service.confirm_flows``. An OpenFlow error for one of the call's
messages, a switch that is not connected, or no barrier within the timeout releases the
call with the reason.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.flowplan import CookieKind, PortClass, parse_cookie
from ..core.manager import Changes
from ..core.network import Topology
from ..core.survey import PortInfo, Survey, Transition
from ..dataplane import ovsdb_queues, tc_classes
from ..service import MamService
from . import render
from .batch import SwitchBatch, batches, full_state
from .learning import BestEffort

log = logging.getLogger(__name__)


@dataclass
class _Install:
    """A call whose flows are on their way."""

    started: float
    waiting: set[str] = field(default_factory=set)   # switches whose barrier is outstanding


class Fabric:
    def __init__(self, service: MamService, *, class_mode: str = "tc", barrier_timeout_s: float = 5.0,
                 clock: Callable[[], float], observe_install: Callable[[float], None] | None = None,
                 tc_runner: tc_classes.Runner | None = None) -> None:
        self.service = service
        self.topology: Topology = service.manager.topology
        self.class_mode = class_mode
        self.barrier_timeout_s = barrier_timeout_s
        self.clock = clock
        self.observe_install = observe_install or (lambda seconds: None)
        self.tc_runner = tc_runner
        self.best_effort = BestEffort(self.topology)
        self.lock = threading.RLock()
        self.datapaths: dict[str, Any] = {}               # switch name -> datapath
        self.port_names: dict[str, dict[int, str]] = {}   # switch name -> port no -> interface
        self.terminals: dict[tuple[str, str], int] = {}    # (community, IP) -> access port, as learned
        self.classes: dict[tuple[str, int], PortClass] = {}
        self._classes_applied: dict[tuple[str, int], PortClass] = {}
        self._installs: dict[str, _Install] = {}           # call id -> install in progress
        self._barriers: dict[tuple[str, int], set[str]] = {}  # (switch, xid) -> call ids
        self._xid_calls: dict[tuple[str, int], str] = {}   # (switch, xid of a flow-mod) -> call id
        self._failures: list[tuple[str, str]] = []         # (call id, reason), released by tick()
        self.stats = {"flow_mods": 0, "meter_mods": 0, "barriers": 0, "errors": 0}

    # --- switches ---------------------------------------------------------------------

    def name_of(self, datapath: Any) -> str | None:
        switch = self.topology.switch_by_dpid(datapath.id)
        return None if switch is None else switch.name

    def switch_connected(self, datapath: Any) -> str | None:
        """A switch (re)connected: clean slate of our entries, then its full expected state."""
        name = self.name_of(datapath)
        if name is None:
            log.warning("switch %016x is not in the configuration; leaving it alone", datapath.id)
            return None
        with self.service.lock:  # a consistent snapshot, and no plan change slips in between
            plan = self.service.manager.expected_plan()
            with self.lock:
                self.datapaths[name] = datapath
                for message in render.delete_ours(datapath):
                    self._send(datapath, message)
                batch = full_state(plan, name)
                batch = SwitchBatch(meter_adds=batch.meter_adds,
                                    flow_adds=batch.flow_adds + tuple(self.best_effort.base_entries(name)),
                                    classes=batch.classes)
                self._send_batch(name, datapath, batch, self._calls_in(batch))
                for key in [k for k in self._classes_applied if k[0] == name]:
                    del self._classes_applied[key]   # OVS drops qdiscs on restart: apply again
        log.info("switch %s (%016x) connected: %d flows, %d meters", name, datapath.id,
                 len(batch.flow_adds), len(batch.meter_adds))
        return name

    def switch_gone(self, datapath: Any) -> None:
        name = self.name_of(datapath)
        gone = False
        with self.lock:
            if name is not None and self.datapaths.get(name) is datapath:
                gone = True
                del self.datapaths[name]
                for call_id, install in self._installs.items():
                    if name in install.waiting:
                        self._failures.append((call_id, f"switch {name} disconnected during install"))
        if gone:
            assert name is not None
            self._observe(lambda survey: survey.switch_gone(name))

    def ports_described(self, datapath: Any, ports: dict[int, PortInfo]) -> None:
        """Port numbers, names, speeds and states are known: the per-port classes can be
        applied, and the survey checks the configured links against them."""
        name = self.name_of(datapath)
        if name is None:
            return
        with self.lock:
            self.port_names[name] = {number: info.name for number, info in ports.items()}
            self._apply_classes(name)
        self._observe(lambda survey: survey.ports_described(name, ports))

    def port_changed(self, datapath: Any, port_no: int, info: PortInfo | None, added: bool = False) -> None:
        """A port was added (``added``) or modified, or deleted (``info`` None)."""
        name = self.name_of(datapath)
        if name is None:
            return
        with self.lock:
            if info is None:
                self.port_names.get(name, {}).pop(port_no, None)
            else:
                self.port_names.setdefault(name, {})[port_no] = info.name
            if added:  # OVS resets the qdisc of a port it (re)adds
                self._classes_applied.pop((name, port_no), None)
                self._apply_classes(name)
        self._observe(lambda survey: survey.port_changed(name, port_no, info))

    # --- LLDP (ryu.topology, when dataplane.discovery is on) ------------------------------

    def link_heard(self, src_dpid: int, src_port: int, dst_dpid: int, dst_port: int) -> None:
        ends = self._ends(src_dpid, src_port, dst_dpid, dst_port)
        if ends is not None:
            self._observe(lambda survey: survey.link_heard(*ends))

    def link_lost(self, src_dpid: int, src_port: int, dst_dpid: int, dst_port: int) -> None:
        ends = self._ends(src_dpid, src_port, dst_dpid, dst_port)
        if ends is not None:
            self._observe(lambda survey: survey.link_lost(*ends))

    def _ends(self, src_dpid: int, src_port: int, dst_dpid: int,
              dst_port: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
        src, dst = self.topology.switch_by_dpid(src_dpid), self.topology.switch_by_dpid(dst_dpid)
        if src is None or dst is None:
            log.warning("LLDP: link %016x:%d -> %016x:%d touches a switch not in the configuration; ignored",
                        src_dpid, src_port, dst_dpid, dst_port)
            return None
        return (src.name, src_port), (dst.name, dst_port)

    def _observe(self, update: Callable[[Survey], list[Transition]]) -> None:
        """Fold an observation into the service's survey; say what changed; keep the flood
        tree off the switch-to-switch ports LLDP found."""
        transitions = self.service.observe(update)
        for transition in transitions:
            (log.warning if transition.worse else log.info)("%s", transition)
        if not transitions:
            return
        with self.service.lock:
            ports = self.service.survey.link_ports()
        with self.lock:
            for mac in self.best_effort.set_discovered_link_ports(ports):
                for entry in self.best_effort.unlearned_entries(mac):
                    datapath = self.datapaths.get(entry.switch)
                    if datapath is not None:
                        self._send(datapath, render.flow_delete(datapath, entry))

    # --- plan changes (service listener) ----------------------------------------------

    def on_changes(self, changes: Changes) -> None:
        if not changes.plan:
            return
        with self.lock:
            for name, batch in batches(changes.plan).items():
                for entry in batch.class_removes:
                    self._remove_class(entry)
                datapath = self.datapaths.get(name)
                calls = self._calls_in(batch)
                if datapath is None:
                    for call_id in calls:
                        self._failures.append((call_id, f"switch {name} is not connected"))
                    for entry in batch.classes:
                        self.classes[(entry.switch, entry.port)] = entry
                    continue
                self._send_batch(name, datapath, batch, calls)

    def _calls_in(self, batch: SwitchBatch) -> set[str]:
        calls = set()
        for entry in batch.flow_adds:
            kind = parse_cookie(entry.cookie)
            if kind is not None and kind[0] is CookieKind.CALL:
                call = self.service.manager.call_by_serial(kind[1])
                if call is not None:
                    calls.add(call.call_id)
        return calls

    def _send_batch(self, name: str, datapath: Any, batch: SwitchBatch, calls: set[str]) -> None:
        now = self.clock()
        for entry in batch.flow_removes:
            self._send(datapath, render.flow_delete(datapath, entry))
        for entry in batch.meter_removes:
            self._send(datapath, render.meter_mod(datapath, entry, add=False))
        for entry in batch.meter_adds:
            self._send(datapath, render.meter_mod(datapath, entry))
        for entry in batch.meter_modifies:
            self._send(datapath, render.meter_mod(datapath, entry, modify=True))
        for entry in batch.flow_adds:
            xid = self._send(datapath, render.flow_add(datapath, entry))
            kind = parse_cookie(entry.cookie)
            if kind is not None and kind[0] is CookieKind.CALL:
                call = self.service.manager.call_by_serial(kind[1])
                if call is not None:
                    self._xid_calls[(name, xid)] = call.call_id
        for entry in batch.classes:
            self.classes[(entry.switch, entry.port)] = entry
        if batch.classes or batch.class_removes:
            self._apply_classes(name)
        barrier = datapath.ofproto_parser.OFPBarrierRequest(datapath)
        xid = self._send(datapath, barrier)
        self.stats["barriers"] += 1
        self._barriers[(name, xid)] = set(calls)
        for call_id in calls:
            install = self._installs.setdefault(call_id, _Install(now))
            install.waiting.add(name)

    def _send(self, datapath: Any, message: Any) -> int:
        datapath.set_xid(message)
        datapath.send_msg(message)
        kind = type(message).__name__
        if kind == "OFPFlowMod":
            self.stats["flow_mods"] += 1
        elif kind == "OFPMeterMod":
            self.stats["meter_mods"] += 1
        return message.xid

    # --- replies ------------------------------------------------------------------------

    def barrier_reply(self, datapath: Any, xid: int) -> None:
        name = self.name_of(datapath)
        confirmed = []
        with self.lock:
            calls = self._barriers.pop((name, xid), None)
            if not calls:
                return
            now = self.clock()
            for call_id in calls:
                install = self._installs.get(call_id)
                if install is None:
                    continue
                install.waiting.discard(name)
                if not install.waiting:
                    del self._installs[call_id]
                    confirmed.append((call_id, now - install.started))
            for key in [k for k in self._xid_calls if k[0] == name and k[1] < xid]:
                del self._xid_calls[key]
        for call_id, seconds in confirmed:
            self.service.confirm_flows(call_id)
            self.observe_install(seconds)

    def error(self, datapath: Any, xid: int, text: str) -> None:
        name = self.name_of(datapath)
        self.stats["errors"] += 1
        with self.lock:
            call_id = self._xid_calls.pop((name, xid), None)
            if call_id is not None:
                self._failures.append((call_id, f"flow-install-failed on {name}: {text}"))
        log.warning("OpenFlow error from %s (xid %d): %s", name, xid, text)

    def flow_removed(self, datapath: Any, cookie_value: int, idle_timeout: bool, match: dict[str, Any]) -> None:
        """A call's ingress flow idled out: its media stopped; release the call."""
        kind = parse_cookie(cookie_value)
        if not idle_timeout or kind is None or kind[0] is not CookieKind.CALL:
            return
        with self.service.lock:
            call = self.service.manager.call_by_serial(kind[1])
            # The serial may have been reused since: only release the call whose media this was.
            if call is None or not _matches_call_media(call, match):
                return
            self.service.release(call.call_id, cause="media-idle")

    def tick(self) -> None:
        """Release calls whose install failed or timed out. Call periodically."""
        now = self.clock()
        with self.lock:
            failures, self._failures = self._failures, []
            for call_id, install in list(self._installs.items()):
                if now - install.started > self.barrier_timeout_s:
                    failures.append((call_id, f"flow-install-timeout: no barrier from "
                                              f"{', '.join(sorted(install.waiting))} in {self.barrier_timeout_s:g} s"))
            for call_id, _ in failures:
                self._installs.pop(call_id, None)
        for call_id, reason in failures:
            if self.service.release(call_id, cause=reason) is not None:
                log.warning("call %s released: %s", call_id, reason)

    # --- per-port classes -----------------------------------------------------------------

    def _remove_class(self, entry: PortClass) -> None:
        key = (entry.switch, entry.port)
        self.classes.pop(key, None)
        if self._classes_applied.pop(key, None) is not None:
            interface = self.port_names.get(entry.switch, {}).get(entry.port)
            if interface is not None and self.class_mode == "tc":
                tc_classes.run(tc_classes.remove_commands(interface), self.tc_runner)
            elif interface is not None and self.class_mode == "ovsdb":
                ovsdb_queues.remove(interface, self.tc_runner)

    def _apply_classes(self, name: str) -> None:
        if self.class_mode not in ("tc", "ovsdb"):
            return
        ports = self.port_names.get(name)
        if not ports:
            return
        for (switch, port), entry in list(self.classes.items()):
            if switch != name or self._classes_applied.get((switch, port)) == entry:
                continue
            interface = ports.get(port)
            if interface is None:
                continue
            if self.class_mode == "ovsdb":
                errors = ovsdb_queues.apply(interface, entry.capacity_kbps, entry.min_kbps, entry.queue_id,
                                            self.tc_runner)
            else:
                spec = tc_classes.ClassSpec(interface, entry.capacity_kbps, entry.min_kbps, entry.dscps)
                previous = self._classes_applied.get((switch, port))
                commands = (tc_classes.rate_commands(spec) if previous is not None and previous.dscps == entry.dscps
                            else tc_classes.install_commands(spec))
                errors = tc_classes.run(commands, self.tc_runner)
            if not errors:
                self._classes_applied[(switch, port)] = entry


def _matches_call_media(call: Any, match: dict[str, Any]) -> bool:
    if call.caller_media is None or call.callee_media is None:
        return False
    legs = {(call.caller_media.ip, call.callee_media.ip, call.callee_media.port),
            (call.callee_media.ip, call.caller_media.ip, call.caller_media.port)}
    return (match.get("ipv4_src"), match.get("ipv4_dst"), match.get("udp_dst")) in legs

