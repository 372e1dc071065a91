"""Reading request bodies: JSON only, size-limited, every field checked by name."""

from __future__ import annotations

import re

import builtins
import ipaddress
import json
from typing import Any

from webob import Request

from ..core import limits
from ..core.admission import ServiceLevel, SignallingProtocol
from ..core.calls import MediaEndpoint
from ..core.codec import MediaSpec
from ..signalling.sip.errors import ParseError
from ..signalling.sip.sdp import CallMedia, media_of, parse_sdp
from .errors import HttpError


def read_json(request: Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, f"body of {request.content_length} bytes exceeds the {limit}-byte limit")
    if request.content_type not in ("application/json", ""):
        raise HttpError(415, f"expected application/json, got {request.content_type}")
    raw = request.body_file.read(limit + 1)
    if len(raw) > limit:
        raise HttpError(413, f"body exceeds the {limit}-byte limit")
    try:
        value = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise HttpError(400, f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise HttpError(400, "body is not acceptable JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value


class Fields:
    """A JSON object being read; unknown fields are errors, like in the config."""

    def __init__(self, value: Any, path: str = "") -> None:
        if not isinstance(value, dict):
            raise HttpError(400, "must be an object", field=path or None)
        self.value, self.path = value, path
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.value or self.value[key] is None:
            if default is ...:
                raise HttpError(400, "is required", field=self.name(key))
            return default
        value = self.value[key]
        if isinstance(value, bool) and kind is not bool and (kind is int or (isinstance(kind, tuple) and bool not in kind)):
            raise HttpError(400, f"expected {_kind_name(kind)}, got {json.dumps(value)}", field=self.name(key))
        if not isinstance(value, kind):
            raise HttpError(400, f"expected {_kind_name(kind)}, got {json.dumps(value)[:40]}", field=self.name(key))
        return value

    def int(self, key: str, low: builtins.int, high: builtins.int, default: Any = ...) -> Any:
        """An integer in [low, high], or ``default`` (of any type) when absent."""
        value = self.get(key, builtins.int, default)
        if value is not default and not low <= value <= high:
            raise HttpError(400, f"must be between {low} and {high}", field=self.name(key))
        return value

    def text(self, key: str, default: Any = ..., max_length: builtins.int = 128) -> Any:
        """A non-empty string of at most ``max_length`` characters, or ``default`` when absent."""
        value = self.get(key, str, default)
        if value is not default and (not _VISIBLE.search(value) or len(value) > max_length):
            raise HttpError(400, f"must be 1 to {max_length} characters", field=self.name(key))
        return value

    def done(self) -> None:
        unknown = sorted(set(self.value) - self.used)
        if unknown:
            raise HttpError(400, "unknown field", field=self.name(str(unknown[0])))


# "Not blank" as the OpenAPI document says it (pattern "\\S"): JSON Schema's \S knows fewer
# spaces than str.strip(), which also strips the control characters \x1c-\x1f, so a value
# the document allows must not be called blank here.
_VISIBLE = re.compile(r"\S", re.ASCII)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", bool: "true or false", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def media(value: Any, path: str) -> MediaSpec:
    fields = Fields(value, path)
    spec = MediaSpec(codec=fields.text("codec", max_length=limits.CODEC_NAME_LENGTH).lower(),
                     ptime_ms=fields.int("ptime_ms", *limits.PTIME_MS, 20),
                     explicit_kbps=fields.int("explicit_kbps", *limits.EXPLICIT_KBPS, None),
                     voice_band_data=fields.get("voice_band_data", bool, False),
                     ip_version=fields.int("ip_version", 4, 6, 4),
                     rtcp_bps=fields.int("rtcp_bps", *limits.RTCP_BPS, None))
    if spec.ip_version not in (4, 6):
        raise HttpError(400, f"must be 4 or 6, not {spec.ip_version}", field=fields.name("ip_version"))
    fields.done()
    return spec


def ip_address(text: str, path: str) -> str:
    """An IPv4 or IPv6 address (no zone), as the document's ``format: ipv4/ipv6`` says."""
    try:
        if "%" in text:
            raise ValueError(text)
        ipaddress.ip_address(text)
    except ValueError:
        raise HttpError(400, f"not an IP address: {text!r}", field=path) from None
    return text


def endpoint(value: Any, path: str) -> MediaEndpoint:
    fields = Fields(value, path)
    ip = ip_address(fields.text("ip", max_length=64), fields.name("ip"))
    result = MediaEndpoint(ip, fields.int("port", *limits.UDP_PORT))
    fields.done()
    return result


def protocol(value: Any, path: str) -> SignallingProtocol:
    try:
        return SignallingProtocol.parse(value) if isinstance(value, str) else SignallingProtocol.parse("?")
    except ValueError as error:
        raise HttpError(400, str(error), field=path) from None


def level(value: Any, path: str) -> ServiceLevel:
    try:
        return ServiceLevel.parse(value) if isinstance(value, str) else ServiceLevel.parse("?")
    except ValueError as error:
        raise HttpError(400, str(error), field=path) from None


# --- a SIP front end's view of a call (Kamailio): parties and raw SDP ------------------------

def party(value: Any, path: str) -> tuple[str | None, str | None]:
    """``{domain?, address?}``: what a SIP server knows of a party (From/R-URI host, source IP)."""
    fields = Fields(value, path)
    domain = fields.text("domain", None, max_length=255)
    address = fields.text("address", None, max_length=64)
    fields.done()
    if domain is None and address is None:
        raise HttpError(400, "give domain and/or address", field=path)
    if address is not None:
        address = ip_address(address.strip("[]"), f"{path}.address")
    elif domain is not None:                    # sip:bob@10.2.0.5: the host is an address
        try:
            address = str(ipaddress.ip_address(domain.strip("[]")))
        except ValueError:
            pass
    return domain, address


def sdp(value: Any, path: str) -> CallMedia:
    """A raw SDP offer or answer, read by the SIP proxy's own parser (one place for codec sizing)."""
    if not isinstance(value, str):
        raise HttpError(400, "expected the SDP body as a string", field=path)
    if not value.strip():          # the document allows any non-empty string: an unreadable SDP, not a bad shape
        raise HttpError(400, "invalid SDP: the body is blank", field=path, reason="invalid-sdp")
    try:
        media = media_of(parse_sdp(value.encode()))
    except ParseError as error:
        raise HttpError(400, f"invalid SDP: {error.message}", field=path, reason="invalid-sdp") from None
    if media is None:
        raise HttpError(400, "no active audio or image stream with a codec", field=path, reason="invalid-sdp")
    return media
