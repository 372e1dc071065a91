"""Call detail records, refusal records and the usage report they add up to.

Every call that ends leaves a :class:`CDR`; every admission refused leaves a
:class:`Refusal`. Both are plain values built here from the core's own types, with
wall-clock times (seconds since the epoch, UTC) handed in by the shell; the shell
stores them (``ryu_apps.store.sqlite.SqliteCdrStore``) and formats them (CSV, JSON lines).

Definitions used by :func:`usage_report` over a period ``[start, end)``:

* a call *holds* bandwidth from ``admitted_at`` to ``released_at``; it is *answered*
  from ``answered_at`` (both media addresses known) to ``released_at``;
* ``calls``: calls admitted in the period (so consecutive periods add up);
* ``minutes``: answered time inside the period (clipped to it), in minutes;
* ``peak_concurrent`` / ``peak_kbps``: the most calls / kbit/s held at one instant;
* ``p95_kbps``: the time-weighted 95th percentile of held kbit/s over the period
  (the smallest level that the held bandwidth stays at or under for 95 % of the period);
* ``refusals``: refusals in the period by reason; ``blocking_rate``: refusals /
  (calls + refusals), 0 when there were neither.

A call counts towards both of its communities and its aggregate; a refusal towards the
communities it named and the aggregate it would have used (when there was one).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence, Union

from .admission import AdmissionRequest, Rejected
from .calls import Call

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class CDR:
    """One call that ended. ``duration_s`` is the answered time (0 if never answered);
    ``held_s`` how long it held bandwidth."""

    call_id: str
    protocol: str
    caller_community: str
    callee_community: str
    aggregate_id: str
    level: str
    codec: str
    kbps: int
    admitted_at: float
    answered_at: float | None
    released_at: float
    cause: str
    preempted_by: str | None = None
    kind: str = field(default="call", init=False)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.answered_at is None else max(0.0, self.released_at - self.answered_at)

    @property
    def held_s(self) -> float:
        return max(0.0, self.released_at - self.admitted_at)

    @property
    def at(self) -> float:
        """When the record was made (the call's release)."""
        return self.released_at

    @property
    def communities(self) -> tuple[str, str]:
        return self.caller_community, self.callee_community


@dataclass(frozen=True)
class Refusal:
    """One admission refused: why (``reason``, a :class:`~.admission.RejectReason` value) and the detail."""

    call_id: str
    protocol: str
    caller_community: str
    callee_community: str
    aggregate_id: str | None      # the pool the call would have used, when there was one
    level: str
    codec: str
    kbps: int | None              # what the call would have needed, when the codec is known
    refused_at: float
    reason: str
    detail: str
    kind: str = field(default="refusal", init=False)

    @property
    def at(self) -> float:
        return self.refused_at

    @property
    def communities(self) -> tuple[str, str]:
        return self.caller_community, self.callee_community


Record = Union[CDR, Refusal]

#: Every field a record may have, in export order (CSV columns; JSON keys).
FIELDS = ("kind", "call_id", "protocol", "caller_community", "callee_community", "aggregate_id", "level", "codec",
          "kbps", "admitted_at", "answered_at", "released_at", "duration_s", "cause", "preempted_by",
          "refused_at", "reason", "detail")
TIME_FIELDS = frozenset({"admitted_at", "answered_at", "released_at", "refused_at"})


def call_record(call: Call, released_at: float, cause: str, answered_at: float | None = None,
                preempted_by: str | None = None) -> CDR:
    """The record of ``call`` ending at ``released_at`` (an answer time before its
    admission, from a clock that stepped, is taken as the admission)."""
    if answered_at is not None:
        answered_at = min(max(answered_at, call.admitted_at), max(released_at, call.admitted_at))
    return CDR(call.call_id, call.protocol.value, call.caller_community, call.callee_community, call.aggregate_id,
               call.level.label, call.media.codec, call.kbps, call.admitted_at, answered_at,
               max(released_at, call.admitted_at), cause, preempted_by or None)


def refusal_record(request: AdmissionRequest, rejected: Rejected, refused_at: float, kbps: int | None = None,
                   aggregate_id: str | None = None) -> Refusal:
    return Refusal(request.call_id, request.protocol.value, request.caller_community, request.callee_community,
                   aggregate_id, request.level.label, request.media.codec, kbps, refused_at, rejected.reason.value,
                   rejected.detail)


def to_dict(record: Record) -> dict[str, Any]:
    """Every field of :data:`FIELDS` (None where the kind has none); times as epoch seconds.
    (Field by field: ``dataclasses.asdict`` copies deeply and cost 10x as much per record.)"""
    raw = {name: getattr(record, name, None) for name in FIELDS}
    if isinstance(record, CDR):
        raw["duration_s"] = round(record.duration_s, 3)
    return raw


def from_dict(raw: Mapping[str, Any]) -> Record:
    if raw.get("kind") == "refusal":
        return Refusal(raw["call_id"], raw["protocol"], raw["caller_community"], raw["callee_community"],
                       raw.get("aggregate_id"), raw["level"], raw["codec"], raw.get("kbps"), float(raw["refused_at"]),
                       raw["reason"], raw["detail"])
    answered = raw.get("answered_at")
    return CDR(raw["call_id"], raw["protocol"], raw["caller_community"], raw["callee_community"],
               raw["aggregate_id"], raw["level"], raw["codec"], int(raw["kbps"]), float(raw["admitted_at"]),
               None if answered is None else float(answered), float(raw["released_at"]), raw["cause"],
               raw.get("preempted_by"))


def retention_cutoff(now: float, retention_days: float) -> float:
    """Records made before this time are past retention."""
    return now - retention_days * SECONDS_PER_DAY


class CdrStore(Protocol):
    """Where records are kept (``ryu_apps.store.sqlite.SqliteCdrStore``, or :class:`MemoryCdrStore`)."""

    def add(self, records: Sequence[Record]) -> None: ...

    def query(self, start: float | None = None, end: float | None = None, community: str | None = None,
              overlapping: bool = False, limit: int | None = None) -> list[Record]: ...

    def purge(self, before: float) -> int: ...


class MemoryCdrStore:
    """Records in the process (tests, benchmarks, a controller with no ``store:``): the
    newest ``limit`` of them (``cdr.memory_limit``), so a controller that runs for weeks
    without a store does not grow without bound; ``evicted`` counts the oldest dropped."""

    durable = False

    def __init__(self, limit: int | None = None) -> None:
        self.records: deque[Record] = deque(maxlen=limit)
        self.evicted = 0

    def add(self, records: Sequence[Record]) -> None:
        if self.records.maxlen is not None:
            self.evicted += max(0, len(self.records) + len(records) - self.records.maxlen)
        self.records.extend(records)

    def query(self, start: float | None = None, end: float | None = None, community: str | None = None,
              overlapping: bool = False, limit: int | None = None) -> list[Record]:
        out = [r for r in self.records if selected(r, start, end, community, overlapping)]
        out.sort(key=lambda r: r.at)
        return out if limit is None else out[:limit]

    def purge(self, before: float) -> int:
        kept = [r for r in self.records if r.at >= before]
        purged = len(self.records) - len(kept)
        self.records = deque(kept, maxlen=self.records.maxlen)
        return purged


def selected(record: Record, start: float | None, end: float | None, community: str | None,
             overlapping: bool = False) -> bool:
    """Whether a query keeps ``record``: made in ``[start, end)`` or, with ``overlapping``,
    a call holding bandwidth at some time in it (a refusal: made in it)."""
    if community is not None and community not in record.communities:
        return False
    first = record.admitted_at if overlapping and isinstance(record, CDR) else record.at
    if end is not None and first >= end:
        return False
    if start is not None and record.at < start:
        return False
    return True


# --- the usage report -------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    calls: int
    minutes: float
    peak_concurrent: int
    peak_kbps: int
    p95_kbps: int
    refusals: Mapping[str, int]
    blocking_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "minutes": round(self.minutes, 3), "peak_concurrent": self.peak_concurrent,
                "peak_kbps": self.peak_kbps, "p95_kbps": self.p95_kbps, "refusals": dict(self.refusals),
                "refused": sum(self.refusals.values()), "blocking_rate": round(self.blocking_rate, 6)}


@dataclass(frozen=True)
class UsageReport:
    start: float
    end: float
    communities: Mapping[str, Usage]
    aggregates: Mapping[str, Usage]


def usage_report(records: Iterable[Record], start: float, end: float) -> UsageReport:
    """Per community and per aggregate usage over ``[start, end)`` (see the module's definitions)."""
    if not end > start:
        raise ValueError("the period must end after it starts")
    by_community: dict[str, list[Record]] = {}
    by_aggregate: dict[str, list[Record]] = {}
    for record in records:
        for name in dict.fromkeys(record.communities):
            by_community.setdefault(name, []).append(record)
        if record.aggregate_id is not None:
            by_aggregate.setdefault(record.aggregate_id, []).append(record)
    return UsageReport(start, end,
                       {name: usage(group, start, end) for name, group in sorted(by_community.items())},
                       {name: usage(group, start, end) for name, group in sorted(by_aggregate.items())})


def usage(records: Iterable[Record], start: float, end: float) -> Usage:
    calls = 0
    answered = 0.0
    refusals: dict[str, int] = {}
    steps: list[tuple[float, int, int]] = []       # (time, +-1 call, +-kbps)
    for record in records:
        if isinstance(record, Refusal):
            if start <= record.refused_at < end:
                refusals[record.reason] = refusals.get(record.reason, 0) + 1
            continue
        if start <= record.admitted_at < end:
            calls += 1
        if record.answered_at is not None:
            answered += _overlap(record.answered_at, record.released_at, start, end)
        held_from, held_to = max(record.admitted_at, start), min(record.released_at, end)
        if held_to > held_from:
            steps += [(held_from, 1, record.kbps), (held_to, -1, -record.kbps)]
    peak_calls, peak_kbps, p95 = _levels(steps, start, end)
    refused = sum(refusals.values())
    return Usage(calls, answered / 60.0, peak_calls, peak_kbps, p95, dict(sorted(refusals.items())),
                 refused / (calls + refused) if calls + refused else 0.0)


def _overlap(a: float, b: float, start: float, end: float) -> float:
    return max(0.0, min(b, end) - max(a, start))


def _levels(steps: list[tuple[float, int, int]], start: float, end: float) -> tuple[int, int, int]:
    """Peak calls, peak kbit/s and the time-weighted 95th percentile of kbit/s."""
    steps.sort(key=lambda s: (s[0], s[1]))          # at one instant, ends before starts: no false peak
    calls = kbps = peak_calls = peak_kbps = 0
    time_at: dict[int, float] = {}
    last = start
    for when, delta_calls, delta_kbps in steps:
        time_at[kbps] = time_at.get(kbps, 0.0) + (when - last)
        last = when
        calls += delta_calls
        kbps += delta_kbps
        peak_calls, peak_kbps = max(peak_calls, calls), max(peak_kbps, kbps)
    time_at[kbps] = time_at.get(kbps, 0.0) + (end - last)
    return peak_calls, peak_kbps, percentile_level(time_at, 0.95)


def percentile_level(time_at: Mapping[int, float], fraction: float) -> int:
    """The smallest level whose cumulative time reaches ``fraction`` of the total."""
    total = sum(time_at.values())
    if total <= 0:
        return 0
    running = 0.0
    for level in sorted(time_at):
        running += time_at[level]
        if running >= fraction * total - 1e-9 * max(1.0, total):
            return level
    return max(time_at)  # pragma: no cover - rounding



# --- series for charts ------------------------------------------------------------------

def held_steps(records: Iterable[Record], start: float, end: float) -> list[tuple[float, int]]:
    """kbit/s held over ``[start, end)`` as (time, level from then on) steps, from ``start``."""
    changes: dict[float, int] = {}
    level = 0
    for record in records:
        if not isinstance(record, CDR):
            continue
        if record.admitted_at < start < record.released_at or record.admitted_at == start:
            level += record.kbps
        elif start < record.admitted_at < end:
            changes[record.admitted_at] = changes.get(record.admitted_at, 0) + record.kbps
        if start < record.released_at < end and record.admitted_at < end:
            changes[record.released_at] = changes.get(record.released_at, 0) - record.kbps
    steps = [(start, level)]
    for when in sorted(changes):
        level += changes[when]
        steps.append((when, level))
    return steps


def refusal_counts(records: Iterable[Record], start: float, end: float, step: float) -> dict[str, list[int]]:
    """Refusals per reason in consecutive ``step``-second buckets of ``[start, end)``."""
    if not step > 0 or not end > start:
        raise ValueError("the period must end after it starts, in steps longer than zero")
    buckets = max(1, -(-int(end - start) // int(max(1.0, step))))
    out: dict[str, list[int]] = {}
    for record in records:
        if isinstance(record, Refusal) and start <= record.refused_at < end:
            counts = out.setdefault(record.reason, [0] * buckets)
            counts[min(buckets - 1, int((record.refused_at - start) // step))] += 1
    return dict(sorted(out.items()))
