"""The standalone proxy: the sans-IO core on an asyncio loop, over UDP and TCP.

``python -m ryu_apps.signalling.sip --listen 127.0.0.1:5060 --route site-b.example=10.2.0.5:5060
--controller http://127.0.0.1:8080 --token T`` asks the controller over REST for every call;
``--config site.yaml`` instead runs admission in this process from the configuration file
(the same manager the controller runs; for tests, benchmarks and single-box setups).

The shell's only jobs: read sockets, pass bytes with the source and ``loop.time()`` to
the core, write the core's outputs, wake the core at ``next_timer()``. It also measures
how long the core takes from an INVITE's arrival to its forwarding (latency the proxy adds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from typing import Any

from ryu_apps.core.errors import MamError

from ..call_control import CallControl
from .errors import ParseError
from .guard import Faults, deliverable, resolve_routes
from .ids import HashIds
from .message import Message
from .proxy import SipProxy
from .proxy_config import ProxyConfig
from .routing import RouteError, RouteTable
from .tcp_server import TcpConnection, open_tcp
from .transaction import Peer, Send, TimerSettings
from .udp_server import UdpEndpoint

log = logging.getLogger(__name__)
LATENCY_SAMPLES = 200_000


class SipServer:
    """Runs one :class:`SipProxy` on the running asyncio loop.

    Every entry from the outside (a datagram, a TCP message, a timer, a notification)
    runs guarded: a failure is counted in :attr:`faults` by kind, logged once per kind
    (then at most once a minute) and dropped; sockets, timers and the loop go on."""

    def __init__(self, proxy: SipProxy, transports: tuple[str, ...] = ("udp", "tcp"),
                 bind_host: str | None = None) -> None:
        self.proxy = proxy
        self.transports = transports
        self.bind_host = bind_host or proxy.config.host
        self.udp: UdpEndpoint | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self.tcp_connections: dict[Peer, TcpConnection] = {}
        self.faults = Faults(log)
        self.invite_latency: list[float] = []      # seconds from INVITE in to its outputs sent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @property
    def send_errors(self) -> int:
        return self.faults.total()

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        resolve_routes(self.proxy)
        port = self.proxy.config.port
        if "udp" in self.transports:
            self.udp = UdpEndpoint.bind(self, self.bind_host, port)
            self.udp.start(loop)
        if "tcp" in self.transports:
            self.tcp_server = await loop.create_server(lambda: TcpConnection(self), self.bind_host, port,
                                                       reuse_address=True)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.udp is not None:
            self.udp.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
        for connection in list(self.tcp_connections.values()):
            if connection.transport is not None:
                connection.transport.close()

    # --- input (each entry guarded) ----------------------------------------------------

    def on_datagram(self, data: bytes, host: str, port: int) -> None:
        assert self._loop is not None
        try:
            started = time.perf_counter()
            out = self.proxy.receive(data, Peer("udp", host, port), self._loop.time())
            self.send(out)
            if data[:7] == b"INVITE " and len(self.invite_latency) < LATENCY_SAMPLES:
                self.invite_latency.append(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - one datagram never stops the listener
            self.faults.record("handler", error, f"UDP datagram from {host}:{port}")
        self._schedule()

    def on_tcp_message(self, item: Message | ParseError, peer: Peer) -> None:
        assert self._loop is not None
        try:
            started = time.perf_counter()
            self.send(self.proxy.receive_message(item, peer, self._loop.time()))
            if getattr(item, "method", None) == "INVITE" and len(self.invite_latency) < LATENCY_SAMPLES:
                self.invite_latency.append(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001
            self.faults.record("handler", error, f"TCP message from {peer.host}:{peer.port}")
        self._schedule()

    def media_idle(self, call_id: str) -> None:
        """For a data-plane feed in this process (thread-safe: hops onto the loop)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._media_idle, call_id)

    def on_changes(self, changes: Any) -> None:
        """A :class:`~ryu_apps.service.MamService` listener: BYE the calls admission ended itself
        (preempted, aggregate deleted). Never blocks: it runs under the service's lock."""
        if self._loop is None:
            return
        try:
            for released in getattr(changes, "released", ()):
                self._loop.call_soon_threadsafe(self._call_ended, released.call_id, released.cause)
        except Exception as error:  # noqa: BLE001 - a closed loop at shutdown, say
            self.faults.record("notification", error)

    def _call_ended(self, call_id: str, cause: str) -> None:
        assert self._loop is not None
        try:
            self.send(self.proxy.call_ended(call_id, cause, self._loop.time()))
        except Exception as error:  # noqa: BLE001
            self.faults.record("notification", error)
        self._schedule()

    def _media_idle(self, call_id: str) -> None:
        assert self._loop is not None
        try:
            self.send(self.proxy.media_idle(call_id, self._loop.time()))
        except Exception as error:  # noqa: BLE001
            self.faults.record("notification", error)
        self._schedule()

    # --- output and timers --------------------------------------------------------------

    def send(self, out: list[Send]) -> None:
        for item in out:
            peer = item.peer
            if not deliverable(peer):
                self.faults.record("undeliverable", None, f"{peer!r}")
                continue
            if peer.transport == "udp":
                if self.udp is not None:
                    self.udp.sendto(item.data, peer.host, peer.port)
                continue
            try:
                connection = self.tcp_connections.get(peer)
                if connection is not None:
                    connection.write(item.data)
                elif self._loop is not None:
                    self._loop.create_task(open_tcp(self, peer, item.data))
            except Exception as error:  # noqa: BLE001
                self.faults.record("tcp-send", error, f"to {peer.host}:{peer.port}")

    def _schedule(self) -> None:
        try:
            when = self.proxy.next_timer()
            if when is None or when == self._timer_at:
                return
            if self._timer is not None:
                if self._timer_at is not None and self._timer_at <= when:
                    return                 # an earlier wake-up is set; it reschedules
                self._timer.cancel()
            assert self._loop is not None
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)
        except Exception as error:  # noqa: BLE001
            self.faults.record("timer", error)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        try:
            self.send(self.proxy.handle_timer(self._loop.time()))
        except Exception as error:  # noqa: BLE001 - the next timer still gets scheduled
            self.faults.record("timer", error)
        self._schedule()

    # --- figures ------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        samples = sorted(self.invite_latency)

        def pct(p: float) -> float | None:
            return None if not samples else round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1e6, 1)
        stats = asdict(self.proxy.stats)
        stats.update(invite_latency_us={"count": len(samples), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                                        "max": pct(1.0)},
                     send_errors=self.send_errors, faults=self.faults.snapshot(), active_calls=len(self.proxy.calls),
                     transactions=self.proxy.transaction_counts())
        return stats


# --- command line -------------------------------------------------------------------------

def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ryu_apps.signalling.sip",
                                     description="Stateful SIP proxy that admits calls against aggregate pools.")
    parser.add_argument("--listen", type=_hostport, help="host:port to listen on (UDP and TCP); default from "
                        "--config, else 127.0.0.1:5060")
    parser.add_argument("--advertise", help="host to put in Via/Record-Route (default: the listen host)")
    parser.add_argument("--route", action="append", default=[], metavar="KEY=HOST:PORT",
                        help="next hop for a request-URI domain, user@domain or * (repeatable); "
                             "tcp:HOST:PORT for TCP")
    parser.add_argument("--transports", default=None, help="udp,tcp (default both)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--controller", help="controller REST base URL, e.g. http://127.0.0.1:8080")
    source.add_argument("--config", help="run admission in this process from this configuration file")
    parser.add_argument("--token", default=os.environ.get("MAM_API_TOKEN"),
                        help="bearer token for the controller's REST API (or MAM_API_TOKEN)")
    parser.add_argument("--timer-c", type=float, default=None, help="seconds an INVITE may ring (default 180)")
    parser.add_argument("--stats-file", help="write counters and INVITE latency as JSON here on exit and SIGUSR1")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def build_server(args: argparse.Namespace) -> tuple[SipServer, CallControl]:
    overrides: dict[str, Any] = {}
    control: CallControl
    sip = None
    if args.config:
        from ryu_apps.config import build_manager, load_config
        from ryu_apps.service import MamService
        site = load_config(args.config)
        sip = site.sip
        control = MamService(build_manager(site))
    else:
        from .rest_client import RestCallControl
        control = RestCallControl(args.controller, args.token)
    base = ProxyConfig.from_sip_config(sip) if sip is not None else ProxyConfig()
    host, port = args.listen if args.listen else (base.host, base.port)
    routes = RouteTable(base.routes.routes + RouteTable.from_specs(args.route).routes)
    timers = base.timers if args.timer_c is None else TimerSettings(timer_c=args.timer_c)
    config = ProxyConfig(**{**base.__dict__, "host": args.advertise or host, "port": port, "routes": routes,
                            "timers": timers, **overrides})
    transports = tuple(t.strip() for t in (args.transports or ",".join(sip.transports if sip else ("udp", "tcp"))).split(","))
    proxy = SipProxy(config, control, HashIds(os.urandom(16)))
    server = SipServer(proxy, transports, bind_host=host)
    subscribe = getattr(control, "subscribe", None)
    if subscribe is not None:           # in-process admission tells us about calls it ended
        subscribe(server.on_changes)
    return server, control


async def serve(server: SipServer, stats_file: str | None) -> None:
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
    print(f"SIP proxy listening on {server.bind_host}:{server.proxy.config.port} "
          f"({', '.join(server.transports)})", flush=True)
    await stopped.wait()
    await server.stop()
    dump()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server, _ = build_server(args)
    except (RouteError, ValueError, MamError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        import uvloop  # type: ignore[import-not-found]
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    # Call state is short-lived and (nearly) acyclic: move start-up objects out of the
    # collector's way and collect young generations less often, so a full collection over
    # tens of thousands of live transactions does not stall the loop (UDP drops follow).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    asyncio.run(serve(server, args.stats_file))
    return 0
