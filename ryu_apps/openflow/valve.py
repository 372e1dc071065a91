"""The data-plane valve: ``(switch event | plan change, now) -> actions``.

Pure, as FAUCET's valve is: no framework import, no clock, no I/O. The shell
(``shell.py`` under ``mam_app.py``) decodes each OpenFlow event into a value
(``events.py``), hands it over with ``now`` and performs what comes back
(``actions.py``): OpenFlow messages as data with xids allocated here, per-port class
updates, and reports to the core (flows installed, failed or removed by call serial,
calls whose media idled, terminals heard on access ports, what the switches say about
their ports and links).

It keeps the plan it was given (the core's ``expected_plan()`` at start, then every
committed plan diff) per switch, so that

* a call's flows count only once every switch that got them answered a barrier sent
  after them (``Installed``); an OpenFlow error for one of them, or a switch that is not
  there to take them, is ``Failed``; a released call's flows are ``Removed`` once every
  switch confirmed their deletion (``confirm.py``);
* a (re)connecting switch is read first (flows by our cookie prefix, meters) and sent
  only the difference (``reconcile.py``): no wipe-and-reinstall, no gap in media;
* an entry the switch lost that the plan still wants is put back (``idle.py`` for the
  idle policy of call ingress flows);
* best-effort learning (``learning.py``) and packet-ins are handled here under the same
  discipline: one event in, messages and reports out.

A switch where this controller is a slave (clusters) is kept in the plan but not written
to; it is reconciled when the role allows writing again. In a cluster (``responsible`` set,
docs/cluster.md) a switch another controller masters is that controller's business: a
call's flows there neither wait for it nor fail for want of it, and connections start as
slave until the switch confirms the role this controller asked for (``want_role``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..core.flowplan import (COOKIE_PREFIX, COOKIE_PREFIX_MASK, CookieKind, Entry, FlowEntry, MeterEntry, PlanDiff,
                             PortClass, parse_cookie)
from ..core.changes import Changes
from ..core.network import Topology
from ..core.survey import PortInfo
from . import events as ev
from .actions import (Action, ApplyClass, Failed, Installed, LearnTerminal, ObserveLink, ObservePort, ObservePorts,
                      ObserveSwitchGone, Release, Removed, Send)
from .batch import SwitchBatch, batch_for
from .idle import CallIngress, IngressRef, MediaIdle
from .learning import BestEffort
from .messages import (Barrier, FlowAdd, FlowDelete, FlowStat, FlowStatsRequest, Message, MeterAdd,
                       MeterConfigRequest, MeterDelete, PacketOut, PortDescRequest, RoleRequest)
from .reconcile import FlowKey, canonical, flow_key, reconcile
from .staging import make_before_break

log = logging.getLogger(__name__)

ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF
ETH_LLDP = 0x88CC
SYNC = -1            # a call waits for a switch's reconcile (its barrier xid is not known yet)


@dataclass
class Pending:
    """A call whose flows (``install``) or whose flows' removal are on their way:
    ``waiting`` maps each switch still to answer to the xid of the barrier that answers."""

    install: bool
    started: float
    waiting: dict[str, int] = field(default_factory=dict)


@dataclass
class BarrierWait:
    serials: list[int]
    flow_xids: list[int]
    sync: bool = False


@dataclass
class SwitchState:
    """One connection to one switch."""

    name: str
    conn: int
    connected_at: float
    role: ev.Role = ev.Role.EQUAL
    syncing: bool = True
    next_xid: int = 0
    ports: dict[int, PortInfo] = field(default_factory=dict)
    described: bool = False
    sync_xids: dict[str, int] = field(default_factory=dict)      # "flows" / "meters" -> stats request xid
    held_flows: list[FlowStat] = field(default_factory=list)
    held_meters: list[MeterEntry] = field(default_factory=list)
    barriers: dict[int, BarrierWait] = field(default_factory=dict)
    xid_serial: dict[int, int] = field(default_factory=dict)     # xid of a call's flow-add -> serial
    idle_queries: dict[int, tuple[int, FlowKey]] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        return self.role.writes and not self.syncing


@dataclass(frozen=True)
class Reconciled:
    """What a switch's reconcile found and did."""

    switch: str
    seconds: float
    unchanged: int
    flows_added: int
    flows_deleted: int
    meters_changed: int


class Valve:
    def __init__(self, topology: Topology, *, media_idle: MediaIdle = MediaIdle.BOTH,
                 idle_timeout_s: int = 60) -> None:
        self.topology = topology
        self.media_idle = media_idle
        self.idle_timeout_s = idle_timeout_s
        self.best_effort = BestEffort(topology)
        self.flows: dict[str, dict[FlowKey, FlowEntry]] = {s.name: {} for s in topology.switches}
        self.meters: dict[str, dict[int, MeterEntry]] = {s.name: {} for s in topology.switches}
        self.classes: dict[tuple[str, int], PortClass] = {}
        self.switches: dict[str, SwitchState] = {}
        self._conns: dict[int, SwitchState] = {}
        self.pending: dict[int, Pending] = {}
        self._ingress = CallIngress()
        self._heard: dict[tuple[str, str], int] = {}
        self.reconciled: list[Reconciled] = []            # the last 64
        self.reconcile_counts: dict[str, int] = {}        # reconciles so far, by switch name
        self.counters: dict[str, int] = {"flow_mods": 0, "meter_mods": 0, "barriers": 0, "errors": 0,
                                         "packet_ins": 0, "restored": 0, "staged_changes": 0,
                                         "removals_skipped": 0}
        #: Make-before-break: the stages of a plan change still to send, and the barriers
        #: (switch, xid) the stage in flight waits for.
        self._staged: list[PlanDiff] = []
        self._staged_released: frozenset[int] = frozenset()
        self._stage_waits: set[tuple[str, int]] = set()
        #: Clusters: the switches this controller masters (None: all of them, no cluster), and
        #: the role (and generation id) asked of each switch.
        self.responsible: frozenset[str] | None = None
        self.wanted_roles: dict[str, tuple[ev.Role, int]] = {}
        for switch in topology.switches:
            for entry in self.best_effort.base_entries(switch.name):
                self.flows[switch.name][flow_key(entry)] = entry

    # --- the plan ---------------------------------------------------------------------------

    def load(self, plan: Iterable[Entry]) -> None:
        """The whole expected plan (at start, before any switch connected)."""
        self.apply_plan(PlanDiff(add=tuple(plan)), 0.0)

    def apply_plan(self, plan: PlanDiff, now: float, released: frozenset[int] = frozenset()) -> list[Action]:
        """Send a plan change. One that both adds and takes away (an aggregate moved or
        resized, a call's flows moved) goes make-before-break, in stages each sent once
        every switch confirmed the one before (barriers): new entries first, then the
        entries changed in place (the ingress switch-over, meters modified, never deleted),
        then what is no longer needed. A stage still waiting when the next plan change
        comes is sent at once first, so plan changes never overtake one another."""
        actions = self._flush_stages(now)
        stages = make_before_break(plan, self.flows, self.meters, self.classes)
        if len(stages) > 1:
            self.counters["staged_changes"] += 1
        for stage in stages[:-1]:
            self._staged.append(stage)
        last = stages[-1] if stages else plan
        if self._staged:
            self._staged.append(last)
            self._staged_released = released
            return actions + self._next_stage(now)
        return actions + self._apply(last, now, released)

    def _next_stage(self, now: float) -> list[Action]:
        """Send the next waiting stage; it waits on its own barriers before the one after."""
        actions: list[Action] = []
        while self._staged and not self._stage_waits:
            stage = self._staged.pop(0)
            released = self._staged_released if not self._staged else frozenset()
            before = {(name, xid) for name, switch in self.switches.items() for xid in switch.barriers}
            actions += self._apply(stage, now, released)
            self._stage_waits = {(name, xid) for name, switch in self.switches.items()
                                 for xid in switch.barriers} - before
        return actions

    def _flush_stages(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._staged:
            self._stage_waits = set()
            actions += self._next_stage(now)
        self._stage_waits = set()
        return actions

    def _stage_confirmed(self, name: str, xid: int | None, now: float) -> list[Action]:
        """A barrier of the stage in flight came back (or its switch left: ``xid`` None)."""
        if not self._stage_waits:
            return []
        self._stage_waits = {(n, x) for n, x in self._stage_waits if n != name or (xid is not None and x != xid)}
        return self._next_stage(now) if not self._stage_waits else []

    def _apply(self, plan: PlanDiff, now: float, released: frozenset[int] = frozenset()) -> list[Action]:
        actions: list[Action] = []
        for serial in released:              # a release cancels an install still on its way
            pending = self.pending.get(serial)
            if pending is not None and pending.install:
                del self.pending[serial]
        switches = sorted({e.switch for e in plan.add} | {e.switch for e in plan.remove})
        installs: set[int] = set()
        for name in switches:
            batch = batch_for(plan.for_switch(name))
            self._update_view(name, batch)
            calls = _calls_in(batch)
            installs |= {kind[1] for e in batch.flow_adds
                         if (kind := parse_cookie(e.cookie)) is not None and kind[0] is CookieKind.CALL} - released
            switch = self.switches.get(name)
            if self.responsible is not None and name not in self.responsible:
                continue                     # another controller masters it (it is reconciled on a takeover)
            if switch is None:
                for serial in sorted(calls - released):
                    actions.append(self._fail(serial, f"flow-install-failed: switch {name} is not connected"))
            elif not switch.writable:
                for serial in calls:
                    self._pend(serial, serial not in released, name, SYNC, now)
            else:
                self._send_batch(switch, batch, calls, released, now, actions)
            for port_class in batch.classes:
                actions += self._class_update(name, port_class.port)
            for port_class in batch.class_removes:
                actions += self._class_update(name, port_class.port)
        for serial in sorted(released):      # nothing of it was on a connected switch
            if serial not in self.pending:
                actions.append(Removed(serial))
        failed = {a.serial for a in actions if isinstance(a, Failed)}
        for serial in sorted(installs - failed):
            if serial not in self.pending:   # every switch it needs is another controller's
                actions.append(Installed(serial, 0.0))
        return actions

    def want_role(self, name: str, role: ev.Role, generation: int) -> list[Action]:
        """The cluster decided this controller's role for switch ``name`` (master: it is
        responsible for it): ask the switch now if it is connected, else when it connects.
        The valve writes only once the switch's reply says so (RoleChanged)."""
        self.wanted_roles[name] = (role, generation)
        switch = self.switches.get(name)
        actions: list[Action] = []
        if switch is not None:
            self._send(switch, RoleRequest(role.value, generation), actions)
            if not role.writes and switch.role.writes:
                actions += self._role_changed(switch, role, 0.0)   # stop writing at once, not at the reply
        if role is ev.Role.MASTER:
            return actions
        for serial, pending in list(self.pending.items()):     # no longer this controller's to confirm
            if pending.waiting.pop(name, None) is not None and not pending.waiting:
                del self.pending[serial]
                actions.append(Installed(serial, 0.0) if pending.install else Removed(serial))
        return actions

    def plan_changed(self, changes: Changes, now: float) -> list[Action]:
        released = frozenset(r.serial for r in changes.released)
        actions = self.apply_plan(changes.plan, now, released)
        for serial in sorted(changes.carried - released):       # another call's identical flows carry it
            if serial not in self.pending:
                actions.append(Installed(serial, 0.0))
        return actions

    def _update_view(self, name: str, batch: SwitchBatch) -> None:
        flows, meters = self.flows[name], self.meters[name]
        for entry in batch.flow_removes:
            key = flow_key(entry)
            if flows.get(key) == entry:
                del flows[key]
                self._ingress.dropped(name, key, entry)
        for entry in batch.flow_adds:
            key = flow_key(entry)
            replaced = flows.get(key)
            if replaced is not None and replaced != entry:      # the switch replaces it: forget it too
                self._ingress.dropped(name, key, replaced)
            flows[key] = entry
            self._ingress.held(name, key, entry)
        for meter in batch.meter_removes:
            meters.pop(meter.meter_id, None)
        for meter in batch.meter_adds + batch.meter_modifies:
            meters[meter.meter_id] = meter
        for port_class in batch.class_removes:
            self.classes.pop((name, port_class.port), None)
        for port_class in batch.classes:
            self.classes[(name, port_class.port)] = port_class

    # --- sending ------------------------------------------------------------------------------

    def _send(self, switch: SwitchState, message: Message, actions: list[Action]) -> int:
        switch.next_xid = (switch.next_xid + 1) & 0xFFFF_FFFF
        xid = switch.next_xid
        if isinstance(message, (FlowAdd, FlowDelete)):
            self.counters["flow_mods"] += 1
        elif isinstance(message, (MeterAdd, MeterDelete)):
            self.counters["meter_mods"] += 1
        actions.append(Send(switch.name, switch.conn, xid, message))
        return xid

    def _send_batch(self, switch: SwitchState, batch: SwitchBatch, calls: set[int], released: frozenset[int],
                    now: float, actions: list[Action], sync: bool = False) -> int:
        """The batch's messages in a safe order, then one barrier that answers for ``calls``."""
        flow_xids = []
        for entry in batch.flow_removes:
            self._send(switch, FlowDelete(entry), actions)
        for meter in batch.meter_removes:
            self._send(switch, MeterDelete(meter.meter_id), actions)
        for meter in batch.meter_adds:
            self._send(switch, MeterAdd(meter), actions)
        for meter in batch.meter_modifies:
            self._send(switch, MeterAdd(meter, modify=True), actions)
        for entry in batch.flow_adds:
            xid = self._send(switch, FlowAdd(entry), actions)
            kind = parse_cookie(entry.cookie)
            if kind is not None and kind[0] is CookieKind.CALL:
                switch.xid_serial[xid] = kind[1]
                flow_xids.append(xid)
        barrier = self._send(switch, Barrier(), actions)
        self.counters["barriers"] += 1
        switch.barriers[barrier] = BarrierWait(sorted(calls), flow_xids, sync)
        for serial in calls:
            self._pend(serial, serial not in released, switch.name, barrier, now)
        return barrier

    def _pend(self, serial: int, install: bool, switch: str, barrier: int, now: float) -> None:
        pending = self.pending.get(serial)
        if pending is None or pending.install != install:
            pending = self.pending[serial] = Pending(install, now)
        pending.waiting[switch] = barrier

    def _fail(self, serial: int, reason: str) -> Failed:
        self.pending.pop(serial, None)
        return Failed(serial, reason)

    # --- events -------------------------------------------------------------------------------

    def handle(self, event: ev.Event, now: float) -> list[Action]:
        """One switch event in, what to do about it out."""
        if isinstance(event, ev.SwitchConnected):
            return self._connected(event, now)
        if isinstance(event, ev.LinkHeard):
            return self._link(event)
        if isinstance(event, ev.LinkPortsChanged):
            return self._link_ports(event)
        switch = self._conns.get(event.conn)
        if switch is None:
            return []            # a late event from a connection that is gone (or a switch we do not know)
        if isinstance(event, ev.SwitchGone):
            return self._gone(switch)
        if isinstance(event, ev.BarrierReply):
            return self._barrier_reply(switch, event.xid, now)
        if isinstance(event, ev.ErrorReply):
            return self._error(switch, event)
        if isinstance(event, ev.FlowRemoved):
            return self._flow_removed(switch, event)
        if isinstance(event, ev.PacketIn):
            return self._packet_in(switch, event)
        if isinstance(event, ev.FlowStatsReply):
            return self._flow_stats(switch, event, now)
        if isinstance(event, ev.MeterConfigReply):
            return self._meter_config(switch, event, now)
        if isinstance(event, ev.PortsDescribed):
            return self._ports_described(switch, event)
        if isinstance(event, ev.PortChanged):
            return self._port_changed(switch, event)
        if isinstance(event, ev.RoleChanged):
            return self._role_changed(switch, event.role, now)
        raise TypeError(f"the valve has no handler for {type(event).__name__}")

    def _connected(self, event: ev.SwitchConnected, now: float) -> list[Action]:
        known = self.topology.switch_by_dpid(event.dpid)
        if known is None:
            log.warning("switch %016x is not in the configuration; leaving it alone", event.dpid)
            return []
        actions: list[Action] = []
        old = self.switches.get(known.name)
        if old is not None:
            actions += self._gone(old)
        switch = SwitchState(known.name, event.conn, now)
        if self.responsible is not None:
            switch.role = ev.Role.SLAVE      # until the switch confirms what this controller asks
        self.switches[known.name] = switch
        self._conns[event.conn] = switch
        wanted = self.wanted_roles.get(known.name)
        if wanted is not None:
            self._send(switch, RoleRequest(wanted[0].value, wanted[1]), actions)
        self._send(switch, PortDescRequest(), actions)
        self._start_sync(switch, actions)
        return actions

    def _start_sync(self, switch: SwitchState, actions: list[Action]) -> None:
        """Read what the switch holds; the difference is sent when both replies are in."""
        switch.syncing = True
        switch.held_flows, switch.held_meters = [], []
        switch.sync_xids = {
            "flows": self._send(switch, FlowStatsRequest(COOKIE_PREFIX, COOKIE_PREFIX_MASK), actions),
            "meters": self._send(switch, MeterConfigRequest(), actions),
        }

    def _gone(self, switch: SwitchState) -> list[Action]:
        actions: list[Action] = []
        name = switch.name
        self._conns.pop(switch.conn, None)
        if self.switches.get(name) is switch:
            del self.switches[name]
        for serial, pending in list(self.pending.items()):
            if name not in pending.waiting:
                continue
            if pending.install:
                actions.append(self._fail(serial, f"flow-install-failed: switch {name} disconnected during install"))
            else:              # nothing left to remove there until it reconnects (and is reconciled)
                del pending.waiting[name]
                if not pending.waiting:
                    del self.pending[serial]
                    actions.append(Removed(serial))
        actions.append(ObserveSwitchGone(name))
        return actions + self._stage_confirmed(name, None, 0.0)

    def _barrier_reply(self, switch: SwitchState, xid: int, now: float) -> list[Action]:
        wait = switch.barriers.pop(xid, None)
        if wait is None:
            return []
        return self._barrier_confirms(switch, wait, xid, now) + self._stage_confirmed(switch.name, xid, now)

    def _barrier_confirms(self, switch: SwitchState, wait: BarrierWait, xid: int, now: float) -> list[Action]:
        for flow_xid in wait.flow_xids:
            switch.xid_serial.pop(flow_xid, None)
        actions: list[Action] = []
        for serial in wait.serials:
            pending = self.pending.get(serial)
            if pending is None or pending.waiting.get(switch.name) != xid:
                continue           # a later barrier answers for it (or it was cancelled)
            del pending.waiting[switch.name]
            if not pending.waiting:
                del self.pending[serial]
                actions.append(Installed(serial, now - pending.started) if pending.install else Removed(serial))
        return actions

    def _error(self, switch: SwitchState, event: ev.ErrorReply) -> list[Action]:
        self.counters["errors"] += 1
        serial = switch.xid_serial.pop(event.xid, None)
        log.warning("OpenFlow error from %s (xid %d): type %d code %d%s", switch.name, event.xid, event.type,
                    event.code, "" if serial is None else f" (call serial {serial})")
        if serial is None:
            return []
        return [self._fail(serial, f"flow-install-failed on {switch.name}: type {event.type} code {event.code}")]

    # --- reconcile ------------------------------------------------------------------------------

    def _flow_stats(self, switch: SwitchState, event: ev.FlowStatsReply, now: float) -> list[Action]:
        if event.xid in switch.idle_queries:
            return self._idle_answer(switch, event)
        if not switch.syncing or event.xid != switch.sync_xids.get("flows"):
            return []
        switch.held_flows.extend(event.flows)
        if not event.more:
            del switch.sync_xids["flows"]
        return self._maybe_finish_sync(switch, now)

    def _meter_config(self, switch: SwitchState, event: ev.MeterConfigReply, now: float) -> list[Action]:
        if not switch.syncing or event.xid != switch.sync_xids.get("meters"):
            return []
        switch.held_meters.extend(event.meters)
        if not event.more:
            del switch.sync_xids["meters"]
        return self._maybe_finish_sync(switch, now)

    def _maybe_finish_sync(self, switch: SwitchState, now: float) -> list[Action]:
        if switch.sync_xids or not switch.role.writes:
            return []
        name = switch.name
        batch = reconcile(self.flows[name], self.meters[name], switch.held_flows, switch.held_meters,
                          keep=_soft)
        held = len(switch.held_flows)
        switch.held_flows, switch.held_meters = [], []
        switch.syncing = False
        waiting = {serial for serial, p in self.pending.items() if p.waiting.get(name) == SYNC}
        actions: list[Action] = []
        self._send_batch(switch, batch, waiting, frozenset(s for s in waiting if not self.pending[s].install),
                         now, actions, sync=True)
        result = Reconciled(name, now - switch.connected_at, len(self.flows[name]) - len(batch.flow_adds),
                            len(batch.flow_adds), len(batch.flow_removes),
                            len(batch.meter_adds) + len(batch.meter_modifies) + len(batch.meter_removes))
        self.reconciled.append(result)
        del self.reconciled[:-64]
        self.reconcile_counts[name] = self.reconcile_counts.get(name, 0) + 1
        log.info("switch %s reconciled: %d of ours held, %d flows added or replaced, %d deleted, %d meter changes",
                 name, held, result.flows_added, result.flows_deleted, result.meters_changed)
        for (class_switch, port) in sorted(self.classes):
            if class_switch == name:      # Open vSwitch drops qdiscs when it restarts
                actions += self._class_update(name, port)
        return actions

    def _role_changed(self, switch: SwitchState, role: ev.Role, now: float) -> list[Action]:
        could = switch.role.writes
        switch.role = role
        actions: list[Action] = []
        if role.writes and not could:
            self._start_sync(switch, actions)
        return actions

    # --- flows the switch lost ------------------------------------------------------------------

    def removal_unwanted(self, conn: int, cookie: int) -> bool:
        """Would :meth:`handle` ignore a flow-removed from ``conn`` with this cookie, whatever
        its match and reason? True for a call's entry that the switch no longer holds in the
        plan: most often the controller deleted it when the call ended (every call's ingress
        entries ask for a flow-removed, so each call ended sends some). The shell drops such
        messages before decoding them. A call entry still planned (deleted by someone else,
        or idled out) and any other entry go through :meth:`handle` as before."""
        switch = self._conns.get(conn)
        kind = parse_cookie(cookie)
        if switch is None or kind is None or kind[0] is not CookieKind.CALL or self._ingress.holds(kind[1], switch.name):
            return False
        self.counters["removals_skipped"] += 1
        return True

    def _flow_removed(self, switch: SwitchState, event: ev.FlowRemoved) -> list[Action]:
        key = (event.table, event.priority, canonical(event.match))
        entry = self.flows[switch.name].get(key)
        if entry is None or entry.cookie != event.cookie:
            return []             # not (or no longer) in the plan: we deleted it, or it is not ours
        kind = parse_cookie(entry.cookie)
        actions: list[Action] = []
        if (event.reason is ev.RemovedReason.IDLE and entry.notify_removed and kind is not None
                and kind[0] is CookieKind.CALL):
            serial = kind[1]
            if self.media_idle is MediaIdle.EITHER:
                return [Release(serial, f"media-idle: no media for {entry.idle_timeout} s in one direction")]
            if self.media_idle is MediaIdle.BOTH:
                ref = (switch.name, key)
                if self._ingress.idled(serial, ref):     # every ingress entry has idled at least once
                    self._check_idle(serial, ref, actions)
        if switch.writable:       # the plan still wants it: put it back
            xid = self._send(switch, FlowAdd(entry), actions)
            if kind is not None and kind[0] is CookieKind.CALL:
                # a switch that refuses it now (table full, say) fails the call, as at install:
                # the call would otherwise stay active with half its flows; the barrier after
                # it forgets the xid once the switch took it
                switch.xid_serial[xid] = kind[1]
                barrier = self._send(switch, Barrier(), actions)
                self.counters["barriers"] += 1
                switch.barriers[barrier] = BarrierWait([], [xid], False)
        return actions

    def _check_idle(self, serial: int, fresh: IngressRef, actions: list[Action]) -> None:
        """Did any of the call's other ingress entries carry media since it was put back?
        Ask each switch for their counters; the call goes only if every one says zero."""
        asked: set[IngressRef] = set()
        for ref in self._ingress.others(serial, fresh):
            name, key = ref
            switch = self.switches.get(name)
            entry = self.flows[name].get(key)
            if switch is None or entry is None or not switch.role.writes:
                continue          # not readable now: counted as idle
            xid = self._send(switch, FlowStatsRequest(entry.cookie, ALL_ONES_64, entry.table, entry.match), actions)
            switch.idle_queries[xid] = (serial, key)
            asked.add(ref)
        self._ingress.asked(serial, asked)
        if not asked:
            actions.append(self._idle_release(serial))

    def _idle_answer(self, switch: SwitchState, event: ev.FlowStatsReply) -> list[Action]:
        serial, key = switch.idle_queries.pop(event.xid)
        carried = any(flow_key(stat.entry) == key and stat.packet_count > 0 for stat in event.flows)
        return [self._idle_release(serial)] if self._ingress.answered(serial, (switch.name, key), carried) else []

    def _idle_release(self, serial: int) -> Release:
        return Release(serial, f"media-idle: no media in either direction for {self.idle_timeout_s} s")

    # --- ports, links, classes --------------------------------------------------------------------

    def _ports_described(self, switch: SwitchState, event: ev.PortsDescribed) -> list[Action]:
        switch.ports = dict(event.ports)
        switch.described = True
        actions: list[Action] = [ObservePorts(switch.name, switch.ports)]
        for (name, port) in sorted(self.classes):
            if name == switch.name:
                actions += self._class_update(name, port)
        return actions

    def _port_changed(self, switch: SwitchState, event: ev.PortChanged) -> list[Action]:
        actions: list[Action] = [ObservePort(switch.name, event.port, event.info)]
        if event.info is None:
            switch.ports.pop(event.port, None)
            return actions
        switch.ports[event.port] = event.info
        if event.added:          # Open vSwitch resets the qdisc of a port it (re)adds
            actions += self._class_update(switch.name, event.port)
        return actions

    def _class_update(self, name: str, port: int) -> list[Action]:
        switch = self.switches.get(name)
        info = None if switch is None else switch.ports.get(port)
        if info is None or switch is None or not switch.role.writes:
            return []
        return [ApplyClass(name, port, info.name, self.classes.get((name, port)))]

    def _link(self, event: ev.LinkHeard) -> list[Action]:
        src, dst = self.topology.switch_by_dpid(event.src_dpid), self.topology.switch_by_dpid(event.dst_dpid)
        if src is None or dst is None:
            log.warning("LLDP: link %016x:%d -> %016x:%d touches a switch not in the configuration; ignored",
                        event.src_dpid, event.src_port, event.dst_dpid, event.dst_port)
            return []
        return [ObserveLink((src.name, event.src_port), (dst.name, event.dst_port), event.up)]

    def _link_ports(self, event: ev.LinkPortsChanged) -> list[Action]:
        """Forget hosts learned on ports that turned out to join switches; delete their entries."""
        actions: list[Action] = []
        for mac in self.best_effort.set_discovered_link_ports(set(event.ports)):
            for entry in self.best_effort.unlearned_entries(mac):
                switch = self.switches.get(entry.switch)
                if switch is not None and switch.writable:
                    self._send(switch, FlowDelete(entry), actions)
        return actions

    # --- packet-in: best effort and terminal locations ---------------------------------------------

    def _packet_in(self, switch: SwitchState, event: ev.PacketIn) -> list[Action]:
        if event.ethertype == ETH_LLDP:
            return []
        self.counters["packet_ins"] += 1
        name = switch.name
        actions: list[Action] = []
        # Every time, not only when the MAC is news: a host's first frame is often IPv6
        # neighbour discovery, and its IPv4 address shows only in a later ARP.
        if event.ip and event.ip != "0.0.0.0":
            for community in self.topology.communities_at(name):
                if event.in_port in community.access_ports:
                    heard = (community.name, event.ip)
                    if self._heard.get(heard) != event.in_port:   # the core judges only what is news
                        self._heard[heard] = event.in_port
                        actions.append(LearnTerminal(community.name, event.ip, event.in_port))
                    break
            pinned = self._ingress.pinned(name, event.ip)
            if pinned and event.in_port not in pinned:
                # A call pins this address to another port: a frame claiming it from here is a
                # spoof until the core says the terminal moved. Neither flooded (its ARP would
                # poison the far end's cache) nor learned; the core hears of it (and counts it).
                self.counters["spoofed"] = self.counters.get("spoofed", 0) + 1
                return actions
        self.best_effort.learn(name, event.in_port, event.eth_src)
        if not switch.role.writes:
            return actions
        entries = self.best_effort.route(name, event.eth_dst)
        for entry in entries:
            target = self.switches.get(entry.switch)
            if target is not None and target.role.writes:
                self._send(target, FlowAdd(entry), actions)
        out_ports = entries[0].actions[0].port if entries else None  # type: ignore[union-attr]
        ports = ((out_ports,) if out_ports is not None
                 else tuple(self.best_effort.flood_ports(name, event.in_port, sorted(switch.ports))))
        if ports:
            self._send(switch, PacketOut(event.in_port, ports, event.buffer_id,
                                         event.data if event.buffer_id is None else b""), actions)
        return actions

    def heard_refused(self, community: str, ip: str, port: int) -> None:
        """The core refused the location: hear the next frame from there as news again."""
        if self._heard.get((community, ip)) == port:
            del self._heard[(community, ip)]

    # --- for the shell and tests -------------------------------------------------------------------

    def expected(self, switch: str) -> tuple[Mapping[FlowKey, FlowEntry], Mapping[int, MeterEntry]]:
        return self.flows[switch], self.meters[switch]

    def switch_of(self, conn: int) -> str | None:
        state = self._conns.get(conn)
        return None if state is None else state.name


def _calls_in(batch: SwitchBatch) -> set[int]:
    """The serials of the calls whose flows this batch adds or removes."""
    calls = set()
    for entry in batch.flow_adds + batch.flow_removes:
        kind = parse_cookie(entry.cookie)
        if kind is not None and kind[0] is CookieKind.CALL:
            calls.add(kind[1])
    return calls


def _soft(entry: FlowEntry) -> bool:
    """Learned best-effort entries may stay on a reconciled switch (they idle out)."""
    kind = parse_cookie(entry.cookie)
    return kind is not None and kind[0] is CookieKind.BASE and entry.idle_timeout > 0 and entry.table != 0
