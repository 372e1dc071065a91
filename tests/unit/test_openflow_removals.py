"""Flow-removed messages dropped before decoding: an ended call's entries, which the
controller deleted itself, send two each (every call's ingress entries ask for one), and
decoding one in the framework costs ~60 µs of its match parser.

What must hold: a message is dropped only when the valve would have ignored it whatever its
match and reason; a call's entry still in the plan (deleted by someone else, or idled out)
reaches the valve as before; the filter never raises into the framework's receive loop."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from ryu_apps import compat
from ryu_apps.core.flowplan import CookieKind, cookie, parse_cookie
from ryu_apps.openflow import events as ev

from fakes.valve_rig import Rig
from test_openflow_valve import CONFIG, _ingress_key

ofp, parser = compat.ofproto_v1_3, compat.ofproto_v1_3_parser


def datapath(rig: Rig, switch: str) -> Any:
    return SimpleNamespace(mam_conn=rig.network.switches[switch].conn)


@pytest.fixture
def rig() -> Rig:
    rig = Rig(CONFIG, media_idle="both")
    rig.connect()
    return rig


def test_an_ended_calls_removals_are_unwanted_and_a_live_calls_are_not(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    serial = rig.service.manager.call("call-1").serial
    call_cookie = cookie(CookieKind.CALL, serial)
    for switch in ("s1", "s3"):                       # both edges hold an ingress entry of the call
        assert not rig.shell.removal_unwanted(datapath(rig, switch), call_cookie)
    assert rig.valve.counters["removals_skipped"] == 0
    rig.service.release("call-1")
    rig.deliver()
    for switch in ("s1", "s3"):
        assert rig.shell.removal_unwanted(datapath(rig, switch), call_cookie)
    assert rig.valve.counters["removals_skipped"] == 2


def test_whatever_is_unwanted_the_valve_would_have_ignored(rig: Rig) -> None:
    """The filter's promise, checked against the valve itself: for each ingress entry of an
    ended call, a flow-removed with any reason changes nothing on any switch."""
    rig.admit("call-1", "a", "b")
    rig.admit("call-2", "a", "b", caller=("10.0.0.3", 4002), callee=("10.0.0.4", 5002))
    keys = {s: _ingress_key(rig, s, "10.0.0.1" if s == "s1" else "10.0.0.2") for s in ("s1", "s3")}
    entries = {s: rig.network.switches[s].flows[k].entry for s, k in keys.items()}
    rig.service.release("call-1")
    rig.deliver()
    before = {s: dict(f.flows) for s, f in rig.network.switches.items()}
    for switch, entry in entries.items():
        assert rig.shell.removal_unwanted(datapath(rig, switch), entry.cookie)
        for reason in ev.RemovedReason:
            conn = rig.network.switches[switch].conn
            assert conn is not None
            assert rig.valve.handle(ev.FlowRemoved(conn, entry.cookie, entry.table, entry.priority, entry.match,
                                                   reason), 0.0) == []
    assert {s: dict(f.flows) for s, f in rig.network.switches.items()} == before
    assert rig.state("call-2") == "active"


def test_a_live_calls_entry_deleted_by_someone_else_still_comes_back(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    key = _ingress_key(rig, "s1", "10.0.0.1")
    entry = rig.network.switches["s1"].flows.pop(key).entry           # an operator deleted it
    assert not rig.shell.removal_unwanted(datapath(rig, "s1"), entry.cookie)
    conn = rig.network.switches["s1"].conn
    assert conn is not None
    rig.event(ev.FlowRemoved(conn, entry.cookie, entry.table, entry.priority, entry.match, ev.RemovedReason.DELETE))
    rig.deliver()
    assert key in rig.network.switches["s1"].flows and rig.state("call-1") == "active"


def test_other_entries_and_unknown_connections_are_never_dropped(rig: Rig) -> None:
    rig.admit("call-1", "a", "b")
    planned = {entry.cookie for fake in rig.network.switches.values() for entry in
               (f.entry for f in fake.flows.values())}
    others = [c for c in planned if (parse_cookie(c) or (None,))[0] is not CookieKind.CALL]
    assert others                                            # aggregate and port entries
    for other in others + [0, 2**64 - 1]:
        assert not rig.shell.removal_unwanted(datapath(rig, "s1"), other)
    serial = rig.service.manager.call("call-1").serial
    rig.service.release("call-1")
    rig.deliver()
    assert not rig.shell.removal_unwanted(SimpleNamespace(), cookie(CookieKind.CALL, serial))   # never connected
    assert not rig.shell.removal_unwanted(SimpleNamespace(mam_conn=999), cookie(CookieKind.CALL, serial))


def test_a_filter_that_raises_says_no_and_is_counted(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: int, value: int) -> bool:
        raise RuntimeError("valve exploded")
    monkeypatch.setattr(rig.valve, "removal_unwanted", broken)
    assert not rig.shell.removal_unwanted(datapath(rig, "s1"), 1)
    assert rig.shell.failures["flow-removed-filter"] == 1


# --- in the framework's parser table --------------------------------------------------------------

def flow_removed_bytes(cookie_value: int) -> bytes:
    match = parser.OFPMatch(in_port=1, eth_type=0x0800, ip_proto=17, ipv4_src="10.0.0.1", udp_dst=5000)
    buf = bytearray()
    match.serialize(buf, 0)
    body = struct.pack("!QHBBIIHHQQ", cookie_value, 3000, ofp.OFPRR_DELETE, 0, 1, 0, 30, 0, 5, 500) + bytes(buf)
    return struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_FLOW_REMOVED, 8 + len(body), 7) + body


@pytest.fixture
def parsers() -> Iterator[dict[int, Any]]:
    table = getattr(parser, "_MSG_PARSERS")
    saved = table[ofp.OFPT_FLOW_REMOVED]
    yield table
    table[ofp.OFPT_FLOW_REMOVED] = saved


def parse(table: dict[int, Any], raw: bytes) -> Any:
    dp = SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
    return table[ofp.OFPT_FLOW_REMOVED](dp, ofp.OFP_VERSION, ofp.OFPT_FLOW_REMOVED, len(raw), 7, bytearray(raw))


@pytest.mark.osken
def test_the_framework_drops_unwanted_messages_and_decodes_the_rest(parsers: dict[int, Any]) -> None:
    asked: list[int] = []

    def unwanted(dp: Any, value: int) -> bool:
        asked.append(value)
        if value == 13:
            raise RuntimeError("filter exploded")
        return value == 42
    compat.filter_flow_removed(unwanted)
    compat.filter_flow_removed(unwanted)             # installed again (a restarted app): wraps the original once
    assert parse(parsers, flow_removed_bytes(42)) is None
    kept = parse(parsers, flow_removed_bytes(7))
    assert kept.cookie == 7 and kept.reason == ofp.OFPRR_DELETE and kept.match["ipv4_src"] == "10.0.0.1"
    assert parse(parsers, flow_removed_bytes(13)).cookie == 13    # a filter that raises: decoded as before
    assert asked == [42, 7, 13]
    try:                                             # too short to hold a cookie: not asked
        parse(parsers, b"\x04\x0b\x00\x0c\x00\x00\x00\x07\x00\x00\x00\x00")
    except Exception:
        pass                                         # (the framework's own parser on a truncated message)
    assert asked == [42, 7, 13]
