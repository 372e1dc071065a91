"""ASN.1 aligned PER for H.225.0 (RAS, H.323-UserInformation) and H.245, by pycrate.

pycrate ships the compiled H.225.0 v7 and H.245 modules (``pycrate_asn1dir``). It is
imported on first use, so a controller without ``h323.enabled`` never loads it, and
patched once by :mod:`.per_fix` (its aligned-PER extension-addition bug).

Values are pycrate's: a CHOICE is ``(name, value)``, a SEQUENCE a ``dict``, an OCTET
STRING ``bytes``, a BIT STRING ``(int, bits)``. pycrate's encoder keeps its bit offset in
one class-wide stack and its type objects are singletons, so every encode/decode in the
process holds :data:`.per_fix.LOCK` (the controller's hub may run on native threads).
"""

from __future__ import annotations

from typing import Any

from .per_fix import LOCK, install

RasValue = tuple[str, dict[str, Any]]
_types: dict[str, Any] = {}


class Asn1Error(ValueError):
    """Bytes that do not decode (or a value that does not encode) as the named type."""


def _type(name: str) -> Any:
    found = _types.get(name)
    if found is None:
        install()
        from pycrate_asn1dir import H225, H245  # type: ignore[import-untyped]
        h225, h245 = H225.H323_MESSAGES, H245.MULTIMEDIA_SYSTEM_CONTROL
        _types.update(ras=h225.RasMessage, uu=h225.H323_UserInformation, olc=h245.OpenLogicalChannel,
                      h245=h245.MultimediaSystemControlMessage)
        found = _types[name]
    return found


def load() -> None:
    """Import and patch pycrate now (a shell calls this at start, not on the first packet)."""
    _type("ras")


def _encode(kind: str, value: Any) -> bytes:
    with LOCK:
        asn = _type(kind)
        try:
            asn.set_val(value)
            data: bytes = asn.to_aper()
        except Exception as error:  # pycrate raises many kinds; all mean "this value is wrong"
            raise Asn1Error(f"cannot encode {kind}: {error}") from error
        return data


def _decode(kind: str, data: bytes) -> Any:
    with LOCK:
        asn = _type(kind)
        try:
            asn.from_aper(data)
            return asn.get_val()
        except Exception as error:  # truncated, oversized, wrong choice index, bad length ...
            raise Asn1Error(f"not a valid {kind} PDU ({len(data)} bytes): {type(error).__name__}") from None


def encode_ras(value: RasValue) -> bytes:
    return _encode("ras", value)


_templates: dict[str, tuple[bytes, int] | None] = {}
TEMPLATES_MAX = 512


def encode_ras_fast(value: RasValue) -> bytes:
    """:func:`encode_ras`, from a template when only requestSeqNum changed since last time.

    requestSeqNum is every RAS message's first field, INTEGER (1..65535): aligned PER writes
    it as two octets (value - 1) at a position the rest of the message cannot move. The
    first encoding of a shape (the message with requestSeqNum 1 and 65535) finds those two
    octets; later ones copy the template and patch them. A shape where the two encodings
    differ anywhere else is never templated. Equal to pycrate's output (tested).
    """
    kind, fields = value
    seq = fields.get("requestSeqNum")
    if not isinstance(seq, int) or not 1 <= seq <= 65535:
        return encode_ras(value)
    shape = repr((kind, sorted((k, v) for k, v in fields.items() if k != "requestSeqNum")))
    if shape in _templates:
        template = _templates[shape]
    else:
        template = _template(kind, fields)
        if len(_templates) >= TEMPLATES_MAX:
            _templates.clear()
        _templates[shape] = template
    if template is None:
        return encode_ras(value)
    data, at = template
    return data[:at] + (seq - 1).to_bytes(2, "big") + data[at + 2:]


def _template(kind: str, fields: dict[str, Any]) -> tuple[bytes, int] | None:
    low = encode_ras((kind, {**fields, "requestSeqNum": 1}))
    high = encode_ras((kind, {**fields, "requestSeqNum": 65535}))
    differ = [i for i in range(min(len(low), len(high))) if low[i] != high[i]]
    if len(low) != len(high) or len(differ) != 2 or differ[1] != differ[0] + 1:
        return None
    at = differ[0]
    if low[at:at + 2] != b"\0\0" or high[at:at + 2] != b"\xff\xfe":
        return None
    return low, at


def decode_ras(data: bytes) -> RasValue:
    value = _decode("ras", data)
    if not (isinstance(value, tuple) and isinstance(value[1], dict)):
        raise Asn1Error(f"RAS message {value[0] if isinstance(value, tuple) else value!r} carries no fields")
    return value


def encode_uu(value: dict[str, Any]) -> bytes:
    """H323-UserInformation (the Q.931 User-user IE's contents, after the 0x05 discriminator)."""
    return _encode("uu", value)


def decode_uu(data: bytes) -> dict[str, Any]:
    value = _decode("uu", data)
    if not isinstance(value, dict):
        raise Asn1Error("H323-UserInformation is not a SEQUENCE")
    return value


def encode_olc(value: dict[str, Any]) -> bytes:
    """One H.245 OpenLogicalChannel (a fastStart element)."""
    return _encode("olc", value)


def decode_olc(data: bytes) -> dict[str, Any]:
    value = _decode("olc", data)
    if not isinstance(value, dict):
        raise Asn1Error("OpenLogicalChannel is not a SEQUENCE")
    return value


def encode_h245(value: tuple[str, Any]) -> bytes:
    """A MultimediaSystemControlMessage (e.g. a userInputIndication to tunnel in h245Control)."""
    return _encode("h245", value)


def decode_h245(data: bytes) -> tuple[str, Any]:
    """A MultimediaSystemControlMessage (tunnelled in h245Control, or on a separate H.245 channel)."""
    value = _decode("h245", data)
    if not isinstance(value, tuple):
        raise Asn1Error("MultimediaSystemControlMessage is not a CHOICE")
    return value
