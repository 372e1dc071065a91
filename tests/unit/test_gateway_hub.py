"""The gateway on the controller's hub shell (native threads, real admission, loopback):
a SIP caller to an H.323 PBX, ended by admission; garbage on both ports stops nothing."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

import h323sim as sim

from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.gateway.hub_server import hub_gateway
from ryu_apps.signalling.gateway.interwork import Gateway
from ryu_apps.signalling.gateway.standalone import settings_from_config
from ryu_apps.signalling.h323.directory import TopologyDirectory
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.message import Request, Response, parse_message

H_HOST, S_HOST = "127.0.0.4", "127.0.0.5"


def _free(kind: int, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _spawn(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def site(sip_port: int, h323_port: int, pbx_h: int, pbx_s: int) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 100000}]},
        "communities": [
            {"name": "site-h", "edge": "s1", "access_ports": [2], "prefixes": [f"{H_HOST}/32"],
             "e164_prefixes": ["33"], "signalling": "h323"},
            {"name": "site-s", "edge": "s2", "access_ports": [2], "prefixes": [f"{S_HOST}/32"],
             "e164_prefixes": ["44"], "domains": ["site-s.example"]}],
        "aggregates": [{"id": "h-s", "between": ["site-h", "site-s"], "size_kbps": 1000}],
        "gateway": {"sip_listen": f"127.0.0.1:{sip_port}", "h323_listen": f"127.0.0.1:{h323_port}",
                    "pbx": {"site-h": f"{H_HOST}:{pbx_h}", "site-s": f"{S_HOST}:{pbx_s}"}},
    }


def test_sip_to_h323_through_the_hub_shell_ended_by_admission() -> None:
    pbx_h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    pbx_h.bind((H_HOST, 0))
    pbx_h.listen(2)
    pbx_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx_s.bind((S_HOST, 0))
    pbx_s.settimeout(5)
    sip_port, h323_port = _free(socket.SOCK_DGRAM), _free(socket.SOCK_STREAM)
    config = parse_config(site(sip_port, h323_port, pbx_h.getsockname()[1], pbx_s.getsockname()[1]))
    service = MamService(build_manager(config))
    core = Gateway(settings_from_config(config.gateway, config.topology.communities), service,
                   TopologyDirectory(lambda: service.manager.topology), HashIds(b"hub"))
    hub = hub_gateway(core, spawn=_spawn)
    service.subscribe(hub.on_changes)
    hub.start()
    try:
        for junk in (b"\x00" * 30, b"INVITE sip:x SIP/2.0\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
            pbx_s.sendto(junk, ("127.0.0.1", sip_port))
        with socket.create_connection(("127.0.0.1", h323_port), source_address=(H_HOST, 0)) as garbage:
            garbage.sendall(b"\x03\x00\x00\x08\x01\x02\x03\x04")
        sdp = (f"v=0\r\no=- 1 1 IN IP4 {S_HOST}\r\ns=-\r\nc=IN IP4 {S_HOST}\r\nt=0 0\r\n"
               f"m=audio 50000 RTP/AVP 0\r\n").encode()
        invite = (f"INVITE sip:331234@site-h.example SIP/2.0\r\nVia: SIP/2.0/UDP {S_HOST}:"
                  f"{pbx_s.getsockname()[1]};branch=z9hG4bKhub1\r\nFrom: <sip:442071230000@site-s.example>;tag=c1\r\n"
                  f"To: <sip:331234@site-h.example>\r\nCall-ID: hub-1\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:c@{S_HOST}:{pbx_s.getsockname()[1]}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp
        pbx_s.sendto(invite, ("127.0.0.1", sip_port))
        pbx_h.settimeout(5)
        conn, _ = pbx_h.accept()
        setup = sim.read_tpkt(conn, 5)
        assert setup is not None and setup["type"] == sim.SETUP
        guid = sim.body_of(setup)[1]["callIdentifier"]["guid"]
        fast = [sim.olc_audio(1, "g711Ulaw64k", 20, reverse=False, media=(H_HOST, 40000), rtcp=(H_HOST, 40001)),
                sim.olc_audio(2, "g711Ulaw64k", 20, reverse=True, media=None, rtcp=(H_HOST, 40001))]
        conn.sendall(sim.q931(sim.CONNECT, setup["crv"], True, sim.answer_body("connect", guid, fast)))
        statuses = []
        while 200 not in statuses:
            message = parse_message(pbx_s.recvfrom(65535)[0])
            assert isinstance(message, Response)
            statuses.append(message.status)
        assert statuses[0] == 100 and b"c=IN IP4 127.0.0.4" in message.body
        assert service.read(lambda m: m.used_kbps("h-s")) > 0
        call_id = "gw-" + guid.hex()
        service.release(call_id, "released over REST")       # admission ends the call itself
        release = sim.read_tpkt(conn, 5)
        assert release is not None and release["type"] == sim.RELEASE_COMPLETE and release["cause"] == 16
        while True:
            message = parse_message(pbx_s.recvfrom(65535)[0])
            if isinstance(message, Request) and message.method == "BYE":
                break
        assert message.header("reason") == "Q.850;cause=16"
        assert service.read(lambda m: (len(m.calls()), m.used_kbps("h-s"))) == (0, 0)
        assert core.internal_errors == 0 and core.stats.get("sip-malformed", 0) >= 2
        conn.close()
    finally:
        hub.stop()
        pbx_h.close()
        pbx_s.close()
