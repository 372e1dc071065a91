"""Keeps the connected switches in step with the plan, and confirms calls by barrier.

Framework-agnostic: it is handed datapath objects (ryu's or os-ken's) and calls only
``send_msg`` / ``set_xid`` on them. The app feeds it events; the service feeds it plan
changes (as a listener, under the service's lock).

A call's flows count only once every switch that received them has answered a barrier
sent after them; then ``service.flows_installed``. An OpenFlow error for one of the
call's messages or a switch that is not connected reports ``flows_failed`` (the core
releases the call; the install timeout is the core's own timer). A released call's
flows are gone once every switch that received their removal answered a barrier:
``flows_removed`` (its tags may be reused).
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
class _Pending:
    """A call whose flows (``install``) or whose flows' removal (not ``install``) are on their way."""

    install: bool
    started: float
    waiting: set[str] = field(default_factory=set)   # switches whose barrier is outstanding


class Fabric:
    def __init__(self, service: MamService, *, class_mode: str = "tc", clock: Callable[[], float],
                 observe_install: Callable[[float], None] | None = None,
                 tc_runner: tc_classes.Runner | None = None, wake: Callable[[], None] = lambda: None) -> None:
        self.service = service
        self.topology: Topology = service.manager.topology
        self.class_mode = class_mode
        self.clock = clock
        self.wake = wake      # asks the shell's timer loop to run tick() soon
        self.observe_install = observe_install or (lambda seconds: None)
        self.tc_runner = tc_runner
        self.best_effort = BestEffort(self.topology)
        self.lock = threading.RLock()
        self.datapaths: dict[str, Any] = {}               # switch name -> datapath
        self.port_names: dict[str, dict[int, str]] = {}   # switch name -> port no -> interface
        self.terminals: dict[tuple[str, str], int] = {}    # (community, IP) -> access port, as learned
        self.classes: dict[tuple[str, int], PortClass] = {}
        self._classes_applied: dict[tuple[str, int], PortClass] = {}
        self._pending: dict[int, _Pending] = {}           # call serial -> install or removal in progress
        self._barriers: dict[tuple[str, int], set[int]] = {}  # (switch, xid) -> call serials
        self._xid_calls: dict[tuple[str, int], int] = {}   # (switch, xid of a flow-mod) -> call serial
        self._failures: list[tuple[int, str]] = []         # (serial, reason), reported by tick()
        self._removed: list[int] = []                      # serials whose flows are gone, reported by tick()
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
                for serial, pending in list(self._pending.items()):
                    if name not in pending.waiting:
                        continue
                    if pending.install:
                        self._fail(serial, f"flow-install-failed: switch {name} disconnected during install")
                    else:          # nothing left to remove there until it reconnects (and is reconciled)
                        pending.waiting.discard(name)
                        if not pending.waiting:
                            del self._pending[serial]
                            self._removed.append(serial)
                            self.wake()
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
        released = {r.serial for r in changes.released}
        with self.lock:
            for serial in released:        # a release cancels an install still on its way
                pending = self._pending.get(serial)
                if pending is not None and pending.install:
                    del self._pending[serial]
            for name, batch in batches(changes.plan).items():
                for entry in batch.class_removes:
                    self._remove_class(entry)
                datapath = self.datapaths.get(name)
                calls = self._calls_in(batch)
                if datapath is None:
                    for serial in calls - released:
                        self._fail(serial, f"flow-install-failed: switch {name} is not connected")
                    for entry in batch.classes:
                        self.classes[(entry.switch, entry.port)] = entry
                    continue
                self._send_batch(name, datapath, batch, calls, released)
            for serial in released:       # nothing of it was on a switch (or the removal is already done)
                if serial not in self._pending:
                    self._removed.append(serial)
                    self.wake()

    def _fail(self, serial: int, reason: str) -> None:
        self._pending.pop(serial, None)
        self._failures.append((serial, reason))
        self.wake()

    @staticmethod
    def _calls_in(batch: SwitchBatch) -> set[int]:
        """The serials of the calls whose flows this batch adds or removes."""
        calls = set()
        for entry in batch.flow_adds + batch.flow_removes:
            kind = parse_cookie(entry.cookie)
            if kind is not None and kind[0] is CookieKind.CALL:
                calls.add(kind[1])
        return calls

    def _send_batch(self, name: str, datapath: Any, batch: SwitchBatch, calls: set[int],
                    released: set[int] = frozenset()) -> None:  # type: ignore[assignment]
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
                self._xid_calls[(name, xid)] = kind[1]
        for entry in batch.classes:
            self.classes[(entry.switch, entry.port)] = entry
        if batch.classes or batch.class_removes:
            self._apply_classes(name)
        barrier = datapath.ofproto_parser.OFPBarrierRequest(datapath)
        xid = self._send(datapath, barrier)
        self.stats["barriers"] += 1
        self._barriers[(name, xid)] = set(calls)
        for serial in calls:
            install = serial not in released
            pending = self._pending.get(serial)
            if pending is None or pending.install != install:
                pending = self._pending[serial] = _Pending(install, now)
            pending.waiting.add(name)

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
        done: list[tuple[int, _Pending]] = []
        with self.lock:
            calls = self._barriers.pop((name, xid), None)
            if not calls:
                return
            for serial in calls:
                pending = self._pending.get(serial)
                if pending is None:
                    continue
                pending.waiting.discard(name)
                if not pending.waiting:
                    del self._pending[serial]
                    done.append((serial, pending))
            for key in [k for k in self._xid_calls if k[0] == name and k[1] < xid]:
                del self._xid_calls[key]
        now = self.clock()
        for serial, pending in done:
            if pending.install:
                self.service.flows_installed(serial)
                self.observe_install(now - pending.started)
            else:
                self.service.flows_removed(serial)

    def error(self, datapath: Any, xid: int, text: str) -> None:
        name = self.name_of(datapath)
        self.stats["errors"] += 1
        with self.lock:
            serial = self._xid_calls.pop((name, xid), None)
            if serial is not None:
                self._fail(serial, f"flow-install-failed on {name}: {text}")
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
            self.service.release_by_serial(call.serial, cause="media-idle")

    def tick(self) -> None:
        """Report what was found while the service's lock was held (as a listener):
        failed installs and removals with nothing to wait for. Runs when ``wake`` asked."""
        with self.lock:
            failures, self._failures = self._failures, []
            removed, self._removed = self._removed, []
        for serial in removed:
            self.service.flows_removed(serial)
        for serial, reason in failures:
            released = self.service.flows_failed(serial, reason)
            if released is not None:
                log.warning("call %s released: %s", released.call_id, reason)

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
    udp_dst = match.get("udp_dst")
    port = udp_dst[0] if isinstance(udp_dst, tuple) else udp_dst     # RTP and RTCP under one mask
    src, dst = (match.get("ipv4_src"), match.get("ipv4_dst")) if "ipv4_src" in match else (
        match.get("ipv6_src"), match.get("ipv6_dst"))
    return (src, dst, port) in legs or (src, dst, (port or 0) - 1) in legs     # an exact RTCP entry
