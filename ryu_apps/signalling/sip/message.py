"""SIP messages (RFC 3261 sections 7, 18.3, 19, 20, 25): parse, inspect, edit, serialize.

Sans-IO: bytes in, immutable :class:`Request` / :class:`Response` values out, and back.
Headers keep their order and are stored under their canonical lower-case long name
(compact forms ``i: v: f: t: l: m: ...`` are expanded on input); folded lines are
unfolded; a Via (Route, Record-Route) header may carry several comma-separated values
and a message may carry several such headers. ``Content-Length`` frames the body
(:class:`StreamFramer` does it for TCP byte streams). Anything malformed raises
:class:`~.errors.ParseError` with a status hint, and only that.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from typing import Iterable, TypeVar, Union

from .addresses import valid_address, valid_host
from .errors import LocalProtocolError, ParseError

#: Default size limit of one message (head and body), as the configuration's default.
MAX_MESSAGE_BYTES = 65536

Header = tuple[str, str]
Params = tuple[tuple[str, Union[str, None]], ...]

COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}
_DISPLAY = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "remote-party-id": "Remote-Party-ID",
}
#: Headers whose values may be combined with commas on one line (and are split here).
LIST_HEADERS = frozenset({"via", "route", "record-route", "contact", "supported", "require",
                          "proxy-require", "allow", "resource-priority", "reason"})
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+\Z")
_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9_-]+)\s+(\[[0-9A-Fa-f:.]+\]|[^\s;:\[\]]+)"
                  r"(?:\s*:\s*(\d{1,5}))?\s*(;.*)?\Z", re.S)
_STREAM_CL = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


_CANONICAL: dict[str, str] = {}      # header name as received -> canonical name (valid names only)
_DISPLAYED: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """``"V"`` -> ``"via"``, ``"Call-Id"`` -> ``"call-id"``."""
    lower = name.strip().lower()
    return COMPACT_FORMS.get(lower, lower)


def display_name(name: str) -> str:
    shown = _DISPLAYED.get(name)
    if shown is None:
        shown = _DISPLAY.get(name) or "-".join(part.capitalize() for part in name.split("-"))
        if len(_DISPLAYED) < 4096:
            _DISPLAYED[name] = shown
    return shown


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and <...>."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    if '"' not in value and "<" not in value:       # e.g. "Via: a, b" as SIPp and others send it
        return [item.strip() for item in value.split(",") if item.strip()]
    items: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return [item for item in items if item]


class _Headers:
    """Header access shared by requests and responses (``headers`` is set by subclasses)."""

    __slots__ = ()
    headers: tuple[Header, ...]

    def header(self, name: str) -> str | None:
        """The first value of a header (a whole line for list headers), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in order, with comma-combined list values split."""
        values: list[str] = []
        for key, value in self.headers:
            if key == name:
                if name in LIST_HEADERS:
                    values.extend(split_list(value))
                else:
                    values.append(value)
        return values

    def has(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def call_id(self) -> str:
        value = self.header("call-id")
        if not value:
            raise ParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.header("cseq")
        if value is None:
            raise ParseError("missing CSeq")
        return parse_cseq(value)

    @property
    def top_via(self) -> "Via":
        for key, value in self.headers:          # the first value of the first Via with one
            if key == "via":
                values = split_list(value)
                if values:
                    return parse_via(values[0])
        raise ParseError("missing Via")


@dataclass(frozen=True, slots=True)
class Request(_Headers):
    method: str
    uri: str
    headers: tuple[Header, ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response(_Headers):
    status: int
    reason: str
    headers: tuple[Header, ...]
    body: bytes = b""


Message = Union[Request, Response]
M = TypeVar("M", Request, Response)


@dataclass(frozen=True, slots=True)
class Partial(_Headers):
    """What was read of a message before a :class:`ParseError` (to build a response)."""

    method: str | None          # None for a response or an unreadable start line
    headers: tuple[Header, ...]


# --- parsing ---------------------------------------------------------------------------

def parse_message(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse one whole message (a UDP datagram, or a frame cut by :class:`StreamFramer`).

    Raises :class:`ParseError` (status 400, 413 or 505) and nothing else."""
    if len(data) > max_size:
        head_end = data.find(b"\r\n\r\n", 0, max_size)
        if head_end < 0:                      # the head alone is too big: read what fits
            head_end = data.rfind(b"\r\n", 0, max_size)
        partial = None
        if head_end > 0:
            try:
                partial = _parse_head(data[:head_end]).partial()
            except ParseError as error:
                partial = error.partial
        raise ParseError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit", 413, partial)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        head, body = data[start:end], data[end + 4:]
    else:
        end = data.find(b"\n\n", start)
        if end >= 0:
            head, body = data[start:end], data[end + 2:]
        else:
            head, body = data[start:].rstrip(b"\r\n"), b""
    parsed = _parse_head(head)
    lengths = {v.strip() for k, v in parsed.headers if k == "content-length"}
    if lengths:
        if len(lengths) > 1:
            raise ParseError("conflicting Content-Length headers", 400, parsed.partial())
        text = lengths.pop()
        if not text.isdigit() or len(text) > 9:
            raise ParseError(f"bad Content-Length {text!r}", 400, parsed.partial())
        length = int(text)
        if length > len(body):
            raise ParseError(f"Content-Length {length} exceeds the {len(body)} body bytes received", 400,
                             parsed.partial())
        body = body[:length]
    if parsed.method is not None:
        return Request(parsed.method, parsed.target, parsed.headers, body)
    return Response(parsed.status, parsed.target, parsed.headers, body)


@dataclass(slots=True)
class _Head:
    method: str | None
    target: str       # request-URI, or reason phrase
    status: int
    headers: tuple[Header, ...]

    def partial(self) -> Partial:
        return Partial(self.method, self.headers)


def _parse_head(head: bytes) -> _Head:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("message head is not UTF-8") from None
    lines = text.split("\n")
    first = lines[0].rstrip("\r")
    method: str | None = None
    status = 0
    bad_version: ParseError | None = None
    if first.startswith("SIP/"):
        parts = first.split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0":
            raise ParseError(f"bad status line {first[:80]!r}", 505 if parts[0] != "SIP/2.0" else 400)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
            raise ParseError(f"bad status code {code[:10]!r}")
        status = int(code)
        target = parts[2] if len(parts) == 3 else ""
    else:
        parts = first.split(" ")
        if len(parts) != 3 or not parts[1] or not _TOKEN.match(parts[0]):
            raise ParseError(f"bad request line {first[:80]!r}")
        method, target, version = parts
        if version.upper() != "SIP/2.0":     # read the headers on: a 505 needs Via, From, To, ...
            bad_version = ParseError(f"unsupported version {version[:20]!r}", 505)
    headers: list[Header] = []
    error: ParseError | None = None
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if not headers:
                error = error or ParseError("continuation line before any header")
                continue
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        canonical = _CANONICAL.get(name)
        if canonical is None:
            name = name.rstrip(" \t")
            if not sep or not _TOKEN.match(name):
                error = error or ParseError(f"bad header line {line[:80]!r}")
                continue
            canonical = canonical_name(name)
            if len(_CANONICAL) < 4096 and name == line.partition(":")[0]:
                _CANONICAL[name] = canonical
        headers.append((canonical, value.strip()))
    parsed = _Head(method, target, status, tuple(headers))
    error = bad_version or error
    if error is not None:
        error.partial = parsed.partial()
        raise error
    return parsed


# --- header values -----------------------------------------------------------------------

def parse_params(text: str) -> Params:
    """``;a=1;b;C="x"`` -> ``(("a", "1"), ("b", None), ("c", '"x"'))``."""
    params: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        params.append((key.strip().lower(), value.strip() if sep else None))
    return tuple(params)


def render_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value if value is not None else ""
    return None


def _port(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise ParseError(f"bad port {text[:10]!r} in {what}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Via:
    transport: str           # upper case: UDP, TCP, TLS, ...
    host: str
    port: int | None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def render(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{render_params(self.params)}"


def parse_via(value: str) -> Via:
    """One Via value; every address in it (sent-by, ``received``, ``maddr``, ``rport``) checked."""
    match = _VIA.match(value.strip())
    if match is None:
        raise ParseError(f"bad Via {value[:80]!r}")
    transport, host, port, params_text = match.groups()
    if not valid_host(host):
        raise ParseError(f"bad host in Via {value[:80]!r}")
    params = parse_params(params_text or "")
    for key, param_value in params:
        if key == "received" and not (param_value and valid_address(param_value)):
            raise ParseError(f"bad received= in Via {value[:80]!r}")
        if key == "maddr" and not (param_value and valid_host(param_value)):
            raise ParseError(f"bad maddr= in Via {value[:80]!r}")
        if key == "rport" and param_value:
            _port(param_value, "Via rport")
    return Via(transport.upper(), host.lower(), _port(port, "Via") if port else None, params)


@functools.lru_cache(maxsize=1024)        # "1 INVITE", "2 BYE": the same few in every call
def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not number.isdigit() or len(number) > 10 or int(number) >= 2 ** 31 or not _TOKEN.match(method or "?"):
        raise ParseError(f"bad CSeq {value[:40]!r}")
    return int(number), method


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str              # sip, sips, tel
    user: str | None
    host: str                # lower case; "" for tel:
    port: int | None = None
    params: Params = ()
    headers: str = ""

    def render(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{render_params(self.params)}"
        text = f"{self.scheme}:"
        if self.user is not None:
            text += f"{self.user}@"
        text += self.host if self.port is None else f"{self.host}:{self.port}"
        text += render_params(self.params)
        return f"{text}?{self.headers}" if self.headers else text

    @property
    def transport(self) -> str | None:
        value = param(self.params, "transport")
        return value.lower() if value else None


@functools.lru_cache(maxsize=8192)
def parse_uri(text: str) -> SipUri:
    """A sip/sips/tel URI; the host (and a ``maddr`` parameter) must be a valid address.
    Cached: Contact and Route values repeat from call to call."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips", "tel"):
        raise ParseError(f"unsupported URI {text[:80]!r}", 416)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise ParseError(f"bad tel URI {text[:80]!r}", 416)
        return SipUri("tel", number, "", None, parse_params(params))
    rest, _, headers = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    user = userinfo.partition(":")[0] if at else None
    hostport, _, params = hostpart.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, after = hostport[:close + 1], hostport[close + 1:]
        if close < 0 or (after and not after.startswith(":")):
            raise ParseError(f"bad IPv6 host in URI {text[:80]!r}")
        port_text = after[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not valid_host(host):
        raise ParseError(f"bad host in URI {text[:80]!r}")
    port = _port(port_text, "URI") if port_text else None
    parsed = parse_params(params)
    maddr = param(parsed, "maddr")
    if maddr is not None and not valid_host(maddr):
        raise ParseError(f"bad maddr in URI {text[:80]!r}")
    return SipUri(scheme, user, host.lower(), port, parsed, headers)


def check_addresses(message: "Message") -> None:
    """Every address a message gives the proxy to send to later: Route and Record-Route
    values (SIP URIs with valid hosts) and Contact values (SIP URIs checked likewise;
    ``*`` and other schemes are never sent to). Raises :class:`ParseError`."""
    for name, value in message.headers:
        if name == "route" or name == "record-route":
            for item in split_list(value) if "," in value else (value,):
                _check_route(name, item)
        elif name == "contact":
            for item in split_list(value) if "," in value else (value,):
                _check_contact(item)


@functools.lru_cache(maxsize=4096)
def _check_route(name: str, value: str) -> None:
    uri = parse_uri(parse_name_addr(value).uri)
    if uri.scheme == "tel":
        raise ParseError(f"{name} must be a SIP URI, got {value[:80]!r}")


@functools.lru_cache(maxsize=4096)
def _check_contact(value: str) -> None:
    if value.strip() != "*":
        uri_text = parse_name_addr(value).uri
        if uri_text[:4].lower() in ("sip:", "sips"):
            parse_uri(uri_text)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route, Record-Route: ``"name" <uri>;params``."""

    display: str
    uri: str
    params: Params = ()
    bracketed: bool = True

    @property
    def tag(self) -> str | None:
        return param(self.params, "tag")

    def render(self) -> str:
        if not self.bracketed and not self.display:
            return f"{self.uri}{render_params(self.params)}"
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{render_params(self.params)}"

    def with_param(self, name: str, value: str | None) -> "NameAddr":
        kept = tuple(p for p in self.params if p[0] != name)
        return replace(self, params=kept + ((name, value),))


@functools.lru_cache(maxsize=8192)
def parse_name_addr(value: str) -> NameAddr:
    """Cached: a dialog's From and To come back in every message of the call."""
    text = value.strip()
    display = ""
    if text.startswith('"'):
        i = 1
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            raise ParseError(f"unterminated display name in {value[:80]!r}")
        display, text = text[:i + 1], text[i + 1:].lstrip()
    if "<" in text:
        before, _, rest = text.partition("<")
        uri, sep, params = rest.partition(">")
        if not sep or not uri.strip():
            raise ParseError(f"bad name-addr {value[:80]!r}")
        return NameAddr((display or before.strip()), uri.strip(), parse_params(params), True)
    if display:
        raise ParseError(f"display name without <uri> in {value[:80]!r}")
    uri, _, params = text.partition(";")
    if not uri.strip():
        raise ParseError(f"empty address {value[:80]!r}")
    return NameAddr("", uri.strip(), parse_params(params), False)


# --- editing ------------------------------------------------------------------------------

def with_headers(message: M, headers: tuple[Header, ...]) -> M:
    """The same message with other headers (faster than dataclasses.replace)."""
    if isinstance(message, Request):
        return Request(message.method, message.uri, headers, message.body)
    return Response(message.status, message.reason, headers, message.body)


def prepend_header(message: M, name: str, value: str) -> M:
    return with_headers(message, ((name, value),) + message.headers)


def insert_header_after(message: M, after: str, name: str, value: str) -> M:
    """Insert after the last header named ``after`` (at the end when there is none)."""
    headers = list(message.headers)
    index = len(headers)
    for i, (key, _) in enumerate(headers):
        if key == after:
            index = i + 1
    headers.insert(index, (name, value))
    return with_headers(message, tuple(headers))


def set_header(message: M, name: str, value: str) -> M:
    """Replace every header named ``name`` with one (where the first was, else at the end)."""
    headers: list[Header] = []
    placed = False
    for key, old in message.headers:
        if key == name:
            if not placed:
                headers.append((name, value))
                placed = True
        else:
            headers.append((key, old))
    if not placed:
        headers.append((name, value))
    return with_headers(message, tuple(headers))


def remove_header(message: M, name: str) -> M:
    return with_headers(message, tuple(h for h in message.headers if h[0] != name))


def pop_first_value(message: M, name: str) -> M:
    """Remove the first value of a list header (e.g. the top Via or Route)."""
    headers = list(message.headers)
    for i, (key, value) in enumerate(headers):
        if key == name:
            rest = split_list(value)[1:]
            if rest:
                headers[i] = (key, ", ".join(rest))
            else:
                del headers[i]
            return with_headers(message, tuple(headers))
    return message


# --- serializing ---------------------------------------------------------------------------

_PREFIXES: dict[str, str] = {}      # canonical name -> "\r\nDisplay-Name: "


def serialize(message: Message) -> bytes:
    """Wire bytes of a message, with Content-Length set to the body's length."""
    if isinstance(message, Request):
        parts = [f"{message.method} {message.uri} SIP/2.0"]
    elif isinstance(message, Response):
        if not 100 <= message.status <= 699:
            raise LocalProtocolError(f"status {message.status} out of range")
        parts = [f"SIP/2.0 {message.status} {message.reason}"]
    else:  # pragma: no cover - typing guards this
        raise LocalProtocolError(f"not a SIP message: {message!r}")
    prefixes, append = _PREFIXES, parts.append
    for name, value in message.headers:
        prefix = prefixes.get(name)
        if prefix is None:
            if name == "content-length":
                continue
            prefix = f"\r\n{display_name(name)}: "
            if len(prefixes) < 4096:
                prefixes[name] = prefix
        append(prefix)
        append(value)
    append(f"\r\nContent-Length: {len(message.body)}\r\n\r\n")
    return "".join(parts).encode("utf-8") + message.body


def build_response(request: Request | Partial, status: int, reason: str, *,
                   to_tag: str | None = None, extra: Iterable[Header] = (), body: bytes = b"") -> Response:
    """A response to ``request`` (RFC 3261 8.2.6): Via, From, To (+tag), Call-ID, CSeq copied."""
    headers: list[Header] = []
    for key, value in request.headers:
        if key == "to":
            if to_tag is None:
                headers.append((key, value))
                continue
            try:
                to = parse_name_addr(value)
            except ParseError:
                headers.append((key, value))
                continue
            if to.tag is None:
                value = to.with_param("tag", to_tag).render()
            headers.append((key, value))
        elif key in ("via", "from", "call-id", "cseq"):
            headers.append((key, value))
    headers.extend(extra)
    return Response(status, reason, tuple(headers), body)


# --- TCP framing ---------------------------------------------------------------------------

class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 18.3).

    ``feed()`` returns parsed messages and :class:`ParseError`s in arrival order. A
    message that is framed but malformed yields its ParseError and the stream goes on;
    a framing error (no end of head within the size limit, bad Content-Length) yields
    a ParseError and sets ``broken``: the connection must be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_BYTES) -> None:
        self.max_size = max_size
        self.broken = False
        self._buffer = bytearray()

    @property
    def pending(self) -> bool:
        """A message has begun and is not complete yet."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Message | ParseError]:
        if self.broken:
            return []
        self._buffer += data
        out: list[Message | ParseError] = []
        buffer = self._buffer
        while buffer:
            skip = 0
            while buffer.startswith(b"\r\n", skip):
                skip += 2
            if skip:
                del buffer[:skip]
                continue
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self.max_size:
                    out.append(self._fail(f"no end of message head within {self.max_size} bytes", 413))
                break
            head = bytes(buffer[:end + 2])
            values = {m.group(1).strip() for m in _STREAM_CL.finditer(head)}
            if len(values) > 1:
                out.append(self._fail("conflicting Content-Length headers", 400))
                break
            text = values.pop() if values else b"0"
            if not text.isdigit() or len(text) > 9:
                out.append(self._fail(f"bad Content-Length {text[:20]!r}", 400))
                break
            total = end + 4 + int(text)
            if total > self.max_size:
                out.append(self._fail(f"message of {total} bytes exceeds the {self.max_size}-byte limit", 413))
                break
            if len(buffer) < total:
                break
            frame = bytes(buffer[:total])
            del buffer[:total]
            try:
                out.append(parse_message(frame, self.max_size))
            except ParseError as error:
                out.append(error)
        return out

    def _fail(self, reason: str, status: int) -> ParseError:
        self.broken = True
        partial = None
        end = self._buffer.find(b"\r\n\r\n")
        if 0 <= end <= self.max_size:
            try:
                partial = _parse_head(bytes(self._buffer[:end])).partial()
            except ParseError as error:
                partial = error.partial
        self._buffer.clear()
        return ParseError(reason, status, partial)
