"""What happened, as values: the events the service reports after each mutation.

Call detail records (:mod:`.cdr`) and the live event stream (``GET /mam/v1/events``)
are both built from these. ``at`` is wall-clock seconds since the epoch (UTC), the
``now`` of the mutation that caused the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .admission import AdmissionRequest, Rejected
from .aggregate import Aggregate
from .calls import Call
from .changes import ReleasedCall
from .survey import Transition


@dataclass(frozen=True)
class CallAdmitted:
    at: float
    call: Call
    preempted: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallAnswered:
    """Both media addresses are known (the SDP answer): the call's answered time."""

    at: float
    call: Call


@dataclass(frozen=True)
class CallRefused:
    at: float
    request: AdmissionRequest
    rejected: Rejected
    kbps: int | None = None
    aggregate_id: str | None = None


@dataclass(frozen=True)
class CallReleased:
    at: float
    released: ReleasedCall


@dataclass(frozen=True)
class AggregateChanged:
    """``change`` is created, resized, moved (new path, same size), resized-moved, reconfigured or deleted."""

    at: float
    aggregate_id: str
    change: str
    old: Aggregate | None
    new: Aggregate | None


@dataclass(frozen=True)
class LinkChanged:
    at: float
    transition: Transition


Activity = Union[CallAdmitted, CallAnswered, CallRefused, CallReleased, AggregateChanged, LinkChanged]


def aggregate_changes(before: dict[str, Aggregate], after: dict[str, Aggregate], at: float) -> list[AggregateChanged]:
    """What became of each pool between two snapshots (id -> aggregate)."""
    out = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            change = "created"
        elif new is None:
            change = "deleted"
        else:
            resized, moved = old.size_kbps != new.size_kbps, old.path != new.path
            change = ("resized-moved" if resized and moved else "resized" if resized else "moved" if moved
                      else "reconfigured")
        out.append(AggregateChanged(at, name, change, old, new))
    return out
