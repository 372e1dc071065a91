"""Flow-mods straight to wire bytes, from pieces the framework encoded once.

Rendering a flow-mod through the framework (``OFPMatch(**fields)``, action objects,
``OFPFlowMod``, then ``serialize()``) costs more per call than the admission itself. Here
every piece of a flow-mod is encoded by the framework the first time it is seen and
remembered as bytes: each match field with its value (an OXM TLV; the framework's own
field order is kept), each action, each instruction header. A call's flow-mod is then a
few dictionary lookups and one ``struct.pack`` for the fixed header. The bytes are the
framework's own, byte for byte (tests/unit/test_openflow_wire.py compares them for
every kind of entry the plans hold).

Framework-agnostic: the datapath's ``ofproto`` / ``ofproto_parser`` (ryu's or os-ken's)
are passed in; nothing is sent here.
"""

from __future__ import annotations

import struct
from typing import Any

from ..core.flowplan import Action, FlowEntry
from ..core.network import parse_address
from . import render

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_MATCH_HEADER = struct.Struct("!HH")
_INSTRUCTION_METER = struct.Struct("!HHI")
_INSTRUCTION_ACTIONS = struct.Struct("!HH4x")
_INSTRUCTION_GOTO = struct.Struct("!HHB3x")
#: Fields whose values differ per call, their width, and a sample the framework encodes once.
_WIDTH = {"udp_dst": 2, "mpls_label": 4, "in_port": 4}
_SAMPLES: dict[str, Any] = {"ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.1", "ipv6_src": "fd00::1",
                            "ipv6_dst": "fd00::1", "udp_dst": 5004, "udp_dst/mask": (5004, 0xFFFE),
                            "mpls_label": 16, "in_port": 1}
_PER_CALL = frozenset(("ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "udp_dst", "mpls_label", "in_port"))
_MEMO_LIMIT = 16384          # per-call values (addresses, labels) come and go: start over past this
ALL_ONES_64 = render.ALL_ONES_64


class FlowModEncoder:
    """Wire bytes of FlowAdd / FlowDelete for one framework's OpenFlow 1.3 modules."""

    def __init__(self, ofp: Any, parser: Any) -> None:
        self.ofp, self.parser = ofp, parser
        self._fields: dict[tuple[str, Any], tuple[int, bytes]] = {}    # (name, value) -> (order, TLV)
        self._actions: dict[Action, bytes] = {}
        self._headers: dict[str, tuple[int, bytes]] = {}                # per-call field -> (order, OXM header)

    # --- pieces -------------------------------------------------------------------------

    def _field(self, name: str, value: Any) -> tuple[int, bytes]:
        key = (name, value)
        known = self._fields.get(key)
        if known is None and name in _PER_CALL:
            known = self._per_call(name, value)
        if known is None:
            known = self._framework_field(name, value)
            if len(self._fields) >= _MEMO_LIMIT:
                self._fields.clear()
            self._fields[key] = known
        return known

    def _framework_field(self, name: str, value: Any) -> tuple[int, bytes]:
        """The field as the framework encodes it (an OXM TLV), with its sort key."""
        match = self.parser.OFPMatch(**{name: value})
        buf = bytearray()
        match.serialize(buf, 0)
        number = self.ofp.oxm_from_user(name, value)[0]
        order = number[0] if isinstance(number, tuple) else number    # the framework's sort key
        return order, bytes(buf[4:match.length])

    def _per_call(self, name: str, value: Any) -> tuple[int, bytes] | None:
        """The fields that differ from call to call (addresses, labels, ports), packed
        behind the OXM header the framework wrote for the same field once; None for a
        value of another shape (the framework encodes those)."""
        try:
            if name in ("ipv4_src", "ipv4_dst"):
                address = parse_address(value)
                if address.version != 4 or str(address) != value:
                    return None
                packed = address.packed
            elif name in ("ipv6_src", "ipv6_dst"):
                address = parse_address(value)
                if address.version != 6:
                    return None
                packed = address.packed
            elif isinstance(value, int) and not isinstance(value, bool):
                packed = value.to_bytes(_WIDTH[name], "big")
            elif (isinstance(value, tuple) and len(value) == 2 and all(type(v) is int for v in value)
                  and name == "udp_dst"):
                packed = value[0].to_bytes(2, "big") + value[1].to_bytes(2, "big")
                name = "udp_dst/mask"
            else:
                return None
        except (ValueError, OverflowError, TypeError):
            return None
        header = self._headers.get(name)
        if header is None:
            order, tlv = self._framework_field(name.partition("/")[0], _SAMPLES[name])
            header = self._headers[name] = (order, tlv[:4])
        return header[0], header[1] + packed

    def match(self, fields: tuple[tuple[str, Any], ...]) -> bytes:
        pieces = [self._field(name, value) for name, value in dict(fields).items()]
        pieces.sort(key=lambda piece: piece[0])
        body = b"".join(tlv for _, tlv in pieces)
        length = 4 + len(body)
        return _MATCH_HEADER.pack(self.ofp.OFPMT_OXM, length) + body + bytes(-length % 8)

    def _action(self, item: Action) -> bytes:
        known = self._actions.get(item)
        if known is None:
            rendered = render.action(self.ofp, self.parser, item)
            buf = bytearray()
            rendered.serialize(buf, 0)
            known = bytes(buf[:rendered.len])
            if len(self._actions) >= _MEMO_LIMIT:
                self._actions.clear()
            self._actions[item] = known
        return known

    def instructions(self, entry: FlowEntry) -> bytes:
        ofp = self.ofp
        parts: list[bytes] = []
        if entry.meter is not None:
            parts.append(_INSTRUCTION_METER.pack(ofp.OFPIT_METER, 8, entry.meter))
        if entry.actions:
            actions = b"".join(self._action(item) for item in entry.actions)
            parts.append(_INSTRUCTION_ACTIONS.pack(ofp.OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions)
        if entry.goto is not None:
            parts.append(_INSTRUCTION_GOTO.pack(ofp.OFPIT_GOTO_TABLE, 8, entry.goto))
        return b"".join(parts)

    # --- messages -----------------------------------------------------------------------

    def flow_add(self, entry: FlowEntry, xid: int) -> bytes:
        """What ``render.flow_add(datapath, entry)`` serializes to, with ``xid``."""
        ofp = self.ofp
        flags = ofp.OFPFF_SEND_FLOW_REM if entry.notify_removed else 0
        body = _FLOW_MOD.pack(entry.cookie, 0, entry.table, ofp.OFPFC_ADD, entry.idle_timeout, 0, entry.priority,
                              ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, flags)
        return self._message(body + self.match(entry.match) + self.instructions(entry), xid)

    def flow_delete(self, entry: FlowEntry, xid: int) -> bytes:
        """What ``render.flow_delete(datapath, entry)`` serializes to, with ``xid``."""
        ofp = self.ofp
        body = _FLOW_MOD.pack(entry.cookie, ALL_ONES_64, entry.table, ofp.OFPFC_DELETE_STRICT, 0, 0, entry.priority,
                              ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0)
        return self._message(body + self.match(entry.match), xid)

    def _message(self, body: bytes, xid: int) -> bytes:
        return _HEADER.pack(self.ofp.OFP_VERSION, self.ofp.OFPT_FLOW_MOD, 8 + len(body), xid) + body


_ENCODERS: dict[int, FlowModEncoder] = {}


def encoder(ofp: Any, parser: Any) -> FlowModEncoder:
    """One encoder per framework (ryu's and os-ken's modules differ)."""
    found = _ENCODERS.get(id(parser))
    if found is None or found.parser is not parser:
        found = _ENCODERS[id(parser)] = FlowModEncoder(ofp, parser)
    return found
