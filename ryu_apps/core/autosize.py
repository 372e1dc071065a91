"""Aggregates that follow demand: the sizing policy, as arithmetic on sizes.

RFC 3175 (section 1.4.4) sizes an aggregate reservation from the demand it carries,
in steps and with hysteresis, so that the core is signalled per step and not per call.
Here an aggregate with an :class:`Autosize` policy

- **grows** by whole steps (up to ``max_kbps``) when a call would lift its use above
  ``grow_at`` of its size, in the same transaction as that call's admission, so the
  call is not refused while the path has room;
- **shrinks** by one step (never below ``min_kbps`` nor below what its calls use) once
  its use has stayed under ``shrink_at`` of its size for ``hold_s`` seconds, and only
  when the smaller size would not be grown again by the use it has now.

Why it cannot oscillate: a shrink needs ``hold_s`` seconds of low use, so an hour holds
at most ``3600 / hold_s`` shrinks; size only rises between shrinks and stops at
``max_kbps``, so an hour holds at most ``(max - min) / step`` grows more than shrinks.
:func:`resize_bound` is that figure; a property test drives random arrivals and
departures against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from . import limits
from .errors import InvalidRequest


@dataclass(frozen=True)
class Autosize:
    min_kbps: int
    max_kbps: int
    step_kbps: int
    grow_at: float = 0.9      # share of the size that use may reach before it grows
    shrink_at: float = 0.5    # share of the size under which use must stay ...
    hold_s: float = 300.0     # ... for this long before it shrinks

    def __post_init__(self) -> None:
        limits.check("autosize.min_kbps", self.min_kbps, limits.SIZE_KBPS)
        limits.check("autosize.max_kbps", self.max_kbps, limits.SIZE_KBPS)
        limits.check("autosize.step_kbps", self.step_kbps, limits.SIZE_KBPS)
        if self.min_kbps > self.max_kbps:
            raise InvalidRequest(f"min_kbps {self.min_kbps} is above max_kbps {self.max_kbps}",
                                 field="autosize.min_kbps")
        if not 0.0 < self.grow_at <= 1.0:
            raise InvalidRequest(f"must be above 0 and at most 1, not {self.grow_at}", field="autosize.grow_at")
        if not 0.0 <= self.shrink_at < self.grow_at:
            raise InvalidRequest(f"must be at least 0 and below grow_at ({self.grow_at}), not {self.shrink_at}",
                                 field="autosize.shrink_at")
        if not 0.0 < self.hold_s <= 7 * 86400:
            raise InvalidRequest(f"must be above 0 and at most a week (604800 s), not {self.hold_s}",
                                 field="autosize.hold_s")

    def clamp(self, size_kbps: int) -> int:
        return min(self.max_kbps, max(self.min_kbps, size_kbps))

    def wants_growth(self, size_kbps: int, used_kbps: int) -> bool:
        return used_kbps > self.grow_at * size_kbps and size_kbps < self.max_kbps

    def grow_sizes(self, size_kbps: int, used_kbps: int) -> list[int]:
        """Sizes to try, best first, for a pool whose use would become ``used_kbps``:
        the fewest steps that bring use back under ``grow_at``, then each smaller step
        that still holds the use (a path may not have room for the first)."""
        if not self.wants_growth(size_kbps, used_kbps):
            return []
        steps = max(1, math.ceil((used_kbps / self.grow_at - size_kbps) / self.step_kbps))
        best = min(self.max_kbps, size_kbps + steps * self.step_kbps)
        sizes = [best]
        size = best - self.step_kbps
        while size > size_kbps:
            if size >= used_kbps:
                sizes.append(size)
            size -= self.step_kbps
        return sizes

    def under_use(self, size_kbps: int, used_kbps: int) -> bool:
        """Use is low enough to start (or keep) the shrink hold."""
        return size_kbps > self.min_kbps and used_kbps < self.shrink_at * size_kbps

    def shrink_size(self, size_kbps: int, used_kbps: int) -> int | None:
        """One step down, or None when the smaller pool would be grown again by today's use."""
        if not self.under_use(size_kbps, used_kbps):
            return None
        smaller = max(self.min_kbps, size_kbps - self.step_kbps, used_kbps)
        if smaller >= size_kbps or used_kbps > self.grow_at * smaller:
            return None
        return smaller

    def to_dict(self) -> dict[str, Any]:
        return {"min_kbps": self.min_kbps, "max_kbps": self.max_kbps, "step_kbps": self.step_kbps,
                "grow_at": self.grow_at, "shrink_at": self.shrink_at, "hold_s": self.hold_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Autosize":
        known = {"min_kbps", "max_kbps", "step_kbps", "grow_at", "shrink_at", "hold_s"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})",
                                 field=f"autosize.{unknown[0]}")
        for key in ("min_kbps", "max_kbps", "step_kbps"):
            if key not in data:
                raise InvalidRequest("is required", field=f"autosize.{key}")
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise InvalidRequest(f"must be an integer, not {data[key]!r}", field=f"autosize.{key}")
        for key in ("grow_at", "shrink_at", "hold_s"):
            value = data.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise InvalidRequest(f"must be a number, not {value!r}", field=f"autosize.{key}")
        extra = {key: float(data[key]) for key in ("grow_at", "shrink_at", "hold_s") if data.get(key) is not None}
        return cls(int(data["min_kbps"]), int(data["max_kbps"]), int(data["step_kbps"]), **extra)


def resize_bound(policy: Autosize, seconds: float) -> int:
    """The most resizes ``policy`` can make in ``seconds`` (see the module's docstring)."""
    shrinks = math.floor(seconds / policy.hold_s) + 1
    climb = math.ceil((policy.max_kbps - policy.min_kbps) / policy.step_kbps)
    return 2 * shrinks + climb
