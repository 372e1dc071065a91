"""SIP (real SIPp through the proxy) and H.323 (simulated endpoints through the gatekeeper's
hub shell) admitted on one controller's pool at the same time: the arithmetic holds."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import h323sim as sim
import pytest
from test_sipp_proxy import PCMU_KBPS, Sipp, ThreadedProxy, errors_of, free_port, site_config

from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import SignallingProtocol
from ryu_apps.service import MamService
from ryu_apps.signalling.h323.directory import TopologyDirectory
from ryu_apps.signalling.h323.gatekeeper import Gatekeeper, GatekeeperSettings
from ryu_apps.signalling.h323.hub_server import HubGatekeeper
from ryu_apps.signalling.sip.proxy_config import ProxyConfig

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")]


def _spawn(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sip_and_h323_calls_share_one_pool(tmp_path: Path) -> None:
    port, uas_port = free_port(), free_port()
    document = site_config(6 * PCMU_KBPS, port, uas_port)
    document["communities"][0]["e164_prefixes"] = ["1"]
    document["communities"][1]["e164_prefixes"] = ["2"]
    config = parse_config(document)
    service = MamService(build_manager(config))
    proxy = ThreadedProxy(service, ProxyConfig.from_sip_config(config.sip))
    ras, call = ("127.0.0.1", _udp_port()), ("127.0.0.1", free_port())
    topology = service.manager.topology
    gk = Gatekeeper(GatekeeperSettings(ras=ras, call_signal=call), service, TopologyDirectory(lambda: topology))
    hub = HubGatekeeper(gk, spawn=_spawn)
    service.subscribe(hub.on_changes)
    hub.start()
    sipp = Sipp(tmp_path, port, uas_port)
    a, b = sim.Phone("1001", ras), sim.Phone("2001", ras)
    held: list[tuple[sim.OutgoingCall, sim.IncomingCall]] = []
    used = lambda: service.read(lambda m: m.used_kbps("a-b"))  # noqa: E731
    try:
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
        for _ in range(3):                                    # 3 H.323 G.711 calls stay up
            out = a.place("2001")
            assert out.admission[0] == "admissionConfirm"
            incoming = b.accept()
            incoming.admit()
            incoming.answer()
            assert out.until(sim.CONNECT) is not None
            held.append((out, incoming))
        assert used() == 3 * PCMU_KBPS                          # the same 91 kbit/s a SIP G.711 call costs
        sipp.start_uas("uas_answer.xml")
        rc, counts = sipp.uac("uac_call.xml", 6, ["pcmu"], rate=100, hold_ms=1500)
        assert rc == 0, errors_of(sipp.workdir)
        assert counts["8_200"] == 3 and counts["4_503"] == 3, counts     # the 3 places the H.323 calls left
        assert used() == 3 * PCMU_KBPS                          # SIP calls gone, H.323 calls still held
        counters = service.read(lambda m: m.counters)
        assert counters.admitted_by_protocol[SignallingProtocol.H323] == 3
        assert counters.admitted_by_protocol[SignallingProtocol.SIP] == 3
        fourth = a.place("2001")                                # room for 3 more: one H.323 call fits
        assert fourth.admission[0] == "admissionConfirm"
        fourth.close()                                          # its connection drops: released too
        for out, incoming in held:
            out.hang_up()
            assert incoming.until(sim.RELEASE_COMPLETE) is not None
            out.close()
            incoming.close()
    finally:
        sipp.stop_uas()
        hub.stop()
        proxy.close()
        a.close()
        b.close()
    deadline_ok = _until(lambda: used() == 0)
    assert deadline_ok, f"pool at {used()} kbit/s"


def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
