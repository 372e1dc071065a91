"""One mutation of the manager as a transaction: undo what it did in memory unless the
ledger recorded it.

Every state change the manager makes goes through a primitive that registers its
inverse here (:meth:`Journal.undo`) and the ledger write that makes it durable
(:meth:`Journal.write`). :meth:`Journal.rollback` runs the inverses newest first, so a
failed commit leaves memory exactly as it was; :meth:`Journal.after` holds what may
happen only once the change is durable (counters, notifications).

Several mutations committed together (a group of admissions: :mod:`.batch`) share one
transaction; :meth:`Journal.savepoint` and :meth:`Journal.rollback_to` undo one of them
alone when it fails, leaving the others to be committed.
"""

from __future__ import annotations

from typing import Callable

from .store import Write


class Journal:
    def __init__(self) -> None:
        self.active = False
        self._undo: list[Callable[[], None]] = []
        self._after: list[Callable[[], None]] = []
        self._writes: list[Write] = []      # in order; a later write of a key replaces an earlier one

    def begin(self) -> None:
        assert not self.active, "a transaction is already open"
        self.active = True

    def undo(self, inverse: Callable[[], None]) -> None:
        if self.active:
            self._undo.append(inverse)

    def write(self, write: Write) -> None:
        """A change to record; a later write of the same key replaces an earlier one."""
        if self.active:
            self._writes.append(write)

    def after(self, action: Callable[[], None]) -> None:
        if self.active:
            self._after.append(action)
        else:
            action()

    def writes(self) -> tuple[Write, ...]:
        latest: dict[tuple[str, str], Write] = {}
        for write in self._writes:
            latest.pop(write.key, None)
            latest[write.key] = write
        return tuple(latest.values())

    def savepoint(self) -> tuple[int, int, int]:
        """Where the open transaction stands: :meth:`rollback_to` returns it there."""
        assert self.active, "no transaction is open"
        return len(self._undo), len(self._after), len(self._writes)

    def rollback_to(self, savepoint: tuple[int, int, int]) -> None:
        """Undo what was done since ``savepoint``; the transaction stays open."""
        undo, after, writes = savepoint
        inverses = self._undo[undo:]
        del self._undo[undo:], self._after[after:], self._writes[writes:]
        self.active = False               # inverses journal nothing
        try:
            for inverse in reversed(inverses):
                inverse()
        finally:
            self.active = True

    def rollback(self) -> None:
        undo = self._undo
        self._end()                       # inverses run outside the transaction: they journal nothing
        for inverse in reversed(undo):
            inverse()

    def committed(self) -> None:
        after = self._after
        self._end()
        for action in after:
            action()

    def _end(self) -> None:
        self.active = False
        self._undo, self._after, self._writes = [], [], []
