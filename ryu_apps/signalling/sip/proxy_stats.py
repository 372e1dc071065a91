"""The SIP proxy's counters."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass
class ProxyStats:
    """Counters; ``snapshot()`` gives a copy safe to hand to another thread."""

    received: int = 0
    keepalives: int = 0
    malformed: int = 0             # failed to parse or validate
    dropped: int = 0               # ... and no response could be built
    answered_malformed: int = 0    # ... and answered 400/413/416/505
    oversized: int = 0
    retransmissions: int = 0       # absorbed by a transaction
    requests_forwarded: int = 0
    responses_forwarded: int = 0
    stray_responses: int = 0       # matched no transaction: dropped
    stray_forwarded: int = 0       # ... a 2xx of a call we hold, sent to where its INVITE came from
    admitted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    forbidden: int = 0             # caller outside every community
    unmanaged: int = 0             # caller and callee in one community: no aggregate involved
    released: int = 0
    released_unknown: int = 0      # BYE/CANCEL for a call we do not hold: released anyway (idempotent)
    attached: int = 0
    modified: int = 0
    modify_refused: int = 0
    timeouts: int = 0
    timer_c: int = 0
    media_idle: int = 0
    ack_timeouts: int = 0          # a 2xx never ACKed: call ended
    session_expired: int = 0       # RFC 4028 session not refreshed: call ended
    lifetime_ended: int = 0        # longer than max_call_s: call ended
    controller_ended: int = 0      # the controller ended it (preempted, REST, media idle): BYEs sent
    restored: int = 0              # dialogs rebuilt after a restart
    overload_rejected: int = 0     # new INVITEs refused 503 + Retry-After while over a limit
    overload_reasons: dict[str, int] = field(default_factory=dict)   # ... by limit
    overload_acks: int = 0         # ACKs of those 503s, dropped on sight
    overload_retransmissions: int = 0   # retransmissions of refused INVITEs: refused again
    control_errors: int = 0        # CallControl raised (e.g. controller unreachable)
    internal_errors: int = 0       # a bug here; counted, never raised

    def snapshot(self) -> "ProxyStats":
        return replace(self, rejected=dict(self.rejected), overload_reasons=dict(self.overload_reasons))
