"""The shell that turns what the service reports into call detail records and keeps them.

:class:`CdrRecorder` watches the service (``MamService.watch``): a released call becomes
a :class:`~.core.cdr.CDR` (its answered time is the moment both media addresses were
known), a refused admission a :class:`~.core.cdr.Refusal`. Records are buffered and
written in batches (one SQLite transaction per ``batch`` records, or per ``flush_s``
seconds from the app's loop), so recording costs admission almost nothing; a query
writes the buffer first, so it always sees every record made. Records older than
``retention_days`` are purged at most once per ``purge_every_s``.

A record the store refuses stays buffered (up to ``max_buffer``; beyond that the oldest
are dropped and counted in ``dropped``) and is written with the next batch.

Calls released *by another controller* sharing an etcd ledger are recorded by that
controller, not here. A call restored after a restart has no answered time (unknown).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .core.activity import Activity, CallAnswered, CallRefused, CallReleased
from .core.cdr import CdrStore, Record, call_record, refusal_record, retention_cutoff
from .core.replica import RELEASED_ELSEWHERE

log = logging.getLogger(__name__)


class CdrRecorder:
    def __init__(self, store: CdrStore, *, retention_days: float = 90.0, clock: Callable[[], float] = time.time,
                 batch: int = 256, max_buffer: int = 100_000, purge_every_s: float = 3600.0) -> None:
        self.store = store
        self.retention_days = retention_days
        self.clock = clock
        self.batch, self.max_buffer, self.purge_every_s = batch, max_buffer, purge_every_s
        self.dropped = 0
        self.written = 0
        self._buffer: list[Record] = []
        self._answered: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def __call__(self, event: Activity) -> None:
        """A service watcher (runs under the service's lock: it only buffers, or writes a batch)."""
        record: Record | None = None
        if isinstance(event, CallAnswered):
            self._answered.setdefault(event.call.call_id, event.at)
        elif isinstance(event, CallReleased):
            released = event.released
            answered = self._answered.pop(released.call_id, None)
            if released.call is not None and released.cause != RELEASED_ELSEWHERE:
                record = call_record(released.call, event.at, released.cause, answered, released.preempted_by)
        elif isinstance(event, CallRefused):
            record = refusal_record(event.request, event.rejected, event.at, event.kbps, event.aggregate_id)
        if record is not None:
            with self._lock:
                self._buffer.append(record)
                full = len(self._buffer) >= self.batch
            if full:
                self.flush()

    def flush(self) -> int:
        """Write what is buffered; purge what is past retention when it is time. Never raises."""
        with self._lock:
            pending, self._buffer = self._buffer, []
            if pending:
                try:
                    evicted = getattr(self.store, "evicted", 0)
                    self.store.add(pending)
                    self.written += len(pending)
                    if evicted == 0 and getattr(self.store, "evicted", 0):
                        log.warning("call records in memory reached their limit: the oldest are dropped from now "
                                    "on (cdr.memory_limit; set store: or cdr.path to keep them all)")
                except Exception as error:   # kept for the next batch; the oldest go when too many wait
                    log.warning("call records not written yet (%d waiting): %s", len(pending), error)
                    keep = pending[-self.max_buffer:]
                    self.dropped += len(pending) - len(keep)
                    self._buffer = keep + self._buffer
                    return 0
            now = self.clock()
            if now >= self._next_purge:
                self._next_purge = now + self.purge_every_s
                try:
                    purged = self.store.purge(retention_cutoff(now, self.retention_days))
                    if purged:
                        log.info("purged %d call record(s) older than %g days", purged, self.retention_days)
                except Exception as error:
                    log.warning("call records not purged: %s", error)
            return len(pending)

    def answered_at(self, call_id: str) -> float | None:
        """When a live call was answered, if it was (and this controller saw it)."""
        return self._answered.get(call_id)

    def query(self, start: float | None = None, end: float | None = None, community: str | None = None,
              overlapping: bool = False, limit: int | None = None) -> list[Record]:
        self.flush()
        return self.store.query(start, end, community, overlapping, limit)
