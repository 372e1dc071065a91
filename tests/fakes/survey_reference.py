"""The survey as it was before incremental evaluation: every observation re-evaluated every
link. Kept as the reference the incremental survey must equal
(tests/unit/test_core_survey_incremental.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ryu_apps.core.network import Link, Topology
from ryu_apps.core.survey import LinkCondition, LinkState, ObservedLink, PortInfo, Transition

Port = tuple[str, int]


@dataclass
class Survey:
    topology: Topology
    discovery: bool = False
    limit_by_speed: bool = True
    _ports: dict[str, dict[int, PortInfo]] = field(default_factory=dict)  # described switches only
    _heard: set[ObservedLink] = field(default_factory=set)
    _lost: set[Link] = field(default_factory=set)        # verified once, then lost by LLDP

    def __post_init__(self) -> None:
        self._configured_ports: dict[Port, Link] = {}
        for link in self.topology.links:
            self._configured_ports[(link.a, link.a_port)] = link
            self._configured_ports[(link.b, link.b_port)] = link
        self._last = self._snapshot()

    # --- what the switches say ---------------------------------------------------------

    def ports_described(self, switch: str, ports: dict[int, PortInfo]) -> list[Transition]:
        """A switch (re)connected and listed its ports."""
        self._ports[switch] = dict(ports)
        self._lost -= {link for link in self._lost if switch in (link.a, link.b)}
        return self._changes()

    def port_changed(self, switch: str, port: int, info: PortInfo | None) -> list[Transition]:
        """A port was added or modified (``info``), or deleted (None). Ignored until the
        switch has described its ports (the description will carry the news)."""
        ports = self._ports.get(switch)
        if ports is None:
            return []
        if info is None:
            ports.pop(port, None)
        else:
            previous = ports.get(port)
            ports[port] = info
            if info.live and (previous is None or not previous.live):
                link = self._configured_ports.get((switch, port))
                if link is not None:
                    self._lost.discard(link)   # back up: LLDP will tell again
        if info is None or not info.live:
            self._heard = {seen for seen in self._heard if (switch, port) not in (seen.src, seen.dst)}
        return self._changes()

    def switch_gone(self, switch: str) -> list[Transition]:
        self._ports.pop(switch, None)
        self._heard = {seen for seen in self._heard if switch not in (seen.src[0], seen.dst[0])}
        self._lost -= {link for link in self._lost if switch in (link.a, link.b)}
        return self._changes()

    def link_heard(self, src: Port, dst: Port) -> list[Transition]:
        if not self.discovery:
            return []
        # LLDP on a port replaces what that port reached before (a re-cabled port).
        self._heard = {seen for seen in self._heard if seen.src != src}
        seen = ObservedLink(src, dst)
        self._heard.add(seen)
        link = self._configured_ports.get(src)
        if link is not None and _joins(link, seen):
            self._lost.discard(link)
        return self._changes()

    def link_lost(self, src: Port, dst: Port) -> list[Transition]:
        if not self.discovery:
            return []
        seen = ObservedLink(src, dst)
        if seen not in self._heard:
            return []
        self._heard.discard(seen)
        link = self._configured_ports.get(src)
        if link is not None and _joins(link, seen) and not self._verified_by(link, self._heard):
            self._lost.add(link)
        return self._changes()

    # --- what follows from it ------------------------------------------------------------

    def conditions(self) -> dict[Link, LinkCondition]:
        """Each configured link's condition, as of the last observation (evaluated once
        per observation, however many readers ask)."""
        return self._conditions

    def _evaluate(self) -> dict[Link, LinkCondition]:
        heard_at: dict[Port, list[ObservedLink]] = {}   # one pass over LLDP, not one per link
        for seen in self._heard:
            heard_at.setdefault(seen.src, []).append(seen)
            heard_at.setdefault(seen.dst, []).append(seen)
        return {link: self._condition(link, heard_at) for link in self.topology.links}

    def faults(self) -> dict[Link, str]:
        """Configured links no call may cross now, with the reason."""
        return {link: f"link {_name(link)} is {c.state.value}: {c.detail}"
                for link, c in self.conditions().items() if c.state.faulty}

    def limits(self) -> dict[Link, int]:
        """Links whose reservable bandwidth the port speed cuts below the configured one."""
        return {link: c.reservable_kbps for link, c in self.conditions().items()
                if c.reservable_kbps < link.reservable_kbps}

    def unconfigured(self) -> list[tuple[Port, Port]]:
        """Links LLDP hears between ports that no configured link joins (each once, sorted)."""
        pairs: set[tuple[Port, Port]] = set()
        for seen in self._heard:
            link = self._configured_ports.get(seen.src)
            if link is None or not _joins(link, seen):
                pairs.add((min(seen.src, seen.dst), max(seen.src, seen.dst)))
        return sorted(pairs)

    def link_ports(self) -> set[Port]:
        """Every port LLDP hears another switch on (configured or not)."""
        return {end for seen in self._heard for end in (seen.src, seen.dst)}

    def described(self, switch: str) -> bool:
        """The switch is connected and has listed its ports."""
        return switch in self._ports

    def port(self, switch: str, port: int) -> PortInfo | None:
        return self._ports.get(switch, {}).get(port)

    # --- internals ---------------------------------------------------------------------

    def _condition(self, link: Link, heard_at: dict[Port, list[ObservedLink]]) -> LinkCondition:
        ends = ((link.a, link.a_port), (link.b, link.b_port))
        speed, reservable, problems = self._speed(link)
        for switch, port in ends:   # a described end's port decides, even while the other switch is away
            if switch not in self._ports:
                continue
            info = self._ports[switch].get(port)
            if info is None:
                return LinkCondition(LinkState.DOWN, f"switch {switch} has no port {port}", speed, reservable,
                                     problems)
            if not info.live:
                return LinkCondition(LinkState.DOWN, f"port {switch}:{port} ({info.name}) is down", speed,
                                     reservable, problems)
        for switch, _ in ends:
            if switch not in self._ports:
                return LinkCondition(LinkState.UNKNOWN, f"switch {switch} has not connected", speed, reservable,
                                     problems)
        if not self.discovery:
            return LinkCondition(LinkState.UP, "both ports are live", speed, reservable, problems)
        near = sorted({seen for end in ends for seen in heard_at.get(end, ())}, key=lambda s: (s.src, s.dst))
        for seen in near:
            if not _joins(link, seen):
                return LinkCondition(LinkState.MISWIRED,
                                     f"LLDP from {_port(seen.src)} arrives at {_port(seen.dst)}; "
                                     f"configured {_port(ends[0])}-{_port(ends[1])}", speed, reservable, problems)
        if near:   # every observation at its ports joins exactly its ports
            return LinkCondition(LinkState.VERIFIED, "LLDP heard it between the configured ports", speed,
                                 reservable, problems)
        if link in self._lost:
            return LinkCondition(LinkState.DOWN, "LLDP stopped hearing it", speed, reservable, problems)
        return LinkCondition(LinkState.UP, "both ports are live; LLDP has not heard it yet", speed, reservable,
                             problems)

    @staticmethod
    def _verified_by(link: Link, heard: set[ObservedLink]) -> bool:
        return any(_joins(link, seen) for seen in heard)

    def _speed(self, link: Link) -> tuple[int | None, int, tuple[str, ...]]:
        speeds = []
        for switch, port in ((link.a, link.a_port), (link.b, link.b_port)):
            info = self._ports.get(switch, {}).get(port)
            if info is not None and info.speed_kbps > 0:
                speeds.append((info.speed_kbps, f"{switch}:{port} ({info.name})"))
        if not speeds:
            return None, link.reservable_kbps, ()
        speed, where = min(speeds)
        if speed >= link.capacity_kbps:
            return speed, link.reservable_kbps, ()
        limited = link.reservable_kbps * speed // link.capacity_kbps
        problem = (f"capacity_kbps {link.capacity_kbps} exceeds the speed of port {where}, {speed} kbit/s; "
                   + (f"reserving at most {limited} kbit/s (the configured share of the port speed)"
                      if self.limit_by_speed else "not limited (dataplane.port_speeds: warn)"))
        return speed, limited if self.limit_by_speed else link.reservable_kbps, (problem,)

    def _snapshot(self) -> dict[str, tuple[str, str]]:
        self._conditions = self._evaluate()
        state: dict[str, tuple[str, str]] = {}
        for link, condition in self._conditions.items():
            state[_name(link)] = (condition.state.value, condition.detail)
            for problem in condition.problems:
                state[f"{_name(link)} speed"] = ("too-slow", problem)
        for a, b in self.unconfigured():
            state[f"{_port(a)}-{_port(b)}"] = ("unconfigured", "LLDP hears it but topology.links does not list it: "
                                               "kept out of flooding and reservations")
        return state

    def _changes(self) -> list[Transition]:
        now = self._snapshot()
        transitions = []
        for subject in sorted(set(now) | set(self._last)):
            old, new = self._last.get(subject), now.get(subject)
            if old == new:
                continue
            name = subject.removesuffix(" speed")
            if new is None:
                transitions.append(Transition(name, old[0] if old else "absent", "absent", "no longer reported"))
            else:
                transitions.append(Transition(name, old[0] if old else "absent", new[0], new[1]))
        self._last = now
        return transitions


def _joins(link: Link, seen: ObservedLink) -> bool:
    return seen.undirected() == {(link.a, link.a_port), (link.b, link.b_port)}


def _name(link: Link) -> str:
    return f"{link.a}-{link.b}"


def _port(port: Port) -> str:
    return f"{port[0]}:{port[1]}"
