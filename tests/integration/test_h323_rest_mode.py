"""A standalone gatekeeper asking the controller over REST (``--controller URL --token``):
admission deferred to its worker, callees placed by ``lookup?number=``, a full pool
refused, and the pool back at 0 -- against the real REST API on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import h323sim as sim
import pytest
from h323lab import ROOT, free_port, site
from netlab import strong_token

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.metrics import Metrics
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService

pytestmark = pytest.mark.integration
TOKEN = strong_token("rest-mode")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService]]:
    service = MamService(build_manager(parse_config(site(1, 2, pool_kbps=200))))
    app = make_wsgi_app(service, ApiConfig(token=TOKEN), Metrics(service))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", service
    finally:
        server.shutdown()
        server.server_close()


def test_rest_mode_gatekeeper(controller: tuple[str, MamService], tmp_path: Path) -> None:
    url, service = controller
    ras_port, call_port = free_port(socket.SOCK_DGRAM), free_port()
    log = open(tmp_path / "gk.log", "w+", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "ryu_apps.signalling.h323", "--controller", url, "--ras-listen",
         f"127.0.0.1:{ras_port}", "--call-listen", f"127.0.0.1:{call_port}", "--log-level", "INFO",
         "--reconcile-s", "0.3"],
        cwd=ROOT, env=dict(os.environ, MAM_TOKEN=TOKEN), stdout=subprocess.PIPE, stderr=log, text=True)
    a, b = sim.Phone("1001", ("127.0.0.1", ras_port)), sim.Phone("2001", ("127.0.0.1", ras_port))
    used = lambda: service.read(lambda m: m.used_kbps("a-b"))  # noqa: E731
    try:
        assert process.stdout is not None and "H.323 gatekeeper" in process.stdout.readline()
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
        calls = []
        for _ in range(2):
            out = a.place("2001")
            assert out.admission[0] == "admissionConfirm", out.admission
            incoming = b.accept()
            assert incoming.admit()[0] == "admissionConfirm"
            incoming.answer()
            assert out.until(sim.CONNECT) is not None
            calls.append((out, incoming))
        assert used() == 182
        deadline = time.monotonic() + 5                 # attach_media goes out on the worker after the Connect
        while not all(c.callee_media for c in service.read(lambda m: m.calls())) and time.monotonic() < deadline:
            time.sleep(0.05)
        admitted = service.read(lambda m: m.calls())
        assert {c.protocol.value for c in admitted} == {"h323"} and all(c.callee_media for c in admitted)
        full = a.place("2001")
        assert full.admission[0] == "admissionReject" and full.admission[1]["rejectReason"][0] == "resourceUnavailable"
        # the controller ends one call itself (REST release): REST mode hears no notification,
        # but the next reconcile finds the call gone and clears both sides
        ended_out, ended_in = calls.pop()
        service.release("h323-" + ended_in.guid.hex(), "released")
        assert ended_out.until(sim.RELEASE_COMPLETE) is not None and ended_in.until(sim.RELEASE_COMPLETE) is not None
        assert used() == 91
        ended_out.close()
        ended_in.close()
        for out, incoming in calls:
            out.hang_up()
            assert incoming.until(sim.RELEASE_COMPLETE) is not None
            out.close()
            incoming.close()
        deadline = time.monotonic() + 5
        while used() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert used() == 0
    finally:
        a.close()
        b.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        log.seek(0)
        text = log.read()
        log.close()
    assert "Traceback" not in text, text[-2000:]
