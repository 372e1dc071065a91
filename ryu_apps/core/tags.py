"""Tag allocation: the lowest free number in a range, reused after release."""

from __future__ import annotations

import heapq

from .errors import Conflict


class TagAllocator:
    """Hands out unique integers in [low, high]; never the same one to two holders."""

    def __init__(self, low: int, high: int) -> None:
        if low > high:
            raise ValueError(f"empty tag range {low}..{high}")
        self.low, self.high = low, high
        self._next = low          # every number >= _next has never been handed out
        self._free: list[int] = []  # released numbers below _next (a heap)
        self._live: set[int] = set()

    def __contains__(self, tag: int) -> bool:
        return tag in self._live

    def __len__(self) -> int:
        return len(self._live)

    @property
    def capacity(self) -> int:
        return self.high - self.low + 1

    def allocate(self) -> int | None:
        while self._free:
            tag = heapq.heappop(self._free)
            if tag not in self._live:
                self._live.add(tag)
                return tag
        while self._next <= self.high:
            tag = self._next
            self._next += 1
            if tag not in self._live:
                self._live.add(tag)
                return tag
        return None

    def claim(self, tag: int) -> None:
        """Mark a tag in use (restoring state from the store)."""
        if not self.low <= tag <= self.high:
            raise ValueError(f"tag {tag} outside {self.low}..{self.high}")
        if tag in self._live:
            raise Conflict(f"tag {tag} is already in use")
        self._live.add(tag)
        while self._next <= tag:
            if self._next not in self._live:
                heapq.heappush(self._free, self._next)
            self._next += 1

    def release(self, tag: int) -> None:
        if tag in self._live:
            self._live.remove(tag)
            heapq.heappush(self._free, tag)
