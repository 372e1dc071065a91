"""Drives the sans-IO gatekeeper with simulator-built messages in virtual time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h323sim as sim
from ryu_apps.config import build_manager, parse_config
from ryu_apps.service import MamService
from ryu_apps.signalling.h323.actions import Action, Datagram, StreamClose, StreamOpen, StreamSend
from ryu_apps.signalling.h323.directory import TopologyDirectory
from ryu_apps.signalling.h323.gatekeeper import Gatekeeper, GatekeeperSettings

SITE = {
    "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                 "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 10000,
                            "reservable": 0.5}]},
    "communities": [
        {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.1.0/24"],
         "domains": ["a.example"], "e164_prefixes": ["1"]},
        {"name": "site-b", "edge": "s2", "access_ports": [1], "prefixes": ["10.0.2.0/24"],
         "domains": ["b.example"], "e164_prefixes": ["2"]}],
    "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": 2000}],
    "codecs": {"allowed": ["pcmu", "pcma", "g729", "g722", "t38"]},
}
GK_RAS = ("10.0.0.1", 1719)
GK_CALL = ("10.0.0.1", 1720)
PHONE_A = ("10.0.1.5", 1719)
PHONE_B = ("10.0.2.5", 1719)
SIGNAL_A = ("10.0.1.5", 1720)
SIGNAL_B = ("10.0.2.5", 1720)


def service(size_kbps: int = 2000, **extra: Any) -> MamService:
    document = {**SITE, **extra}
    document["aggregates"] = [{**SITE["aggregates"][0], "size_kbps": size_kbps}]
    return MamService(build_manager(parse_config(document)), clock=lambda: 0.0)


@dataclass
class Harness:
    service: MamService = field(default_factory=service)
    now: float = 0.0
    defer: bool = False
    settings: GatekeeperSettings = field(default_factory=lambda: GatekeeperSettings(ras=GK_RAS, call_signal=GK_CALL))
    streams: dict[int, list[bytes]] = field(default_factory=dict)
    opened: dict[int, tuple[str, int]] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    datagrams: list[tuple[tuple[str, int], Any]] = field(default_factory=list)
    performs: list[Any] = field(default_factory=list)
    sent_bytes: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        topology = self.service.manager.topology
        self.gk = Gatekeeper(self.settings, self.service, TopologyDirectory(lambda: topology), defer=self.defer)

    # --- feeding ---------------------------------------------------------------------------

    def ras(self, source: tuple[str, int], message: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return self.ras_bytes(source, sim.enc("ras", message))

    def ras_bytes(self, source: tuple[str, int], data: bytes) -> list[tuple[str, dict[str, Any]]]:
        before = len(self.datagrams)
        self.take(self.gk.receive_ras(data, source[0], source[1], self.now))
        return [m for dest, m in self.datagrams[before:] if dest == source]

    def connect(self, peer: tuple[str, int]) -> int:
        conn = self.gk.stream_opened(peer[0], peer[1], self.now)
        self.streams.setdefault(conn, [])
        return conn

    def stream(self, conn: int, data: bytes) -> None:
        self.take(self.gk.stream_data(conn, data, self.now))

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while (when := self.gk.next_timer()) is not None and when <= target:
            self.now = max(self.now, when)
            self.take(self.gk.handle_timer(self.now))
        self.now = target

    def take(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Datagram):
                self.sent_bytes.append(("ras", action.data))
                self.datagrams.append(((action.host, action.port), sim.dec("ras", action.data)))
            elif isinstance(action, StreamOpen):
                self.opened[action.conn] = (action.host, action.port)
                self.streams.setdefault(action.conn, [])
            elif isinstance(action, StreamSend):
                self.sent_bytes.append(("q931", action.data))
                self.streams.setdefault(action.conn, []).append(action.data)
            elif isinstance(action, StreamClose):
                self.closed.add(action.conn)
            else:
                self.performs.append(action)

    # --- reading ---------------------------------------------------------------------------

    def messages(self, conn: int) -> list[dict[str, Any]]:
        """Everything sent on ``conn`` so far, parsed (and forgotten)."""
        out = [sim.parse_q931(data[4:]) for data in self.streams.get(conn, [])]
        self.streams[conn] = []
        return out

    def used(self) -> int:
        return self.service.read(lambda m: m.used_kbps("a-b"))

    def calls(self) -> int:
        return self.service.read(lambda m: len(m.calls()))

    # --- scenarios ---------------------------------------------------------------------------

    def register(self, source: tuple[str, int], signal: tuple[str, int], alias: str) -> str:
        answer = self.ras(source, sim.rrq(1, source, signal, [("dialledDigits", alias)]))
        assert answer[-1][0] == "registrationConfirm", answer
        return str(answer[-1][1]["endpointIdentifier"])

    def two_phones(self) -> tuple[str, str]:
        return self.register(PHONE_A, SIGNAL_A, "1001"), self.register(PHONE_B, SIGNAL_B, "2001")

    def call(self, ep_a: str, seq: int = 10, codec: str = "g711Ulaw64k", frames: int = 20,
             answer_codec: str | None = None, bandwidth: int = 1280) -> dict[str, Any]:
        """ARQ + Setup from A to 2001, callee Alerting + Connect: returns the call's handles."""
        guid = sim.new_guid()
        acf = self.ras(PHONE_A, sim.arq(seq, ep_a, guid, [("dialledDigits", "2001")], bandwidth))
        result: dict[str, Any] = {"guid": guid, "ras": acf[-1]}
        if acf[-1][0] != "admissionConfirm":
            return result
        caller = self.connect(SIGNAL_A)
        before = set(self.opened)
        fast = [sim.olc_audio(1, codec, frames, reverse=False, media=None, rtcp=("10.0.1.5", 4001)),
                sim.olc_audio(2, codec, frames, reverse=True, media=("10.0.1.5", 4000), rtcp=("10.0.1.5", 4001))]
        self.stream(caller, sim.q931(sim.SETUP, 7, False, sim.setup_body(guid, [("dialledDigits", "2001")],
                                                                          [("dialledDigits", "1001")], fast, SIGNAL_A)))
        result["caller"] = caller
        callee = next((c for c in self.opened if c not in before), None)
        result["callee"] = callee
        if callee is None:
            return result
        setup = self.messages(callee)
        result["setup"] = setup
        crv = setup[0]["crv"]
        result["crv"] = crv
        host, port = "10.0.2.5", 5000
        answer = answer_codec or codec
        accepted = [sim.olc_audio(1, answer, frames, reverse=False, media=(host, port), rtcp=(host, port + 1)),
                    sim.olc_audio(2, answer, frames, reverse=True, media=None, rtcp=(host, port + 1))]
        self.stream(callee, sim.q931(sim.ALERTING, crv, True, sim.answer_body("alerting", guid)))
        self.stream(callee, sim.q931(sim.CONNECT, crv, True, sim.answer_body("connect", guid, accepted)))
        return result
