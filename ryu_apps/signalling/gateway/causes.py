"""Q.850 cause <-> SIP status (RFC 3398) and the Reason header (RFC 3326, RFC 6432).

A Reason header with a Q.850 cause wins over the status mapping in both directions: the
cause a PSTN or H.323 side gave travels end to end (RFC 6432), and what admission says
(``cause=34`` for a full pool) keeps its meaning across the gateway.
"""

from __future__ import annotations

import re

__all__ = ["Q850_TO_SIP", "SIP_TO_Q850", "q850_of_reason", "q850_of_status", "reason_header", "status_of_q850"]

#: RFC 3398 section 8.2.6.1 (Q.850 cause -> SIP response), plus 65/88 as the MAM proxy uses them.
Q850_TO_SIP: dict[int, int] = {
    1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 23: 410, 26: 404,
    27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 44: 503, 47: 503,
    55: 403, 57: 403, 58: 503, 65: 488, 70: 488, 79: 501, 87: 403, 88: 488, 102: 504, 111: 500, 127: 500,
}

#: RFC 3398 section 7.2.4.1 (SIP response -> Q.850 cause), plus 488 -> 65 and 580 -> 47.
SIP_TO_Q850: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22, 413: 127,
    414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41, 482: 25, 483: 25,
    484: 28, 485: 1, 486: 17, 487: 127, 488: 65, 500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127,
    513: 127, 580: 47, 600: 17, 603: 21, 604: 1, 606: 58,
}

REASON_PHRASES = {400: "Bad Request", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
                  481: "Call/Transaction Does Not Exist", 491: "Request Pending", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 410: "Gone", 480: "Temporarily Unavailable",
                  484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
                  500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Server Time-out"}

_CAUSE = re.compile(r"(?:^|;)\s*cause\s*=\s*(\d{1,3})\s*(?:;|$)", re.I)


def status_of_q850(cause: int | None) -> int:
    """The SIP final status for a call the H.323 side refused or ended before answer."""
    if cause is None:
        return 500
    return Q850_TO_SIP.get(cause, 500 if cause >= 96 else 480 if cause < 32 else 503)


def q850_of_status(status: int) -> int:
    """The Q.850 cause for a SIP final response >= 300 (RFC 3398 7.2.4.1; unlisted: by class)."""
    found = SIP_TO_Q850.get(status)
    if found is not None:
        return found
    if status >= 600:
        return 31
    if status >= 500:
        return 41
    return 127


def q850_of_reason(values: list[str]) -> int | None:
    """The cause of the first ``Reason: Q.850;cause=N`` (N in 1..127), or None."""
    for value in values:
        protocol, _, params = value.partition(";")
        if protocol.strip().upper() != "Q.850":
            continue
        match = _CAUSE.search(";" + params)
        if match and 1 <= int(match.group(1)) <= 127:
            return int(match.group(1))
    return None


def reason_header(cause: int, text: str = "") -> str:
    safe = text.replace("\\", "").replace('"', "'").replace("\r", " ").replace("\n", " ")[:120]
    return f'Q.850;cause={cause};text="{safe}"' if safe else f"Q.850;cause={cause}"


def phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Failed")
