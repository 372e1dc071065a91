"""The ledger interface: where aggregates and calls are kept so a restart loses nothing.

The core writes through on every change; a durable implementation (SQLite) lives in
``ryu_apps.store``. ``MemoryLedger`` is the in-process one for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .aggregate import Aggregate
from .calls import Call


@dataclass(frozen=True)
class LedgerState:
    aggregates: tuple[Aggregate, ...] = ()
    calls: tuple[Call, ...] = ()


class Ledger(Protocol):
    def load(self) -> LedgerState: ...
    def save_aggregate(self, aggregate: Aggregate) -> None: ...
    def delete_aggregate(self, aggregate_id: str) -> None: ...
    def save_call(self, call: Call) -> None: ...
    def delete_call(self, call_id: str) -> None: ...


class MemoryLedger:
    def __init__(self) -> None:
        self.aggregates: dict[str, Aggregate] = {}
        self.calls: dict[str, Call] = {}

    def load(self) -> LedgerState:
        return LedgerState(tuple(self.aggregates.values()), tuple(self.calls.values()))

    def save_aggregate(self, aggregate: Aggregate) -> None:
        self.aggregates[aggregate.id] = aggregate

    def delete_aggregate(self, aggregate_id: str) -> None:
        self.aggregates.pop(aggregate_id, None)

    def save_call(self, call: Call) -> None:
        self.calls[call.call_id] = call

    def delete_call(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
