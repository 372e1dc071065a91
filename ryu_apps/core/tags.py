"""Tag allocation: the lowest free number in a range, reused after release.

``start`` rotates what "lowest" means: numbers from ``start`` up are handed out first,
then those below it. Controllers sharing a ledger start in different lanes of a range
so that two of them deciding at the same instant seldom pick the same number (the
ledger's create-only claims make a collision a retry, never a duplicate). ``limit`` keeps
the numbers handed out inside the lane: a shared ledger gives each controller a lane of
its own (claimed in the store), whose numbers only it hands out, so they need no claim
each (see ryu_apps/store/shared.py).
"""

from __future__ import annotations

import heapq

from .errors import Conflict


def lane_range(low: int, high: int, lane: tuple[int, int]) -> tuple[int, int]:
    """The first number of lane ``index`` of ``count`` in [low, high] and the lane's size
    (one lane: all of it)."""
    index, count = lane
    size = (high - low + 1) // max(1, count)
    return low + index * size, size


class TagAllocator:
    """Hands out unique integers in [low, high]; never the same one to two holders."""

    def __init__(self, low: int, high: int, start: int | None = None, limit: int | None = None) -> None:
        """Hands out the ``limit`` numbers from ``start`` up (all by default); any number
        in [low, high] can be claimed (restored) and released."""
        if low > high:
            raise ValueError(f"empty tag range {low}..{high}")
        self.low, self.high = low, high
        self.start = low if start is None else low + (start - low) % (high - low + 1)
        self.limit = self.capacity if limit is None else max(0, min(limit, self.capacity))
        self._next = 0            # no rank >= _next was handed out here (some may be claimed)
        self._free: list[int] = []  # released ranks (a heap; entries now live again are skipped)
        self._live: set[int] = set()

    def __contains__(self, tag: int) -> bool:
        return tag in self._live

    def __len__(self) -> int:
        return len(self._live)

    @property
    def capacity(self) -> int:
        return self.high - self.low + 1

    def _rank(self, tag: int) -> int:
        return (tag - self.start) % self.capacity

    def _tag(self, rank: int) -> int:
        return self.low + (self.start - self.low + rank) % self.capacity

    def allocate(self) -> int | None:
        """The free tag of lowest rank: released ones below the frontier are in the heap,
        the frontier itself is the lowest never handed out (claims do not move it: a
        claimed tag far up the range costs nothing until the frontier reaches it)."""
        free, live = self._free, self._live
        while free and self._tag(free[0]) in live:
            heapq.heappop(free)
        while self._next < self.limit and self._tag(self._next) in live:
            self._next += 1
        if free and (self._next >= self.limit or free[0] < self._next):
            tag = self._tag(heapq.heappop(free))
        elif self._next < self.limit:
            tag = self._tag(self._next)
            self._next += 1
        else:
            return None
        live.add(tag)
        return tag

    def claim(self, tag: int) -> None:
        """Mark a tag in use (restoring state from the store)."""
        if not self.low <= tag <= self.high:
            raise ValueError(f"tag {tag} outside {self.low}..{self.high}")
        if tag in self._live:
            raise Conflict(f"tag {tag} is already in use")
        self._live.add(tag)

    def release(self, tag: int) -> None:
        if tag in self._live:
            self._live.remove(tag)
            if self._rank(tag) < self.limit:      # beyond it: not this allocator's to hand out
                heapq.heappush(self._free, self._rank(tag))
