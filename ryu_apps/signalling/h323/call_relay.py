"""The gatekeeper-routed call-signalling relay as a table of transitions (sans-IO).

One :class:`CallRelay` joins two legs of one call: the caller's connection (its call
reference) and the callee's (the reference the relay allocated). It says, for each
Q.931 message from either side, whether to forward it, which phase the call is in next
and which Q.931 timer runs; it knows nothing of admission, sockets or ASN.1, so the
SIP <-> H.323 gateway can drive the same machine from an INVITE instead of a Setup.

Phases and timers (H.225.0 / Q.931 equivalents)::

    ROUTING --Setup forwarded--> SETUP_SENT (T303) --CallProceeding/Progress--> PROCEEDING (T310)
    SETUP_SENT/PROCEEDING --Alerting--> ALERTING (T301) --Connect--> CONNECTED
    any --ReleaseComplete (either side), timer expiry, connection lost--> RELEASED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .q931 import MessageType


class Phase(str, enum.Enum):
    ROUTING = "routing"          # Setup received, admission/routing not decided yet
    SETUP_SENT = "setup-sent"
    PROCEEDING = "proceeding"
    ALERTING = "alerting"
    CONNECTED = "connected"
    RELEASED = "released"


#: The timer that runs in a phase, by name (its duration is configuration).
PHASE_TIMERS: dict[Phase, str] = {Phase.SETUP_SENT: "t303", Phase.PROCEEDING: "t310", Phase.ALERTING: "t301"}

#: (phase, message from the callee) -> next phase. Pairs not listed keep the phase.
CALLEE_TRANSITIONS: dict[tuple[Phase, int], Phase] = {
    (Phase.SETUP_SENT, MessageType.CALL_PROCEEDING): Phase.PROCEEDING,
    (Phase.SETUP_SENT, MessageType.PROGRESS): Phase.PROCEEDING,
    (Phase.SETUP_SENT, MessageType.ALERTING): Phase.ALERTING,
    (Phase.SETUP_SENT, MessageType.CONNECT): Phase.CONNECTED,
    (Phase.PROCEEDING, MessageType.ALERTING): Phase.ALERTING,
    (Phase.PROCEEDING, MessageType.CONNECT): Phase.CONNECTED,
    (Phase.ALERTING, MessageType.CONNECT): Phase.CONNECTED,
}

#: Messages relayed end to end in any live phase. The callee's CallProceeding is not:
#: the relay answered the caller's Setup with its own at once.
RELAYED = frozenset({MessageType.ALERTING, MessageType.PROGRESS, MessageType.CONNECT, MessageType.FACILITY,
                     MessageType.NOTIFY, MessageType.INFORMATION, MessageType.STATUS,
                     MessageType.STATUS_ENQUIRY, MessageType.RELEASE_COMPLETE})


@dataclass
class Leg:
    conn: int
    call_ref: int


@dataclass(frozen=True)
class Step:
    """What to do with one message: forward it or not, the phase after it, the timer
    that now runs (None: no timer), and whether the call ends."""

    forward: bool
    phase: Phase
    timer: str | None
    ends: bool = False


@dataclass
class CallRelay:
    call_id: str
    caller: Leg
    callee: Leg | None = None
    phase: Phase = Phase.ROUTING

    def routed(self, callee: Leg) -> Step:
        """The Setup went out to the callee on ``callee``."""
        self.callee = callee
        return self._enter(Phase.SETUP_SENT, True)

    def from_callee(self, message_type: int) -> Step:
        if self.phase is Phase.RELEASED:
            return Step(False, self.phase, None)
        if message_type == MessageType.RELEASE_COMPLETE:
            return self._enter(Phase.RELEASED, True)
        after = CALLEE_TRANSITIONS.get((self.phase, message_type), self.phase)
        return self._enter(after, message_type in RELAYED)

    def from_caller(self, message_type: int) -> Step:
        if self.phase is Phase.RELEASED:
            return Step(False, self.phase, None)
        if message_type == MessageType.RELEASE_COMPLETE:
            return self._enter(Phase.RELEASED, self.callee is not None)
        forward = self.callee is not None and message_type in RELAYED and message_type != MessageType.CONNECT
        return Step(forward, self.phase, PHASE_TIMERS.get(self.phase))

    def expired(self, timer: str) -> Step:
        """A Q.931 timer ran out: the call ends (only if it is still the phase's timer)."""
        if PHASE_TIMERS.get(self.phase) != timer:
            return Step(False, self.phase, PHASE_TIMERS.get(self.phase))
        return self._enter(Phase.RELEASED, False)

    def _enter(self, phase: Phase, forward: bool) -> Step:
        self.phase = phase
        return Step(forward, phase, PHASE_TIMERS.get(phase), phase is Phase.RELEASED)
