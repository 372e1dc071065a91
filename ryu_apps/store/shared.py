"""A ledger several controllers share: the core's writes as compare-and-swap transactions
on an etcd-like key-value store (revisions, versions, watches).

Key layout under the prefix ``P/`` (values are JSON of the core's plain-data forms)::

    aggregates/<id>            the pool                 aggregates-rev   bumped by every pool change
    calls/<call id>            a live call              locations/<community>/<ip>   access port
    used/<id>                  the controllers holding a share of the pool's use ("ctl-a,ctl-b")
    used-by/<id>/<member>      that controller's share: kbit/s (fixed width, offset; below zero
                               when it released more of the pool's calls than it admitted)
    sync/<member>              written when a commit is refused (a mark the watch returns)

and the claims beside it, under ``P#claims/`` (``#`` sorts before ``/``: outside the range
every controller watches and loads, so etcd sends no watch event for them; nothing reads
them but the transactions' compares and :meth:`SharedLedger.claim_lane`)::

    lanes/<i>                  claim: the controller handing out lane i of serials and call tags
    aggtags/<vid>              claim: aggregate id
    serials/<n>, tags/<edge>/<label>   claim: call id (only a ledger without a lane: tests)

A controller claims its lane once, when it starts (the one it held before, if any: a
restart keeps it): a block of serials and of each edge's call tags only it hands out
(core/tags.py keeps its allocators inside it), so a new call claims no number: its own
key (version 0) is its only key, and each transaction creating calls compares the lane's
claim (mod revision) once.

One manager mutation is one transaction. It compares what the decision relied on, as
this ledger last saw it: every call it changes or deletes (mod revision), every pool
whose calls change (this controller's own share, the only one it writes: mod revision;
when use grows, also the pool itself and ``used/<id>``, and every other controller's share
no higher than seen plus its part of the room left: ``value <`` a bound, so two
controllers admitting on a pool with room do not refuse each other; a pool change
compares every share exactly),
``aggregates-rev`` when pools are created, resized, moved or deleted (links are shared by
all pools), and create-only claims (version 0) of a new call's id, serial and two tags
and of a new pool's tag. If every compare holds it puts the new values; if one fails
nothing is written except ``sync/<member>``, whose revision R the answer carries: once
the watch has delivered everything up to R, this manager knows what the other
controller did, the refusal is raised as :class:`~ryu_apps.core.store.LedgerConflict`
carrying those changes, and the manager decides again.

The pool's use is the sum of its shares: each commit adds its calls' change to its own
share, so the sum stays that of the pool's calls, and no commit lets it pass the size
(its own share exactly, the others at most their bound, which the room left pays for).

What this ledger "last saw" (its mirror: mod revisions, pools' shares) moves only together
with the manager's memory: by its own commits, and by :meth:`SharedLedger.take_remote`,
which turns the watched events into core writes under the same lock that serialises the
manager. A watched event older than what the mirror holds for its key is dropped, and
events of this ledger's own commits are skipped (their revision is known).

A commit the store cannot answer raises StoreUnavailable. When the answer was lost
after the store applied it, the change arrives through the watch as another
controller's would: the call exists, a retried setup is answered from it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence, Union

from ..core.aggregate import Aggregate
from ..core.calls import Call
from ..core.errors import StoreUnavailable
from ..core.reservations import CALL_SERIALS, CALL_TAGS
from ..core.locations import Location
from ..core.serialize import aggregate_from_dict, aggregate_to_dict, call_from_dict, call_to_dict
from ..core.store import (DeleteAggregate, DeleteCall, LedgerConflict, LedgerState, LedgerTooLarge, PutAggregate,
                          PutCall, PutLocation, Write)
from ..core.tags import lane_range

log = logging.getLogger(__name__)

#: How long a refused commit waits for the watch to deliver what refused it.
CATCH_UP_S = 2.0
#: After a refused commit, a random pause of up to BACKOFF_S before the manager decides
#: again (only so that three or more controllers do not retry in step). It does not grow:
#: a commit is refused only because another controller committed first, and a longer pause
#: lets that one commit again before this one; with a pause doubling up to 10 ms, two
#: controllers on one pool lost 9 times in a row for 2-5 % of their setups (measured).
BACKOFF_S = 0.0002
#: Added to a pool's share before it is stored (see _share).
SHARE_OFFSET = 10 ** 15
#: etcd 3.4's default ``--max-txn-ops``: compares, and operations of each branch, in one transaction.
MAX_TXN_OPS = 128


# --- the key-value interface (etcd v3's data model) -----------------------------------

@dataclass(frozen=True)
class Compare:
    """``key``'s ``target`` ("version", "mod" or "value") equals ``expected`` (``result``
    "less": is below it; values compare as bytes, and a key that does not exist fails a
    value compare, as in etcd)."""

    key: str
    target: str
    expected: int | str
    result: str = "equal"


@dataclass(frozen=True)
class Put:
    key: str
    value: str
    lease: int = 0       # etcd lease the key is attached to (deleted when it expires); 0: none


@dataclass(frozen=True)
class Delete:
    key: str


Op = Union[Put, Delete]


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int     # the store's revision after the transaction


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str | None    # None: deleted
    revision: int        # mod revision (of the deletion for a delete)


class KV(Protocol):
    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        """All of ``success`` if every compare holds, else all of ``failure``; raise
        StoreUnavailable when the store cannot answer."""

    def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` at one revision, and that revision."""

    def get(self, key: str) -> KeyValue | None:
        """One key now (linearizable), or None."""

    def catch_up(self, revision: int, timeout: float) -> bool:
        """Block until the watch has fed the ledger every event up to ``revision``."""


class Waiter(Protocol):
    """A sleep another thread (or greenlet) can cut short: compat.Wakeup under a framework."""

    def sleep(self, seconds: float) -> bool: ...

    def wake(self) -> None: ...


class ThreadWaiter:
    def __init__(self) -> None:
        self._event = threading.Event()

    def sleep(self, seconds: float) -> bool:
        woken = self._event.wait(max(0.0, seconds))
        self._event.clear()
        return woken

    def wake(self) -> None:
        self._event.set()


# --- the ledger -----------------------------------------------------------------------

class SharedLedger:
    durable = True

    def __init__(self, kv: KV, prefix: str, member: str, edge_of: Callable[[str], str],
                 waiter: Waiter | None = None, max_txn_ops: int = MAX_TXN_OPS) -> None:
        self.kv = kv
        self.max_txn_ops = max_txn_ops
        #: admissions committed together (ryu_apps/group_commit.py): a new call compares and
        #: puts four keys (itself, its serial, two tags; one with a lane), each pool 3
        #: compares more (and one per other controller's share: a group too large is split)
        self.group_limit = max(1, (max_txn_ops - 8) // 4)
        self.lane: tuple[int, int] | None = None     # (index, count): see claim_lane
        self._lane_rev = 0
        self.prefix = prefix.rstrip("/") + "/"
        #: claims live beside the prefix, not under it: no watch carries them (see the module's doc)
        self.claims = prefix.rstrip("/") + "#claims/"
        self.member = member
        self.edge_of = edge_of
        self.waiter: Waiter = waiter or ThreadWaiter()
        self.backoff: Callable[[float], None] = time.sleep   # monkey-patched (green) under ryu
        self.on_events: Callable[[], None] = lambda: None   # the shell applies what arrived
        self.on_reload: Callable[[], None] = lambda: None   # the shell rebuilds from a snapshot
        self.reload_needed = False
        self._events: deque[KeyValue] = deque()             # watched, not yet taken (any thread)
        self._events_lock = threading.Lock()
        self.watched = 0                                     # highest event revision fed
        self.revision = 0                                    # the snapshot the watch continues from
        self.refused = 0                                     # commits refused (another controller came first)
        self._reset()

    def _reset(self) -> None:
        self._calls: dict[str, tuple[Call, int]] = {}
        self._aggregates: dict[str, tuple[Aggregate, int]] = {}
        self._members: dict[str, tuple[tuple[str, ...], int]] = {}   # pool -> members with a share, mod rev
        self._shares: dict[str, dict[str, tuple[int, int]]] = {}    # pool -> member -> (kbit/s, mod rev)
        self._locations: dict[str, int] = {}                  # key -> mod revision
        self._aggregates_rev = (0, 0)                        # (value, mod revision)
        self._seen: dict[str, int] = {}                       # deleted key -> revision of the deletion
        self._own: set[int] = set()                           # revisions of this ledger's commits
        self._own_claims: dict[str, int] = {}                 # claim key -> revision of the own commit taking it
        self._applied = 0                                     # every event up to it taken (or this ledger's own)
        self._settled = 0                                     # the watch had fed up to it with nothing left to take
        self._syncs = 0

    # --- keys ---------------------------------------------------------------------------

    def key(self, *parts: object) -> str:
        return self.prefix + "/".join(str(p) for p in parts)

    def claim(self, *parts: object) -> str:
        return self.claims + "/".join(str(p) for p in parts)

    def _claims(self, call: Call) -> list[str]:
        if self.lane is not None:                 # its numbers are its lane's: no claim each
            return []
        return [self.claim("serials", call.serial),
                self.claim("tags", self.edge_of(call.caller_community), call.tag_to_caller),
                self.claim("tags", self.edge_of(call.callee_community), call.tag_to_callee)]

    def claim_lane(self, preferred: int, count: int) -> tuple[int, int]:
        """This controller's lane of serials and call tags, claimed in the store (call it
        before the manager is built, and give the manager this lane): the one it held
        (a restart: put again, so that an older process of this name, which compares the
        claim's revision, commits no call any more), else the first free one from
        ``preferred`` on."""
        _, held = self.kv.snapshot(self.claim("lanes", ""))
        mine = [item for item in held if item.value == self.member]
        indexes = [int(mine[0].key.rsplit("/", 1)[1])] if mine else [(preferred + i) % count for i in range(count)]
        for index in indexes:
            key = self.claim("lanes", index)
            result = self.kv.txn([Compare(key, "mod", mine[0].revision) if mine else Compare(key, "version", 0)],
                                 [Put(key, self.member)], [])
            if result.succeeded:
                self.lane, self._lane_rev = (index, count), result.revision
                self.group_limit = max(1, self.max_txn_ops - 8)
                return self.lane
        raise StoreUnavailable(f"no lane of serials and tags for {self.member}: {count} lanes, each held by another "
                               f"controller, or another process of this name took its lane meanwhile")

    def _lane_check(self, fresh: list[Call], compares: list[Compare]) -> None:
        """New calls' numbers are this controller's lane's (its allocators hand out no
        other: a number outside it is refused here), and the lane is still this
        controller's (its claim unchanged since it took it)."""
        if self.lane is None or not fresh:
            return
        for call in fresh:
            known = self._calls.get(call.call_id)      # a call moved to another pool keeps its numbers
            numbers = (call.serial, call.tag_to_caller, call.tag_to_callee)
            if known is not None and (known[0].serial, known[0].tag_to_caller, known[0].tag_to_callee) == numbers:
                continue
            for span, number in zip((CALL_SERIALS, CALL_TAGS, CALL_TAGS), numbers):
                start, size = lane_range(*span, self.lane)
                if not start <= number < start + size:
                    raise StoreUnavailable(f"call {call.call_id}: number {number} is outside lane {self.lane}")
        compares.append(Compare(self.claim("lanes", self.lane[0]), "mod", self._lane_rev))

    # --- Ledger -------------------------------------------------------------------------

    def load(self) -> LedgerState:
        revision, kvs = self.kv.snapshot(self.prefix)
        self._reset()
        self.reload_needed = False
        with self._events_lock:
            while self._events and self._events[0].revision <= revision:
                self._events.popleft()
        self.revision = self._applied = self._settled = revision
        self.watched = max(self.watched, revision)
        calls, aggregates, locations = [], [], []
        for item in kvs:
            if item.value is None:
                continue
            write = self._write_of(item)
            if isinstance(write, PutCall):
                calls.append(write.call)
            elif isinstance(write, PutAggregate):
                aggregates.append(write.aggregate)
            elif isinstance(write, PutLocation):
                locations.append(write.location)
            self._mirror(item, write)
        for aggregate in aggregates:
            stored = self._total(aggregate.id)
            actual = sum(c.kbps for c in calls if c.aggregate_id == aggregate.id)
            if stored != actual:
                log.error("shared ledger %s: the shares of %s say %d kbit/s, its calls use %d", self.prefix, aggregate.id,
                          stored, actual)
        return LedgerState(tuple(sorted(aggregates, key=lambda a: a.id)),
                           tuple(sorted(calls, key=lambda c: c.call_id)), tuple(locations))

    def commit(self, writes: Sequence[Write]) -> None:
        compares: list[Compare] = []
        ops: list[Op] = []
        deltas: dict[str, int] = {}
        growing: set[str] = set()
        pools_changed = False
        created: set[str] = set()
        deleted: set[str] = set()
        fresh: list[Call] = []          # new calls (new numbers)
        for write in writes:
            if isinstance(write, PutCall):
                if self._put_call(write.call, compares, ops, deltas, growing):
                    fresh.append(write.call)
            elif isinstance(write, DeleteCall):
                self._delete_call(write.call_id, compares, ops, deltas)
            elif isinstance(write, PutAggregate):
                pools_changed = True
                aggregate = write.aggregate
                key = self.key("aggregates", aggregate.id)
                known = self._aggregates.get(aggregate.id)
                if known is None:
                    created.add(aggregate.id)
                    compares += [Compare(key, "version", 0), Compare(self.claim("aggtags", aggregate.tag), "version", 0),
                                 Compare(self.key("used", aggregate.id), "version", 0)]
                    ops += [Put(self.claim("aggtags", aggregate.tag), aggregate.id),
                            Put(self.key("used", aggregate.id), "")]
                else:
                    compares += [Compare(key, "mod", known[1])] + self._exact_use(aggregate.id)
                ops.append(Put(key, _dump(aggregate_to_dict(aggregate))))
            elif isinstance(write, DeleteAggregate):
                known = self._aggregates.get(write.aggregate_id)
                if known is None:
                    continue
                pools_changed = True
                deleted.add(write.aggregate_id)
                aggregate, revision = known
                compares += [Compare(self.key("aggregates", aggregate.id), "mod", revision)]
                compares += self._exact_use(aggregate.id)
                ops += [Delete(self.key("aggregates", aggregate.id)), Delete(self.claim("aggtags", aggregate.tag)),
                        Delete(self.key("used", aggregate.id))]
                ops += [Delete(self._share_key(aggregate.id, m)) for m in self._holders(aggregate.id)]
            else:
                location = write.location
                key = self.key("locations", location.community, location.ip)
                compares.append(Compare(key, "mod", self._locations[key]) if key in self._locations
                                else Compare(key, "version", 0))
                ops.append(Put(key, str(location.port)))
        for aggregate_id, delta in deltas.items():
            if aggregate_id not in deleted:
                ops = self._use(aggregate_id, delta, aggregate_id in growing, aggregate_id in created, compares, ops)
        if pools_changed:
            value, revision = self._aggregates_rev
            compares.append(Compare(self.key("aggregates-rev"), "mod", revision) if revision
                            else Compare(self.key("aggregates-rev"), "version", 0))
            ops.append(Put(self.key("aggregates-rev"), str(value + 1)))
        if not ops:
            return
        self._lane_check(fresh, compares)
        compares, ops = _handovers(compares, ops)
        if max(len(compares), len(ops)) > self.max_txn_ops:
            raise LedgerTooLarge(f"{len(compares)} compares and {len(ops)} operations in one transaction, over "
                                 f"etcd's --max-txn-ops ({self.max_txn_ops}: cluster.max_txn_ops)")
        self._syncs += 1
        try:
            result = self.kv.txn(compares, ops, [Put(self.key("sync", self.member), str(self._syncs))])
        except StoreUnavailable:
            result = self._landed(ops)        # the answer may be lost after the store applied it
        if result.succeeded:
            self._own.add(result.revision)
            self._mirror_own(writes, ops, result.revision)
            if self._settled > self._applied:
                self._forget(self._settled)
            return
        if not self.kv.catch_up(result.revision, CATCH_UP_S):
            raise StoreUnavailable(f"the shared ledger refused the change and its watch did not bring what "
                                   f"changed within {CATCH_UP_S:g} s")
        self.refused += 1
        self.backoff(random.uniform(0.0, BACKOFF_S))
        raise LedgerConflict("another controller changed what this decision relied on", self.take_remote())

    def _landed(self, ops: Sequence[Op]) -> TxnResult:
        """After a request that got no answer: did the transaction land? A call or pool it
        put holds exactly the value sent (JSON with its serial, tags, admission time) only
        if it did. Re-raises when that cannot be told (the store is really unreachable, or
        the transaction put no call or pool: a release is retried and finds it done)."""
        marks = [op for op in ops if isinstance(op, Put)
                 and op.key.startswith((self.key("calls", ""), self.key("aggregates", "")))]
        if not marks:
            raise StoreUnavailable("the shared ledger did not answer")
        found = self.kv.get(marks[0].key)
        if found is None or found.value != marks[0].value:
            raise StoreUnavailable("the shared ledger did not answer, and did not record the change")
        log.warning("shared ledger: a commit's answer was lost but the change landed (revision %d)", found.revision)
        return TxnResult(True, found.revision)

    def _mirror_own(self, writes: Sequence[Write], ops: Sequence[Op], revision: int) -> None:
        claims = self.claims
        for op in ops:
            if op.key.startswith(claims):          # no watch brings claims: only own ones are judged
                if isinstance(op, Put):
                    self._own_claims[op.key] = revision
            elif isinstance(op, Delete):
                self._seen[op.key] = revision
        for write in writes:
            if isinstance(write, PutCall):
                self._calls[write.call.call_id] = (write.call, revision)
            elif isinstance(write, DeleteCall):
                self._calls.pop(write.call_id, None)
            elif isinstance(write, PutAggregate):
                self._aggregates[write.aggregate.id] = (write.aggregate, revision)
            elif isinstance(write, DeleteAggregate):
                self._aggregates.pop(write.aggregate_id, None)
                self._members.pop(write.aggregate_id, None)
                self._shares.pop(write.aggregate_id, None)
            else:
                self._locations[self.key("locations", write.location.community, write.location.ip)] = revision
        for op in ops:
            if isinstance(op, Put) and op.key.startswith(self.key("used")):
                self._mirror_use(op.key, op.value, revision)
            elif isinstance(op, Put) and op.key == self.key("aggregates-rev"):
                self._aggregates_rev = (int(op.value), revision)

    # --- a pool's use: one share per controller -------------------------------------------

    def _mirror_use(self, key: str, value: str | None, revision: int) -> None:
        kind, _, name = key[len(self.prefix):].partition("/")
        if kind == "used":
            if value is None:
                self._members.pop(name, None)
            else:
                self._members[name] = (tuple(m for m in value.split(",") if m), revision)
            return
        pool, _, member = name.rpartition("/")
        if value is None:
            self._shares.get(pool, {}).pop(member, None)
        else:
            self._shares.setdefault(pool, {})[member] = (int(value) - SHARE_OFFSET, revision)

    def _share_key(self, aggregate_id: str, member: str) -> str:
        return self.key("used-by", aggregate_id, member)

    def _total(self, aggregate_id: str) -> int:
        return sum(value for value, _ in self._shares.get(aggregate_id, {}).values())

    def _holders(self, aggregate_id: str) -> list[str]:
        """Who holds a share of the pool: as ``used/<id>`` lists them, and any share seen."""
        return sorted({*self._members.get(aggregate_id, ((), 0))[0], *self._shares.get(aggregate_id, {})})

    def _exact_use(self, aggregate_id: str) -> list[Compare]:
        """Compares that hold only while the pool's use is exactly what this ledger saw."""
        revision = self._members.get(aggregate_id, ((), 0))[1]
        shares = self._shares.get(aggregate_id, {})
        return [Compare(self.key("used", aggregate_id), "mod", revision)] + [
            Compare(self._share_key(aggregate_id, m), "mod", shares.get(m, (0, 0))[1]) for m in self._holders(aggregate_id)]

    def _use(self, aggregate_id: str, delta: int, growing: bool, created: bool, compares: list[Compare],
             ops: list[Op]) -> list[Op]:
        """Add ``delta`` to this controller's share of the pool (the only share it writes, so
        two controllers admitting on one pool do not refuse each other). When the pool's use
        grows, every other share must not exceed what this ledger saw of it by more than
        its part of the room left (``value < bound``), nor may a controller have joined
        (``used/<id>`` lists who holds a share): the pool's size then holds whatever they
        commit meanwhile, within their parts."""
        members, revision = self._members.get(aggregate_id, ((), 0))
        shares = self._shares.get(aggregate_id, {})
        key = self._share_key(aggregate_id, self.member)
        ops = [op for op in ops if not (isinstance(op, Put) and op.key in (key, self.key("used", aggregate_id)))]
        if self.member in shares:
            value, share_revision = shares[self.member]
            compares.append(Compare(key, "mod", share_revision))
            if growing:
                compares.append(Compare(self.key("used", aggregate_id), "mod", revision))
        else:                                    # first share of this controller in the pool: join
            value = 0
            compares += [Compare(self.key("used", aggregate_id), "mod", revision) if revision and not created
                         else Compare(self.key("used", aggregate_id), "version", 0), Compare(key, "version", 0)]
            ops.append(Put(self.key("used", aggregate_id), ",".join(sorted({*members, self.member}))))
        ops.append(Put(key, _share(value + delta)))
        if growing and not created:
            known = self._aggregates.get(aggregate_id)
            if known is not None:
                compares.append(Compare(self.key("aggregates", aggregate_id), "mod", known[1]))
                others = [m for m in self._holders(aggregate_id) if m != self.member]
                room = max(0, known[0].size_kbps - self._total(aggregate_id) - delta) // (len(others) + 1)
                compares += [Compare(self._share_key(aggregate_id, m), "value",
                                     _share(shares.get(m, (0, 0))[0] + room + 1), "less") for m in others]
        return ops

    def _put_call(self, call: Call, compares: list[Compare], ops: list[Op], deltas: dict[str, int],
                  growing: set[str]) -> bool:
        """Whether the call is new here (with new numbers)."""
        key = self.key("calls", call.call_id)
        known = self._calls.get(call.call_id)
        new = known is None or (known[0].serial, known[0].aggregate_id) != (call.serial, call.aggregate_id)
        if new:
            if known is not None:
                self._delete_call(call.call_id, compares, ops, deltas)
                ops.remove(Delete(key))
            else:
                compares.append(Compare(key, "version", 0))
            for claim in self._claims(call):
                compares.append(Compare(claim, "version", 0))
                ops.append(Put(claim, call.call_id))
            delta = call.kbps
        else:
            assert known is not None
            compares.append(Compare(key, "mod", known[1]))
            delta = call.kbps - known[0].kbps
        ops.append(Put(key, _dump_call(call)))
        deltas[call.aggregate_id] = deltas.get(call.aggregate_id, 0) + delta
        if delta > 0:
            growing.add(call.aggregate_id)
        return new

    def _delete_call(self, call_id: str, compares: list[Compare], ops: list[Op], deltas: dict[str, int]) -> None:
        known = self._calls.get(call_id)
        if known is None:
            return
        call, revision = known
        compares.append(Compare(self.key("calls", call_id), "mod", revision))
        ops.append(Delete(self.key("calls", call_id)))
        ops.extend(Delete(claim) for claim in self._claims(call))
        deltas[call.aggregate_id] = deltas.get(call.aggregate_id, 0) - call.kbps

    # --- what other controllers commit ------------------------------------------------------

    def feed(self, events: Iterable[KeyValue]) -> None:
        """Watched events in revision order (from the watch's thread or greenlet). The echo
        of this ledger's own commits is dropped here: its mirror moved when it committed,
        and the shell's applier is not woken (nor the service's lock taken) for nothing."""
        added = False
        own = self._own
        with self._events_lock:
            for event in events:
                if event.revision <= self.revision:      # already in the snapshot
                    continue
                self.watched = max(self.watched, event.revision)
                if event.revision in own:
                    continue
                self._events.append(event)
                added = True
            if not self._events:
                self._settled = self.watched
        self.waiter.wake()                                # catch_up waits for ``watched``
        if added:
            self.on_events()

    def compacted(self, revision: int) -> None:
        """The store no longer has the history the watch needs (compacted past it):
        only a new snapshot brings this controller up to date."""
        log.error("shared ledger %s: etcd compacted its history to revision %d, past what this controller has "
                  "seen (%d): reloading from a snapshot", self.prefix, revision, self.watched)
        self.reload_needed = True
        self.on_reload()

    def pending(self) -> bool:
        return bool(self._events)

    def take_remote(self) -> list[Write]:
        """What other controllers committed since the last call, as core writes, with the
        mirror moved to match. Call it where the manager is serialised (under its lock)
        and hand the writes to ``manager.apply_remote`` at once."""
        with self._events_lock:
            events = list(self._events)
            self._events.clear()
            fed = self.watched                 # every event up to it is in ``events``, taken before, or own
        writes: list[Write] = []
        for event in events:
            self._applied = max(self._applied, event.revision)
            if event.revision in self._own:
                continue
            if event.revision <= self._seen_revision(event.key):
                continue
            write = self._write_of(event)
            if self._superseded(write, event.revision):
                continue
            self._mirror(event, write)
            if write is not None:
                writes.append(write)
        self._forget(fed)
        return writes

    def _forget(self, applied: int) -> None:
        """Every event up to ``applied`` is taken (under the manager's serialisation): what
        was kept to judge older ones (own revisions, deletions, claims) can go."""
        self._applied = max(self._applied, applied)
        self._own = {r for r in self._own if r > self._applied}
        self._seen = {k: r for k, r in self._seen.items() if r > self._applied}
        self._own_claims = {k: r for k, r in self._own_claims.items() if r > self._applied}

    def _superseded(self, write: Write | None, revision: int) -> bool:
        """A call (or pool) created before one of this ledger's own commits that claimed
        the same serial or tag: the store let that claim through, so this one had ended
        by then; its end follows in the watch. Applying it would meet the newer holder."""
        if isinstance(write, PutCall) and write.call.call_id not in self._calls:
            keys = self._claims(write.call)
        elif isinstance(write, PutAggregate) and write.aggregate.id not in self._aggregates:
            keys = [self.claim("aggtags", write.aggregate.tag)]
        else:
            return False
        return any(self._own_claims.get(key, 0) > revision for key in keys)

    def _seen_revision(self, key: str) -> int:
        rest = key[len(self.prefix):]
        kind, _, name = rest.partition("/")
        if kind == "calls" and name in self._calls:
            return self._calls[name][1]
        if kind == "aggregates" and name in self._aggregates:
            return self._aggregates[name][1]
        if kind == "used" and name in self._members:
            return self._members[name][1]
        if kind == "used-by":
            pool, _, member = name.rpartition("/")
            return self._shares.get(pool, {}).get(member, (0, self._seen.get(key, 0)))[1]
        if kind == "locations" and key in self._locations:
            return self._locations[key]
        if rest == "aggregates-rev":
            return self._aggregates_rev[1]
        return self._seen.get(key, 0)

    def _write_of(self, item: KeyValue) -> Write | None:
        rest = item.key[len(self.prefix):]
        kind, _, name = rest.partition("/")
        try:
            if kind == "calls":
                return DeleteCall(name) if item.value is None else PutCall(call_from_dict(json.loads(item.value)))
            if kind == "aggregates":
                return (DeleteAggregate(name) if item.value is None
                        else PutAggregate(aggregate_from_dict(json.loads(item.value))))
            if kind == "locations" and item.value is not None:
                community, _, ip = name.partition("/")
                return PutLocation(Location(community, ip, int(item.value)))
        except (ValueError, KeyError, TypeError) as error:
            log.error("shared ledger: cannot read %s: %s", item.key, error)
        return None

    def _mirror(self, item: KeyValue, write: Write | None) -> None:
        rest = item.key[len(self.prefix):]
        kind, _, name = rest.partition("/")
        if item.value is None:
            self._seen[item.key] = item.revision
        if kind == "calls":
            if isinstance(write, PutCall):
                self._calls[name] = (write.call, item.revision)
            else:
                self._calls.pop(name, None)
        elif kind == "aggregates":
            if isinstance(write, PutAggregate):
                self._aggregates[name] = (write.aggregate, item.revision)
            else:
                self._aggregates.pop(name, None)
        elif kind in ("used", "used-by"):
            self._mirror_use(item.key, item.value, item.revision)
        elif kind == "locations":
            if item.value is None:
                self._locations.pop(item.key, None)
            else:
                self._locations[item.key] = item.revision
        elif rest == "aggregates-rev":
            self._aggregates_rev = (0, 0) if item.value is None else (int(item.value), item.revision)


def _share(kbps: int) -> str:
    """A share as etcd compares it (bytes): fixed width, offset so that it never goes below
    zero (a controller releasing calls another admitted takes its own share below zero)."""
    return f"{kbps + SHARE_OFFSET:016d}"


def _handovers(compares: list[Compare], ops: list[Op]) -> tuple[list[Compare], list[Op]]:
    """A claim deleted and created in one transaction (a preempted call that never had
    flows gives its serial to the call that pushed it out) is handed over: one put,
    guarded by the compare on the call that held it."""
    deleted = {op.key for op in ops if isinstance(op, Delete)}
    handed = {op.key for op in ops if isinstance(op, Put) and op.key in deleted}
    seen: set[Compare] = set()
    kept_compares = []
    for compare in compares:
        if compare in seen or (compare.key in handed and compare.target == "version"):
            continue
        seen.add(compare)
        kept_compares.append(compare)
    return kept_compares, [op for op in ops if not (isinstance(op, Delete) and op.key in handed)]


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _dump_call(call: Call) -> str:
    """A call without its fields that are null (a call's reader takes a missing one for
    null): a fifth of its bytes, which etcd decodes, logs, stores and sends to every watch."""
    data = {k: v for k, v in call_to_dict(call).items() if v is not None}
    data["media"] = {k: v for k, v in data["media"].items() if v is not None}
    return _dump(data)
