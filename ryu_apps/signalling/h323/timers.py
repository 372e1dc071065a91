"""Named deadlines in one heap: set, cancel and pop what is due, each in O(log n)."""

from __future__ import annotations

import heapq
import itertools
from typing import Hashable


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._when: dict[Hashable, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._when)

    def set(self, key: Hashable, when: float) -> None:
        entry = (when, next(self._seq))
        self._when[key] = entry
        heapq.heappush(self._heap, (entry[0], entry[1], key))
        if len(self._heap) > 4 * len(self._when) + 64:      # drop stale entries now and then
            self._heap = [(w, s, k) for w, s, k in self._heap if self._when.get(k) == (w, s)]
            heapq.heapify(self._heap)

    def cancel(self, key: Hashable) -> None:
        self._when.pop(key, None)

    def get(self, key: Hashable) -> float | None:
        entry = self._when.get(key)
        return None if entry is None else entry[0]

    def next(self) -> float | None:
        while self._heap:
            when, seq, key = self._heap[0]
            if self._when.get(key) == (when, seq):
                return when
            heapq.heappop(self._heap)
        return None

    def due(self, now: float, limit: int | None = None) -> list[Hashable]:
        """Pop the keys whose deadline is at or before ``now``, earliest first (at most ``limit``)."""
        out: list[Hashable] = []
        while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
            when, seq, key = heapq.heappop(self._heap)
            if self._when.get(key) == (when, seq):
                del self._when[key]
                out.append(key)
        return out
