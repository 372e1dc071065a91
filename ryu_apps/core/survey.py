"""What the switches say about the configured links: port state, port speed, LLDP.

The configuration is the plan of record (it carries the capacities to reserve against);
the survey is what the network shows. It folds port descriptions, port-status changes,
switch departures and LLDP link observations into one condition per configured link,
and names what is wrong in words an operator can act on:

    unknown   a switch at either end has not described its ports yet
    up        both ports exist and are live (LLDP off, or not heard yet)
    verified  LLDP heard the link between exactly the configured ports
    down      a port is missing or down, or LLDP lost a link it had verified
    miswired  LLDP hears a configured port connected somewhere else

Links LLDP hears that the configuration lacks are reported as unconfigured; their ports
are switch-to-switch ports all the same (the best-effort flood tree must not use them).
A port slower than a link's configured capacity limits what the link may reserve to the
configured share of the real speed.

Pure: no clock, no framework; every method returns the transitions it caused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

from .network import Link, Topology

Port = tuple[str, int]                    # (switch, port number)


class LinkState(str, enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    VERIFIED = "verified"
    DOWN = "down"
    MISWIRED = "miswired"

    @property
    def faulty(self) -> bool:
        """No call should be admitted over a link in this state."""
        return self in (LinkState.DOWN, LinkState.MISWIRED)


@dataclass(frozen=True)
class PortInfo:
    """One port as its switch describes it. ``speed_kbps`` 0 means not reported."""

    name: str
    speed_kbps: int = 0
    live: bool = True


@dataclass(frozen=True)
class ObservedLink:
    """One direction of a link as LLDP heard it: sent from ``src``, received at ``dst``."""

    src: Port
    dst: Port

    def undirected(self) -> frozenset[Port]:
        return frozenset((self.src, self.dst))


@dataclass(frozen=True)
class LinkCondition:
    state: LinkState
    detail: str
    speed_kbps: int | None = None       # the slower end's reported speed; None when not reported
    reservable_kbps: int = 0            # what the link may reserve now (configured, or limited by speed)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transition:
    """Something the operator should hear about: a link changed state, or a finding."""

    subject: str        # "s1-s2" for a configured link, "s1:4-s3:4" for an unconfigured one
    old: str
    new: str
    detail: str

    @property
    def worse(self) -> bool:
        return self.new in (LinkState.DOWN.value, LinkState.MISWIRED.value, "unconfigured", "too-slow")

    def __str__(self) -> str:
        return f"link {self.subject}: {self.old} -> {self.new} ({self.detail})"


@dataclass
class Survey:
    """Evaluated incrementally: an observation re-evaluates only the configured links at
    the ports it concerns (and the unconfigured pairs it adds or drops), so a start-up
    burst of N events on a network of L links costs N small steps, not N x L."""

    topology: Topology
    discovery: bool = False
    limit_by_speed: bool = True
    _ports: dict[str, dict[int, PortInfo]] = field(default_factory=dict)  # described switches only
    _heard: set[ObservedLink] = field(default_factory=set)
    _lost: set[Link] = field(default_factory=set)        # verified once, then lost by LLDP

    def __post_init__(self) -> None:
        self._configured_ports: dict[Port, Link] = {}
        self._links_at: dict[str, list[Link]] = {}
        for link in self.topology.links:
            self._configured_ports[(link.a, link.a_port)] = link
            self._configured_ports[(link.b, link.b_port)] = link
            self._links_at.setdefault(link.a, []).append(link)
            if link.b != link.a:
                self._links_at.setdefault(link.b, []).append(link)
        self._heard_from: dict[Port, ObservedLink] = {}          # LLDP sent from a port: one reach each
        self._heard_at: dict[Port, set[ObservedLink]] = {}       # observations at each port, either end
        self._unconfigured: dict[tuple[Port, Port], int] = {}   # pair -> observations naming it
        for seen in list(self._heard):
            self._heard.discard(seen)
            self._add_heard(seen, set(), set())
        self._conditions: dict[Link, LinkCondition] = {}
        self._faults: dict[Link, str] = {}
        self._limits: dict[Link, int] = {}
        self._last: dict[str, tuple[str, str]] = {
            subject: state for subject, state in self._refresh(self.topology.links, sorted(self._unconfigured)).items()
            if state is not None}

    # --- what the switches say ---------------------------------------------------------

    def ports_described(self, switch: str, ports: dict[int, PortInfo]) -> list[Transition]:
        """A switch (re)connected and listed its ports."""
        self._ports[switch] = dict(ports)
        links = set(self._links_at.get(switch, ()))
        self._lost -= links
        return self._changes(links, set())

    def port_changed(self, switch: str, port: int, info: PortInfo | None) -> list[Transition]:
        """A port was added or modified (``info``), or deleted (None). Ignored until the
        switch has described its ports (the description will carry the news)."""
        ports = self._ports.get(switch)
        if ports is None:
            return []
        links: set[Link] = set()
        pairs: set[tuple[Port, Port]] = set()
        link = self._configured_ports.get((switch, port))
        if link is not None:
            links.add(link)
        if info is None:
            ports.pop(port, None)
        else:
            previous = ports.get(port)
            ports[port] = info
            if info.live and (previous is None or not previous.live) and link is not None:
                self._lost.discard(link)   # back up: LLDP will tell again
        if info is None or not info.live:
            for seen in list(self._heard_at.get((switch, port), ())):
                self._drop_heard(seen, links, pairs)
        return self._changes(links, pairs)

    def switch_gone(self, switch: str) -> list[Transition]:
        self._ports.pop(switch, None)
        links = set(self._links_at.get(switch, ()))
        pairs: set[tuple[Port, Port]] = set()
        for seen in [seen for seen in self._heard if switch in (seen.src[0], seen.dst[0])]:
            self._drop_heard(seen, links, pairs)
        self._lost -= links
        return self._changes(links, pairs)

    def link_heard(self, src: Port, dst: Port) -> list[Transition]:
        if not self.discovery:
            return []
        links: set[Link] = set()
        pairs: set[tuple[Port, Port]] = set()
        # LLDP on a port replaces what that port reached before (a re-cabled port).
        before = self._heard_from.get(src)
        if before is not None:
            self._drop_heard(before, links, pairs)
        seen = ObservedLink(src, dst)
        self._add_heard(seen, links, pairs)
        link = self._configured_ports.get(src)
        if link is not None and _joins(link, seen):
            self._lost.discard(link)
        return self._changes(links, pairs)

    def link_lost(self, src: Port, dst: Port) -> list[Transition]:
        if not self.discovery:
            return []
        seen = ObservedLink(src, dst)
        if seen not in self._heard:
            return []
        links: set[Link] = set()
        pairs: set[tuple[Port, Port]] = set()
        self._drop_heard(seen, links, pairs)
        link = self._configured_ports.get(src)
        if link is not None and _joins(link, seen) and not self._verified_by(link, self._heard_near(link)):
            self._lost.add(link)
        return self._changes(links, pairs)

    # --- what follows from it ------------------------------------------------------------

    def conditions(self) -> dict[Link, LinkCondition]:
        """Each configured link's condition, as of the last observation (evaluated once
        per observation, however many readers ask)."""
        return self._conditions

    def faults(self) -> dict[Link, str]:
        """Configured links no call may cross now, with the reason."""
        return dict(self._faults)

    def limits(self) -> dict[Link, int]:
        """Links whose reservable bandwidth the port speed cuts below the configured one."""
        return dict(self._limits)

    def unconfigured(self) -> list[tuple[Port, Port]]:
        """Links LLDP hears between ports that no configured link joins (each once, sorted)."""
        return sorted(self._unconfigured)

    def link_ports(self) -> set[Port]:
        """Every port LLDP hears another switch on (configured or not)."""
        return {port for port, seen in self._heard_at.items() if seen}

    def described(self, switch: str) -> bool:
        """The switch is connected and has listed its ports."""
        return switch in self._ports

    def port(self, switch: str, port: int) -> PortInfo | None:
        return self._ports.get(switch, {}).get(port)

    # --- internals ---------------------------------------------------------------------

    def _add_heard(self, seen: ObservedLink, links: set[Link], pairs: set[tuple[Port, Port]]) -> None:
        if seen in self._heard:
            return
        self._heard.add(seen)
        self._heard_from[seen.src] = seen
        for end in (seen.src, seen.dst):
            self._heard_at.setdefault(end, set()).add(seen)
        self._touch(seen, links, pairs, +1)

    def _drop_heard(self, seen: ObservedLink, links: set[Link], pairs: set[tuple[Port, Port]]) -> None:
        if seen not in self._heard:
            return
        self._heard.discard(seen)
        if self._heard_from.get(seen.src) == seen:
            del self._heard_from[seen.src]
        for end in (seen.src, seen.dst):
            at = self._heard_at.get(end)
            if at is not None:
                at.discard(seen)
                if not at:
                    del self._heard_at[end]
        self._touch(seen, links, pairs, -1)

    def _touch(self, seen: ObservedLink, links: set[Link], pairs: set[tuple[Port, Port]], count: int) -> None:
        """The links at both ends of ``seen`` need a new look; so does its pair when no
        configured link joins it."""
        for end in (seen.src, seen.dst):
            link = self._configured_ports.get(end)
            if link is not None:
                links.add(link)
        link = self._configured_ports.get(seen.src)
        if link is None or not _joins(link, seen):
            pair = (min(seen.src, seen.dst), max(seen.src, seen.dst))
            left = self._unconfigured.get(pair, 0) + count
            if left > 0:
                self._unconfigured[pair] = left
            else:
                self._unconfigured.pop(pair, None)
            pairs.add(pair)

    def _heard_near(self, link: Link) -> set[ObservedLink]:
        return self._heard_at.get((link.a, link.a_port), set()) | self._heard_at.get((link.b, link.b_port), set())

    def _condition(self, link: Link, heard_at: dict[Port, set[ObservedLink]]) -> LinkCondition:
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

    def _refresh(self, links: Iterable[Link],
                 pairs: Iterable[tuple[Port, Port]]) -> dict[str, tuple[str, str] | None]:
        """Re-evaluate ``links`` and ``pairs``; the state of every subject they name, now
        (None: no longer reported)."""
        state: dict[str, tuple[str, str] | None] = {}
        for link in links:
            condition = self._condition(link, self._heard_at)
            self._conditions[link] = condition
            name = _name(link)
            state[name] = (condition.state.value, condition.detail)
            state[f"{name} speed"] = None
            for problem in condition.problems:
                state[f"{name} speed"] = ("too-slow", problem)
            if condition.state.faulty:
                self._faults[link] = f"link {name} is {condition.state.value}: {condition.detail}"
            else:
                self._faults.pop(link, None)
            if condition.reservable_kbps < link.reservable_kbps:
                self._limits[link] = condition.reservable_kbps
            else:
                self._limits.pop(link, None)
        for a, b in pairs:
            state[f"{_port(a)}-{_port(b)}"] = (
                ("unconfigured", "LLDP hears it but topology.links does not list it: kept out of flooding and "
                 "reservations") if (a, b) in self._unconfigured else None)
        return state

    def _changes(self, links: set[Link], pairs: set[tuple[Port, Port]]) -> list[Transition]:
        now = self._refresh(links, pairs)
        transitions = []
        for subject in sorted(now):
            old, new = self._last.get(subject), now[subject]
            if old == new:
                continue
            name = subject.removesuffix(" speed")
            if new is None:
                del self._last[subject]
                transitions.append(Transition(name, old[0] if old else "absent", "absent", "no longer reported"))
            else:
                self._last[subject] = new
                transitions.append(Transition(name, old[0] if old else "absent", new[0], new[1]))
        return transitions


def _joins(link: Link, seen: ObservedLink) -> bool:
    return seen.undirected() == {(link.a, link.a_port), (link.b, link.b_port)}


def _name(link: Link) -> str:
    return f"{link.a}-{link.b}"


def _port(port: Port) -> str:
    return f"{port[0]}:{port[1]}"
