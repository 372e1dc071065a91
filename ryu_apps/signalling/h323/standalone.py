"""The standalone gatekeeper: the sans-IO core on an asyncio loop.

``python -m ryu_apps.signalling.h323 --config site.yaml`` runs admission in this process
from the configuration file (the manager the controller runs; for tests, benchmarks and
single-box setups). ``--controller URL --token T`` (or ``MAM_TOKEN``) asks the
controller's REST API instead: admission is deferred to one worker thread (in order), so
the loop never blocks on HTTP, and requests still waiting get RequestInProgress.

The shell's only jobs: read the RAS socket and the call-signalling connections, pass
bytes with ``loop.time()`` to the core, carry out its actions, wake it at
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
import sys
import time
from dataclasses import asdict
from typing import Any, Callable

from ryu_apps.core.errors import MamError

from .. import event_loop
from ..call_control import CallControl, perform
from .actions import Action, Datagram, Perform, StreamClose, StreamOpen, StreamSend
from .gatekeeper import Gatekeeper, GatekeeperSettings
from .async_streams import StreamTable
from .loop_timer import LoopTimer
from .hub_server import Faults

log = logging.getLogger(__name__)
LATENCY_SAMPLES = 200_000
PCTS = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
RECONCILE_S = 5.0             # REST mode: how often the controller's live calls are compared with ours


class _Ras(asyncio.DatagramProtocol):
    def __init__(self, server: "GatekeeperServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        self.server.guard("ras", lambda: self.server.gk.receive_ras(data, addr[0], addr[1], self.server.now()))
        if len(self.server.ras_latency) < LATENCY_SAMPLES:
            self.server.ras_latency.append(time.perf_counter() - started)
            self.server.ras_cpu.append(time.thread_time() - cpu)

    def error_received(self, exc: Exception) -> None:
        self.server.faults.record("ras-receive", exc)


class GatekeeperServer:
    def __init__(self, gk: Gatekeeper, ras_bind: tuple[str, int], call_bind: tuple[str, int],
                 live_calls: Callable[[], set[str]] | None = None, reconcile_s: float = RECONCILE_S) -> None:
        self.gk = gk
        self.live_calls, self.reconcile_s = live_calls, reconcile_s
        self.ras_bind, self.call_bind = ras_bind, call_bind
        self.faults = Faults()
        self.tcp = StreamTable(self.guard, self.faults.record,
                               accepted=lambda host, port: self.gk.stream_opened(host, port, self.now()),
                               received=lambda conn, data: self.gk.stream_data(conn, data, self.now()),
                               closed=lambda conn, reset: self.gk.stream_closed(conn, self.now(), reset))
        self.ras_latency: list[float] = []        # seconds from a datagram's arrival to its answers sent
        self.ras_cpu: list[float] = []            # of which this thread ran (the rest: it was preempted)
        self.ras: _Ras | None = None
        self.server: asyncio.AbstractServer | None = None
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="h323-admission")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timer = LoopTimer(self.gk.next_timer,
                               lambda: self.guard("timer", lambda: self.gk.handle_timer(self.now())))

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        from .asn1 import load
        load()
        loop = self._loop = asyncio.get_running_loop()
        _, ras = await loop.create_datagram_endpoint(lambda: _Ras(self), local_addr=self.ras_bind)
        self.ras = ras
        self.server = await loop.create_server(lambda: self.tcp.protocol(), self.call_bind[0], self.call_bind[1],
                                               reuse_address=True)
        self._schedule()
        if self.live_calls is not None:
            loop.call_later(self.reconcile_s, self._reconcile)

    def _reconcile(self) -> None:
        """Ask the controller (on the ordered worker, after every op queued before) which
        H.323 calls it holds; end the others. Then again in ``reconcile_s``."""
        loop, live_calls = self._loop, self.live_calls
        assert loop is not None and live_calls is not None
        asked_at = loop.time()

        def run() -> None:
            try:
                live = live_calls()
            except Exception as error:  # noqa: BLE001 - try again next time
                loop.call_soon_threadsafe(self.faults.record, "reconcile", error)
                return
            loop.call_soon_threadsafe(self.guard, "reconcile", lambda: self.gk.reconcile(live, asked_at, self.now()))
        try:
            self.worker.submit(run)
        except RuntimeError:                       # shutting down
            return
        loop.call_later(self.reconcile_s, self._reconcile)

    async def stop(self) -> None:
        self.timer.cancel()
        if self.ras is not None and self.ras.transport is not None:
            self.ras.transport.close()
        if self.server is not None:
            self.server.close()
        self.tcp.close_all()
        self.worker.shutdown(wait=False, cancel_futures=True)

    # --- notifications from other threads -----------------------------------------------------

    def on_changes(self, changes: Any) -> None:
        """A MamService listener (in-process admission): end the calls it ended. Never blocks."""
        if self._loop is None:
            return
        for released in getattr(changes, "released", ()):
            call_id, serial, cause = released.call_id, int(getattr(released, "serial", 0)), released.cause
            self._loop.call_soon_threadsafe(
                self.guard, "call-ended", lambda c=call_id, s=serial, k=cause: self.gk.call_ended(c, s, k, self.now()))

    def media_idle(self, call_id: str) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.guard, "media-idle", lambda: self.gk.media_idle(call_id, self.now()))

    # --- core calls -----------------------------------------------------------------------------

    def guard(self, kind: str, call: Any) -> None:
        try:
            self._act(call())
        except Exception as error:  # noqa: BLE001 - the loop goes on
            self.faults.record(kind, error)
        self._schedule()

    def _act(self, out: list[Action]) -> None:
        for action in out:
            try:
                if isinstance(action, Datagram):
                    if self.ras is not None and self.ras.transport is not None:
                        self.ras.transport.sendto(action.data, (action.host, action.port))
                elif isinstance(action, (StreamSend, StreamOpen, StreamClose)):
                    assert self._loop is not None
                    self.tcp.act(action, self._loop)
                elif isinstance(action, Perform):
                    self._perform(action)
            except Exception as error:  # noqa: BLE001
                self.faults.record(type(action).__name__, error)

    def _perform(self, action: Perform) -> None:
        loop = self._loop
        assert loop is not None

        def run() -> None:
            result: Any
            try:
                result = perform(self.gk.control, action.op)
            except Exception as error:  # noqa: BLE001 - an unreachable controller is an answer
                result = error
            loop.call_soon_threadsafe(self.guard, "performed",
                                      lambda: self.gk.performed(action.ticket, result, self.now()))
        self.worker.submit(run)

    def _schedule(self) -> None:
        if self._loop is not None:           # start() arms it once the loop runs
            self.timer.arm(self._loop)

    def report(self) -> dict[str, Any]:
        stats = asdict(self.gk.stats)
        def pct(values: list[float], p: float) -> float | None:
            samples = sorted(values)
            return None if not samples else round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1e6, 1)
        stats.update(registered=len(self.gk.registry), active_calls=len(self.gk.calls),
                     shell_faults=dict(self.faults.counts),
                     ras_latency_us={"count": len(self.ras_latency), **{k: pct(self.ras_latency, p) for k, p in PCTS}},
                     ras_cpu_us={k: pct(self.ras_cpu, p) for k, p in PCTS})
        read = getattr(self.gk.control, "read", None)
        if read is not None:            # in-process admission: each pool's use, for tests and figures
            stats["pools_kbps"] = read(lambda m: {a.id: m.used_kbps(a.id) for a in m.aggregates()})
            stats["admitted_calls"] = read(lambda m: len(m.calls()))
        return stats


# --- command line -----------------------------------------------------------------------------

def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ryu_apps.signalling.h323",
                                     description="H.323 gatekeeper (gatekeeper-routed) that admits calls against "
                                                 "aggregate pools.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="run admission in this process from this configuration file")
    source.add_argument("--controller", help="controller REST base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("MAM_TOKEN") or os.environ.get("MAM_API_TOKEN"),
                        help="bearer token for the controller's REST API (or MAM_TOKEN)")
    parser.add_argument("--ras-listen", type=_hostport, help="RAS host:port (default from --config's h323 "
                        "section, else 127.0.0.1:1719)")
    parser.add_argument("--call-listen", type=_hostport, help="call-signalling host:port (default 127.0.0.1:1720)")
    parser.add_argument("--gatekeeper-id", help="GatekeeperIdentifier (default mam-gk)")
    parser.add_argument("--reconcile-s", type=float, default=RECONCILE_S,
                        help="REST mode: how often to ask which calls the controller still holds (default 5)")
    parser.add_argument("--stats-file", help="write counters as JSON here on exit and on SIGUSR1")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def build_server(args: argparse.Namespace) -> tuple[GatekeeperServer, CallControl]:
    from .directory import ControlDirectory, TopologyDirectory
    control: CallControl
    live: Callable[[], set[str]] | None = None
    if args.config:
        from ryu_apps.config import build_manager, load_config
        from ryu_apps.service import MamService
        site = load_config(args.config)
        service = MamService(build_manager(site, data_plane=False))
        settings = GatekeeperSettings.from_config(site.h323, site.gateway)
        control = service
        directory: Any = TopologyDirectory(lambda: service.manager.topology)
        defer = False
    else:
        from .rest_queries import RestNumbers, live_calls
        from ..sip.rest_client import RestCallControl
        rest = RestCallControl(args.controller, args.token)
        control = rest
        live = lambda: live_calls(rest)  # noqa: E731
        directory = ControlDirectory(rest, RestNumbers(rest))
        settings = GatekeeperSettings()
        defer = True
    overrides: dict[str, Any] = {}
    if args.ras_listen:
        overrides["ras"] = args.ras_listen
    if args.call_listen:
        overrides["call_signal"] = args.call_listen
    if args.gatekeeper_id:
        overrides["gatekeeper_id"] = args.gatekeeper_id
    settings = GatekeeperSettings(**{**settings.__dict__, **overrides})
    gk = Gatekeeper(settings, control, directory, defer=defer)
    server = GatekeeperServer(gk, settings.ras, settings.call_signal, live_calls=live,
                              reconcile_s=max(0.1, args.reconcile_s))
    subscribe = getattr(control, "subscribe", None)
    if subscribe is not None:
        subscribe(server.on_changes)
    return server, control


async def serve(server: GatekeeperServer, stats_file: str | None) -> None:
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
    print(f"H.323 gatekeeper: RAS on {server.ras_bind[0]}:{server.ras_bind[1]}/udp, call signalling on "
          f"{server.call_bind[0]}:{server.call_bind[1]}/tcp", flush=True)
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
        event_loop.run(serve(server, args.stats_file))
    except OSError as error:                      # the port is taken, and the like
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
