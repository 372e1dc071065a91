"""The one place that works around pycrate 0.8.1's aligned-PER extension bug.

pycrate's ``_CONSTRUCT._to_per`` (SEQUENCE and SET) encodes the extension additions
*before* it writes their presence bitmap, while it tracks the aligned-PER bit offset
(``ASN1CodecPER._off``) as if the bitmap were not there. When the root part of the
SEQUENCE ends off an octet boundary, the first addition's alignment pad is computed from
the wrong offset, and so is the pad after the bitmap: the output carries a spurious
zero octet (tshark: "Malformed Packet (open type length 0)", and pycrate itself cannot
decode it). H.225.0 hits this on an ARQ or DRQ with ``callIdentifier`` and on a
ReleaseComplete with a ``reason``.

:func:`install` wraps ``_to_per``: in aligned mode, for a SEQUENCE/SET with extension
additions present, the root part is encoded by pycrate's own code (with the additions
taken out of the value, then the extension bit set), and the additions are appended in
the X.691 order: normally-small bitmap length, bitmap, realignment, then each addition as
an open type (which now starts on an octet boundary, as the offset says). Unaligned PER
and values without additions go through pycrate untouched. Extension groups (``[[ ]]``)
do not occur in H.225.0 or H.245; a value using them is left to pycrate.

tests/unit/test_h323_asn1.py checks the bytes against hand-assembled X.691 encodings,
decodes them back with pycrate and tests/integration checks every message with tshark.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

#: pycrate keeps its aligned-PER bit offset in one class-wide stack and its type objects
#: are singletons: every encode/decode in a process holds this lock (the controller's hub
#: may run native threads; a test may run an endpoint simulator beside the gatekeeper).
LOCK = threading.RLock()
_installed = False


def install() -> None:
    """Patch pycrate once per process (idempotent)."""
    global _installed
    if _installed:
        return
    from pycrate_asn1rt import asnobj_construct  # type: ignore[import-untyped]
    from pycrate_asn1rt.codecs import ASN1CodecPER  # type: ignore[import-untyped]
    from pycrate_core.utils import TYPE_UINT  # type: ignore[import-untyped]

    construct = asnobj_construct._CONSTRUCT
    original: Callable[[Any], list[Any]] = construct._to_per

    def _to_per(self: Any) -> list[Any]:
        if not ASN1CodecPER.ALIGNED or self._ext is None or not isinstance(self._val, dict):
            return original(self)
        added = [k for k in self._val if k in self._ext or k[:5] == "_ext_"]
        if not added or any(isinstance(ident, list) for ident in self._ext_nest):
            return original(self)
        full = self._val
        self._val = {k: v for k, v in full.items() if k not in added}
        try:
            gen = original(self)          # root part; its leading extension bit says 0
        finally:
            self._val = full
        gen[0] = (TYPE_UINT, 1, 1)
        present: list[int] = []
        encoders: list[Callable[[], list[Any]]] = []
        for index, ident in enumerate(self._ext_nest, start=1):
            if ident in full:
                present.append(index)
                encoders.append(_open_encoder(self, ident, full[ident], ASN1CodecPER))
        for ident in sorted((k for k in full if k[:5] == "_ext_"), key=lambda k: int(k[5:])):
            index = int(ident[5:])
            if index > len(self._ext_nest) and index not in present:
                present.append(index)
                encoders.append(_buffer_encoder(full[ident], ASN1CodecPER))
        size = max(max(present), len(self._ext_nest))
        if size > 64:
            gen.append((TYPE_UINT, 1, 1))
            ASN1CodecPER._off[-1] += 1
            gen.extend(ASN1CodecPER.encode_intunconst(size - 1, 0))
        else:
            gen.append((TYPE_UINT, size - 1, 7))
            ASN1CodecPER._off[-1] += 7
        gen.append((TYPE_UINT, sum(1 << (size - i) for i in present), size))
        ASN1CodecPER._off[-1] += size
        if ASN1CodecPER._off[-1] % 8:
            gen.extend(ASN1CodecPER.encode_pad())
        for encode in encoders:
            gen.extend(encode())
        return gen

    construct._to_per = _to_per
    _installed = True


def _buffer_encoder(buf: bytes, codec: Any) -> Callable[[], list[Any]]:
    def encode() -> list[Any]:
        return list(codec.encode_unconst_buf(buf))
    return encode


def _open_encoder(owner: Any, ident: str, value: Any, codec: Any) -> Callable[[], list[Any]]:
    def encode() -> list[Any]:
        component = owner._cont[ident]
        parent, component._parent = component._parent, owner
        component._val = value
        try:
            return list(codec.encode_unconst_open(component))
        finally:
            component._parent = parent
    return encode
