"""SQLite ledger: aggregates, calls and terminal locations survive a controller restart.

One row per aggregate, call and location, stored as JSON of the core's plain-data forms.
Each :meth:`SqliteLedger.commit` is one SQLite transaction: every write of a manager
mutation lands, or none does (and the manager undoes the mutation in memory). WAL
journal with synchronous=NORMAL: a committed change survives a process crash; a power
cut may lose the last few changes but never corrupts the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Sequence

from ..core.cdr import CDR, Record
from ..core.cdr import FIELDS as CDR_FIELDS
from ..core.cdr import from_dict as cdr_from_dict, to_dict as cdr_to_dict
from ..core.errors import StoreUnavailable
from ..core.locations import Location
from ..core.serialize import aggregate_from_dict, aggregate_to_dict, call_from_dict, call_to_dict
from ..core.store import DeleteAggregate, DeleteCall, LedgerState, PutAggregate, PutCall, Write

SCHEMA = """
CREATE TABLE IF NOT EXISTS aggregates (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locations (community TEXT NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL,
                                      PRIMARY KEY (community, ip));
"""


class SqliteLedger:
    durable = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = _open(path, SCHEMA, "the SQLite ledger", "store")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load(self) -> LedgerState:
        with self._lock:
            aggregates = tuple(aggregate_from_dict(json.loads(body))
                               for (body,) in self._db.execute("SELECT body FROM aggregates ORDER BY id"))
            calls = tuple(call_from_dict(json.loads(body))
                          for (body,) in self._db.execute("SELECT body FROM calls ORDER BY call_id"))
            locations = tuple(Location(community, ip, port) for community, ip, port in self._db.execute(
                "SELECT community, ip, port FROM locations ORDER BY community, ip"))
        return LedgerState(aggregates, calls, locations)

    def commit(self, writes: Sequence[Write]) -> None:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for write in writes:
                        self._apply(db, write)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"the SQLite ledger {self.path} refused the change: {error}") from None

    @staticmethod
    def _apply(db: sqlite3.Connection, write: Write) -> None:
        if isinstance(write, PutCall):
            call = write.call
            db.execute("INSERT OR REPLACE INTO calls (call_id, aggregate_id, body) VALUES (?, ?, ?)",
                       (call.call_id, call.aggregate_id, json.dumps(call_to_dict(call))))
        elif isinstance(write, DeleteCall):
            db.execute("DELETE FROM calls WHERE call_id = ?", (write.call_id,))
        elif isinstance(write, PutAggregate):
            db.execute("INSERT OR REPLACE INTO aggregates (id, body) VALUES (?, ?)",
                       (write.aggregate.id, json.dumps(aggregate_to_dict(write.aggregate))))
        elif isinstance(write, DeleteAggregate):
            db.execute("DELETE FROM aggregates WHERE id = ?", (write.aggregate_id,))
        else:
            location = write.location
            db.execute("INSERT OR REPLACE INTO locations (community, ip, port) VALUES (?, ?, ?)",
                       (location.community, location.ip, location.port))


#: one column per exported field (no JSON: serialising was most of a record's cost)
CDR_SCHEMA = """
CREATE TABLE IF NOT EXISTS call_records (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, first REAL NOT NULL,
                                         {columns});
CREATE INDEX IF NOT EXISTS call_records_at ON call_records (at);
""".format(columns=", ".join(CDR_FIELDS))


INSERT_CDR = (f"INSERT INTO call_records (at, first, {', '.join(CDR_FIELDS)}) "
              f"VALUES ({', '.join('?' * (len(CDR_FIELDS) + 2))})")


class SqliteCdrStore:
    """Call detail and refusal records (:mod:`ryu_apps.core.cdr`) in a SQLite table.

    The default: the ledger's own file (a second connection; WAL lets it write beside the
    ledger). With the etcd ledger each controller keeps the records of the calls it
    handled in a local file (``cdr.path``, default ``cdr.sqlite`` beside the configuration).
    One column per field of :data:`ryu_apps.core.cdr.FIELDS`; ``at`` is when the record was made (release or refusal), ``first`` when the call
    first held bandwidth (its admission; a refusal's time): a period query reads the rows
    whose span meets it through the index on ``at``.
    """

    durable = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = _open(path, CDR_SCHEMA, "the call records", "cdr")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, records: Sequence[Record]) -> None:
        rows = [(r.at, r.admitted_at if isinstance(r, CDR) else r.at, *cdr_to_dict(r).values()) for r in records]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(INSERT_CDR, rows)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                raise StoreUnavailable(f"the call records {self.path} refused {len(rows)} record(s): {error}") \
                    from None

    def query(self, start: float | None = None, end: float | None = None, community: str | None = None,
              overlapping: bool = False, limit: int | None = None) -> list[Record]:
        where: list[str] = []
        args: list[object] = []
        if start is not None:
            where.append("at >= ?")
            args.append(start)
        if end is not None:
            where.append("first < ?" if overlapping else "at < ?")
            args.append(end)
        if community is not None:
            where.append("(caller_community = ? OR callee_community = ?)")
            args += [community, community]
        sql = f"SELECT {', '.join(CDR_FIELDS)} FROM call_records" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot read the call records {self.path}: {error}") from None
        return [cdr_from_dict(dict(zip(CDR_FIELDS, row))) for row in rows]

    def purge(self, before: float) -> int:
        try:
            with self._lock:
                return self._db.execute("DELETE FROM call_records WHERE at < ?", (before,)).rowcount
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot purge the call records {self.path}: {error}") from None


def _open(path: str, schema: str, what: str, field: str) -> sqlite3.Connection:
    """A connection in WAL mode with ``schema`` applied; a failure names ``what`` and ``field``."""
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.Error as error:
        raise StoreUnavailable(f"cannot open {what} {path}: {error}", field=field) from None
    return db
