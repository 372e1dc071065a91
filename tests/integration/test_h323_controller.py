"""The gatekeeper inside the controller: ryu-manager (eventlet hub) or mam-osken (native
threads) runs ryu_apps.mam_app with h323.enabled; simulated phones call through it, REST
shows the call as h323, and when the controller ends the call itself (its flows cannot be
installed: no switch is connected) both sides get ReleaseComplete."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h323sim as sim
import pytest
import yaml
from h323lab import ROOT, free_port, site
from netlab import strong_token

from ryu_apps.cli import Client

pytestmark = pytest.mark.integration
TOKEN = strong_token("h323-controller")


def _launcher() -> tuple[list[str], str]:
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "ryu-manager").exists() and os.environ.get("MAM_FRAMEWORK", "ryu") == "ryu":
        return [str(bin_dir / "ryu-manager")], "ryu"
    if (bin_dir / "mam-osken").exists():
        return [str(bin_dir / "mam-osken")], "os_ken"
    pytest.skip("neither ryu-manager nor mam-osken in this environment")


@pytest.mark.osken
def test_gatekeeper_in_the_controller(tmp_path: Path) -> None:
    ras_port, call_port, api_port, of_port = free_port(socket.SOCK_DGRAM), free_port(), free_port(), free_port()
    document: dict[str, Any] = site(ras_port, call_port, pool_kbps=200)
    document["api"] = {"host": "127.0.0.1", "port": api_port, "token": TOKEN}
    document["dataplane"] = {"barrier_timeout_s": 60.0}
    config = tmp_path / "mam.yaml"
    config.write_text(yaml.safe_dump(document))
    launcher, framework = _launcher()
    log = open(tmp_path / "controller.log", "w+", encoding="utf-8")
    process = subprocess.Popen([*launcher, "--ofp-tcp-listen-port", str(of_port), "ryu_apps.mam_app"], cwd=ROOT,
                               env=dict(os.environ, MAM_CONFIG=str(config), MAM_FRAMEWORK=framework,
                                        PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{api_port}", TOKEN, 5.0)
    a, b = sim.Phone("1001", ("127.0.0.1", ras_port)), sim.Phone("2001", ("127.0.0.1", ras_port))
    try:
        deadline = time.monotonic() + 30
        while "H.323 gatekeeper" not in _text(log) and time.monotonic() < deadline:
            assert process.poll() is None, _text(log)
            time.sleep(0.1)
        assert "H.323 gatekeeper" in _text(log), _text(log)
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
        out = a.place("2001", codec="g729AnnexA", frames=2, bandwidth=160)
        assert out.admission[0] == "admissionConfirm"
        incoming = b.accept()
        assert incoming.admit(160)[0] == "admissionConfirm"
        status, body = client.exchange("GET", "/calls")          # admitted, media not yet known
        (call,) = body["calls"]
        assert call["protocol"] == "h323" and call["media"]["codec"] == "g729" and call["state"] == "admitted"
        incoming.answer(codec="g729AnnexA", frames=2)
        assert out.until(sim.CONNECT) is not None
        # both media addresses known: the controller installs the flows, but no switch is
        # connected here, so it ends the call itself -- and the gatekeeper clears both sides
        to_caller, to_callee = out.until(sim.RELEASE_COMPLETE), incoming.until(sim.RELEASE_COMPLETE)
        assert to_caller is not None and to_callee is not None
        assert to_caller["cause"] == to_callee["cause"] == 47          # resource unavailable
        status, body = client.exchange("GET", "/calls")
        assert body["calls"] == []
        status, stats = client.exchange("GET", "/stats")
        assert status == 200 and "flow-install-failed" in _text(log)
        out.close()
        incoming.close()
    finally:
        a.close()
        b.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        text = _text(log)
        log.close()
    assert "Traceback" not in text, text[-3000:]


def _text(log: Any) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())


