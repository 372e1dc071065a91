"""The service, the valve and its shell wired to a fake OpenFlow network: no framework.

Everything between an admission and a packet's path is the real code: the core decides,
the valve turns plan changes and switch events into messages and reports, the shell
performs them (reports to the service, class updates to a recording applier); only the
switches are fakes (``oftable.py``).
"""

from __future__ import annotations

import random
from typing import Any

from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import COOKIE_PREFIX, COOKIE_PREFIX_MASK, FlowEntry, MeterEntry, PortClass
from ryu_apps.openflow import events as ev
from ryu_apps.openflow.idle import MediaIdle
from ryu_apps.openflow.shell import Shell
from ryu_apps.openflow.valve import Valve
from ryu_apps.service import MamService

from fakes.oftable import FakeNetwork, Packet


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingClasses:
    def __init__(self) -> None:
        self.applied: dict[str, PortClass | None] = {}
        self.calls: list[tuple[str, PortClass | None]] = []

    def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
        self.applied[interface] = port_class
        self.calls.append((interface, port_class))
        return []


class Rig:
    def __init__(self, config: dict[str, Any], *, media_idle: str = "both", seed: int | None = None) -> None:
        self.config = parse_config(config)
        self.clock = Clock()
        self.service = MamService(build_manager(self.config, now=self.clock.now), clock=self.clock)
        self.topology = self.service.manager.topology
        self.network = FakeNetwork(self.topology)
        self.valve = Valve(self.topology, media_idle=MediaIdle(media_idle),
                           idle_timeout_s=self.config.settings.plan.call_idle_timeout_s)
        self.classes = RecordingClasses()
        self.shell = Shell(self.valve, self.service, classes=self.classes, clock=self.clock,
                           transmit=self.network.transmit)
        self.shell.start()
        self.random = random.Random(seed) if seed is not None else None

    # --- driving -----------------------------------------------------------------------

    def event(self, event: ev.Event) -> None:
        self.shell.event(type(event).__name__, lambda: event)

    def deliver(self, *, shuffle: bool = False, limit: int = 10_000) -> None:
        """Hand the valve every reply the switches sent (and what those cause) until quiet."""
        for _ in range(limit):
            self.shell.drain()
            if not self.network.inbox:
                return
            events, self.network.inbox = self.network.inbox, []
            if shuffle and self.random is not None:
                events = interleave(events, self.random)
            for event in events:
                self.event(event)
        raise AssertionError("the valve and the switches never went quiet")

    def connect(self, *names: str) -> None:
        for name in names or tuple(self.network.switches):
            self.event(self.network.connect(name))
        self.deliver()

    def disconnect(self, name: str) -> None:
        self.event(self.network.disconnect(name))
        self.deliver()

    # --- calls -------------------------------------------------------------------------

    def admit(self, call_id: str, caller_community: str, callee_community: str,
              caller: tuple[str, int] = ("10.0.0.1", 4000), callee: tuple[str, int] = ("10.0.0.2", 5000),
              deliver: bool = True) -> Admitted:
        decision = self.service.admit(AdmissionRequest(call_id, caller_community, callee_community,
                                                       MediaSpec("pcmu")))
        assert isinstance(decision, Admitted), decision
        self.service.attach_media(call_id, MediaEndpoint(*caller), MediaEndpoint(*callee))
        if deliver:
            self.deliver()
        else:
            self.shell.drain()            # sent (the app's timer loop runs this), replies held back
        return decision

    def state(self, call_id: str) -> str | None:
        call = self.service.read(lambda m: m.calls())
        found = [c for c in call if c.call_id == call_id]
        return found[0].state.value if found else None

    # --- what the switches hold against the plan ----------------------------------------

    def expected(self, switch: str) -> tuple[set[FlowEntry], set[MeterEntry]]:
        plan = self.service.expected_plan()
        flows = {e for e in plan if isinstance(e, FlowEntry) and e.switch == switch}
        flows |= set(self.valve.best_effort.base_entries(switch))
        meters = {e for e in plan if isinstance(e, MeterEntry) and e.switch == switch}
        return flows, meters

    def holds_the_plan(self, switch: str) -> bool:
        fake = self.network.switches[switch]
        flows, meters = self.expected(switch)
        held = {f.entry for f in fake.flows.values() if not _learned(f.entry)}
        return held == flows and set(fake.meters.values()) == meters

    def mismatch(self, switch: str) -> str:
        fake = self.network.switches[switch]
        flows, meters = self.expected(switch)
        held = {f.entry for f in fake.flows.values() if not _learned(f.entry)}
        return (f"{switch}: missing {sorted(map(repr, flows - held))}\n extra {sorted(map(repr, held - flows))}\n"
                f" meters held {fake.meters} expected {meters}")


def interleave(events: list[ev.Event], rng: random.Random) -> list[ev.Event]:
    """A random order that keeps each connection's own order: switches answer in any order,
    but one switch's replies come in the order it sent them (one TCP connection)."""
    queues: dict[object, list[ev.Event]] = {}
    for event in events:
        queues.setdefault(getattr(event, "conn", None), []).append(event)
    result = []
    while queues:
        conn = rng.choice(sorted(queues, key=repr))
        result.append(queues[conn].pop(0))
        if not queues[conn]:
            del queues[conn]
    return result


def _learned(entry: FlowEntry) -> bool:
    """Learned best-effort entries, and entries that are not ours: outside the plan."""
    return (entry.table == 1 and entry.idle_timeout > 0) or entry.cookie & COOKIE_PREFIX_MASK != COOKIE_PREFIX


def media(src: str, dst: str, dport: int, in_port: int, **extra: Any) -> Packet:
    return Packet(in_port=in_port, ipv4_src=src, ipv4_dst=dst, udp_dst=dport, **extra)
