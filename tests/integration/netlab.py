"""A small lab of real Open vSwitch (userspace) bridges and namespace hosts for tests.

Everything it creates carries the lab's unique prefix and is removed on close, by name:
bridges, veth pairs, namespaces, and the processes it started (by PID).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def ovs_available() -> str | None:
    """None when OVS can be used here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ovs-vsctl"):
        return "Open vSwitch is not installed"
    start = ROOT / "scripts" / "ovs-up.sh"
    if subprocess.run([str(start)], capture_output=True, timeout=90).returncode != 0:
        return "Open vSwitch could not be started"
    return None


def strong_token(label: str) -> str:
    """A fresh random API token for one test run. The controller refuses an example value or
    fewer than 12 characters at start-up (ryu_apps/security.py), and a fixed string in a test
    would be copied into real configurations: every test config takes its token from here."""
    return f"{label}-{secrets.token_hex(16)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Host:
    name: str        # namespace name
    ip: str
    mac: str
    interface: str   # the host side

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *args, timeout=timeout, check=check)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)


@dataclass
class Lab:
    prefix: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:5])
    bridges: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    files: list[int] = field(default_factory=list)

    def bridge(self, name: str, dpid: int, controller_port: int | None) -> str:
        bridge = f"{self.prefix}{name}"
        sh("ovs-vsctl", "--timeout=10", "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
           f"other-config:datapath-id={dpid:016x}", "protocols=OpenFlow13", "fail-mode=secure")
        self.bridges.append(bridge)
        if controller_port is not None:
            sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, f"tcp:127.0.0.1:{controller_port}")
        return bridge

    def link(self, a: str, a_port: int, b: str, b_port: int, mtu: int = 1600) -> tuple[str, str]:
        """A veth pair between two of the lab's bridges, on fixed OpenFlow port numbers."""
        left, right = f"{self.prefix}{a}p{a_port}", f"{self.prefix}{b}p{b_port}"
        sh("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        self.links.append(left)
        for interface, bridge, port in ((left, a, a_port), (right, b, b_port)):
            sh("ip", "link", "set", interface, "mtu", str(mtu), "up")
            sh("ovs-vsctl", "--timeout=10", "add-port", f"{self.prefix}{bridge}", interface, "--", "set",
               "interface", interface, f"ofport_request={port}")
        return left, right

    def tap(self, bridge: str, port: int, speed_mbps: int) -> str:
        """A tap port with a given speed (veths cannot be given one), held open so it has carrier."""
        import fcntl
        import struct
        name = f"{self.prefix}{bridge}p{port}"
        sh("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.links.append(name)
        handle = os.open("/dev/net/tun", os.O_RDWR)
        self.files.append(handle)
        fcntl.ioctl(handle, 0x400454CA, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))  # TUNSETIFF, TAP|NO_PI
        sh("ethtool", "-s", name, "speed", str(speed_mbps), "duplex", "full", "autoneg", "off")
        sh("ip", "link", "set", name, "up")
        sh("ovs-vsctl", "--timeout=10", "add-port", f"{self.prefix}{bridge}", name, "--", "set", "interface",
           name, f"ofport_request={port}")
        return name

    def host(self, name: str, bridge: str, port: int, ip: str, mac: str) -> Host:
        namespace = f"{self.prefix}{name}"
        sh("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        outside, inside = f"{self.prefix}{bridge}p{port}", f"{self.prefix}{name}e"
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self.links.append(outside)
        sh("ip", "link", "set", inside, "netns", namespace)
        sh("ip", "link", "set", outside, "up")
        sh("ovs-vsctl", "--timeout=10", "add-port", f"{self.prefix}{bridge}", outside, "--", "set", "interface",
           outside, f"ofport_request={port}")
        host = Host(namespace, ip, mac, inside)
        host.run("ip", "link", "set", "lo", "up")
        host.run("ip", "link", "set", inside, "address", mac)
        host.run("ip", "addr", "add", f"{ip}/8", "dev", inside)
        host.run("ip", "link", "set", inside, "up")
        # The userspace datapath hands frames to AF_PACKET without checksums.
        host.run("ethtool", "-K", inside, "tx", "off", check=False)
        return host

    def start(self, argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
        output = open(log, "w") if log else subprocess.DEVNULL
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                self.stop(process)
            except ProcessLookupError:
                pass
        for bridge in self.bridges:
            sh("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge, check=False)
        for handle in self.files:
            os.close(handle)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        for namespace in self.namespaces:
            sh("ip", "netns", "del", namespace, check=False)

    def wait_connected(self, bridge: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = sh("ovs-vsctl", "--timeout=5", "get", "controller", bridge, "is_connected", check=False)
            if out.stdout.strip() == "true":
                return
            time.sleep(0.2)
        raise TimeoutError(f"{bridge} did not connect to its controller in {timeout} s")


def dump_flows(bridge: str) -> list[str]:
    out = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge).stdout
    return [line.strip() for line in out.splitlines() if line.strip() and "OFPST_FLOW" not in line]


def dump_meters(bridge: str) -> str:
    return sh("ovs-ofctl", "-O", "OpenFlow13", "dump-meters", bridge).stdout


# --- the controller under test ------------------------------------------------------------

VENV_BIN = ROOT / ".venv" / "bin"
RTPFLOW = ROOT / "mininet" / "rtpflow.py"


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the controller exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def until(what: str, check: Callable[[], bool], timeout: float = 20, explain: Callable[[], str] = lambda: "") -> None:
    """Poll ``check`` every 0.2 s until it holds; else fail saying ``what`` (and ``explain()``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:g} s {explain()}".rstrip())


def start_controller(lab: Lab, config: Path, of_port: int, api_port: int, log: Path) -> subprocess.Popen:
    """`ryu-manager ryu_apps.mam_app` with MAM_CONFIG, as users run it; returns once REST answers."""
    env = dict(os.environ, MAM_CONFIG=str(config), PYTHONUNBUFFERED="1")
    process = lab.start([str(VENV_BIN / "ryu-manager"), "--ofp-tcp-listen-port", str(of_port),
                         "ryu_apps.mam_app"], env=env, log=log)
    try:
        wait_listening(api_port, process)
    except (RuntimeError, TimeoutError) as error:      # say why: the log names the refused setting
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
        raise type(error)(f"{error}; {log}:\n{tail}") from None
    return process


def rest(api_port: int, method: str, path: str, body: object | None = None, token: str | None = None,
         timeout: float = 10) -> tuple[int, object]:
    """A request under /mam/v1 of the controller on ``api_port``: (status, JSON body)."""
    from ryu_apps.cli import Client
    return Client(f"http://127.0.0.1:{api_port}", token, timeout).exchange(method, path, body)


def capture(interface: str, seconds: float, path: Path, namespace: str | None = None) -> subprocess.Popen:
    """tshark (dumpcap) capturing ``interface`` for ``seconds`` into ``path``."""
    argv = ["tshark", "-q", "-i", interface, "-a", f"duration:{seconds:g}", "-w", str(path)]
    if namespace:
        argv = ["ip", "netns", "exec", namespace] + argv
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not path.exists():  # dumpcap creates the file once capturing
        time.sleep(0.05)
    time.sleep(0.3)
    return process


def decode(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """Fields of every packet matching ``display_filter``, decoded by tshark."""
    argv = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    for name in fields:
        argv += ["-e", name]
    out = sh(*argv, timeout=60).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]
