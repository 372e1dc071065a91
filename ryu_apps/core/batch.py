"""A group of admissions decided together and committed in ONE ledger transaction: the
pure half of group commit (a mixin of :class:`~.manager.MediaAggregationManager`; the
shell's half, :mod:`ryu_apps.group_commit`, queues the admissions that arrive while a
commit is under way and hands them here together).

Each admission is decided in turn against memory that already holds the ones before it,
so a group never oversubscribes a pool nor hands a tag out twice, exactly as the same
admissions one after the other would. One that raises (bad media, say) is undone alone
(a savepoint of the journal) and its error goes back to its own caller. The group's writes
are one commit: if a shared ledger refuses it because another controller changed what a
decision relied on, the whole group is rolled back, memory catches up with the store, and
every admission is decided again (one that no longer fits is refused ``pool-full``). After
``conflict_retries`` refusals in a row every admission of the group is refused
``contended`` (the store answered; other controllers kept coming first), and when the
store cannot answer, ``store-unavailable``; either way nothing changed. A group too large for one
transaction of the ledger (:class:`~.store.LedgerTooLarge`) is decided again in halves, and
a group ends before a setup of a call an earlier admission of the group preempted.
A retransmitted setup is answered from memory (the same admission, counted once), also
when its first copy is in the same group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager, Sequence

from .admission import AdmissionRequest, Admitted, Decision, Rejected, RejectReason
from .calls import Call, MediaEndpoint
from .errors import StoreUnavailable
from .flowplan import PlanDiff
from .store import LedgerConflict, LedgerTooLarge

if TYPE_CHECKING:
    from .journal import Journal
    from .changes import ReleasedCall
    from .manager import Counters, ManagerSettings
    from .reservations import Reservations


@dataclass(frozen=True)
class Admission:
    request: AdmissionRequest
    media: tuple[MediaEndpoint, MediaEndpoint] | None = None    # both parties' media: flows planned too


@dataclass(frozen=True)
class Outcome:
    """One admission's answer: a decision, or the error its caller gets."""

    decision: Decision | None = None
    error: Exception | None = None
    new: bool = True               # False: a retransmission answered from memory (not counted again)
    answered: bool = False         # that retransmission brought media to a call that had none
    call: Call | None = None       # the admitted call as this admission left it

    def result(self) -> Decision:
        if self.error is not None:
            raise self.error
        assert self.decision is not None
        return self.decision


class GroupAdmission:
    """``admit_all``: admissions decided together, committed once."""

    # provided by the manager
    settings: "ManagerSettings"
    counters: "Counters"
    _state: "Reservations"
    _now: float
    _journal: "Journal"
    _pending_plan: list[PlanDiff]
    _pending_released: list["ReleasedCall"]
    _pending_notes: list[str]
    _transaction: Callable[[], ContextManager[None]]
    _decide: Callable[[AdmissionRequest, float], Decision]
    _attach: Callable[[Call, MediaEndpoint, MediaEndpoint, float], Call]
    attach_media: Callable[[str, MediaEndpoint, MediaEndpoint, float], Call]

    def admit_all(self, admissions: Sequence[Admission], now: float) -> list[Outcome]:
        """Decide every admission and commit them in as few transactions as may hold them
        (one, unless too large or a call released by the group is set up again in it)."""
        self._now = max(self._now, now)
        outcomes: list[Outcome] = []
        while len(outcomes) < len(admissions):
            outcomes += self._commit_group(admissions[len(outcomes):], now)
        for admission, outcome in zip(admissions, outcomes):
            if outcome.new and outcome.decision is not None:
                self.counters.count(outcome.decision, admission.request.protocol)
        return outcomes

    def _commit_group(self, admissions: Sequence[Admission], now: float) -> list[Outcome]:
        """Commit the longest first part of ``admissions`` one transaction may hold; its outcomes."""
        attempts = self.settings.conflict_retries + 1
        for attempt in range(attempts):
            try:
                return self._admit_group(admissions, now)
            except LedgerTooLarge as error:
                if len(admissions) > 1:
                    return self._commit_group(admissions[:len(admissions) // 2], now)
                return _refused(admissions, error)
            except LedgerConflict as error:
                if attempt + 1 == attempts:
                    return _refused(admissions, error)
                # memory caught up (the transaction applied the changes): decide again
            except StoreUnavailable as error:
                return _refused(admissions, error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _admit_group(self, admissions: Sequence[Admission], now: float) -> list[Outcome]:
        """One transaction. It ends before a setup of a call this group released (preempted):
        the release and the new call are two transactions, so every controller's watch
        sees the old call go before the new one comes (and its tags with it)."""
        outcomes: list[Outcome] = []
        released = len(self._pending_released)
        with self._transaction():
            for admission in admissions:
                call_id = admission.request.call_id
                if outcomes and any(r.call_id == call_id for r in self._pending_released[released:]):
                    break
                outcomes.append(self._admit_one(admission, now))
        return outcomes

    def _admit_one(self, admission: Admission, now: float) -> Outcome:
        request, media = admission.request, admission.media
        undo = self._savepoint()
        try:
            existing = self._state.calls.get(request.call_id)
            if existing is not None:
                call = existing
                if media is not None:
                    call = self.attach_media(request.call_id, *media, now)
                return Outcome(Admitted(existing.call_id, existing.aggregate_id, existing.kbps, serial=existing.serial),
                               new=False, answered=call.media_attached and not existing.media_attached, call=call)
            decision = self._decide(request, now)
            admitted = self._state.calls.get(request.call_id) if isinstance(decision, Admitted) else None
            if media is not None and admitted is not None:
                admitted = self._attach(admitted, *media, now)
            return Outcome(decision, call=admitted)
        except Exception as error:  # noqa: BLE001 - this admission's caller's, not the group's
            undo()
            return Outcome(error=error)


    def _savepoint(self) -> Callable[[], None]:
        """Within a transaction: what undoes everything done from here on, alone."""
        marks = (len(self._pending_plan), len(self._pending_released), len(self._pending_notes))
        point = self._journal.savepoint()

        def undo() -> None:
            self._journal.rollback_to(point)
            del self._pending_plan[marks[0]:], self._pending_released[marks[1]:], self._pending_notes[marks[2]:]
        return undo


def _refused(admissions: Sequence[Admission], error: StoreUnavailable) -> list[Outcome]:
    """The store could not record the group, or (a conflict) kept refusing it because other
    controllers changed the pool first: ``contended``, not ``store-unavailable``."""
    reason = RejectReason.CONTENDED if isinstance(error, LedgerConflict) else RejectReason.STORE_UNAVAILABLE
    return [Outcome(Rejected(a.request.call_id, reason, error.message)) for a in admissions]
