"""``python -m ryu_apps.signalling.sip``: the standalone proxy's command line.

``python -m ryu_apps.signalling.sip --listen 127.0.0.1:5060 --route site-b.example=10.2.0.5:5060
--controller http://127.0.0.1:8080`` (token from ``--token`` or ``$MAM_TOKEN``) asks the
controller over REST for every call, off the loop, and polls the controller's SIP calls
every ``--poll-interval`` seconds to BYE those it ended; ``--config site.yaml`` instead
runs admission in this process from the configuration file (the same manager the
controller runs; for tests, benchmarks and single-box setups), whose ``sip:`` section
then configures the proxy too. With ``--config``, ``--workers N`` (or ``sip.workers``)
runs N proxy worker processes and this process as the owner of admission
(:mod:`.owner`, :mod:`.workers`; docs/sip.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Any, Callable, Coroutine

from ryu_apps.core.errors import MamError

from .. import event_loop
from ..call_control import CallControl
from .call_watch import DEFAULT_POLL_S, CallWatch, RestCallPoller
from .ids import HashIds
from .proxy import SipProxy
from .proxy_config import ProxyConfig
from .routing import RouteError, RouteTable
from .standalone import SipServer

log = logging.getLogger(__name__)
TOKEN_VARIABLE = "MAM_TOKEN"           # the same variable mamctl reads
MAX_WORKERS = 64


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
    parser.add_argument("--controller", help="admission by the controller's REST API at this base URL, e.g. "
                        "http://127.0.0.1:8080 (with --config: the proxy's settings from the file's sip: section)")
    parser.add_argument("--config", help="the configuration file; without --controller admission runs in "
                        "this process from it")
    parser.add_argument("--token", default=os.environ.get(TOKEN_VARIABLE) or None,
                        help=f"bearer token for the controller's REST API (default: ${TOKEN_VARIABLE})")
    parser.add_argument("--poll-interval", type=float, default=None, metavar="S",
                        help=f"REST mode: seconds between polls of the controller's SIP calls (default "
                             f"{DEFAULT_POLL_S:g}, or sip.controller_poll_s)")
    parser.add_argument("--timer-c", type=float, default=None, help="seconds an INVITE may ring (default 180)")
    parser.add_argument("--stats-file", help="write counters and INVITE latency as JSON here on exit and SIGUSR1")
    parser.add_argument("--workers", type=_workers, default=None, metavar="N",
                        help="N proxy worker processes plus one process owning admission (with --config; "
                             "default sip.workers, else 0: one process); see docs/sip.md")
    parser.add_argument("--shared-reader", choices=("owner", "workers"), default=None,
                        help="--workers: who reads the public UDP socket: the owner, steering each datagram "
                             "to its call's worker in order (default, or sip.shared_reader), or every worker "
                             "(see docs/performance.md)")
    parser.add_argument("--worker-spec", help=argparse.SUPPRESS)     # set by the owner for its workers
    parser.add_argument("--log-level", default="WARNING")
    return parser


def _workers(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a number of workers from 0 to {MAX_WORKERS}, got {text!r}")
    return int(text)


def load_site(args: argparse.Namespace) -> Any:
    if not args.controller and not args.config:
        raise ValueError("give --controller URL (admission over REST) and/or --config FILE")
    if not args.config:
        return None
    from ryu_apps.config import load_config
    return load_config(args.config)


def worker_count(args: argparse.Namespace, site: Any) -> int:
    """``--workers``, else the file's ``sip.workers``; 0: one process (admission in it)."""
    count = args.workers if args.workers is not None else site.sip.workers if site is not None else 0
    if count and (args.controller or site is None):
        raise ValueError("--workers needs --config (admission in the owner process) and no --controller")
    return int(count)


def proxy_settings(args: argparse.Namespace, site: Any) -> tuple[ProxyConfig, str, tuple[str, ...]]:
    """The proxy's configuration from the file's ``sip:`` section and the command line,
    the host to bind and the transports."""
    sip = site.sip if site is not None else None
    base = ProxyConfig.from_sip_config(sip) if sip is not None else ProxyConfig()
    listen_host = sip.listen_host if sip is not None else base.host
    host, port = args.listen if args.listen else (listen_host, base.port)
    routes = RouteTable(base.routes.routes + RouteTable.from_specs(args.route).routes)
    timers = base.timers if args.timer_c is None else dataclasses.replace(base.timers, timer_c=args.timer_c)
    advertised = args.advertise or (sip.advertise if sip is not None and not args.listen else None) or host
    config = dataclasses.replace(base, host=advertised, port=port, routes=routes, timers=timers)
    transports = tuple(t.strip() for t in (args.transports or ",".join(sip.transports if sip else ("udp", "tcp"))).split(","))
    return config, host, transports


def build_server(args: argparse.Namespace, site: Any = None) -> tuple[SipServer, CallControl]:
    if site is None:
        site = load_site(args)
    control: CallControl
    sip = site.sip if site is not None else None
    watch: CallWatch | None = None
    if args.controller:
        from .rest_client import RestCallControl
        rest = RestCallControl(args.controller, args.token)
        control = rest
        interval = (args.poll_interval if args.poll_interval is not None
                    else sip.controller_poll_s if sip is not None else DEFAULT_POLL_S)
        watch = RestCallPoller(rest.sip_calls, interval, on_error=lambda e: log.warning("polling calls: %s", e))
    else:
        from ryu_apps.config import build_manager
        from ryu_apps.service import MamService
        assert site is not None
        control = MamService(build_manager(site, data_plane=False))
    config, host, transports = proxy_settings(args, site)
    proxy = SipProxy(config, control, HashIds(os.urandom(16)), deferred=watch is not None)
    normalise(proxy, site)
    server = SipServer(proxy, transports, bind_host=host, watch=watch)
    subscribe = getattr(control, "subscribe", None)
    if subscribe is not None:           # in-process admission tells us about calls it ended
        subscribe(server.on_changes)
    return server, control


def normalise(proxy: SipProxy, site: Any) -> None:
    if site is not None:                # per-PBX normalisation profiles (None: the plain path)
        from ..gateway.normalise import ProxyNormaliser
        proxy.normaliser = ProxyNormaliser.for_config(site.gateway, site.topology.communities)


async def serve(server: SipServer, stats_file: str | None,
                also: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None) -> None:
    """Run ``server`` until SIGTERM/SIGINT (or ``also`` sets the event it is given);
    SIGUSR1 and the end write the stats file."""
    await server.start()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def dump() -> None:
        if stats_file:
            write_report(stats_file, server.report())

    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGUSR1, dump)
    print(f"SIP proxy listening on {server.bind_host}:{server.proxy.config.port} "
          f"({', '.join(server.transports)})", flush=True)
    watcher = loop.create_task(also(stopped)) if also is not None else None
    await stopped.wait()
    if watcher is not None:
        watcher.cancel()
    await server.stop()
    dump()


def write_report(path: str, report: dict[str, Any]) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        site = load_site(args)
        workers = worker_count(args, site)
        if args.worker_spec:
            from .workers import worker_main
            return worker_main(args, site)
        if workers:
            from .owner import owner_main
            return owner_main(args, argv, site, workers)
        server, _ = build_server(args, site)
    except (RouteError, ValueError, MamError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    event_loop.run(serve(server, args.stats_file))
    return 0
