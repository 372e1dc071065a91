"""wire.py: a flow-mod made from remembered pieces is the framework's own, byte for byte.

Every flow entry the plans hold (base entries, guards with goto, transit, call ingress with
meter and masked RTP/RTCP port, call egress, IPv4 and IPv6, a terminal's MAC rewrite, a
remembered piece met again with other neighbours), as FlowAdd and FlowDelete, through
``OFPFlowMod(...).serialize()`` and through :mod:`ryu_apps.openflow.wire`; and the message
the shell hands to ``send_msg`` carries those bytes and the xid. Under ryu (.venv) and
os-ken (.venv-osken, ``-m osken``).
"""

from __future__ import annotations

import collections

from types import SimpleNamespace
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from ryu_apps import compat
from ryu_apps.core.flowplan import FlowEntry, SetField
from ryu_apps.openflow import messages as m
from ryu_apps.openflow import wire
from ryu_apps.openflow.render import render_with_xid
from ryu_apps.openflow.shell import Shell
from ryu_apps.openflow import actions as act

from test_openflow_render import plan_entries

ofp, parser = compat.ofproto_v1_3, compat.ofproto_v1_3_parser


def datapath() -> Any:
    return SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)


def framework_bytes(message: m.Message, xid: int) -> bytes:
    msg = render_with_xid(datapath(), message, xid)
    msg.serialize()
    return bytes(msg.buf)


@pytest.mark.osken
def test_every_planned_flow_mod_is_the_frameworks_own_bytes() -> None:
    entries = plan_entries()
    assert any(e.meter is not None for e in entries) and any(e.goto is not None for e in entries)
    assert any(isinstance(v, tuple) for e in entries for _, v in e.match)
    assert any(name == "ipv6_src" for e in entries for name, _ in e.match)
    assert any(isinstance(a, SetField) and a.field == "eth_dst" for e in entries for a in e.actions)
    encoder = wire.FlowModEncoder(ofp, parser)
    for round_ in range(2):                       # the second time every piece is remembered
        for n, entry in enumerate(entries):
            xid = 1000 * round_ + n
            assert encoder.flow_add(entry, xid) == framework_bytes(m.FlowAdd(entry), xid), entry
            assert encoder.flow_delete(entry, xid) == framework_bytes(m.FlowDelete(entry), xid), entry


@pytest.mark.osken
def test_fields_in_any_order_and_empty_matches_and_actions() -> None:
    encoder = wire.FlowModEncoder(ofp, parser)
    entries = [
        FlowEntry("s1", 0, 5, (), (), 7, goto=1),                                  # table-miss
        FlowEntry("s1", 0, 6, (("udp_dst", 5000), ("ip_proto", 17), ("eth_type", 0x0800), ("in_port", 3)),
                  (), 8),                                                          # drop, fields out of order
        FlowEntry("s1", 1, 7, (("vlan_vid", (0x1000, 0x1000)),), (), 9, idle_timeout=30, notify_removed=True),
    ]
    for entry in entries:
        assert encoder.flow_add(entry, 5) == framework_bytes(m.FlowAdd(entry), 5)
        assert encoder.flow_delete(entry, 6) == framework_bytes(m.FlowDelete(entry), 6)


@pytest.mark.osken
def test_the_shell_sends_those_bytes_with_the_valves_xid() -> None:
    sent: list[bytes] = []
    dp = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1, send=sent.append)
    shell = Shell.__new__(Shell)
    shell.datapaths, shell._outgoing, shell.failures = {3: dp}, {}, collections.Counter()
    entry = plan_entries()[0]
    messages = (m.FlowAdd(entry), m.FlowDelete(entry), m.Barrier())
    for message in messages:
        assert shell._to_datapath(act.Send(entry.switch, 3, 77, message))
        shell._flush()
        assert sent[-1] == framework_bytes(message, 77)
    # a batch for one switch leaves in one write, in order
    for xid, message in enumerate(messages, start=100):
        assert shell._to_datapath(act.Send(entry.switch, 3, xid, message))
    shell._flush()
    assert sent[-1] == b"".join(framework_bytes(message, xid) for xid, message in enumerate(messages, start=100))
    assert len(sent) == len(messages) + 1


@pytest.mark.osken
@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.ip_addresses(v=6), st.integers(16, 1_048_575),
       st.integers(0, 65535), st.integers(1, 0xFFFFFF00), st.booleans())
def test_per_call_values_packed_as_the_framework_packs_them(src, dst, v6, label, port, in_port, masked) -> None:
    encoder = wire.FlowModEncoder(ofp, parser)
    udp = (port & 0xFFFE, 0xFFFE) if masked else port
    entries = [
        FlowEntry("e1", 0, 3000, (("in_port", in_port), ("vlan_vid", 0), ("eth_type", 0x0800), ("ip_proto", 17),
                                  ("ipv4_src", str(src)), ("ipv4_dst", str(dst)), ("udp_dst", udp)),
                  (SetField("mpls_label", label),), 5, meter=3, idle_timeout=60, notify_removed=True),
        FlowEntry("e1", 0, 3000, (("in_port", 1), ("eth_type", 0x86DD), ("ip_proto", 17), ("ipv6_src", str(v6)),
                                  ("ipv6_dst", v6.exploded), ("udp_dst", udp)), (), 5),
        FlowEntry("e2", 0, 3000, (("in_port", 2), ("vlan_vid", 0x1000 | 7), ("eth_type", 0x8847),
                                  ("mpls_label", label)), (), 6),
    ]
    for entry in entries:
        assert encoder.flow_add(entry, 1) == framework_bytes(m.FlowAdd(entry), 1), entry
        assert encoder.flow_delete(entry, 2) == framework_bytes(m.FlowDelete(entry), 2), entry
