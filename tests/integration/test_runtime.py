"""The runtime the README sets up really starts apps: `ryu-manager` and the os-ken launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netlab import strong_token

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "tests" / "apps" / "hello_app.py"
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_app(argv: list[str], port: int, framework: str) -> str:
    env = dict(os.environ, MAM_FRAMEWORK=framework, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_listening(port, process), f"{argv[0]} never listened on {port}"
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
    return output


def tool(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in this environment ({path.parent})")
    return path


def test_ryu_manager_reports_its_version():
    if not (Path(sys.executable).parent / "ryu-manager").exists():
        pytest.skip("ryu runtime not in this venv")
    result = subprocess.run([str(tool("ryu-manager")), "--version"], capture_output=True, text=True, timeout=30)
    assert "ryu-manager 4.34" in (result.stdout + result.stderr)


def test_ryu_manager_runs_an_app_through_the_compat_layer():
    if not (Path(sys.executable).parent / "ryu-manager").exists():
        pytest.skip("ryu runtime not in this venv")
    port = free_port()
    output = run_app([str(tool("ryu-manager")), "--ofp-tcp-listen-port", str(port), str(HELLO)], port, "ryu")
    assert "hello-app started under ryu" in output


@pytest.mark.osken
def test_osken_launcher_runs_the_same_app():
    try:
        import os_ken  # noqa: F401
    except ImportError:
        pytest.skip("os-ken is not installed in this environment (it runs in .venv-osken)")
    port = free_port()
    output = run_app([str(tool("mam-osken")), "--ofp-tcp-listen-port", str(port), str(HELLO)], port, "os_ken")
    assert "hello-app started under os_ken" in output


def live_events_and_records(port: int, token: str) -> None:
    """Under the real hub: a call admitted over REST is on the event stream at once, and
    leaves a call detail record when released."""
    import json
    import socket
    import time
    import urllib.request
    base = f"http://127.0.0.1:{port}/mam/v1"
    stream = socket.create_connection(("127.0.0.1", port), timeout=10)
    stream.sendall(b"GET /mam/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"retry:" not in data:
        data += stream.recv(65536)
    call = {"call_id": "rt-1", "caller_community": "site-a", "callee_community": "site-b", "media": {"codec": "pcmu"}}
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/calls", json.dumps(call).encode(), auth)) as answer:
        assert answer.status == 201
    while b"event: call.admitted" not in data:
        data += stream.recv(65536)
    assert time.monotonic() - sent < 1.0 and b'"call_id":"rt-1"' in data
    stream.close()
    release = urllib.request.Request(f"{base}/calls/rt-1?cause=bye", headers=auth, method="DELETE")
    with urllib.request.urlopen(release) as answer:
        assert answer.status == 204
    with urllib.request.urlopen(f"{base}/cdrs?format=csv") as answer:
        rows = answer.read().decode().splitlines()
    assert rows[0].startswith("kind,call_id") and rows[1].startswith("call,rt-1,rest,site-a,site-b,a-b"), rows


@pytest.mark.osken
def test_the_controller_starts_with_every_front_end_and_listener(tmp_path: Path):
    """mam_app under its framework with SIP, H.323, REST (TLS-less) and a SQLite store all on:
    every start-up path that imports lazily runs, each listener answers, and the start-up
    checks pass a strong token. (Under os-ken: mam-osken.)"""
    import json
    framework = os.environ.get("MAM_FRAMEWORK", "ryu")
    command = tool("mam-osken" if framework == "os_ken" else "ryu-manager")
    of_port, api_port, sip_port, ras_port, call_port = (free_port() for _ in range(5))
    config = tmp_path / "mam.yaml"
    config.write_text(json.dumps({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 20000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-b", "edge": "s2", "access_ports": [1], "prefixes": ["10.0.2.0/24"], "e164_prefixes": ["2"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 2000}],
        "dataplane": {"class_mode": "none"},
        "openflow": {"listen": f"127.0.0.1:{of_port}"},
        "api": {"port": api_port, "token": (token := strong_token("runtime"))},
        "sip": {"enabled": True, "listen": f"127.0.0.1:{sip_port}", "transports": ["udp", "tcp"]},
        "h323": {"enabled": True, "ras_listen": f"127.0.0.1:{ras_port}", "call_listen": f"127.0.0.1:{call_port}"},
        "store": str(tmp_path / "ledger.sqlite"),
    }))
    env = dict(os.environ, MAM_CONFIG=str(config), MAM_FRAMEWORK=framework, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([str(command), "ryu_apps.mam_app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for port in (api_port, of_port, sip_port, call_port):       # TCP listeners: REST, OpenFlow, SIP, H.225
            assert wait_listening(port, process, timeout=40), f"nothing on {port}"
        live_events_and_records(api_port, token)
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
    assert "Traceback" not in output, output[-3000:]
    assert "H.323 gatekeeper" in output and "SIP proxy on" in output and "REST API on http://" in output, output
