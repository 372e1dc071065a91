"""etcd's data model in memory: revisions, versions, compare-and-swap transactions and
per-client watches whose delivery the caller controls.

For tests and benchmarks of :class:`~.shared.SharedLedger` without a server: several
ledgers (controllers) share one :class:`MemoryStore`, each through its own
:class:`MemoryKV`, and a test decides when each one's watch delivers, so every
interleaving of decisions and watch events can be tried. Transactions follow etcd's
rules: one revision per transaction that writes, a key may appear once among its
operations, a compare on a missing key's value fails.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..core.errors import StoreUnavailable
from .shared import Compare, Delete, KeyValue, Op, Put, TxnResult


@dataclass
class _Entry:
    value: str
    create: int
    mod: int
    version: int


class MemoryStore:
    def __init__(self) -> None:
        self.revision = 1
        self.data: dict[str, _Entry] = {}
        self.down = False
        self._watchers: list[MemoryKV] = []

    def check(self) -> None:
        if self.down:
            raise StoreUnavailable("the store is down (memory store switched off)")

    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        self.check()
        ok = all(self._holds(c) for c in compares)
        ops = success if ok else failure
        keys = [op.key for op in ops]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate key given in txn request: {sorted(k for k in keys if keys.count(k) > 1)}")
        events: list[KeyValue] = []
        if ops:
            self.revision += 1
            for op in ops:
                if isinstance(op, Put):
                    entry = self.data.get(op.key)
                    self.data[op.key] = _Entry(op.value, entry.create if entry else self.revision, self.revision,
                                               entry.version + 1 if entry else 1)
                    events.append(KeyValue(op.key, op.value, self.revision))
                elif self.data.pop(op.key, None) is not None:
                    events.append(KeyValue(op.key, None, self.revision))
        for watcher in self._watchers:
            watcher.pending.extend(e for e in events if e.key.startswith(watcher.prefix))
        return TxnResult(ok, self.revision)

    def _holds(self, compare: Compare) -> bool:
        entry = self.data.get(compare.key)
        if compare.target == "value":
            if entry is None:                # etcd: a value compare on a missing key fails
                return False
            have: int | str = entry.value
        else:
            have = (entry.version if compare.target == "version" else entry.mod) if entry else 0
        if compare.result == "less":
            return have < compare.expected        # type: ignore[operator]
        return have == compare.expected

    def watch(self, kv: "MemoryKV") -> None:
        self._watchers.append(kv)


class MemoryKV:
    """One controller's connection to a :class:`MemoryStore`; its watch feeds ``feed``
    when :meth:`deliver` is called (or at once with ``auto=True``)."""

    def __init__(self, store: MemoryStore, prefix: str = "/", auto: bool = False) -> None:
        self.store = store
        self.prefix = prefix
        self.auto = auto
        self.lose_answers = 0          # tests: the next N transactions are applied but their answers lost
        self.pending: deque[KeyValue] = deque()
        self.feed: Callable[[Iterable[KeyValue]], None] = lambda events: None
        store.watch(self)

    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        result = self.store.txn(compares, success, failure)
        if self.lose_answers:
            self.lose_answers -= 1
            raise StoreUnavailable("injected: the answer was lost")
        if self.auto:
            self.deliver()
        return result

    def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        self.store.check()
        return self.store.revision, [KeyValue(k, e.value, e.mod) for k, e in sorted(self.store.data.items())
                                     if k.startswith(prefix)]

    def get(self, key: str) -> KeyValue | None:
        self.store.check()
        entry = self.store.data.get(key)
        return None if entry is None else KeyValue(key, entry.value, entry.mod)

    def catch_up(self, revision: int, timeout: float) -> bool:
        self.deliver(until=revision)
        return True

    def deliver(self, count: int | None = None, until: int | None = None) -> int:
        """Feed the pending events of up to ``count`` revisions (all by default, or those
        up to revision ``until``), a revision's events together as etcd sends them; how
        many events were fed."""
        batch: list[KeyValue] = []
        revisions = 0
        while self.pending and (until is None or self.pending[0].revision <= until):
            revision = self.pending[0].revision
            if count is not None and revisions >= count:
                break
            revisions += 1
            while self.pending and self.pending[0].revision == revision:
                batch.append(self.pending.popleft())
        if batch:
            self.feed(batch)
        return len(batch)
