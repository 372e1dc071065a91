"""REST views of call detail records: the export (``GET /mam/v1/cdrs``) and the usage
report (``GET /mam/v1/reports/usage``), with their query parameters checked.

Times in queries: RFC 3339 / ISO 8601 (``2026-12-02T10:02:00Z``; no offset means UTC)
or seconds since the epoch. Times in answers: ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from webob import Request

from ..core import limits
from ..core.cdr import FIELDS, TIME_FIELDS, Record, UsageReport, to_dict
from .errors import HttpError

FORMATS = ("jsonl", "csv", "json")
MAX_RECORDS = 1_000_000
DEFAULT_PERIOD_S = 86400.0


def parse_time(text: str, name: str) -> float:
    """Epoch seconds from ISO 8601 or a number; a 400 naming ``name`` otherwise."""
    value = text.strip()
    if not value:
        raise HttpError(400, "empty: give an ISO 8601 time (2026-12-02T10:02:00Z) or seconds since the epoch",
                        field=name)
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or not 0 <= number < 253402300800:   # before year 10000
            raise HttpError(400, f"{value!r} is not a time in seconds since the epoch", field=name)
        return number
    try:
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        raise HttpError(400, f"{value!r} is not an ISO 8601 time (e.g. 2026-12-02T10:02:00Z) nor seconds "
                             "since the epoch", field=name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def period(request: Request, now: float, *, required: bool = False) -> tuple[float | None, float | None]:
    """``from`` and ``to`` from the query (``to`` after ``from``)."""
    raw_from, raw_to = request.GET.get("from"), request.GET.get("to")
    start: float | None
    end: float | None
    if required:
        end = parse_time(raw_to, "to") if raw_to is not None else now
        start = parse_time(raw_from, "from") if raw_from is not None else end - DEFAULT_PERIOD_S
    else:
        start = None if raw_from is None else parse_time(raw_from, "from")
        end = None if raw_to is None else parse_time(raw_to, "to")
    if start is not None and end is not None and end <= start:
        raise HttpError(400, f"must be after from ({iso(start)}), got {iso(end)}", field="to")
    return start, end


def choice(request: Request, name: str, options: Iterable[str], default: str) -> str:
    value = str(request.GET.get(name, default)).strip().lower()
    allowed = tuple(options)
    if value not in allowed:
        raise HttpError(400, f"expected one of {', '.join(allowed)}, got {value!r}", field=name)
    return value


def community(request: Request) -> str | None:
    raw = request.GET.get("community")
    if raw is None:
        return None
    value = str(raw)
    if not value or len(value) > limits.ID_LENGTH:
        raise HttpError(400, f"must be a community name of 1 to {limits.ID_LENGTH} characters", field="community")
    return value


def limit(request: Request) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return MAX_RECORDS
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"expected a whole number, got {raw!r}", field="limit") from None
    if not 1 <= value <= MAX_RECORDS:
        raise HttpError(400, f"must be between 1 and {MAX_RECORDS}, got {value}", field="limit")
    return value


def exported(record: Record) -> dict[str, Any]:
    row = to_dict(record)
    for name in TIME_FIELDS:
        row[name] = iso(row[name])
    return row


def to_csv(records: Iterable[Record]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in exported(record).items()})
    return out.getvalue()


def to_jsonl(records: Iterable[Record]) -> str:
    return "".join(json.dumps(exported(r), separators=(",", ":")) + "\n" for r in records)


def report_to_dict(report: UsageReport) -> dict[str, Any]:
    def section(usages: Mapping[str, Any]) -> dict[str, Any]:
        return {name: usage.to_dict() for name, usage in usages.items()}
    return {"from": iso(report.start), "to": iso(report.end), "communities": section(report.communities),
            "aggregates": section(report.aggregates),
            "definitions": "calls: admitted in the period; minutes: answered time in it; peak and p95 (time-"
                           "weighted) kbit/s held; blocking_rate: refused / (calls + refused); calls still up "
                           "count up to now (cause in-progress)"}
