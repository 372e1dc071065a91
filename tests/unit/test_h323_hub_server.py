"""The gatekeeper's hub shell with native threads (os-ken's hub) on 127.0.0.1, real admission."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import h323sim as sim
from h323_harness import SITE

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.h323.directory import TopologyDirectory
from ryu_apps.signalling.h323.gatekeeper import Gatekeeper, GatekeeperSettings
from ryu_apps.signalling.h323.hub_server import HubGatekeeper


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_call_through_the_hub_shell_and_release_by_admission() -> None:
    service = MamService(build_manager(parse_config(SITE)))
    ras, call = ("127.0.0.1", _free(socket.SOCK_DGRAM)), ("127.0.0.1", _free(socket.SOCK_STREAM))
    topology = service.manager.topology
    gk = Gatekeeper(GatekeeperSettings(ras=ras, call_signal=call), service, TopologyDirectory(lambda: topology))
    hub = HubGatekeeper(gk, spawn=_spawn)
    service.subscribe(hub.on_changes)
    hub.start()
    a, b = sim.Phone("1001", ras), sim.Phone("2001", ras)
    try:
        assert a.register()[0] == b.register()[0] == "registrationConfirm"
        out = a.place("2001")
        assert out.admission[0] == "admissionConfirm"
        incoming = b.accept()
        assert incoming.admit()[0] == "admissionConfirm"
        incoming.answer()
        assert out.until(sim.CONNECT) is not None
        used = lambda: service.read(lambda m: m.used_kbps("a-b"))  # noqa: E731
        assert used() == 91
        (admitted,) = service.read(lambda m: m.calls())
        assert admitted.caller_media is not None and admitted.callee_media is not None
        service.release(admitted.call_id, "released")          # REST release: the controller ends it
        to_caller, to_callee = out.until(sim.RELEASE_COMPLETE), incoming.until(sim.RELEASE_COMPLETE)
        assert to_caller is not None and to_callee is not None and to_caller["cause"] == to_callee["cause"] == 16
        assert used() == 0 and _until(lambda: not gk.calls)
        assert {m[0] for m in a.poll(0.3) + b.poll(0.3)} <= {"disengageRequest"}
        garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)      # bad input stops nothing
        garbage.sendto(b"\xff" * 40, ras)
        garbage.close()
        with socket.create_connection(call, timeout=2) as raw:
            raw.sendall(b"\x04\x00\x00\x08garbage!")
        assert a.request(sim.grq(a.next_seq(), a.ras_address))[0] == "gatekeeperConfirm"
        assert gk.stats.dropped.get("ras-undecodable") == 1 and _until(lambda: "tpkt-broken" in gk.stats.dropped)
        out.close()
        incoming.close()
    finally:
        hub.stop()
        a.close()
        b.close()
