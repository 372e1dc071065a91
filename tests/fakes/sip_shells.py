"""The three SIP shells under test, started the same way: ``running_shell(kind, **sip)``.

* ``standalone``: the asyncio server (SipServer) on a loop in a thread of this process;
* ``hub-threads``: the in-controller HubSipServer on native threads in this process;
* ``hub-framework``: HubSipServer under the framework's own hub in a subprocess
  (tests/apps/sip_hub_runner.py: ryu's eventlet in .venv, os-ken's native hub in .venv-osken).

``sip`` are keys of the YAML ``sip:`` section (the proxy is configured from the file as the
controller does); the route ``site-b.example`` goes to ``shell.callee``, a UDP socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import yaml

from fakes.sip_fuzz import loopback_only
from fakes.sip_peer import FaultInjector, ThreadedLoop, free_port, site, udp_socket
from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.hub_server import HubSipServer
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.standalone import SipServer

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "apps" / "sip_hub_runner.py"
KINDS = ("standalone", "hub-threads", "hub-framework")


class Shell:
    """One running shell: its port, the callee socket, its counters, fault injection."""

    def __init__(self, kind: str, port: int, callee: socket.socket) -> None:
        self.kind, self.port, self.callee = kind, port, callee

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def inject(self, kind: str) -> None:
        raise NotImplementedError

    def release(self, call_id: str) -> bool:
        raise NotImplementedError


class InProcess(Shell):
    def __init__(self, kind: str, port: int, callee: socket.socket, proxy: SipProxy, svc: MamService,
                 server: Any, lock: Any, loopback: bool = False) -> None:
        super().__init__(kind, port, callee)
        self.proxy, self.service, self.server, self.lock = proxy, svc, server, lock
        self.injector = FaultInjector(proxy)
        self.dropped = [0]
        if loopback:                                 # mutations invent addresses: send to none of them
            name = "send" if hasattr(server, "send") else "_send"
            setattr(server, name, loopback_only(getattr(server, name), self.dropped))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            stats = dict(self.proxy.stats.snapshot().__dict__, active_calls=len(self.proxy.calls),
                         transactions=list(self.proxy.transaction_counts()))
        table = self.server.tcp_table
        return dict(stats, faults=self.server.faults.snapshot(), tcp=dict(table.counters.__dict__, open=len(table)),
                    pool_used_kbps=self.service.read(lambda m: m.used_kbps("a-b")),
                    admitted_calls=self.service.read(lambda m: len(m.calls())), fired=list(self.injector.fired),
                    non_loopback_dropped=self.dropped[0])

    def inject(self, kind: str) -> None:
        self.injector.arm(kind)

    def release(self, call_id: str) -> bool:
        return self.service.release(call_id, cause="operator") is not None


class Subprocess(Shell):
    def __init__(self, kind: str, port: int, callee: socket.socket, control_port: int) -> None:
        super().__init__(kind, port, callee)
        self.control = socket.create_connection(("127.0.0.1", control_port), timeout=20)
        self.stream = self.control.makefile("rw")

    def command(self, line: str) -> dict[str, Any]:
        self.stream.write(line + "\n")
        self.stream.flush()
        return json.loads(self.stream.readline())  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def inject(self, kind: str) -> None:
        self.command(f"inject {kind}")

    def release(self, call_id: str) -> bool:
        return bool(self.command(f"release {call_id}")["released"])


def proxy_config(port: int, callee_port: int, pool_kbps: int = 500, **sip: Any) -> tuple[ProxyConfig, MamService, Any]:
    sip = dict(sip, listen=f"127.0.0.1:{port}", routes={"site-b.example": f"127.0.0.1:{callee_port}"})
    config = parse_config(site(pool_kbps, **sip))
    return ProxyConfig.from_sip_config(config.sip), MamService(build_manager(config)), config.sip


@contextlib.contextmanager
def running_shell(kind: str, pool_kbps: int = 500, loopback: bool = False, **sip: Any) -> Iterator[Shell]:
    callee = udp_socket()
    port = free_port()
    try:
        if kind == "hub-framework":
            with _subprocess(port, callee, pool_kbps, sip, loopback) as shell:
                yield shell
            return
        config, svc, sip_config = proxy_config(port, callee.getsockname()[1], pool_kbps, **sip)
        proxy = SipProxy(config, svc, HashIds(b"shells"))
        if kind == "standalone":
            server = SipServer(proxy, sip_config.transports)
            loop = ThreadedLoop()
            loop.run(server.start())
            svc.subscribe(server.on_changes)
            try:
                yield InProcess(kind, port, callee, proxy, svc, server, threading.RLock(), loopback)
            finally:
                loop.run(server.stop())
                loop.close()
        else:
            hub = HubSipServer(proxy, spawn=lambda fn, *a: threading.Thread(target=fn, args=a, daemon=True).start(),
                               transports=sip_config.transports)
            svc.subscribe(hub.on_changes)
            hub.start()
            try:
                yield InProcess(kind, port, callee, proxy, svc, hub, hub.lock, loopback)
            finally:
                hub.stop()
    finally:
        callee.close()


@contextlib.contextmanager
def _subprocess(port: int, callee: socket.socket, pool_kbps: int, sip: dict[str, Any],
                loopback: bool) -> Iterator[Shell]:
    command = [sys.executable, str(RUNNER), "--callee-port", str(callee.getsockname()[1]), "--port", str(port),
               "--pool-kbps", str(pool_kbps)] + (["--loopback-only"] if loopback else [])
    for key, value in sip.items():
        command += ["--sip", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line and line[0] == "READY", (line, process.stderr.read() if process.poll() is not None else "")
        runner = Subprocess("hub-framework", int(line[1]), callee, int(line[2]))
        try:
            yield runner
            runner.command("quit")
        finally:
            runner.control.close()
    finally:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
