"""A controller's manager kept in step with the etcd ledger it shares with others.

``open_shared_ledger`` builds the ledger for ``store: etcd://...``; after the service
exists, :meth:`Replication.start` runs the watch on a hub thread. Each batch of watched
events is applied at once under the service's lock (``MamService.apply_remote``): the
manager's memory, REST and metrics show it, and the plan changes reach this
controller's OpenFlow shell like its own. The delay from another controller's commit
to this one's memory is the watch's delivery plus one apply (docs/cluster.md has the
measured figure).
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..config import Config
from ..core.manager import MediaAggregationManager
from ..core.network import Topology
from ..core.store import DeleteAggregate, DeleteCall, LedgerState, PutAggregate, PutCall, PutLocation, Write
from ..service import MamService
from ..store.etcd import EtcdKV
from ..store.shared import SharedLedger, ThreadWaiter, Waiter
from ..store.url import EtcdUrl
from ..openflow.events import Role
from .roles import Group, Roles

log = logging.getLogger(__name__)


LANES = 64


def member_name(config: Config) -> str:
    return config.cluster.name or f"{socket.gethostname()}-{os.getpid()}"


def lane_of(name: str) -> tuple[int, int]:
    """Where a controller's serials and tags start (core/tags.py): one of 64 lanes by its
    name, so two controllers seldom reach for the same numbers at once."""
    return zlib.crc32(name.encode("utf-8")) % LANES, LANES


def clustered(config: Config, lane: tuple[int, int] | None = None) -> Config:
    """``config`` with this controller's allocation lane (the one its ledger claimed)."""
    return replace(config, settings=replace(config.settings, tag_lane=lane or lane_of(member_name(config))))


def reload_writes(manager: MediaAggregationManager, state: LedgerState) -> list[Write]:
    """The writes that turn ``manager``'s memory into ``state`` (a fresh snapshot)."""
    calls = {c.call_id: c for c in state.calls}
    pools = {a.id: a for a in state.aggregates}
    writes: list[Write] = [DeleteCall(c.call_id) for c in manager.calls() if c.call_id not in calls]
    writes += [DeleteAggregate(a.id) for a in manager.aggregates() if a.id not in pools]
    held = {a.id: a for a in manager.aggregates()}
    writes += [PutAggregate(a) for a in state.aggregates if held.get(a.id) != a]
    live = {c.call_id: c for c in manager.calls()}
    for call in state.calls:
        old = live.get(call.call_id)
        if old is None or replace(old, state=call.state) != call or old.dialog != call.dialog:
            writes.append(PutCall(call))
    writes += [PutLocation(location) for location in state.locations]
    return writes


def groups_of(config: Config) -> tuple[Group, ...]:
    """The configured switch groups; switches in none form one more that anyone may lead
    (with no groups at all: every switch, one master: active/standby)."""
    groups = [Group(name, switches, controllers) for name, switches, controllers in config.cluster.roles]
    grouped = {s for g in groups for s in g.switches}
    rest = tuple(s.name for s in config.topology.switches if s.name not in grouped)
    if rest:
        groups.append(Group("all" if not groups else "other", rest))
    return tuple(groups)


def open_shared_ledger(config: Config, topology: Topology, waiter: Callable[[], Waiter] = ThreadWaiter) -> "Replication":
    """``waiter`` makes the sleeps other hub threads cut short (compat.Wakeup under a framework)."""
    url = config.store_url
    assert url is not None, "store: is not an etcd:// URL"
    kv = EtcdKV(url, timeout=config.cluster.timeout_s)
    ledger = SharedLedger(kv, url.prefix, member_name(config), lambda c: topology.community(c).edge, waiter(),
                          max_txn_ops=config.cluster.max_txn_ops)
    kv.ledger = ledger
    ledger.claim_lane(*lane_of(member_name(config)))     # before the manager: its serials and tags
    return Replication(url, kv, ledger, waiter())


@dataclass
class Replication:
    url: EtcdUrl
    kv: EtcdKV
    ledger: SharedLedger
    applier: Waiter
    service: MamService | None = None
    roles: Roles | None = None
    threads: list[Any] = field(default_factory=list)
    stopped: bool = False

    def start(self, service: MamService, spawn: Callable[..., Any], sleep: Callable[[float], None]) -> None:
        """The watch feeds the ledger on one hub thread and never waits for the service's
        lock (a refused commit holds it while it waits for the watch); another applies."""
        self.service = service
        self.ledger.on_events = self.applier.wake
        self.threads.append(spawn(self.kv.watch_forever, self.ledger, sleep))
        self.threads.append(spawn(self._apply_forever))
        log.info("shared ledger: etcd %s prefix %s as %s, watching from revision %d",
                 ",".join(f"{h}:{p}" for h, p in self.url.endpoints), self.url.prefix, self.ledger.member,
                 self.ledger.revision + 1)

    def _apply_forever(self) -> None:
        while not self.stopped:
            self.applier.sleep(1.0)
            if self.ledger.reload_needed:
                self.reload()
            if self.ledger.pending():
                self.apply()

    def reload(self) -> None:
        """The watch cannot continue (etcd compacted its history past it): read a new
        snapshot and apply the difference to the manager as remote changes."""
        service = self.service
        if service is not None:
            try:
                service.apply_remote(lambda: reload_writes(service.manager, self.ledger.load()))
                log.warning("shared ledger: reloaded from a snapshot at revision %d", self.ledger.revision)
            except Exception:  # noqa: BLE001 - tried again on the next round
                log.exception("reloading the shared ledger failed")

    def apply(self) -> None:
        service = self.service
        if service is not None:
            try:
                service.apply_remote(self.ledger.take_remote)
            except Exception:  # a change this controller cannot apply must not stop the loop
                log.exception("applying changes from the shared ledger failed")

    def start_roles(self, config: Config, set_roles: Callable[[frozenset[str], dict[str, tuple[Role, int]]], None],
                    waiter: Waiter, spawn: Callable[..., Any], sleep: Callable[[float], None]) -> Roles:
        """Elections for the configured switch groups; ``set_roles`` (the OpenFlow shell's)
        hears which switches this controller masters and the role to ask of each."""
        self.roles = Roles(self.kv, self.url.prefix, self.ledger.member, groups_of(config), config.cluster.lease_ttl_s,
                           set_roles, waiter)
        self.threads += self.roles.start(spawn, sleep)
        return self.roles

    def stop(self) -> None:
        self.stopped = True
        self.applier.wake()
        if self.roles is not None:
            self.roles.stop()
        self.kv.stop()
