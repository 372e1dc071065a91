"""The gateway inside the controller: ryu-manager (eventlet hub) or mam-osken (native
threads) runs ryu_apps.mam_app with a gateway: section. A SIP PBX calls an H.323 PBX
through it; REST shows the one call; the controller cannot install its flows (no switch
is connected), ends the call itself, and the gateway clears both legs with cause 47."""

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
from netlab import strong_token

from ryu_apps.cli import Client
from ryu_apps.signalling.sip.message import Request, Response, parse_message

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOKEN = strong_token("gateway-controller")
H_HOST, S_HOST = "127.0.0.4", "127.0.0.5"


def _free(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _launcher() -> tuple[list[str], str]:
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "ryu-manager").exists() and os.environ.get("MAM_FRAMEWORK", "ryu") == "ryu":
        return [str(bin_dir / "ryu-manager")], "ryu"
    if (bin_dir / "mam-osken").exists():
        return [str(bin_dir / "mam-osken")], "os_ken"
    pytest.skip("neither ryu-manager nor mam-osken in this environment")


def _text(log: Any) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())


@pytest.mark.osken
def test_gateway_in_the_controller_cleared_by_admission(tmp_path: Path) -> None:
    call_ended_by_the_controller(tmp_path, through_proxy=False)


@pytest.mark.osken
def test_the_controllers_proxy_routes_h323_domains_to_its_gateway_admitted_once(tmp_path: Path) -> None:
    """No sip.routes, no gateway.trusted: the controller's own SIP proxy sends site-h's domain to
    its gateway by itself, and the gateway trusts the proxy: REST lists one call (the proxy's),
    never a second gw- allocation; the controller ends it (no switch) and both PBXs hear of it."""
    call_ended_by_the_controller(tmp_path, through_proxy=True)


def call_ended_by_the_controller(tmp_path: Path, through_proxy: bool) -> None:
    """A SIP PBX calls an H.323 PBX through the controller's gateway (straight, or through its
    SIP proxy); REST lists the one call; no switch, so the controller ends it: both PBXs hear."""
    pbx_h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    pbx_h.bind((H_HOST, 0))
    pbx_h.listen(2)
    pbx_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx_s.bind((S_HOST, 0))
    pbx_s.settimeout(10)
    sip_port, h323_port, api_port, of_port = _free(socket.SOCK_DGRAM), _free(), _free(), _free()
    proxy_port = _free(socket.SOCK_DGRAM)
    document = {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
        "communities": [
            {"name": "site-h", "edge": "s1", "access_ports": [2], "prefixes": [f"{H_HOST}/32"],
             "e164_prefixes": ["33"], "signalling": "h323", "domains": ["site-h.example"]},
            {"name": "site-s", "edge": "s2", "access_ports": [2], "prefixes": [f"{S_HOST}/32"],
             "e164_prefixes": ["44"], "domains": ["site-s.example"]}],
        "aggregates": [{"id": "h-s", "between": ["site-h", "site-s"], "size_kbps": 1000}],
        "sip": {"listen": f"127.0.0.1:{proxy_port}", "transports": ["udp"]} if through_proxy else {"enabled": False},
        "api": {"host": "127.0.0.1", "port": api_port, "token": TOKEN},
        "dataplane": {"barrier_timeout_s": 60.0},
        "gateway": {"sip_listen": f"127.0.0.1:{sip_port}", "h323_listen": f"127.0.0.1:{h323_port}",
                    "pbx": {"site-h": f"{H_HOST}:{pbx_h.getsockname()[1]}",
                            "site-s": f"{S_HOST}:{pbx_s.getsockname()[1]}"}},
    }
    config = tmp_path / "mam.yaml"
    config.write_text(yaml.safe_dump(document))
    launcher, framework = _launcher()
    log = open(tmp_path / "controller.log", "w+", encoding="utf-8")
    process = subprocess.Popen([*launcher, "--ofp-tcp-listen-port", str(of_port), "ryu_apps.mam_app"], cwd=ROOT,
                               env=dict(os.environ, MAM_CONFIG=str(config), MAM_FRAMEWORK=framework,
                                        PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{api_port}", TOKEN, 5.0)
    try:
        deadline = time.monotonic() + 30
        while "SIP <-> H.323 gateway" not in _text(log) and time.monotonic() < deadline:
            assert process.poll() is None, _text(log)
            time.sleep(0.1)
        assert "SIP <-> H.323 gateway" in _text(log), _text(log)
        pbx_s.sendto(b"\x00garbage", ("127.0.0.1", sip_port))
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {S_HOST}\r\ns=-\r\nc=IN IP4 {S_HOST}\r\nt=0 0\r\n"
               f"m=audio 50000 RTP/AVP 0\r\n").encode()
        invite = (f"INVITE sip:331234@site-h.example SIP/2.0\r\nVia: SIP/2.0/UDP {S_HOST}:"
                  f"{pbx_s.getsockname()[1]};branch=z9hG4bKctl1\r\nMax-Forwards: 70\r\nFrom: <sip:442071230000@site-s.example>;tag=c1\r\n"
                  f"To: <sip:331234@site-h.example>\r\nCall-ID: ctl-1\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:c@{S_HOST}:{pbx_s.getsockname()[1]}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp
        pbx_s.sendto(invite, ("127.0.0.1", proxy_port if through_proxy else sip_port))
        pbx_h.settimeout(10)
        conn, _ = pbx_h.accept()
        setup = sim.read_tpkt(conn, 10)
        assert setup is not None and setup["type"] == sim.SETUP
        guid = sim.body_of(setup)[1]["callIdentifier"]["guid"]
        status, body = client.exchange("GET", "/calls")
        (call,) = body["calls"]
        assert call["media"]["codec"] == "pcmu"
        assert call["call_id"].startswith("gw-") is not through_proxy          # the proxy's, or the gateway's
        if not through_proxy:
            assert call["call_id"] == "gw-" + guid.hex()
        fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=(H_HOST, 40000), rtcp=(H_HOST, 40001)),
                sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=None, rtcp=(H_HOST, 40001))]
        conn.sendall(sim.q931(sim.CONNECT, setup["crv"], True, sim.answer_body("connect", guid, fast)))
        # both media addresses known: flows cannot be installed (no switch): the controller ends it
        release = sim.read_tpkt(conn, 10)
        assert release is not None and release["type"] == sim.RELEASE_COMPLETE
        assert through_proxy or release["cause"] == 47
        bye = None
        while bye is None:
            message = parse_message(pbx_s.recvfrom(65535)[0])
            if isinstance(message, Request) and message.method == "BYE":
                bye = message
            elif isinstance(message, Response):
                assert message.status in (100, 200)
        assert through_proxy or bye.header("reason") == "Q.850;cause=47"
        status, body = client.exchange("GET", "/calls")
        assert body["calls"] == []
        conn.close()
    finally:
        pbx_h.close()
        pbx_s.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        text = _text(log)
        log.close()
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.osken
def test_standalone_gateway_in_rest_mode_follows_the_controller(tmp_path: Path) -> None:
    """``python -m ryu_apps.signalling.gateway --config --controller``: admission over REST
    off the loop; the controller ends the call (no switch for its flows) and the gateway's
    reconcile poll clears both legs."""
    pbx_h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    pbx_h.bind((H_HOST, 0))
    pbx_h.listen(2)
    pbx_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx_s.bind((S_HOST, 0))
    pbx_s.settimeout(10)
    sip_port, h323_port, api_port, of_port = _free(socket.SOCK_DGRAM), _free(), _free(), _free()
    base = {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
        "communities": [
            {"name": "site-h", "edge": "s1", "access_ports": [2], "prefixes": [f"{H_HOST}/32"],
             "e164_prefixes": ["33"], "signalling": "h323"},
            {"name": "site-s", "edge": "s2", "access_ports": [2], "prefixes": [f"{S_HOST}/32"],
             "e164_prefixes": ["44"], "domains": ["site-s.example"]}],
        "aggregates": [{"id": "h-s", "between": ["site-h", "site-s"], "size_kbps": 1000}],
        "sip": {"enabled": False},
    }
    controller_config = tmp_path / "mam.yaml"
    controller_config.write_text(yaml.safe_dump({**base, "api": {"host": "127.0.0.1", "port": api_port,
                                                                 "token": TOKEN},
                                                 "dataplane": {"barrier_timeout_s": 60.0}}))
    gateway_config = tmp_path / "gateway.yaml"
    gateway_config.write_text(yaml.safe_dump({**base, "gateway": {
        "sip_listen": f"127.0.0.1:{sip_port}", "h323_listen": f"127.0.0.1:{h323_port}",
        "pbx": {"site-h": f"{H_HOST}:{pbx_h.getsockname()[1]}", "site-s": f"{S_HOST}:{pbx_s.getsockname()[1]}"}}}))
    launcher, framework = _launcher()
    log = open(tmp_path / "controller.log", "w+", encoding="utf-8")
    gw_log = open(tmp_path / "gateway.log", "w+", encoding="utf-8")
    controller = subprocess.Popen([*launcher, "--ofp-tcp-listen-port", str(of_port), "ryu_apps.mam_app"], cwd=ROOT,
                                  env=dict(os.environ, MAM_CONFIG=str(controller_config), MAM_FRAMEWORK=framework,
                                           PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    gateway = None
    client = Client(f"http://127.0.0.1:{api_port}", TOKEN, 5.0)
    try:
        deadline = time.monotonic() + 30
        while "REST API on" not in _text(log) and time.monotonic() < deadline:
            assert controller.poll() is None, _text(log)
            time.sleep(0.1)
        gateway = subprocess.Popen([sys.executable, "-m", "ryu_apps.signalling.gateway", "--config",
                                    str(gateway_config), "--controller", f"http://127.0.0.1:{api_port}",
                                    "--token", TOKEN, "--reconcile-s", "0.5", "--log-level", "INFO"],
                                   cwd=ROOT, stdout=gw_log, stderr=subprocess.STDOUT)
        while "gateway: SIP on" not in _text(gw_log) and time.monotonic() < deadline:
            assert gateway.poll() is None, _text(gw_log)
            time.sleep(0.1)
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {S_HOST}\r\ns=-\r\nc=IN IP4 {S_HOST}\r\nt=0 0\r\n"
               f"m=audio 50000 RTP/AVP 18\r\n").encode()
        invite = (f"INVITE sip:331234@site-h.example SIP/2.0\r\nVia: SIP/2.0/UDP {S_HOST}:"
                  f"{pbx_s.getsockname()[1]};branch=z9hG4bKrest1\r\nFrom: <sip:442071230000@site-s.example>;tag=c1\r\n"
                  f"To: <sip:331234@site-h.example>\r\nCall-ID: rest-1\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:c@{S_HOST}:{pbx_s.getsockname()[1]}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp
        pbx_s.sendto(invite, ("127.0.0.1", sip_port))
        pbx_h.settimeout(10)
        conn, _ = pbx_h.accept()
        setup = sim.read_tpkt(conn, 10)
        assert setup is not None and setup["type"] == sim.SETUP
        guid = sim.body_of(setup)[1]["callIdentifier"]["guid"]
        status, body = client.exchange("GET", "/calls")
        (call,) = body["calls"]
        assert call["call_id"] == "gw-" + guid.hex() and call["media"]["codec"] == "g729"
        fast = [sim.olc_audio(1, "g729", 2, reverse=False, media=(H_HOST, 40000), rtcp=(H_HOST, 40001)),
                sim.olc_audio(2, "g729", 2, reverse=True, media=None, rtcp=(H_HOST, 40001))]
        conn.sendall(sim.q931(sim.CONNECT, setup["crv"], True, sim.answer_body("connect", guid, fast)))
        release = sim.read_tpkt(conn, 10)                  # the controller ended it; the poll saw
        assert release is not None and release["type"] == sim.RELEASE_COMPLETE
        bye = None
        while bye is None:
            message = parse_message(pbx_s.recvfrom(65535)[0])
            if isinstance(message, Request) and message.method == "BYE":
                bye = message
        assert bye.header("reason") == "Q.850;cause=16"        # released by the controller: normal
        status, body = client.exchange("GET", "/calls")
        assert body["calls"] == []
        conn.close()
    finally:
        pbx_h.close()
        pbx_s.close()
        for process in (gateway, controller):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        text, gw_text = _text(log), _text(gw_log)
        log.close()
        gw_log.close()
    assert "Traceback" not in text, text[-3000:]
    assert "Traceback" not in gw_text, gw_text[-3000:]

