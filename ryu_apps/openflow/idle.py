"""When idle media releases a call (``dataplane.media_idle``).

Each direction of a call has its own ingress flow with an idle timeout; the switch
removes it (and says so) when no packet matched it for ``call_idle_timeout_s``.

* ``both`` (default): a call is released only when neither direction carries media.
  A direction that idles alone (hold, silence suppression, one-way announcements) gets
  its flow back at once, so its media is classified again the moment it resumes; when
  the other direction idles too, the valve reads the first one's packet counter since
  it was put back: zero means both are silent and the call is released (``media-idle``).
* ``either``: the first direction to idle releases the call (the behaviour before).
* ``off``: flows carry no idle timeout; calls end only by signalling (or timers).
"""

from __future__ import annotations

import enum
from typing import Mapping

from ..core.flowplan import CookieKind, FlowEntry, parse_cookie
from .reconcile import FlowKey


class MediaIdle(str, enum.Enum):
    BOTH = "both"
    EITHER = "either"
    OFF = "off"


IngressRef = tuple[str, FlowKey]             # (switch, flow key) of a call's ingress entry


class CallIngress:
    """Each call's ingress entries the switches hold, which of them idled out since they
    were put back, the counters asked for before releasing on ``both``, and the ports the
    entries pin their terminals (source addresses) to."""

    def __init__(self) -> None:
        self._refs: dict[int, set[IngressRef]] = {}
        self._idle: dict[int, set[IngressRef]] = {}
        self._checks: dict[int, set[IngressRef]] = {}
        self._pins: dict[tuple[str, str], dict[int, int]] = {}   # (switch, terminal IP) -> port -> entries

    def held(self, name: str, key: FlowKey, entry: FlowEntry) -> None:
        """The switch ``name`` now holds ``entry`` (a call's or not)."""
        serial = _call_of(entry)
        if serial is not None and entry.notify_removed:
            self._refs.setdefault(serial, set()).add((name, key))
            self._pin(name, entry, +1)

    def dropped(self, name: str, key: FlowKey, entry: FlowEntry) -> None:
        """The switch ``name`` no longer holds ``entry`` (deleted, or replaced by another)."""
        serial = _call_of(entry)
        if serial is None:
            return
        if entry.notify_removed:
            self._pin(name, entry, -1)
        refs = self._refs.get(serial)
        if refs is not None:
            refs.discard((name, key))
            if not refs:
                del self._refs[serial]
                self._idle.pop(serial, None)
                self._checks.pop(serial, None)
        idle = self._idle.get(serial)
        if idle is not None:
            idle.discard((name, key))

    def holds(self, serial: int, name: str) -> bool:
        """Does the switch ``name`` hold one of the call's ingress entries (in the plan)?"""
        return any(held == name for held, _ in self._refs.get(serial, ()))

    def idled(self, serial: int, ref: IngressRef) -> bool:
        """``ref`` idled out: has every ingress entry of the call idled at least once?"""
        idle = self._idle.setdefault(serial, set())
        idle.add(ref)
        return self._refs.get(serial, set()) <= idle

    def others(self, serial: int, ref: IngressRef) -> list[IngressRef]:
        return sorted(self._refs.get(serial, set()) - {ref})

    def asked(self, serial: int, refs: set[IngressRef]) -> None:
        self._checks[serial] = refs

    def answered(self, serial: int, ref: IngressRef, carried_media: bool) -> bool:
        """A counter asked for came back: True when the call is now to be released."""
        checks = self._checks.get(serial)
        if checks is None or ref not in checks:
            return False
        if carried_media:
            self._idle.get(serial, set()).discard(ref)     # that one came back: the call lives on
            del self._checks[serial]
            return False
        checks.discard(ref)
        if checks or not self._refs.get(serial, set()) <= self._idle.get(serial, set()):
            return False
        del self._checks[serial]
        return True

    def pinned(self, name: str, ip: str) -> Mapping[int, int] | None:
        return self._pins.get((name, ip))

    def _pin(self, name: str, entry: FlowEntry, delta: int) -> None:
        fields = dict(entry.match)
        port, ip = fields.get("in_port"), fields.get("ipv4_src", fields.get("ipv6_src"))
        if not isinstance(port, int) or not isinstance(ip, str):
            return
        ports = self._pins.setdefault((name, ip), {})
        ports[port] = ports.get(port, 0) + delta
        if ports[port] <= 0:
            del ports[port]
            if not ports:
                del self._pins[(name, ip)]


def _call_of(entry: FlowEntry) -> int | None:
    kind = parse_cookie(entry.cookie)
    return kind[1] if kind is not None and kind[0] is CookieKind.CALL else None
