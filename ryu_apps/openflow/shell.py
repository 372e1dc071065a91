"""Perform what the valve decides, with the framework's datapaths and the service.

The app (``mam_app.py``) decodes each event (``decode.py``) and calls :meth:`Shell.event`:
the valve runs under the shell's lock, its OpenFlow messages are rendered and sent at once,
in order, and its reports go to the service once the valve's lock is released.

The service calls :meth:`Shell.on_changes` with each committed plan change, under its lock,
on the path of the admission that made it (a SIP or REST request). That only queues the
change and wakes the app's timer loop, whose :meth:`drain` hands every change queued since
its last round to the valve as one: each switch gets one batch of flow-mods and one barrier
for all the calls admitted or released meanwhile, and neither the valve, the rendering nor
the sending runs on the admission's path or under the service's lock. Reports from those
changes and per-port class updates are performed there too (a slow ``tc`` or OVSDB
transaction never delays an admission).

Every boundary is guarded: an exception while handling one event or action is logged
and counted in :attr:`failures`, and the next one is handled as usual.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Protocol

from ..core.changes import Changes
from ..core.flowplan import PlanDiff, PortClass
from ..service import MamService
from . import actions as act
from . import events as ev
from . import wire
from .messages import FlowAdd, FlowDelete
from .render import render_with_xid
from .valve import Valve

log = logging.getLogger(__name__)


class ClassApplier(Protocol):
    def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
        """Give ``interface`` the class (None: remove ours); the errors, if any."""


class Shell:
    def __init__(self, valve: Valve, service: MamService, *, classes: ClassApplier | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 observe_install: Callable[[float], None] = lambda seconds: None,
                 wake: Callable[[], None] = lambda: None,
                 transmit: Callable[[act.Send], bool] | None = None) -> None:
        self.valve = valve
        self.service = service
        self.classes = classes
        self.clock = clock
        self.observe_install = observe_install
        self.wake = wake                      # asks the timer loop to run drain() soon
        self.lock = threading.RLock()
        self.datapaths: dict[int, Any] = {}   # conn -> datapath
        self._next_conn = 0
        self._deferred: collections.deque[act.Action] = collections.deque()
        self._changes: list[Changes] = []         # committed plan changes not yet given to the valve
        self.failures: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.transmit = transmit or self._to_datapath
        self._outgoing: dict[int, list[bytes]] = {}    # conn -> wire bytes not yet handed to its datapath

    def start(self) -> None:
        """Give the valve the whole plan (call once, before switches connect)."""
        with self.service.lock:
            plan = self.service.manager.expected_plan()
            with self.lock:
                self.valve.load(plan)
            self.service.subscribe(self.on_changes)

    # --- connections -----------------------------------------------------------------------------

    def conn_of(self, datapath: Any, new: bool = False) -> int:
        """The connection number of a datapath object (a new one for a new connection)."""
        with self.lock:
            conn = getattr(datapath, "mam_conn", None)
            if conn is None or new:
                self._next_conn += 1
                conn = self._next_conn
                datapath.mam_conn = conn
                self.datapaths[conn] = datapath
            return int(conn)

    # --- in ------------------------------------------------------------------------------------

    def event(self, kind: str, decode: Callable[[], ev.Event | None]) -> None:
        """Decode one framework event, run the valve, perform what it says. Never raises."""
        try:
            event = decode()
            if event is None:
                return
            with self.lock:
                actions = self.valve.handle(event, self.clock())
                rest = self._send_all(actions)
                if isinstance(event, ev.SwitchGone):
                    self.datapaths.pop(event.conn, None)
            self._perform(rest)
        except Exception:
            self.failures[kind] += 1
            log.exception("OpenFlow event %s failed; carrying on", kind)

    def removal_unwanted(self, datapath: Any, cookie: int) -> bool:
        """Can a flow-removed from ``datapath`` with ``cookie`` be dropped undecoded (the valve
        would ignore it: :meth:`Valve.removal_unwanted`)? Never raises: when in doubt, no."""
        try:
            conn = getattr(datapath, "mam_conn", None)
            if conn is None:
                return False
            with self.lock:
                return self.valve.removal_unwanted(int(conn), cookie)
        except Exception:
            self.failures["flow-removed-filter"] += 1
            log.exception("flow-removed filter failed; decoding the message")
            return False

    def on_changes(self, changes: Changes) -> None:
        """Service listener (under the service's lock): queue the change for :meth:`drain`."""
        with self.lock:
            self._changes.append(changes)
        self.wake()

    def drain(self) -> None:
        """Send the queued plan changes as one, then perform what was deferred (on the timer
        loop, outside the service's lock)."""
        self._send_changes()
        while True:
            with self.lock:
                if not self._deferred:
                    return
                batch = list(self._deferred)
                self._deferred.clear()
            self._perform(batch)

    def _send_changes(self) -> None:
        try:
            with self.lock:
                if not self._changes:
                    return
                queued, self._changes = self._changes, []
                actions = self.valve.plan_changed(merged(queued), self.clock())
                self._deferred.extend(self._send_all(actions))
        except Exception:
            self.failures["plan-change"] += 1
            log.exception("plan change failed in the data-plane shell; carrying on")

    def set_roles(self, responsible: frozenset[str], wanted: dict[str, tuple[ev.Role, int]]) -> None:
        """Clusters: the switches this controller masters now, and the role (with its
        generation id) to ask of every switch; role requests go out at once."""
        try:
            with self.lock:
                self.valve.responsible = responsible
                actions: list[act.Action] = []
                for name, (role, generation) in sorted(wanted.items()):
                    if self.valve.wanted_roles.get(name) != (role, generation):
                        actions += self.valve.want_role(name, role, generation)
                rest = self._send_all(actions)
            self._perform(rest)
        except Exception:
            self.failures["roles"] += 1
            log.exception("applying the cluster's roles failed; carrying on")

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics: failures by event, the valve's counters, the last reconcile per switch."""
        with self.lock:
            last = {r.switch: r for r in self.valve.reconciled}
            return {"failures": dict(self.failures), "counters": dict(self.valve.counters), "last": last,
                    "reconciles": dict(self.valve.reconcile_counts)}

    def pending(self) -> bool:
        with self.lock:
            return bool(self._deferred or self._changes)

    # --- out -----------------------------------------------------------------------------------

    def _send_all(self, actions: list[act.Action]) -> list[act.Action]:
        """Send the OpenFlow messages (in order, under the lock); return the other actions.
        Class updates are always queued for :meth:`drain`."""
        rest: list[act.Action] = []
        for action in actions:
            if isinstance(action, act.Send):
                try:
                    if self.transmit(action):
                        self.sent += 1
                except Exception:
                    self.failures["send"] += 1
                    log.exception("sending %r to %s failed", action.message, action.switch)
            elif isinstance(action, act.ApplyClass):
                self._deferred.append(action)
                self.wake()
            else:
                rest.append(action)
        self._flush()
        return rest

    def _to_datapath(self, send: act.Send) -> bool:
        """Render one message to wire bytes, kept with the others for its switch until
        :meth:`_flush`: a batch of flow-mods and its barrier leave in one write."""
        datapath = self.datapaths.get(send.conn)
        if datapath is None:
            return False        # that connection is gone
        message = send.message
        if isinstance(message, (FlowAdd, FlowDelete)):      # the call path: bytes from remembered pieces
            encoder = wire.encoder(datapath.ofproto, datapath.ofproto_parser)
            data = (encoder.flow_add(message.entry, send.xid) if isinstance(message, FlowAdd)
                    else encoder.flow_delete(message.entry, send.xid))
        else:
            rendered = render_with_xid(datapath, message, send.xid)
            rendered.serialize()
            data = bytes(rendered.buf)
        self._outgoing.setdefault(send.conn, []).append(data)
        return True

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, {}
        for conn, parts in outgoing.items():
            datapath = self.datapaths.get(conn)
            try:
                if datapath is not None:
                    datapath.send(b"".join(parts))     # the framework's send queue: one item, one sendall
            except Exception:
                self.failures["send"] += 1
                log.exception("sending %d message(s) to connection %d failed", len(parts), conn)

    def _perform(self, actions: list[act.Action]) -> None:
        for action in actions:
            try:
                self._perform_one(action)
            except Exception:
                self.failures[type(action).__name__] += 1
                log.exception("performing %r failed; carrying on", action)

    def _perform_one(self, action: act.Action) -> None:
        service = self.service
        if isinstance(action, act.Installed):
            service.flows_installed(action.serial)
            self.observe_install(action.seconds)
        elif isinstance(action, act.Failed):
            released = service.flows_failed(action.serial, action.reason)
            if released is not None:
                log.warning("call %s released: %s", released.call_id, action.reason)
        elif isinstance(action, act.Removed):
            service.flows_removed(action.serial)
        elif isinstance(action, act.Release):
            released = service.release_by_serial(action.serial, action.cause)
            if released is not None:
                log.info("call %s released: %s", released.call_id, action.cause)
        elif isinstance(action, act.LearnTerminal):
            verdict = service.learn_terminal(action.community, action.ip, action.port)
            if verdict.refused:
                with self.lock:
                    self.valve.heard_refused(action.community, action.ip, action.port)
        elif isinstance(action, act.ApplyClass):
            self._apply_class(action)
        elif isinstance(action, (act.ObservePorts, act.ObservePort, act.ObserveSwitchGone, act.ObserveLink)):
            self._observe(action)
        elif isinstance(action, act.Send):
            raise AssertionError("messages are sent under the lock")
        else:
            raise TypeError(f"no way to perform {action!r}")

    def _apply_class(self, action: act.ApplyClass) -> None:
        if self.classes is None:
            return
        started = self.clock()
        errors = self.classes.apply(action.interface, action.port_class)
        for error in errors:
            log.warning("class on %s:%d (%s): %s", action.switch, action.port, action.interface, error)
        log.debug("class on %s (%s) in %.1f ms", action.interface, action.port_class,
                  (self.clock() - started) * 1000)

    def _observe(self, action: act.Observation) -> None:
        from ..core.survey import Survey, Transition

        def update(survey: Survey) -> list[Transition]:
            if isinstance(action, act.ObservePorts):
                return survey.ports_described(action.switch, dict(action.ports))
            if isinstance(action, act.ObservePort):
                return survey.port_changed(action.switch, action.port, action.info)
            if isinstance(action, act.ObserveSwitchGone):
                return survey.switch_gone(action.switch)
            if action.up:
                return survey.link_heard(action.src, action.dst)
            return survey.link_lost(action.src, action.dst)

        transitions = self.service.observe(update)
        for transition in transitions:
            (log.warning if transition.worse else log.info)("%s", transition)
        if transitions:
            ports = self.service.read(lambda manager: frozenset(self.service.survey.link_ports()))
            self.event("link-ports", lambda: ev.LinkPortsChanged(ports))


def merged(queued: list[Changes]) -> Changes:
    """Plan changes committed one after the other, as one (``PlanDiff.chain``: an entry
    added and removed meanwhile never reaches a switch)."""
    if len(queued) == 1:
        return queued[0]
    return Changes(PlanDiff.chain(c.plan for c in queued), tuple(r for c in queued for r in c.released),
                   tuple(n for c in queued for n in c.notes), frozenset().union(*(c.carried for c in queued)))
