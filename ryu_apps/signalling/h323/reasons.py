"""Admission reasons and release causes as RAS reject reasons, Q.850 causes and H.225.0
ReleaseCompleteReasons (docs/h323.md has the tables)."""

from __future__ import annotations

from ryu_apps.core.admission import RejectReason

#: Admission refusal -> (ARJ/BRJ AdmissionRejectReason, Q.850 cause for a refused Setup).
REJECTIONS: dict[RejectReason, tuple[str, int]] = {
    RejectReason.POOL_FULL: ("resourceUnavailable", 34),          # no circuit/channel available
    RejectReason.PATH_DOWN: ("resourceUnavailable", 38),          # network out of order
    RejectReason.NO_AGGREGATE: ("resourceUnavailable", 47),       # resource unavailable, unspecified
    RejectReason.CODEC_NOT_ALLOWED: ("requestDenied", 65),        # bearer capability not implemented
    RejectReason.UNKNOWN_COMMUNITY: ("requestDenied", 21),        # call rejected
    RejectReason.UNKNOWN_CALL: ("requestDenied", 41),             # temporary failure
    RejectReason.INVALID_REQUEST: ("requestDenied", 100),         # invalid information element contents
    RejectReason.STORE_UNAVAILABLE: ("resourceUnavailable", 41),  # temporary failure: nothing admitted
    RejectReason.CONTENDED: ("resourceUnavailable", 41),          # the same: other controllers came first
}
CALLER_NOT_REGISTERED = "callerNotRegistered"
CALLED_PARTY_NOT_REGISTERED = "calledPartyNotRegistered"

#: Q.850 causes the gatekeeper itself uses.
NORMAL = 16
USER_BUSY = 17
NO_ANSWER = 19
UNALLOCATED_NUMBER = 1
NETWORK_OUT_OF_ORDER = 38
TEMPORARY_FAILURE = 41
RESOURCE_UNAVAILABLE = 47
TIMER_EXPIRY = 102
PREEMPTION = 8

#: Q.850 cause -> H.225.0 ReleaseCompleteReason (H.225.0 Table 5, the nearest match).
RELEASE_REASONS: dict[int, str] = {
    1: "badFormatAddress", 16: "destinationRejection", 17: "inConf", 19: "undefinedReason",
    21: "destinationRejection", 34: "noBandwidth", 38: "unreachableDestination", 41: "undefinedReason",
    47: "gatekeeperResources", 65: "neededFeatureNotSupported", 100: "undefinedReason",
    102: "undefinedReason", 8: "gatekeeperResources",
}


def cause_of_release(cause: str) -> int:
    """A cause string from admission (``ReleasedCall.cause``) -> Q.850 cause."""
    text = cause.lower()
    if text.startswith("preempted"):
        return PREEMPTION
    if text.startswith(("aggregate-deleted", "flow-install-failed")):
        return RESOURCE_UNAVAILABLE
    if text.startswith(("path-down", "link")):
        return NETWORK_OUT_OF_ORDER
    if text.startswith("media-idle"):
        return TIMER_EXPIRY
    return NORMAL


def release_reason(cause: int) -> str:
    return RELEASE_REASONS.get(cause, "undefinedReason")
