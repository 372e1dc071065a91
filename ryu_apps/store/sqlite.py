"""SQLite ledger: aggregates and calls survive a controller restart.

One row per aggregate and per call, stored as JSON of the core's plain-data forms. WAL
journal with synchronous=NORMAL: a committed change survives a process crash; a power
cut may lose the last few changes but never corrupts the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading

from ..core.aggregate import Aggregate
from ..core.calls import Call
from ..core.serialize import aggregate_from_dict, aggregate_to_dict, call_from_dict, call_to_dict
from ..core.store import LedgerState

SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL, body TEXT NOT NULL);
"""


class SqliteLedger:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load(self) -> LedgerState:
        with self._lock:
            aggregates = tuple(aggregate_from_dict(json.loads(body))
                               for (body,) in self._db.execute("SELECT body FROM aggregates ORDER BY id"))
            calls = tuple(call_from_dict(json.loads(body))
                          for (body,) in self._db.execute("SELECT body FROM calls ORDER BY call_id"))
        return LedgerState(aggregates, calls)

    def save_aggregate(self, aggregate: Aggregate) -> None:
        self._write("INSERT OR REPLACE INTO aggregates (id, body) VALUES (?, ?)",
                    (aggregate.id, json.dumps(aggregate_to_dict(aggregate))))

    def delete_aggregate(self, aggregate_id: str) -> None:
        self._write("DELETE FROM aggregates WHERE id = ?", (aggregate_id,))

    def save_call(self, call: Call) -> None:
        self._write("INSERT OR REPLACE INTO calls (call_id, aggregate_id, body) VALUES (?, ?, ?)",
                    (call.call_id, call.aggregate_id, json.dumps(call_to_dict(call))))

    def delete_call(self, call_id: str) -> None:
        self._write("DELETE FROM calls WHERE call_id = ?", (call_id,))

    def _write(self, sql: str, args: tuple) -> None:
        with self._lock:
            self._db.execute(sql, args)
