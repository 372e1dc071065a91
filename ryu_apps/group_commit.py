"""Group commit: admissions that arrive while one is being committed are committed
together, in one transaction of the ledger (the shell's half; the decisions are the
core's, :mod:`ryu_apps.core.batch`).

Leader and followers: every admission joins a queue with a ticket. Whoever takes the
lead (a token; nobody else is leading) waits for the service's lock and then takes up to
``limit`` queued admissions (its own and those of every thread or greenlet queued behind
it, oldest first), has the manager decide and commit them at once, and wakes each with
its answer; it goes on until its own is answered, then hands the lead over by waking the
oldest admission still queued. A follower sleeps on its ticket until it is answered (it
never needs the lock to return) or handed the lead. While the leader waits for the store
(an etcd round trip), new admissions queue up for the next group, so groups grow with
the load and are groups of one when admissions come one at a time. The lock keeps its
meaning: one mutation of the manager at a time; remote changes are applied between groups.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Sequence

from .core.batch import Admission, Outcome
from .store.shared import ThreadWaiter, Waiter

#: Admissions in one group unless the ledger says fewer (a shared ledger: what fits in
#: one etcd transaction, ``SharedLedger.group_limit``).
GROUP_LIMIT = 64


class Ticket:
    """One admission in the queue; ``outcome`` is set (under the lock) once answered."""

    __slots__ = ("admission", "outcome", "waiter")

    def __init__(self, admission: Admission, waiter: Waiter) -> None:
        self.admission = admission
        self.outcome: Outcome | None = None
        self.waiter = waiter


class GroupCommit:
    def __init__(self, limit: int = GROUP_LIMIT, waiter: Callable[[], Waiter] = ThreadWaiter) -> None:
        """``waiter`` makes the sleeps of followers (compat.Wakeup under a framework's hub)."""
        self.limit = max(1, limit)
        self.waiter = waiter
        self._queue: deque[Ticket] = deque()      # appended without the lock, taken under it
        self._lead = threading.Lock()             # never waited for: taken or not, at once
        self.groups = 0                           # groups committed, and the admissions in them
        self.admissions = 0

    def queued(self) -> int:
        """Admissions waiting for a group (metrics, tests)."""
        return len(self._queue)

    def join(self, admission: Admission) -> Ticket:
        ticket = Ticket(admission, self.waiter())
        self._queue.append(ticket)
        return ticket

    def take_lead(self) -> bool:
        return self._lead.acquire(blocking=False)

    def hand_over(self) -> None:
        """The leader's own admission is answered: the oldest one still queued leads next."""
        self._lead.release()
        try:
            self._queue[0].waiter.wake()
        except IndexError:
            pass

    @staticmethod
    def follow(ticket: Ticket) -> None:
        """Sleep until answered or handed the lead (or a while: the caller looks again)."""
        ticket.waiter.sleep(0.05)

    def lead(self, ticket: Ticket, decide: Callable[[Sequence[Admission]], list[Outcome]]) -> Outcome:
        """Under the lock: commit groups of queued admissions (``decide``: the manager's
        ``admit_all``) until ``ticket`` is answered."""
        while ticket.outcome is None:
            queue = self._queue
            group = [queue.popleft() for _ in range(min(self.limit, len(queue)))]
            assert group, "an unanswered ticket is queued"
            try:
                outcomes = decide([t.admission for t in group])
            except Exception as error:  # noqa: BLE001 - every caller of the group hears it
                outcomes = [Outcome(error=error)] * len(group)
            self.groups += 1
            self.admissions += len(group)
            for queued, outcome in zip(group, outcomes):
                queued.outcome = outcome
                if queued is not ticket:
                    queued.waiter.wake()
        return ticket.outcome
