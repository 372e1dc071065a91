"""The in-controller SIP proxy (HubSipServer) on the framework's own hub, for tests.

    MAM_FRAMEWORK=ryu|os_ken python tests/apps/sip_hub_runner.py --callee-port P [--sip KEY=VALUE ...]

Patches like the real launchers (ryu-manager: eventlet without threads; the os-ken
launcher: its native hub), runs admission (MamService) and the proxy as mam_app does,
and prints ``READY <sip-port> <control-port>``. The control port takes one line per
command on TCP and answers one JSON line: ``stats``, ``release <call-id>``,
``inject <kind>`` (see tests/fakes/sip_peer.FaultInjector), ``quit``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ryu_apps import compat  # noqa: E402

hub = compat.hub
hub.patch(thread=compat.FRAMEWORK != "ryu")   # ryu-manager: hub.patch(thread=False); os-ken launcher: thread=True

import yaml  # noqa: E402

from fakes.sip_fuzz import loopback_only  # noqa: E402
from fakes.sip_peer import FaultInjector, free_port, site  # noqa: E402
from ryu_apps.config import build_manager, parse_config  # noqa: E402
from ryu_apps.service import MamService  # noqa: E402
from ryu_apps.signalling.sip.hub_server import HubSipServer  # noqa: E402
from ryu_apps.signalling.sip.ids import HashIds  # noqa: E402
from ryu_apps.signalling.sip.proxy import SipProxy  # noqa: E402
from ryu_apps.signalling.sip.proxy_config import ProxyConfig  # noqa: E402


def _rss_kib() -> int:
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--callee-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=0, help="the SIP port (default: a free one)")
    parser.add_argument("--pool-kbps", type=int, default=500)
    parser.add_argument("--sip", action="append", default=[], help="extra sip: key=YAML value")
    parser.add_argument("--profile", help="run under cProfile; the stats go to this file at quit")
    parser.add_argument("--loopback-only", action="store_true", help="send to 127.0.0.0/8 only (fuzzing)")
    args = parser.parse_args()
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    port = args.port or free_port()
    sip = {"listen": f"127.0.0.1:{port}", "routes": {"site-b.example": f"127.0.0.1:{args.callee_port}"}}
    for item in args.sip:
        key, _, value = item.partition("=")
        sip[key] = yaml.safe_load(value)
    config = parse_config(site(args.pool_kbps, **sip))
    service = MamService(build_manager(config))
    proxy = SipProxy(ProxyConfig.from_sip_config(config.sip), service, HashIds(os.urandom(16)))
    injector = FaultInjector(proxy)
    server = HubSipServer(proxy, spawn=hub.spawn, sleep=hub.sleep, socket_factory=socket.socket,
                          transports=config.sip.transports, bind_host=config.sip.listen_host,
                          wakeup_factory=compat.Wakeup)
    dropped = [0]
    if args.loopback_only:
        server._send = loopback_only(server._send, dropped)  # type: ignore[method-assign]
    service.subscribe(server.on_changes)
    server.start()
    control = socket.socket()
    control.bind(("127.0.0.1", 0))
    control.listen(4)
    print(f"READY {port} {control.getsockname()[1]} {compat.FRAMEWORK} {getattr(hub, 'HUB_TYPE', '?')}", flush=True)
    while True:
        conn, _ = control.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                command, _, argument = line.strip().partition(" ")
                if command == "stats":
                    with server.lock:
                        stats = proxy.stats.snapshot().__dict__
                        calls = len(proxy.calls)
                        transactions = proxy.transaction_counts()
                    table = server.tcp_table
                    answer = dict(stats, faults=server.faults.snapshot(), active_calls=calls,
                                  tcp=dict(table.counters.__dict__, open=len(table)),
                                  queue_delay_ms=round(proxy.overload.delay * 1000, 3),
                                  non_loopback_dropped=dropped[0], rss_kib=_rss_kib(),
                                  transactions=list(transactions), timer_wakeups=server.timer_wakeups,
                                  pool_used_kbps=service.read(lambda m: m.used_kbps("a-b")),
                                  admitted_calls=service.read(lambda m: len(m.calls())), fired=injector.fired)
                elif command == "release":
                    answer = {"released": service.release(argument, cause="operator") is not None}
                elif command == "inject":
                    injector.arm(argument)
                    answer = {"armed": argument}
                elif command == "quit":
                    server.stop()
                    if args.profile:
                        profiler.disable()
                        profiler.dump_stats(args.profile)
                    stream.write("{}\n")
                    stream.flush()
                    return 0
                else:
                    answer = {"error": f"unknown command {command!r}"}
                stream.write(json.dumps(answer) + "\n")
                stream.flush()


if __name__ == "__main__":
    sys.exit(main())
