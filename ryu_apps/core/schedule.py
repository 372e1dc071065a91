"""Time-of-day sizes: ``schedule: [{at: "08:00", size_kbps: 4000}, ...]`` per aggregate.

Each entry holds from its time of day until the next entry's, every day, in the
site's time zone; the last entry of the day carries over past midnight. Pure
arithmetic on an epoch ``now`` and a ``tzinfo`` (daylight-saving changes follow the
zone's rules: a boundary that a spring change skips applies at the change).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from . import limits
from .errors import InvalidRequest

_AT = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, order=True)
class ScheduleEntry:
    minute: int          # minutes after local midnight
    size_kbps: int

    @property
    def at(self) -> str:
        return f"{self.minute // 60:02d}:{self.minute % 60:02d}"

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "size_kbps": self.size_kbps}


def parse_at(text: object, field: str) -> int:
    if not isinstance(text, str) or not _AT.fullmatch(text):
        raise InvalidRequest(f"must be a time of day HH:MM (00:00..23:59), not {text!r}", field=field)
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_schedule(items: object, field: str = "schedule") -> tuple[ScheduleEntry, ...]:
    if not isinstance(items, (list, tuple)):
        raise InvalidRequest(f"must be a list of {{at, size_kbps}}, not {items!r}", field=field)
    entries: dict[int, ScheduleEntry] = {}
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"must be an object {{at, size_kbps}}, not {item!r}", field=where)
        unknown = sorted(set(item) - {"at", "size_kbps"})
        if unknown:
            raise InvalidRequest(f"unknown key {unknown[0]!r} (known: at, size_kbps)", field=f"{where}.{unknown[0]}")
        minute = parse_at(item.get("at"), f"{where}.at")
        size = item.get("size_kbps")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidRequest(f"must be an integer, not {size!r}", field=f"{where}.size_kbps")
        limits.check(f"{where}.size_kbps", size, limits.SIZE_KBPS)
        if minute in entries:
            raise InvalidRequest(f"a second entry at {item['at']}", field=f"{where}.at")
        entries[minute] = ScheduleEntry(minute, size)
    return tuple(sorted(entries.values()))


def _local_midnight(now: float, zone: dt.tzinfo) -> dt.datetime:
    local = dt.datetime.fromtimestamp(now, zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _at(day: dt.datetime, minute: int, zone: dt.tzinfo) -> float:
    wall = day.replace(tzinfo=None) + dt.timedelta(minutes=minute)
    return wall.replace(tzinfo=zone).timestamp()


def scheduled(entries: Iterable[ScheduleEntry], zone: dt.tzinfo, now: float) -> tuple[int | None, float | None]:
    """(the size in force at ``now``, when the next entry applies), or (None, None) for no schedule."""
    ordered = sorted(entries)
    if not ordered:
        return None, None
    today = _local_midnight(now, zone)
    days = [today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)]
    moments = [(_at(day, e.minute, zone), e) for day in days for e in ordered]
    current = max(((t, e) for t, e in moments if t <= now), key=lambda pair: pair[0])[1]
    upcoming = min(t for t, _ in moments if t > now)
    return current.size_kbps, upcoming
