"""A call's life, owned by the core: one state machine, its timers as deadlines.

::

    requested --admit--> admitted --attach media--> installing --flows confirmed--> active
        |                   |   \\                    |  ^  \\                        |  |
     refused            no media \\___ release ___   |  |   \\__ install timeout     |  | new media
        v               (timeout)                  \\ |  +---------------------------+  | address
      ended                 |                       vv                                 |
                            +-------------------> releasing <--------------------------+
                                                     |  flows removed (or release timeout)
                                                     v
                                                   ended

Bandwidth is held from ``admitted`` and given back on entering ``releasing``; the call's
serial and tags stay held until its flows are confirmed gone (or the release timeout
passes), so no new call can meet a stale flow carrying its tags. The front ends
(SIP, H.323, REST) and the data plane only report events; the deadlines below are the
core's timers (``next_timer()`` / ``handle_timer(now)``), never a shell's polling loop.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass


class CallState(str, enum.Enum):
    REQUESTED = "requested"    # being decided (never stored)
    ADMITTED = "admitted"      # bandwidth held; waiting for both media addresses
    INSTALLING = "installing"  # flows sent, not yet confirmed by every switch
    ACTIVE = "active"          # flows confirmed
    RELEASING = "releasing"    # bandwidth returned; flows being removed, tags still held
    ENDED = "ended"


TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.REQUESTED: frozenset({CallState.ADMITTED, CallState.ENDED}),
    CallState.ADMITTED: frozenset({CallState.INSTALLING, CallState.RELEASING}),
    CallState.INSTALLING: frozenset({CallState.ACTIVE, CallState.INSTALLING, CallState.RELEASING}),
    CallState.ACTIVE: frozenset({CallState.INSTALLING, CallState.RELEASING}),
    CallState.RELEASING: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


class IllegalTransition(AssertionError):
    """A bug: the core asked for a transition the state machine does not have."""


def check_transition(old: CallState, new: CallState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"call state {old.value} -> {new.value}")


@dataclass(frozen=True)
class LifecycleTimers:
    """How long a call may stay in a waiting state (seconds)."""

    attach_s: float = 240.0     # admitted without both media addresses (longer than SIP timer C, 180 s)
    install_s: float = 5.0      # flows sent without every switch's confirmation
    release_s: float = 5.0      # flows removed without confirmation: tags are freed anyway
    retry_s: float = 1.0        # a release or reroute the ledger could not record is tried again

    def for_state(self, state: CallState) -> float | None:
        return {CallState.ADMITTED: self.attach_s, CallState.INSTALLING: self.install_s,
                CallState.RELEASING: self.release_s}.get(state)


class Deadlines:
    """At most one deadline per key; a heap with lazy deletion.

    A cleared or moved deadline stays in the heap until it would have fallen due (a call's
    240 s media deadline, cleared once its media is attached, for 240 s), keeping its key
    alive; the heap is rebuilt from the live deadlines once the stale entries outnumber
    them by :data:`COMPACT_SLACK`, so it stays within twice the live deadlines (amortised:
    each rebuild is paid for by the clears since the last)."""

    COMPACT_SLACK = 4096

    def __init__(self) -> None:
        self._at: dict[object, float] = {}
        self._heap: list[tuple[float, int, object]] = []
        self._order = 0

    def __len__(self) -> int:
        return len(self._at)

    def get(self, key: object) -> float | None:
        return self._at.get(key)

    def set(self, key: object, at: float | None) -> float | None:
        """Set (or clear, with None) ``key``'s deadline; return the previous one."""
        previous = self._at.pop(key, None)
        if at is not None:
            self._at[key] = at
            self._order += 1
            heapq.heappush(self._heap, (at, self._order, key))
        if len(self._heap) > 2 * len(self._at) + self.COMPACT_SLACK:
            self._compact()
        return previous

    def _compact(self) -> None:
        live = self._at
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)

    def next(self) -> float | None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[object]:
        """Keys whose deadline is ``now`` or earlier, earliest first; they are cleared."""
        out = []
        while (at := self.next()) is not None and at <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._at[key]
            out.append(key)
        return out
