"""The standalone SIP <-> H.323 gateway: the sans-IO :class:`.interwork.Gateway` on asyncio.

``python -m ryu_apps.signalling.gateway --config site.yaml`` runs admission in this
process from the configuration file (the ``gateway:`` section gives the listen addresses
and each community's PBX; ``profiles:`` and the communities' ``profile`` the SIP leg's
normalisation). The shell reads the SIP UDP socket and the H.225 TCP connections, passes
bytes with ``loop.time()`` to the core, carries out its actions and wakes it at
``next_timer()``. Every callback is guarded: nothing stops the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, Callable

from ryu_apps.core.errors import MamError

from ..call_control import CallControl, perform
from ..h323.actions import Perform, StreamClose, StreamOpen, StreamSend
from ..h323.async_streams import StreamTable
from ..h323.loop_timer import LoopTimer
from ..h323.hub_server import Faults
from ..sip.transaction import Peer, Send
from .interwork import Action, Directory, Gateway, GatewaySettings
from .profile import GatewayConfig, Signalling

log = logging.getLogger(__name__)


def settings_from_config(gateway: GatewayConfig, communities: Any, sip_t1: float = 0.5) -> GatewaySettings:
    """The core's settings from the configuration (``config.gateway``, the communities)."""
    sip_pbx: dict[str, Peer] = {}
    h323_pbx: dict[str, tuple[str, int]] = {}
    for name, host, port in gateway.pbx:
        if gateway.of(name).signalling is Signalling.H323:
            h323_pbx[name] = (host, port)
        else:
            sip_pbx[name] = Peer("udp", host, port)
    domains = {c.name: c.domains[0] for c in communities if c.domains}
    profiles = {c.name: gateway.profile_of(c.name) for c in communities
                if not gateway.profile_of(c.name).changes_nothing}
    (sip_host, sip_port), (h323_host, h323_port) = gateway.sip_listen, gateway.h323_listen
    return GatewaySettings(sip_host, sip_port, h323_host, h323_port, sip_pbx=sip_pbx, h323_pbx=h323_pbx,
                           domains=domains, profiles=profiles, t1=sip_t1, no_answer_s=gateway.no_answer_s,
                           h245_timeout_s=gateway.h245_timeout_s,
                           trusted=frozenset(gateway.trusted))


class _Sip(asyncio.DatagramProtocol):
    def __init__(self, server: "GatewayServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = Peer("udp", str(addr[0]), int(addr[1]))
        self.server.guard("sip-receive", lambda: self.server.gw.sip_receive(data, source, self.server.now()))

    def error_received(self, exc: Exception) -> None:
        self.server.faults.record("sip-receive", exc)


class GatewayServer:
    def __init__(self, gw: Gateway, live_calls: Callable[[], set[str]] | None = None,
                 reconcile_s: float = 5.0) -> None:
        self.gw = gw
        self.live_calls, self.reconcile_s = live_calls, reconcile_s
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-admission")
        self.faults = Faults()
        self.tcp = StreamTable(self.guard, self.faults.record,
                               accepted=lambda host, port: self.gw.h323_accept((host, port)),
                               received=lambda conn, data: self.gw.h323_data(conn, data, self.now()),
                               closed=lambda conn, reset: self.gw.h323_closed(conn, self.now()),
                               kinds=("h323-receive", "h323-close"))
        self.sip: _Sip | None = None
        self.server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timer = LoopTimer(self.gw.next_timer,
                               lambda: self.guard("timer", lambda: self.gw.handle_timer(self.now())))

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        from ..h323.asn1 import load
        load()
        settings = self.gw.settings
        loop = self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((settings.sip_host, settings.sip_port))
        _, sip = await loop.create_datagram_endpoint(lambda: _Sip(self), sock=sock)
        self.sip = sip
        self.server = await loop.create_server(lambda: self.tcp.protocol(), settings.h323_host, settings.h323_port,
                                               reuse_address=True)
        self._schedule()
        if self.live_calls is not None:
            loop.call_later(self.reconcile_s, self._reconcile)

    def _reconcile(self) -> None:
        """REST mode: ask (on the ordered worker) which calls the controller holds; clear ours
        it no longer does. Then again in ``reconcile_s``."""
        loop, live_calls = self._loop, self.live_calls
        assert loop is not None and live_calls is not None
        asked_at = loop.time()

        def run() -> None:
            try:
                live = live_calls()
            except Exception as error:  # noqa: BLE001 - try again next time
                loop.call_soon_threadsafe(self.faults.record, "reconcile", error)
                return
            loop.call_soon_threadsafe(self.guard, "reconcile", lambda: self.gw.reconcile(live, asked_at, self.now()))
        try:
            self.worker.submit(run)
        except RuntimeError:                       # shutting down
            return
        loop.call_later(self.reconcile_s, self._reconcile)

    def _perform(self, action: Perform) -> None:
        loop = self._loop
        assert loop is not None

        def run() -> None:
            result: Any
            try:
                result = perform(self.gw.control, action.op)
            except Exception as error:  # noqa: BLE001 - an unreachable controller is an answer
                result = error
            loop.call_soon_threadsafe(self.guard, "performed",
                                      lambda: self.gw.performed(action.ticket, result, self.now()))
        self.worker.submit(run)

    async def stop(self) -> None:
        self.timer.cancel()
        if self.sip is not None and self.sip.transport is not None:
            self.sip.transport.close()
        if self.server is not None:
            self.server.close()
        self.tcp.close_all()
        self.worker.shutdown(wait=False, cancel_futures=True)

    def on_changes(self, changes: Any) -> None:
        """A MamService listener: calls admission ended itself get cleared on both legs."""
        if self._loop is None:
            return
        for released in getattr(changes, "released", ()):
            call_id, cause = released.call_id, released.cause
            if call_id.startswith("gw-"):
                self._loop.call_soon_threadsafe(
                    self.guard, "call-ended", lambda c=call_id, k=cause: self.gw.call_ended(c, k, self.now()))

    def guard(self, kind: str, call: Callable[[], list[Action]]) -> None:
        try:
            self._act(call())
        except Exception as error:  # noqa: BLE001 - the loop goes on
            self.faults.record(kind, error)
        self._schedule()

    def _act(self, out: list[Action]) -> None:
        for action in out:
            try:
                if isinstance(action, Send):
                    if self.sip is not None and self.sip.transport is not None:
                        self.sip.transport.sendto(action.data, (action.peer.host, action.peer.port))
                elif isinstance(action, (StreamSend, StreamOpen, StreamClose)):
                    assert self._loop is not None
                    self.tcp.act(action, self._loop)
                elif isinstance(action, Perform):
                    self._perform(action)
            except Exception as error:  # noqa: BLE001
                self.faults.record(type(action).__name__, error)

    def _schedule(self) -> None:
        if self._loop is not None:           # start() arms it once the loop runs
            self.timer.arm(self._loop)

    def report(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.gw.stats)
        stats.update(active_calls=len(self.gw.bridges), internal_errors=self.gw.internal_errors,
                     shell_faults=dict(self.faults.counts))
        read = getattr(self.gw.control, "read", None)
        if read is not None:
            stats["pools_kbps"] = read(lambda m: {a.id: m.used_kbps(a.id) for a in m.aggregates()})
            stats["admitted_calls"] = read(lambda m: len(m.calls()))
        return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ryu_apps.signalling.gateway",
                                     description="SIP <-> H.323 signalling gateway between communities.")
    parser.add_argument("--config", required=True, help="configuration file (gateway:, profiles:, communities)")
    parser.add_argument("--controller", help="ask this controller's REST API for admission (e.g. "
                        "http://127.0.0.1:8080) instead of running it in this process")
    parser.add_argument("--token", default=os.environ.get("MAM_TOKEN") or os.environ.get("MAM_API_TOKEN"),
                        help="bearer token for the controller's REST API (or MAM_TOKEN)")
    parser.add_argument("--reconcile-s", type=float, default=5.0,
                        help="REST mode: how often to ask which calls the controller still holds (default 5)")
    parser.add_argument("--stats-file", help="write counters as JSON here on exit and on SIGUSR1")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def build_server(args: argparse.Namespace) -> tuple[GatewayServer, CallControl]:
    from ryu_apps.config import build_manager, load_config
    from ryu_apps.service import MamService
    from ..h323.directory import TopologyDirectory
    from ..sip.ids import HashIds
    site = load_config(args.config)
    settings = settings_from_config(site.gateway, site.topology.communities, site.sip.t1_s)
    topology = site.topology
    directory: Directory = TopologyDirectory(lambda: topology)     # communities from the file: no lookups
    if args.controller:                 # admission over REST, off the loop (Perform / performed)
        from ..h323.rest_queries import live_calls
        from ..sip.rest_client import RestCallControl
        rest = RestCallControl(args.controller, args.token)
        gw = Gateway(settings, rest, directory, HashIds(os.urandom(16)), defer=True)
        server = GatewayServer(gw, live_calls=lambda: live_calls(rest) | set(rest.sip_calls()),
                               reconcile_s=max(0.1, args.reconcile_s))
        return server, rest
    service = MamService(build_manager(site, data_plane=False))
    directory = TopologyDirectory(lambda: service.manager.topology)
    gw = Gateway(settings, service, directory, HashIds(os.urandom(16)))
    server = GatewayServer(gw)
    service.subscribe(server.on_changes)
    return server, service


async def serve(server: GatewayServer, stats_file: str | None) -> None:
    await server.start()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def dump() -> None:
        if stats_file:
            with open(stats_file + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(server.report(), handle, indent=1)
            os.replace(stats_file + ".tmp", stats_file)

    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGUSR1, dump)
    settings = server.gw.settings
    print(f"gateway: SIP on {settings.sip_host}:{settings.sip_port}/udp, H.225 on "
          f"{settings.h323_host}:{settings.h323_port}/tcp", flush=True)
    await stopped.wait()
    await server.stop()
    dump()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server, _ = build_server(args)
    except (ValueError, MamError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(server, args.stats_file))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
