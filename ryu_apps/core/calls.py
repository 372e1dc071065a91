"""An admitted call as the ledger holds it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .admission import ServiceLevel, SignallingProtocol
from .codec import MediaSpec


class CallState(str, enum.Enum):
    """Bandwidth is held from ``admitted``; ``active`` once the switches confirmed the flows."""

    ADMITTED = "admitted"      # waiting for both media addresses (SDP answer)
    INSTALLING = "installing"  # flows sent, barrier not yet confirmed
    ACTIVE = "active"


@dataclass(frozen=True)
class MediaEndpoint:
    """Where a terminal receives media (from SDP c= and m=)."""

    ip: str
    port: int


@dataclass(frozen=True)
class Call:
    """One admitted call riding an aggregate.

    ``serial`` is a small number unique among live calls; it names the call's flows
    (cookie). ``tag_to_caller`` is the per-call tag (MPLS label) the caller's edge
    demultiplexes media on; ``tag_to_callee`` likewise at the callee's edge.
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

    @property
    def media_attached(self) -> bool:
        return self.caller_media is not None and self.callee_media is not None

    def with_media(self, caller: MediaEndpoint, callee: MediaEndpoint) -> "Call":
        return replace(self, caller_media=caller, callee_media=callee, state=CallState.INSTALLING)
