"""One flow per key: which call's entry a switch holds when two calls want the same match.

A switch keeps one flow per (table, priority, match): adding a second replaces the first,
and deleting either (strict) deletes whatever is there. Two live calls whose media run
between the same addresses and ports (a retransmitted INVITE answered as a new call, a
PBX reusing ports before its BYE arrived, a forged SDP copying another call's) draw
ingress entries with the same key. Sent as drawn, the switch would keep the one added
last and lose it when *either* call ends, leaving the other call's media unprotected.

The plan therefore holds one winner per key: the entry of the newest call (highest
cookie, which carries the call's serial; ties broken on the actions so the choice does
not depend on arrival order). The others wait; when the winner's call ends the next
newest takes the key over, as one replacement on the switch.

Only a call's ingress entries can collide (they match the media's addresses and port);
its egress entries match its own tag, and shared and per-aggregate entries are drawn once.
So only ingress entries are tracked: the arbiter holds one reference per live call
direction, which the collector then scans (benchmarks/bench_gc.py). :func:`resolve` picks the
winners of a whole plan (what a reconnecting switch gets); :class:`FlowKeys` keeps the
same choice incrementally for the plan changes the manager drains.
"""

from __future__ import annotations

from typing import Iterable, TypeGuard

from .flowplan import PRIORITY_CALL, CookieKind, Entry, FlowEntry, PlanDiff, parse_cookie

FlowKey = tuple[str, int, int, tuple[object, ...]]


def _contestable(entry: Entry) -> TypeGuard[FlowEntry]:
    """A call's ingress entry: the only kind two live calls can draw with one key."""
    return type(entry) is FlowEntry and entry.meter is not None and entry.priority == PRIORITY_CALL


def _rank(entry: FlowEntry) -> tuple[int, str]:
    return entry.cookie, repr(entry.actions)


def winner(a: FlowEntry, b: FlowEntry) -> FlowEntry:
    """The entry a switch should hold of two with the same key."""
    return a if _rank(a) >= _rank(b) else b


def resolve(entries: Iterable[Entry]) -> frozenset[Entry]:
    """``entries`` with one flow per key: the winner of each contested key."""
    held: dict[FlowKey, FlowEntry] = {}
    others: list[Entry] = []
    for entry in entries:
        if not _contestable(entry):
            others.append(entry)
            continue
        key = entry.key
        current = held.get(key)
        held[key] = entry if current is None else winner(entry, current)
    return frozenset(others).union(held.values())


def carried(plan: PlanDiff, waiting: Iterable[FlowEntry]) -> frozenset[int]:
    """Serials of the calls with entries in ``waiting`` and none in ``plan``'s adds: every
    flow they need is held by another call's identical flow."""
    waiting_calls = _call_serials(waiting)
    return waiting_calls - _call_serials(plan.add) if waiting_calls else frozenset()


def _call_serials(entries: Iterable[Entry]) -> frozenset[int]:
    return frozenset(kind[1] for e in entries if type(e) is FlowEntry
                     and (kind := parse_cookie(e.cookie)) is not None and kind[0] is CookieKind.CALL)


class FlowKeys:
    """The owner of every flow key in the plan, kept across plan changes.

    :meth:`apply` takes a change of the plan as drawn (entries of every live call) and
    returns the change of what the switches should hold: uncontested entries pass
    through as they are; for a contested key, only a change of its winner."""

    def __init__(self, plan: Iterable[Entry] = ()) -> None:
        self._owner: dict[FlowKey, FlowEntry] = {}
        self._waiting: dict[FlowKey, set[FlowEntry]] = {}
        self.apply(PlanDiff(add=tuple(plan)))

    def contested(self) -> dict[FlowKey, tuple[FlowEntry, ...]]:
        """Keys more than one entry wants: the held one first, then those waiting."""
        return {key: (self._owner[key],) + tuple(sorted(waiting, key=_rank, reverse=True))
                for key, waiting in self._waiting.items()}

    def apply(self, change: PlanDiff) -> tuple[PlanDiff, tuple[FlowEntry, ...]]:
        """The change of what the switches hold, and the entries ``change`` added that
        wait behind another call's entry with the same key."""
        before: dict[FlowKey, FlowEntry | None] = {}       # owner of each touched key before this change
        removes: list[Entry] = []
        adds: list[Entry] = []
        for entry in change.remove:
            if not _contestable(entry) or not self._take(entry, before):
                removes.append(entry)          # not arbitrated (or never seen): passed on as it is
        for entry in change.add:
            if _contestable(entry):
                self._put(entry, before)
            else:
                adds.append(entry)
        for key, old in before.items():
            new = self._owner.get(key)
            if new == old:
                continue
            if old is not None:
                removes.append(old)
            if new is not None:
                adds.append(new)
        waiting = tuple(e for e in change.add if _contestable(e) and e in self._waiting.get(e.key, ()))
        return PlanDiff(tuple(adds), tuple(removes)), waiting

    def _touch(self, key: FlowKey, before: dict[FlowKey, FlowEntry | None]) -> None:
        if key not in before:
            before[key] = self._owner.get(key)

    def _put(self, entry: FlowEntry, before: dict[FlowKey, FlowEntry | None]) -> None:
        key = entry.key
        self._touch(key, before)
        current = self._owner.get(key)
        if current is None:
            self._owner[key] = entry
        elif current != entry:
            waiting = self._waiting.setdefault(key, set())
            if winner(entry, current) is entry:
                waiting.add(current)
                self._owner[key] = entry
            else:
                waiting.add(entry)

    def _take(self, entry: FlowEntry, before: dict[FlowKey, FlowEntry | None]) -> bool:
        key = entry.key
        waiting = self._waiting.get(key)
        if self._owner.get(key) != entry and (waiting is None or entry not in waiting):
            return False
        self._touch(key, before)
        if self._owner.get(key) == entry:
            if waiting:
                promoted = max(waiting, key=_rank)
                waiting.discard(promoted)
                self._owner[key] = promoted
            else:
                del self._owner[key]
        elif waiting is not None:
            waiting.discard(entry)
        if waiting is not None and not waiting:
            del self._waiting[key]
        return True
