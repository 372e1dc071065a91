"""Admission requests and decisions. Decisions are values: `Admitted` or `Rejected`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .codec import MediaSpec


class ServiceLevel(enum.IntEnum):
    """Level of service asked for a call; a higher level may preempt a lower one."""

    VOICE_BAND_DATA = 1
    VOICE = 2
    EMERGENCY = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> "ServiceLevel":
        try:
            return cls[text.strip().upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown level of service {text!r} (expected one of "
                             f"{', '.join(level.label for level in cls)})") from None


class SignallingProtocol(str, enum.Enum):
    """How a call was set up: which front end asked for it."""

    SIP = "sip"
    H323 = "h323"
    REST = "rest"

    @classmethod
    def parse(cls, text: str) -> "SignallingProtocol":
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"unknown signalling protocol {text!r} (expected one of "
                             f"{', '.join(p.value for p in cls)})") from None


class RejectReason(str, enum.Enum):
    NO_AGGREGATE = "no-aggregate"
    POOL_FULL = "pool-full"
    PATH_DOWN = "path-down"
    CODEC_NOT_ALLOWED = "codec-not-allowed"
    UNKNOWN_COMMUNITY = "unknown-community"
    UNKNOWN_CALL = "unknown-call"
    INVALID_REQUEST = "invalid-request"
    STORE_UNAVAILABLE = "store-unavailable"
    CONTENDED = "contended"      # other controllers kept changing the pool first (shared ledger); try again


@dataclass(frozen=True)
class AdmissionRequest:
    call_id: str
    caller_community: str
    callee_community: str
    media: MediaSpec
    level: ServiceLevel = ServiceLevel.VOICE
    protocol: SignallingProtocol = SignallingProtocol.REST


@dataclass(frozen=True)
class Admitted:
    """``serial`` names this admission of ``call_id`` (a later call with the same id gets
    another): a front end compares it with what it holds before acting on a release."""

    call_id: str
    aggregate_id: str
    kbps: int
    preempted: tuple[str, ...] = ()
    serial: int = 0


@dataclass(frozen=True)
class Rejected:
    call_id: str
    reason: RejectReason
    detail: str


Decision = Admitted | Rejected
