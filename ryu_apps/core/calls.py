"""An admitted call as the ledger holds it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .admission import ServiceLevel, SignallingProtocol
from .codec import MediaSpec
from .lifecycle import CallState

__all__ = ["Call", "CallState", "MediaEndpoint"]


@dataclass(frozen=True)
class MediaEndpoint:
    """Where a terminal receives media (from SDP c= and m=)."""

    ip: str
    port: int


@dataclass(frozen=True)
class Call:
    """One admitted call riding an aggregate.

    ``serial`` is a small number unique among live (and releasing) calls; it names the
    call's flows (cookie) and this admission of ``call_id``. ``admitted_at`` is wall-clock
    time (seconds since the epoch, UTC): preemption order and records survive restarts.
    ``tag_to_caller`` is the per-call tag (MPLS label) the caller's edge demultiplexes
    media on; ``tag_to_callee`` likewise at the callee's edge.
    """

    call_id: str
    serial: int
    aggregate_id: str
    caller_community: str
    callee_community: str
    level: ServiceLevel
    media: MediaSpec
    kbps: int
    tag_to_caller: int
    tag_to_callee: int
    admitted_at: float
    state: CallState = CallState.ADMITTED
    caller_media: MediaEndpoint | None = None
    callee_media: MediaEndpoint | None = None
    protocol: SignallingProtocol = SignallingProtocol.REST
    #: What the front end needs to end the call itself after a controller restart (SIP:
    #: tags, contacts, route sets, CSeqs), as plain JSON-ready data it owns.
    dialog: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def media_attached(self) -> bool:
        return self.caller_media is not None and self.callee_media is not None

    def with_media(self, caller: MediaEndpoint, callee: MediaEndpoint) -> "Call":
        return replace(self, caller_media=caller, callee_media=callee, state=CallState.INSTALLING)

    def moved_to(self, state: CallState) -> "Call":
        return replace(self, state=state)
