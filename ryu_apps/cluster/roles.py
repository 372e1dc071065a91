"""Which controller masters which switches: etcd elections per switch group, and the
OpenFlow 1.3 role requests that follow.

Every controller holds one lease (``cluster.lease_ttl_s``) kept alive every third of its
TTL; ``members/<name>`` is attached to it. A switch group (``cluster.roles``) is led by
whoever created ``roles/<group>`` (create-only, attached to its lease): that controller
asks the group's switches for MASTER with the key's create revision as generation id
(etcd revisions only grow, so a newer leader always has the larger one), every other
controller asks SLAVE. A controller campaigns for a group when no controller listed
before it in the group's ``controllers`` is alive; a leader resigns a group as soon as
one listed before it is alive again (site controllers take their site back). With no
``cluster.roles``, one group holds every switch and anyone may lead it: active/standby.

When the leader dies its lease expires (TTL after its last keepalive), etcd deletes its
keys, every other controller's watch says so at once and the next one campaigns. A
controller that cannot keep its lease alive for a whole TTL stops writing to every switch
(slave) before anybody else can have taken over; the switches enforce it too (a master
request with a newer generation demotes the old master).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..core.errors import StoreUnavailable
from ..openflow.events import Role
from ..store.etcd import EtcdKV, b64
from ..store.shared import Compare, Delete, KeyValue, Put, ThreadWaiter, Waiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    name: str
    switches: tuple[str, ...]
    controllers: tuple[str, ...] = ()     # in order of preference; empty: any controller


def should_campaign(group: Group, me: str, alive: Iterable[str]) -> bool:
    if not group.controllers:
        return True
    if me not in group.controllers:
        return False
    ahead = group.controllers[:group.controllers.index(me)]
    return not set(ahead) & set(alive)


def should_resign(group: Group, me: str, alive: Iterable[str]) -> bool:
    """A leader hands a group back to a controller listed before it that is alive."""
    if me not in group.controllers:
        return bool(group.controllers)
    return not should_campaign(group, me, alive)


def wanted_roles(groups: Iterable[Group], leaders: Mapping[str, tuple[str, int]], me: str,
                 generations: Mapping[str, int] | None = None) -> dict[str, tuple[Role, int]]:
    """The role (and generation id) to ask of each switch. With no leader, slave with the
    last generation seen: a switch refuses a role request older than its last master's."""
    roles: dict[str, tuple[Role, int]] = {}
    for group in groups:
        leader, generation = leaders.get(group.name, ("", (generations or {}).get(group.name, 0)))
        role = Role.MASTER if leader == me else Role.SLAVE
        for switch in group.switches:
            roles[switch] = (role, generation)
    return roles


class RoleView:
    """Leaders and live members as the watch shows them (a WatchTarget)."""

    def __init__(self, prefix: str, wake: Callable[[], None]) -> None:
        self.prefix = prefix            # <ledger prefix>cluster/
        self.revision = 0
        self.watched = 0
        self.wake = wake
        self.lock = threading.Lock()
        self.leaders: dict[str, tuple[str, int]] = {}
        self.generations: dict[str, int] = {}     # the newest leader's generation per group, even when gone
        self.alive: set[str] = set()
        self.changed_at = 0.0

    def feed(self, events: Iterable[KeyValue]) -> None:
        with self.lock:
            for event in events:
                self.watched = max(self.watched, event.revision)
                kind, _, name = event.key[len(self.prefix):].partition("/")
                if kind == "roles":
                    if event.value is None:
                        self.leaders.pop(name, None)
                    elif event.revision > self.leaders.get(name, ("", 0))[1]:
                        self.leaders[name] = (event.value, event.revision)
                        self.generations[name] = max(self.generations.get(name, 0), event.revision)
                elif kind == "members":
                    (self.alive.discard if event.value is None else self.alive.add)(name)
            self.changed_at = time.monotonic()
        self.wake()

    def compacted(self, revision: int) -> None:
        log.warning("cluster roles: etcd history compacted to %d; reading the roles again", revision)
        self.revision = self.watched = 0

    def snapshot(self) -> tuple[dict[str, tuple[str, int]], set[str]]:
        with self.lock:
            return dict(self.leaders), set(self.alive)

    def last_generations(self) -> dict[str, int]:
        with self.lock:
            return dict(self.generations)


class Roles:
    def __init__(self, kv: EtcdKV, prefix: str, me: str, groups: tuple[Group, ...], ttl: int,
                 apply: Callable[[frozenset[str], dict[str, tuple[Role, int]]], None],
                 waiter: Waiter | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.kv, self.me, self.groups, self.ttl = kv, me, groups, ttl
        self.apply = apply                       # (switches this controller masters, role per switch)
        self.waiter: Waiter = waiter or ThreadWaiter()
        self.clock = clock
        self.view = RoleView(prefix.rstrip("/") + "/cluster/", self.waiter.wake)
        self.lease = 0
        self.alive_until = 0.0                   # when the lease may have expired, for all we know
        self.applied: dict[str, tuple[Role, int]] | None = None
        self.stopped = False
        self.history: list[tuple[float, str]] = []   # (monotonic time, what happened): for tests and logs

    def key(self, *parts: str) -> str:
        return self.view.prefix + "/".join(parts)

    # --- the loop ---------------------------------------------------------------------

    def start(self, spawn: Callable[..., Any], sleep: Callable[[float], None]) -> list[Any]:
        self._read()
        return [spawn(self.kv.watch_forever, self.view, sleep), spawn(self.run_forever)]

    def run_forever(self) -> None:
        next_keepalive = 0.0
        while not self.stopped:
            try:
                now = self.clock()
                if not self.lease:
                    self._join()
                    next_keepalive = now + self.ttl / 3
                elif now >= next_keepalive:
                    self._keepalive()
                    next_keepalive = now + self.ttl / 3
                self._elect()
            except StoreUnavailable as error:
                log.warning("cluster roles: %s", error.message)
            except Exception:  # noqa: BLE001 - the loop must outlive anything
                log.exception("cluster roles: round failed")
            self._publish()
            self.waiter.sleep(max(0.01, min(self.ttl / 3, next_keepalive - self.clock())))

    def stop(self) -> None:
        self.stopped = True
        self.waiter.wake()

    # --- steps ------------------------------------------------------------------------

    def _read(self) -> None:
        revision, items = self.kv.snapshot(self.view.prefix)
        self.view.revision = self.view.watched = revision
        self.view.feed([KeyValue(i.key, i.value, i.revision) for i in items])

    def _join(self) -> None:
        answer = self.kv.post("lease/grant", {"TTL": self.ttl, "ID": 0})
        self.lease = int(answer["ID"])
        self.alive_until = self.clock() + self.ttl
        self._put(self.key("members", self.me), self.me)
        self._note(f"joined with lease {self.lease:x} (ttl {self.ttl} s)")

    def _keepalive(self) -> None:
        started = self.clock()
        try:
            answer = self.kv.post("lease/keepalive", {"ID": self.lease})
        except StoreUnavailable:
            if self.clock() >= self.alive_until:
                self._lost("its lease could not be kept alive for a whole TTL")
            raise
        if int(answer.get("result", {}).get("TTL", 0) or 0) <= 0:
            self._lost("etcd says its lease expired")
            return
        self.alive_until = started + self.ttl

    def _lost(self, why: str) -> None:
        self.lease = 0
        with self.view.lock:
            self.view.leaders = {g: v for g, v in self.view.leaders.items() if v[0] != self.me}
        self._note(f"stepped down from every group: {why}")

    def _elect(self) -> None:
        leaders, alive = self.view.snapshot()
        for group in self.groups:
            leader = leaders.get(group.name)
            if leader is None and should_campaign(group, self.me, alive):
                self._campaign(group)
            elif leader is not None and leader[0] == self.me and should_resign(group, self.me, alive):
                self._resign(group, leader[1])

    def _campaign(self, group: Group) -> None:
        key = self.key("roles", group.name)
        result = self.kv.txn([Compare(key, "version", 0)], [Put(key, self.me, self.lease)], [])
        if result.succeeded:
            with self.view.lock:
                self.view.leaders[group.name] = (self.me, result.revision)
                self.view.generations[group.name] = max(self.view.generations.get(group.name, 0), result.revision)
            self._note(f"leads {group.name} (generation {result.revision})")

    def _resign(self, group: Group, generation: int) -> None:
        key = self.key("roles", group.name)
        self.kv.txn([Compare(key, "mod", generation)], [Delete(key)], [])
        with self.view.lock:
            self.view.leaders.pop(group.name, None)
        self._note(f"hands {group.name} back")

    def _put(self, key: str, value: str) -> None:
        self.kv.post("kv/put", {"key": b64(key), "value": b64(value), "lease": str(self.lease)})

    def _publish(self) -> None:
        leaders, _ = self.view.snapshot()
        if not self.lease or self.clock() >= self.alive_until:
            leaders = {g: v for g, v in leaders.items() if v[0] != self.me}
        wanted = wanted_roles(self.groups, leaders, self.me, self.view.last_generations())
        if wanted == self.applied:
            return
        responsible = frozenset(s for s, (role, _) in wanted.items() if role is Role.MASTER)
        self.apply(responsible, wanted)
        self.applied = wanted

    def _note(self, what: str) -> None:
        self.history.append((self.clock(), what))
        del self.history[:-64]
        log.warning("cluster roles: %s %s", self.me, what)
