"""What a mutation of the manager leaves for the shell: plan changes and calls that ended."""

from __future__ import annotations

from dataclasses import dataclass, field

from .calls import Call
from .flowplan import PlanDiff


@dataclass(frozen=True)
class ReleasedCall:
    call_id: str
    aggregate_id: str
    kbps: int
    cause: str
    serial: int = 0
    #: the call as it was when released, and the call that preempted it (records: ryu_apps/core/cdr.py)
    call: Call | None = field(default=None, compare=False, repr=False)
    preempted_by: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Changes:
    """What the shell must act on after a mutation: plan changes and calls that ended."""

    plan: PlanDiff = PlanDiff()
    released: tuple[ReleasedCall, ...] = ()
    notes: tuple[str, ...] = ()          # what the operator should hear (an aggregate moved, or could not)
    #: calls whose every flow another live call's identical flow carries (core/flowkeys.py):
    #: nothing of theirs goes to a switch, they are installed as they are
    carried: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.plan or self.released or self.notes or self.carried)
