"""Bring an emulated network up and down reliably: Mininet + Open vSwitch (userspace) + the controller.

    with Emulation(enterprise.SPEC, workdir) as emu:
        emu.api("POST", "/aggregates", {...})
        emu.host("h1a").cmd("ping -c1 10.0.2.1")

What it does, in order, each step with a timeout:
  1. starts Open vSwitch if it is not running (scripts/ovs-up.sh: socket buffers first);
  2. builds the Mininet network from the topology's spec, node names prefixed with a
     per-run tag, so it never touches bridges or interfaces it did not create;
  3. starts the switches (datapath=user, fail-mode secure, OpenFlow 1.3), sets MTU 1600
     on switch links (VLAN + MPLS tags), turns off TX checksum offload in the hosts (the
     userspace datapath does not fill checksums), and shapes the links again with HTB
     (Open vSwitch removes a port's qdisc when it adds the port);
  4. writes the controller's configuration derived from the same spec and starts
     `ryu-manager ryu_apps.mam_app`, then waits until every switch is connected.
Teardown stops Mininet's own nodes and the controller by PID, and records what is left
in a state file that `mininet/down.py` can clean if a run was killed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ryu_apps.cli import CliError, Client  # noqa: E402
from topologies.spec import NetworkSpec, build_topo  # noqa: E402

STATE_DIR = Path(os.environ.get("MAM_STATE_DIR", "/tmp/mam-emulations"))
SWITCH_LINK_MTU = 1600
RYU_MANAGER = ROOT / ".venv" / "bin" / "ryu-manager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


class Emulation:
    def __init__(self, spec: NetworkSpec, workdir: Path, *, token: str | None = None,
                 sip: dict[str, Any] | None = None, dataplane: dict[str, Any] | None = None,
                 aggregates: bool = True, log: Any = None, h323: dict[str, Any] | None = None,
                 config_extra: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.token = token or "emulation-" + secrets.token_hex(8)   # the controller refuses weak tokens
        self.sip = sip
        self.h323 = h323
        self.dataplane = dataplane
        self.aggregates = aggregates
        self.config_extra = dict(config_extra or {})   # e.g. store: etcd://..., cluster: {...} (docs/cluster.md)
        self.others: dict[str, tuple[subprocess.Popen, int, int]] = {}   # more controllers: (process, OF, REST)
        self.prefix = "m" + uuid.uuid4().hex[:3]     # short: interface names stay under 16 bytes
        self.of_port = free_port()
        self.api_port = free_port()
        self.net: Any = None
        self.controller: subprocess.Popen | None = None
        self.say = log or (lambda text: None)
        self.state_file = STATE_DIR / f"{self.prefix}.json"

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> "Emulation":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        from mininet.link import TCLink
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import OVSSwitch, RemoteController

        if os.geteuid() != 0:
            raise PermissionError("Mininet needs root")
        run(str(ROOT / "scripts" / "ovs-up.sh"), timeout=120)
        setLogLevel(os.environ.get("MAM_MININET_LOG", "critical"))  # HTB quantum warnings are noise
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._record()
        self.say(f"building {self.spec.name} ({len(self.spec.switches)} switches, prefix {self.prefix})")
        switch = partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13")
        controller = partial(RemoteController, ip="127.0.0.1", port=self.of_port)
        self.net = Mininet(topo=build_topo(self.spec, self.prefix), switch=switch, link=TCLink,
                           controller=controller, autoSetMacs=False, cleanup=False, waitConnected=False)
        self.net.start()
        self._record()
        self._prepare_links()
        config = self.workdir / "mam.yaml"
        config.write_text(json.dumps(self._config(self.api_port, self.config_extra), indent=2))
        self.say(f"starting ryu-manager ryu_apps.mam_app (OpenFlow :{self.of_port}, REST :{self.api_port})")
        env = dict(os.environ, MAM_CONFIG=str(config), PYTHONUNBUFFERED="1")
        log = open(self.workdir / "controller.log", "w")
        self.controller = subprocess.Popen(
            [str(RYU_MANAGER), "--ofp-tcp-listen-port", str(self.of_port), "ryu_apps.mam_app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._record()
        self._wait_rest(30)
        self._wait_connected(30)
        self.say("all switches connected")

    def stop(self) -> None:
        if self.net is not None:
            shells = list(self.net.controllers)  # RemoteController.stop() leaves its shell running
            try:
                self.net.stop()
            except Exception as error:  # keep tearing down the rest
                self.say(f"mininet stop: {error}")
            for node in shells:
                node.terminate()
            self.net = None
        if self.controller is not None:
            stop_process(self.controller.pid)
            self.controller = None
        for process, _, _ in self.others.values():
            stop_process(process.pid)
        self.others.clear()
        leftovers = [f"{self.prefix}{name}" for name, _ in self.spec.switches]
        for bridge in leftovers:
            run("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge, check=False)
        for interface in _interfaces_with_prefix(self.prefix):
            run("ip", "link", "del", interface, check=False)
        self.state_file.unlink(missing_ok=True)

    def _record(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "prefix": self.prefix, "bridges": [f"{self.prefix}{n}" for n, _ in self.spec.switches],
            "controller_pid": None if self.controller is None else self.controller.pid,
            "host_pids": [] if self.net is None else [  # every Mininet node has a shell
                n.pid for n in self.net.hosts + self.net.switches + self.net.controllers]}))

    def _config(self, api_port: int, extra: dict[str, Any]) -> dict[str, Any]:
        return {**self.spec.controller_config(api_port=api_port, token=self.token, sip=self.sip,
                                              dataplane=self.dataplane, aggregates=self.aggregates, h323=self.h323),
                **extra}

    def add_controller(self, name: str, extra: dict[str, Any]) -> int:
        """Another ``ryu-manager`` on the same network (a cluster, docs/cluster.md): every
        switch connects to every controller; returns its REST port."""
        of_port, api_port = free_port(), free_port()
        config = self.workdir / f"mam-{name}.yaml"
        config.write_text(json.dumps(self._config(api_port, extra), indent=2))
        log = open(self.workdir / f"controller-{name}.log", "w")
        process = subprocess.Popen(
            [str(RYU_MANAGER), "--ofp-tcp-listen-port", str(of_port), "ryu_apps.mam_app"], cwd=ROOT,
            env=dict(os.environ, MAM_CONFIG=str(config), PYTHONUNBUFFERED="1"), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.others[name] = (process, of_port, api_port)
        targets = [f"tcp:127.0.0.1:{self.of_port}"] + [f"tcp:127.0.0.1:{p}" for _, p, _ in self.others.values()]
        for switch, _ in self.spec.switches:
            run("ovs-vsctl", "--timeout=10", "set-controller", self.prefix + switch, *targets)
        return api_port

    def kill_controller(self) -> None:
        """SIGKILL the first controller (its process group), as a crash would."""
        assert self.controller is not None
        os.killpg(self.controller.pid, 9)
        self.controller.wait(10)

    # --- setup steps ---------------------------------------------------------------------

    def _prepare_links(self) -> None:
        switches = {self.prefix + name for name, _ in self.spec.switches}
        for link in self.net.links:
            for intf in (link.intf1, link.intf2):
                if intf.node.name in switches and link.intf1.node.name in switches \
                        and link.intf2.node.name in switches:
                    run("ip", "link", "set", "dev", intf.name, "mtu", str(SWITCH_LINK_MTU))
                if intf.node.name not in switches:
                    intf.node.cmd(f"ethtool -K {intf.name} tx off >/dev/null 2>&1")
            # Open vSwitch dropped the qdisc TCLink set when it added the port: shape again.
            for intf in (link.intf1, link.intf2):
                bw = intf.params.get("bw")
                if bw:
                    intf.config(bw=bw)

    def _wait_rest(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.controller is not None and self.controller.poll() is not None:
                raise RuntimeError(f"the controller exited ({self.controller.returncode}); see "
                                   f"{self.workdir / 'controller.log'}:\n{self.controller_log()[-2000:]}")
            try:
                status, _ = self.api("GET", "")
                if status == 200:
                    return
            except CliError:  # not listening yet
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the controller's REST API did not answer within {timeout:g} s")

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.prefix + name for name, _ in self.spec.switches]
        while pending and time.monotonic() < deadline:
            pending = [b for b in pending if run("ovs-vsctl", "--timeout=5", "get", "controller", b,
                                                 "is_connected", check=False).stdout.strip() != "true"]
            if pending:
                time.sleep(0.2)
        if pending:
            raise TimeoutError(f"switches {pending} did not connect within {timeout:g} s")

    # --- use -----------------------------------------------------------------------------

    def host(self, name: str) -> Any:
        return self.net.get(self.prefix + name)

    def bridge(self, switch: str) -> str:
        return self.prefix + switch

    def interface(self, switch: str, port: int) -> str:
        return f"{self.prefix}{switch}-eth{port}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """A request to the controller's REST API under /mam/v1: (status, JSON body)."""
        return Client(f"http://127.0.0.1:{self.api_port}", self.token, timeout).exchange(method, path, body)

    def controller_log(self) -> str:
        path = self.workdir / "controller.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_classes(self, switch: str, port: int, timeout: float = 10) -> None:
        """Until the controller has put the reserved class on a port (tc class 1:10)."""
        interface = self.interface(switch, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "class htb 1:10" in run("tc", "class", "show", "dev", interface, check=False).stdout:
                return
            time.sleep(0.2)
        raise TimeoutError(f"no reserved class on {interface} within {timeout:g} s")


def stop_process(pid: int, timeout: float = 10) -> None:
    """SIGTERM the process group we started, SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:  # not our child (down.py): poll for existence
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.1)


def _interfaces_with_prefix(prefix: str) -> list[str]:
    out = run("ip", "-o", "link", "show", check=False).stdout
    names = re.findall(r"^\d+: ([^:@]+)", out, flags=re.M)
    return [name for name in names if name.startswith(prefix)]
