"""The ledger interface: where aggregates, calls and terminal locations are kept so a
restart loses nothing.

The manager hands the ledger every change of one mutation as one :meth:`Ledger.commit`
(all or nothing) before it acknowledges anything; a commit that fails raises
:class:`~.errors.StoreUnavailable` and the manager undoes the mutation in memory.
Durable implementations live in ``ryu_apps.store`` (SQLite). ``MemoryLedger`` keeps
everything in the process: for tests, benchmarks and ``mamctl check-config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Union

from .aggregate import Aggregate
from .calls import Call
from .errors import StoreUnavailable
from .locations import Location


@dataclass(frozen=True, slots=True)
class PutAggregate:
    aggregate: Aggregate

    @property
    def key(self) -> tuple[str, str]:
        return "aggregate", self.aggregate.id


@dataclass(frozen=True, slots=True)
class DeleteAggregate:
    aggregate_id: str

    @property
    def key(self) -> tuple[str, str]:
        return "aggregate", self.aggregate_id


@dataclass(frozen=True, slots=True)
class PutCall:
    call: Call

    @property
    def key(self) -> tuple[str, str]:
        return "call", self.call.call_id


@dataclass(frozen=True, slots=True)
class DeleteCall:
    call_id: str

    @property
    def key(self) -> tuple[str, str]:
        return "call", self.call_id


@dataclass(frozen=True, slots=True)
class PutLocation:
    location: Location

    @property
    def key(self) -> tuple[str, str]:
        return "location", f"{self.location.community}|{self.location.ip}"


Write = Union[PutAggregate, DeleteAggregate, PutCall, DeleteCall, PutLocation]


@dataclass(frozen=True)
class LedgerState:
    aggregates: tuple[Aggregate, ...] = ()
    calls: tuple[Call, ...] = ()
    locations: tuple[Location, ...] = ()


class LedgerConflict(StoreUnavailable):
    """A shared ledger refused a commit because another controller changed what the
    mutation relied on (a pool's use, a call, a claimed tag). ``fresh`` holds the
    changes that bring this manager up to date, in commit order; the manager applies
    them (:meth:`~.manager.MediaAggregationManager.apply_remote`) and decides again."""

    def __init__(self, message: str, fresh: Sequence["Write"] = ()) -> None:
        super().__init__(message)
        self.fresh = tuple(fresh)


class LedgerTooLarge(StoreUnavailable):
    """A commit holds more than one transaction of the ledger may (etcd's
    ``--max-txn-ops``): nothing was sent. A group of admissions is committed in smaller
    groups; a single mutation is refused like any the store cannot record."""


class Ledger(Protocol):
    #: False when a restart loses what was committed (the controller warns at start).
    durable: bool

    def load(self) -> LedgerState: ...

    def commit(self, writes: Sequence[Write]) -> None:
        """Record every write or none; raise StoreUnavailable when it cannot."""


class MemoryLedger:
    durable = False

    def __init__(self) -> None:
        self.aggregates: dict[str, Aggregate] = {}
        self.calls: dict[str, Call] = {}
        self.locations: dict[tuple[str, str], Location] = {}

    def load(self) -> LedgerState:
        return LedgerState(tuple(self.aggregates.values()), tuple(self.calls.values()),
                           tuple(self.locations.values()))

    def commit(self, writes: Sequence[Write]) -> None:
        for write in writes:
            if isinstance(write, PutCall):
                self.calls[write.call.call_id] = write.call
            elif isinstance(write, DeleteCall):
                self.calls.pop(write.call_id, None)
            elif isinstance(write, PutAggregate):
                self.aggregates[write.aggregate.id] = write.aggregate
            elif isinstance(write, DeleteAggregate):
                self.aggregates.pop(write.aggregate_id, None)
            else:
                location = write.location
                self.locations[(location.community, location.ip)] = location

    def copy(self) -> "MemoryLedger":
        twin = MemoryLedger()
        twin.aggregates, twin.calls, twin.locations = dict(self.aggregates), dict(self.calls), dict(self.locations)
        return twin
