"""TLS for OpenFlow and for the REST API, with a self-signed CA, against real Open vSwitch.

A CA signs the controller's certificate (127.0.0.1) and the switches' client certificate.
The controller (ryu-manager, or mam-osken under os-ken) listens for OpenFlow over TLS
and requires the switches' certificate; two bridges connect over ``ssl:`` (the second
connection is the one ryu 4.34's listener used to fail, see compat.fix_ryu_tls_listener);
a bridge with a certificate from another CA is refused; REST answers over HTTPS to a
client that trusts the CA, and not over plain HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from netlab import Lab, free_port, ovs_available, sh, strong_token, until, wait_listening

pytestmark = [pytest.mark.integration, pytest.mark.osken]
TOKEN = strong_token("tls")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem", cwd=folder)


def make_cert(folder: Path, ca: str, name: str, subject: str, san: str | None = None) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={subject}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=folder)
    extra: list[str] = []
    if san:
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}-ca.pem", "-CAkey", f"{ca}-ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra, cwd=folder)


@pytest.fixture(scope="module")
def tls_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = ovs_available()
    if reason:
        pytest.skip(reason)
    framework = os.environ.get("MAM_FRAMEWORK", "ryu")
    command = Path(sys.executable).parent / ("mam-osken" if framework == "os_ken" else "ryu-manager")
    if not command.exists():
        pytest.skip(f"{command.name} is not installed in {command.parent}")
    pki = tmp_path_factory.mktemp("pki")
    make_ca(pki, "mam")
    make_ca(pki, "rogue")
    make_cert(pki, "mam", "controller", "127.0.0.1", san="IP:127.0.0.1")
    make_cert(pki, "mam", "switch", "switch")
    make_cert(pki, "rogue", "intruder", "intruder")
    of_port, api_port = free_port(), free_port()
    config = pki / "mam.yaml"
    tls = {"cert": str(pki / "controller.pem"), "key": str(pki / "controller.key")}
    config.write_text(json.dumps({
        "topology": {"switches": [{"name": "s1", "dpid": 0xE1}, {"name": "s2", "dpid": 0xE2}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 20000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"]},
            {"name": "site-b", "edge": "s2", "access_ports": [1], "prefixes": ["10.0.2.0/24"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 2000}],
        "dataplane": {"class_mode": "none"},
        "openflow": {"listen": f"127.0.0.1:{of_port}", "tls": {**tls, "ca": str(pki / "mam-ca.pem")}},
        "api": {"port": api_port, "token": TOKEN, "tls": tls},
        "sip": {"enabled": False},
    }))
    lab = Lab()
    # Open vSwitch's own key, certificate and the CA it trusts (one setting for the whole switch).
    previous = sh("ovs-vsctl", "--timeout=5", "get-ssl", check=False).stdout
    sh("ovs-vsctl", "--timeout=10", "set-ssl", str(pki / "switch.key"), str(pki / "switch.pem"),
       str(pki / "mam-ca.pem"))
    try:
        env = dict(os.environ, MAM_CONFIG=str(config), MAM_FRAMEWORK=framework, PYTHONUNBUFFERED="1")
        process = lab.start([str(command), "ryu_apps.mam_app"], env=env, log=pki / "controller.log")
        wait_listening(api_port, process)
        bridges = {name: lab.bridge(name, dpid, None) for name, dpid in (("s1", 0xE1), ("s2", 0xE2))}
        lab.link("s1", 10, "s2", 10)
        for bridge in bridges.values():
            sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, f"ssl:127.0.0.1:{of_port}")
        yield {"pki": pki, "api_port": api_port, "of_port": of_port, "bridges": bridges, "lab": lab,
               "log": pki / "controller.log"}
    finally:
        lab.close()
        if "Private key" in previous:
            keys = dict(line.split(": ", 1) for line in previous.strip().splitlines() if ": " in line)
            sh("ovs-vsctl", "--timeout=10", "set-ssl", keys["Private key"], keys["Certificate"],
               keys["CA Certificate"], check=False)
        else:
            sh("ovs-vsctl", "--timeout=10", "del-ssl", check=False)


def client(net: dict[str, Any], scheme: str = "https", cacert: str | None = "mam-ca.pem"):
    from ryu_apps.cli import Client
    return Client(f"{scheme}://127.0.0.1:{net['api_port']}", TOKEN, 5,
                  None if cacert is None else str(net["pki"] / cacert))


def test_switches_connect_over_tls_with_their_certificate(tls_net: dict[str, Any]) -> None:
    lab: Lab = tls_net["lab"]
    for bridge in tls_net["bridges"].values():       # two connections: the second one is the regression
        lab.wait_connected(bridge, timeout=30)

    def connected() -> bool:
        status, body = client(tls_net).exchange("GET", "/topology")
        return status == 200 and all(s["connected"] for s in body["switches"])
    until("both switches described over TLS", connected, timeout=30,
          explain=lambda: tls_net["log"].read_text()[-2000:])
    # reconnect: the listener must take a third handshake as well as the first two
    bridge = tls_net["bridges"]["s1"]
    sh("ovs-vsctl", "--timeout=10", "del-controller", bridge)
    sh("ovs-vsctl", "--timeout=10", "set-controller", bridge, f"ssl:127.0.0.1:{tls_net['of_port']}")
    lab.wait_connected(bridge, timeout=30)


def test_rest_speaks_https_to_a_client_that_trusts_the_ca(tls_net: dict[str, Any]) -> None:
    from ryu_apps.cli import CliError
    status, body = client(tls_net).exchange("GET", "/aggregates")
    assert status == 200 and [a["id"] for a in body["aggregates"]] == ["a-b"]
    status, _ = client(tls_net).exchange("POST", "/calls", {
        "call_id": "tls-1", "caller_community": "site-a", "callee_community": "site-b", "media": {"codec": "pcmu"}})
    assert status == 201
    with pytest.raises(CliError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        client(tls_net, cacert="rogue-ca.pem").exchange("GET", "/aggregates")
    with pytest.raises(CliError, match="cannot reach the controller"):
        client(tls_net, scheme="http", cacert=None).exchange("GET", "/aggregates")


def test_a_switch_with_a_certificate_from_another_ca_is_refused(tls_net: dict[str, Any]) -> None:
    import socket
    import ssl
    pki = tls_net["pki"]
    context = ssl.create_default_context(cafile=str(pki / "mam-ca.pem"))
    context.load_cert_chain(str(pki / "intruder.pem"), str(pki / "intruder.key"))
    with socket.create_connection(("127.0.0.1", tls_net["of_port"]), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")   # OFPT_HELLO
                if not tls.recv(8):
                    raise ConnectionResetError("closed by the controller")
    status, _ = client(tls_net).exchange("GET", "/stats")     # the listener is still there
    assert status == 200
