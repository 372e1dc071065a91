"""SIP normalisation: a community's profile applied to messages from and to its PBX (pure).

Between communities messages are in canonical form: numbers in E.164, the asserted
identity in P-Asserted-Identity. :func:`inbound` brings a message from a PBX to that form
(its header rules first, then Remote-Party-ID -> P-Asserted-Identity, then national or
international-prefixed numbers -> E.164); :func:`outbound` turns a canonical message into
the PBX's dialect (numbers in the form it wants, the identity header it reads, topology
headers stripped, its SDP rules on offers, and its header rules last, so an operator's
rule has the final word).

Numbers are rewritten in the user part of the Request-URI (initial requests only: an
in-dialog Request-URI is the remote target the UA gave) and of From, To,
P-Asserted-Identity and Remote-Party-ID. Only user parts that are numbers (digits, an
optional leading ``+``, visual separators ``-.()``) are touched; extensions shorter than
the national prefix + 1 digit, names and anything else pass unchanged.

Everything here is a function of (message, profile): no state, no I/O. Nothing raises on
hostile values: a header value that cannot be parsed is left as it came.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ryu_apps.core.network import Community

from ..sip.errors import ParseError
from ..sip.message import (Header, Message, NameAddr, Request, Response, param, parse_message, parse_name_addr,
                           render_params, serialize, split_list)
from ..sip.sdp import STATIC_PAYLOAD_TYPES
from ..sip.transaction import Peer, Send
from .extensions import any_headers as _with
from .extensions import from_pbx, interval_to_remember, limits_extensions, refresher_uac, refusal, toward_pbx
from .profile import (TOPOLOGY_HEADERS, DiversionForm, GatewayConfig, HeaderAction, HeaderRule, Identity, NumberForm, NumberPlan,
                      Profile, SdpRules)

__all__ = ["ProxyNormaliser", "filter_sdp", "inbound", "national_to_e164", "e164_to_national", "outbound",
           "apply_header_rules"]

_NUMBER = re.compile(r"\+?[0-9][0-9().-]*\Z")
_SEPARATORS = str.maketrans("", "", "().-")
_NUMBER_HEADERS = ("from", "to", "p-asserted-identity", "remote-party-id")
#: lists of name-addrs whose every entry carries a number: the parties a call was diverted from
_NUMBER_LIST_HEADERS = ("diversion", "history-info")


# --- numbers ------------------------------------------------------------------------------

def national_to_e164(number: str, plan: NumberPlan) -> str:
    """``020 7946 0000`` (UK plan) -> ``+442079460000``; ``0033...`` -> ``+33...``; ``+...``
    stays; anything else (extensions, names) is returned unchanged."""
    if not _NUMBER.match(number):
        return number
    digits = number.translate(_SEPARATORS)
    if digits.startswith("+"):
        return digits
    if digits.startswith(plan.international_prefix) and len(digits) > len(plan.international_prefix):
        return "+" + digits[len(plan.international_prefix):]
    if plan.national_prefix and digits.startswith(plan.national_prefix) and \
            len(digits) > len(plan.national_prefix) + 1:
        return "+" + plan.country_code + digits[len(plan.national_prefix):]
    return number


def e164_to_national(number: str, plan: NumberPlan) -> str:
    """``+442079460000`` (UK plan) -> ``02079460000``; ``+33...`` -> ``0033...``; other
    strings unchanged."""
    if not number.startswith("+") or not _NUMBER.match(number):
        return number
    digits = number[1:].translate(_SEPARATORS)
    if digits.startswith(plan.country_code):
        return plan.national_prefix + digits[len(plan.country_code):]
    return plan.international_prefix + digits


def _rewrite_uri_number(uri: str, convert: "_Convert") -> str:
    """The URI with its user part (``sip:USER@host``, ``tel:USER;params``) converted."""
    scheme, sep, rest = uri.partition(":")
    if not sep:
        return uri
    lowered = scheme.lower()
    if lowered == "tel":
        number, semi, params = rest.partition(";")
        return f"{scheme}:{convert(number)}{semi}{params}"
    if lowered not in ("sip", "sips") or "@" not in rest:
        return uri
    userinfo, _, host = rest.partition("@")
    cut = min((i for i in (userinfo.find(";"), userinfo.find(":")) if i >= 0), default=len(userinfo))
    return f"{scheme}:{convert(userinfo[:cut])}{userinfo[cut:]}@{host}"


class _Convert:
    def __init__(self, plan: NumberPlan, to: NumberForm) -> None:
        self.plan, self.to = plan, to

    def __call__(self, number: str) -> str:
        if self.to is NumberForm.E164:
            return national_to_e164(number, self.plan)
        if self.to is NumberForm.NATIONAL:
            return e164_to_national(national_to_e164(number, self.plan), self.plan)
        return number


def _rewrite_numbers(message: Message, plan: NumberPlan, to: NumberForm) -> Message:
    headers: list[Header] = []
    changed = False
    for name, value in message.headers:
        if name in _NUMBER_HEADERS:
            new = _rewrite_name_addr(value, plan, to)
            changed = changed or new != value
            headers.append((name, new))
        elif name in _NUMBER_LIST_HEADERS:
            items = split_list(value)
            rewritten = [_rewrite_name_addr(item, plan, to) for item in items]
            if rewritten != items:
                changed = True
                headers.append((name, ", ".join(rewritten)))
            else:
                headers.append((name, value))
        else:
            headers.append((name, value))
    if isinstance(message, Request) and _is_initial(message):
        uri = _rewrite_uri_number(message.uri, _Convert(plan, to))
        if uri != message.uri:
            message = Request(message.method, uri, message.headers, message.body)
    return _with(message, tuple(headers)) if changed else message


@functools.lru_cache(maxsize=8192)
def _rewrite_name_addr(value: str, plan: NumberPlan, to: NumberForm) -> str:
    """A From/To/PAI/RPID value with its URI's number converted (cached: a dialog's From
    and To repeat in every message of the call)."""
    convert = _Convert(plan, to)
    start = value.find("<")
    if start >= 0 and '"' not in value[:start]:          # name-addr: rewrite between < and >
        end = value.find(">", start)
        if end < 0:
            return value
        uri = value[start + 1:end]
        new = _rewrite_uri_number(uri, convert)
        return value if new == uri else value[:start + 1] + new + value[end:]
    try:
        addr = parse_name_addr(value)
    except ParseError:
        return value
    uri = _rewrite_uri_number(addr.uri, convert)
    if uri == addr.uri:
        return value
    return NameAddr(addr.display, uri, addr.params, True).render()


def _is_initial(request: Request) -> bool:
    to = request.header("to")
    if to is None:
        return False
    try:
        return parse_name_addr(to).tag is None
    except ParseError:
        return False


# --- identity: P-Asserted-Identity <-> Remote-Party-ID ---------------------------------------

def _rpid_to_pai(message: Message) -> Message:
    """Remote-Party-ID (``;party=calling`` or no party, in requests; ``;party=called`` in
    responses) -> P-Asserted-Identity, and ``privacy=full|uri|name`` -> ``Privacy: id``."""
    wanted = "called" if isinstance(message, Response) else "calling"
    values = [v for n, v in message.headers if n == "remote-party-id"]
    if not values:
        return message
    kept = [(n, v) for n, v in message.headers if n != "remote-party-id"]
    if any(n == "p-asserted-identity" for n, _ in kept):       # PAI wins; RPID is dropped
        return _with(message, tuple(kept))
    for value in values:
        try:
            addr = parse_name_addr(value)
        except ParseError:
            continue
        party = (param(addr.params, "party") or wanted).lower()
        if party != wanted:
            continue
        kept.append(("p-asserted-identity", NameAddr(addr.display, addr.uri, (), True).render()))
        privacy = (param(addr.params, "privacy") or "off").lower()
        if privacy != "off" and not any(n == "privacy" for n, _ in kept):
            kept.append(("privacy", "id"))
        break
    return _with(message, tuple(kept))


def _pai_to_rpid(message: Message) -> Message:
    """P-Asserted-Identity (+ ``Privacy: id``) -> Remote-Party-ID with party, screen, privacy."""
    values = [v for n, v in message.headers if n == "p-asserted-identity"]
    if not values:
        return message
    kept = [(n, v) for n, v in message.headers if n not in ("p-asserted-identity", "remote-party-id")]
    privacy_values = ";".join(v for n, v in message.headers if n == "privacy").replace(" ", "").lower()
    hidden = any(token in ("id", "user", "header") for token in privacy_values.split(";"))
    party = "called" if isinstance(message, Response) else "calling"
    for value in values:
        try:
            addr = parse_name_addr(value)
        except ParseError:
            continue
        if addr.uri[:4].lower() != "sip:" and addr.uri[:5].lower() != "sips:" and len(values) > 1:
            continue                                     # a tel: PAI next to a sip: one: keep the sip:
        params = (("party", party), ("screen", "yes"), ("privacy", "full" if hidden else "off"))
        kept.append(("remote-party-id", f"{NameAddr(addr.display, addr.uri, (), True).render()}"
                                        f"{render_params(params)}"))
        break
    return _with(message, tuple(kept))


# --- redirection: Diversion (RFC 5806) <-> History-Info (RFC 7044), after RFC 7544 -------------

#: Diversion reason -> History-Info cause (RFC 7544; reasons without a cause of their own: 404).
DIVERSION_TO_CAUSE = {"unknown": "404", "user-busy": "486", "no-answer": "408", "unconditional": "302",
                      "deflection": "480", "unavailable": "503", "time-of-day": "404", "do-not-disturb": "404",
                      "follow-me": "404", "out-of-service": "404", "away": "404"}
#: History-Info cause -> Diversion reason (RFC 7544; any other cause: unknown).
CAUSE_TO_DIVERSION = {"404": "unknown", "302": "unconditional", "486": "user-busy", "408": "no-answer",
                      "480": "deflection", "487": "deflection", "503": "unavailable"}


def _uri_param(uri: str, name: str) -> str | None:
    for part in uri.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _without_uri_param(uri: str, name: str) -> str:
    parts = uri.split(";")
    return ";".join([parts[0]] + [p for p in parts[1:] if p.partition("=")[0].strip().lower() != name])


def diversion_to_history(message: Message) -> Message:
    """Diversion headers (newest first) of an initial INVITE -> History-Info entries
    (oldest first, ``index=1``, ``1.1``, ...; each target carries the ``cause`` of the
    diversion that reached it; the last target is the Request-URI)."""
    if not isinstance(message, Request) or message.method != "INVITE" or not _is_initial(message):
        return message
    values = [v for n, v in message.headers if n == "diversion"]
    if not values:
        return message
    kept = [(n, v) for n, v in message.headers if n != "diversion"]
    if any(n == "history-info" for n, _ in kept):          # both: History-Info wins (RFC 7544)
        return _with(message, tuple(kept))
    entries: list[tuple[str, str]] = []                   # (uri, reason), oldest first
    for value in reversed([item for v in values for item in split_list(v)]):
        try:
            addr = parse_name_addr(value)
        except ParseError:
            continue
        entries.append((addr.uri, (param(addr.params, "reason") or "unknown").strip('"').lower()))
    if not entries:
        return _with(message, tuple(kept))
    history: list[str] = []
    index = "1"
    for i, (uri, _) in enumerate(entries):
        cause = "" if i == 0 else f";cause={DIVERSION_TO_CAUSE.get(entries[i - 1][1], '404')}"
        history.append(f"<{uri}{cause}>;index={index}")
        index += ".1"
    history.append(f"<{message.uri};cause={DIVERSION_TO_CAUSE.get(entries[-1][1], '404')}>;index={index}")
    return _with(message, tuple(kept) + (("history-info", ", ".join(history)),))


def history_to_diversion(message: Message) -> Message:
    """History-Info of an initial INVITE -> Diversion (RFC 7544): every entry but the last
    is a diverting party, its reason from the next entry's ``cause``, ``counter=1``,
    ``privacy=full`` when the entry asks for history privacy; newest first."""
    if not isinstance(message, Request) or message.method != "INVITE" or not _is_initial(message):
        return message
    values = [item for n, v in message.headers if n == "history-info" for item in split_list(v)]
    if not values:
        return message
    kept = [(n, v) for n, v in message.headers if n not in ("history-info", "diversion")]
    entries = []
    for value in values:
        try:
            entries.append(parse_name_addr(value))
        except ParseError:
            continue
    diversions: list[str] = []
    for entry, after in zip(entries, entries[1:]):
        cause = _uri_param(after.uri, "cause") or "404"
        reason = CAUSE_TO_DIVERSION.get(cause, "unknown")
        privacy = "full" if "privacy=history" in entry.uri.lower() or "%3bprivacy" in entry.uri.lower() else "off"
        uri = _without_uri_param(_without_uri_param(entry.uri.split("?")[0], "cause"), "index")
        diversions.append(f"<{uri}>;reason={reason};counter=1;privacy={privacy}")
    out = tuple(kept) + tuple(("diversion", d) for d in reversed(diversions))
    return _with(message, out)


# --- header rules -----------------------------------------------------------------------------

def apply_header_rules(message: Message, rules: Iterable[HeaderRule]) -> Message:
    """Apply ``rules`` in order. Names are canonical (lower case); ``remove`` takes globs."""
    headers = list(message.headers)
    for rule in rules:
        if rule.action is HeaderAction.REMOVE:
            if "*" in rule.header or "?" in rule.header:
                headers = [h for h in headers if not fnmatch.fnmatchcase(h[0], rule.header)]
            else:
                headers = [h for h in headers if h[0] != rule.header]
        elif rule.action is HeaderAction.ADD:
            headers.append((rule.header, rule.value or ""))
        elif rule.action is HeaderAction.SET:
            headers = _set(headers, rule.header, rule.value or "")
        elif rule.action is HeaderAction.RENAME and rule.to is not None:
            headers = [(rule.to if name == rule.header else name, value) for name, value in headers]
        elif rule.action is HeaderAction.REPLACE and rule.match is not None:
            headers = [(name, _sub(rule, value) if name == rule.header else value) for name, value in headers]
    return _with(message, tuple(headers))


def _sub(rule: HeaderRule, value: str) -> str:
    assert rule.match is not None
    try:
        result = rule.match.sub(rule.value or "", value)
    except (re.error, IndexError):
        return value
    return value if any(ch in result for ch in "\r\n\x00") else result


def _set(headers: list[Header], name: str, value: str) -> list[Header]:
    out: list[Header] = []
    placed = False
    for key, old in headers:
        if key == name:
            if not placed:
                out.append((name, value))
                placed = True
        else:
            out.append((key, old))
    if not placed:
        out.append((name, value))
    return out


_TOPOLOGY_NAMES = frozenset(name for name in TOPOLOGY_HEADERS if "*" not in name)
_TOPOLOGY_PREFIXES = tuple(name[:-1] for name in TOPOLOGY_HEADERS if name.endswith("*"))


def strip_topology(message: Message) -> Message:
    kept = tuple(h for h in message.headers
                 if h[0] not in _TOPOLOGY_NAMES and not h[0].startswith(_TOPOLOGY_PREFIXES))
    return message if len(kept) == len(message.headers) else _with(message, kept)


# --- SDP --------------------------------------------------------------------------------------

def filter_sdp(body: bytes, rules: SdpRules) -> bytes:
    """An SDP offer as the PBX accepts it: audio formats limited to ``rules.codecs`` in that
    order (their rtpmap/fmtp/rtcp-fb lines dropped with them; a line left with none is
    left as it was, for the PBX to refuse), ``a=ptime`` set on audio, video ports 0.
    A body that is not text SDP comes back unchanged."""
    if rules == SdpRules() or not body:
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    eol = "\r\n" if "\r\n" in text else "\n"
    lines = [line for line in text.replace("\r\n", "\n").split("\n")]
    trailing = lines and lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    if not lines or not lines[0].startswith("v="):
        return body
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = list(sections[0])
    for section in sections[1:]:
        out.extend(_filter_media(section, rules))
    result = eol.join(out) + (eol if trailing else "")
    return result.encode("utf-8")


def _filter_media(section: list[str], rules: SdpRules) -> list[str]:
    parts = section[0][2:].split()
    if len(parts) < 4:
        return section
    kind = parts[0].lower()
    if kind == "video" and rules.disable_video:
        return ["m=" + " ".join([parts[0], "0"] + parts[2:])] + section[1:]
    if kind != "audio":
        return section
    formats = parts[3:]
    names: dict[str, str] = {pt: STATIC_PAYLOAD_TYPES.get(int(pt), "") for pt in formats if pt.isdigit()}
    for line in section[1:]:
        if line.lower().startswith("a=rtpmap:"):
            pt, _, encoding = line[9:].strip().partition(" ")
            names[pt] = encoding.partition("/")[0].strip().lower()
    lines = section[1:]
    if rules.codecs:
        rank = {name: i for i, name in enumerate(rules.codecs)}
        kept = sorted((pt for pt in formats if names.get(pt, "") in rank), key=lambda pt: rank[names[pt]])
        if kept and not all(names.get(pt, "") in ("telephone-event", "cn") for pt in kept):
            dropped = set(formats) - set(kept)
            formats = kept
            lines = [line for line in lines if _format_of(line) not in dropped]
    if rules.ptime_ms is not None:
        lines = [line for line in lines if not line.lower().startswith("a=ptime:")]
        lines.append(f"a=ptime:{rules.ptime_ms}")
    return ["m=" + " ".join(parts[:3] + formats)] + lines


def _format_of(line: str) -> str | None:
    lowered = line.lower()
    for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
        if lowered.startswith(prefix):
            return line[len(prefix):].split(" ", 1)[0].strip()
    return None


def _apply_sdp(message: Message, rules: SdpRules) -> Message:
    if not isinstance(message, Request) or message.method not in ("INVITE", "UPDATE") or not message.body:
        return message                        # offers only: an answer must stay a subset of its offer
    content_type = (message.header("content-type") or "").lower()
    if not content_type.startswith("application/sdp"):
        return message
    body = filter_sdp(message.body, rules)
    return message if body == message.body else Request(message.method, message.uri, message.headers, body)


# --- the two directions --------------------------------------------------------------------------

def inbound(message: Message, profile: Profile) -> Message:
    """A message received from ``profile``'s PBX, in canonical form."""
    if profile.inbound:
        message = apply_header_rules(message, profile.inbound)
    if limits_extensions(profile):
        message = from_pbx(message, profile)
    if profile.identity is Identity.RPID:
        message = _rpid_to_pai(message)
    if profile.diversion is DiversionForm.DIVERSION:
        message = diversion_to_history(message)
    if profile.numbers is not None:
        message = _rewrite_numbers(message, profile.numbers, NumberForm.E164)
    return message


def outbound(message: Message, profile: Profile) -> Message:
    """A canonical message about to be sent to ``profile``'s PBX, in its dialect."""
    if profile.numbers is not None and profile.numbers.form is not NumberForm.KEEP:
        message = _rewrite_numbers(message, profile.numbers, profile.numbers.form)
    if profile.identity is Identity.RPID:
        message = _pai_to_rpid(message)
    elif profile.identity is Identity.PAI:
        message = _rpid_to_pai(message)
    if profile.diversion is DiversionForm.DIVERSION:
        message = history_to_diversion(message)
    elif profile.diversion is DiversionForm.HISTORY_INFO:
        message = diversion_to_history(message)
    if profile.strip_topology:
        message = strip_topology(message)
    if profile.sdp != SdpRules():
        message = _apply_sdp(message, profile.sdp)
    if limits_extensions(profile):
        message = toward_pbx(message, profile)
    if profile.outbound:
        message = apply_header_rules(message, profile.outbound)
    return message


# --- in the proxy: which profile an address gets ---------------------------------------------

@dataclass(frozen=True)
class _Entry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    profile: Profile


class ProxyNormaliser:
    """The profiles of the communities whose PBXs the proxy talks to, by address.

    The proxy calls :meth:`inbound` on each parsed message with its source and
    :meth:`outbound` on what it is about to send. Only communities whose profile changes
    something are listed; :meth:`for_config` returns None when there are none, and the
    proxy then has no normaliser at all (the plain proxy path)."""

    def __init__(self, entries: Sequence[tuple[Community, Profile]]) -> None:
        table = [_Entry(network, profile) for community, profile in entries for network in community.prefixes]
        self._table = sorted(table, key=lambda e: -e.network.prefixlen)      # most specific first
        self._cache: dict[str, Profile | None] = {}
        self._intervals: dict[tuple[str, str], int] = {}     # (Call-ID, CSeq) -> interval, RFC 4028 §8.2
        self.errors = 0

    @classmethod
    def for_config(cls, gateway: GatewayConfig, communities: Iterable[Community]) -> "ProxyNormaliser | None":
        entries = [(c, gateway.profile_of(c.name)) for c in communities]
        entries = [(c, p) for c, p in entries if not p.changes_nothing]
        return cls(entries) if entries else None

    def profile_for(self, host: str) -> Profile | None:
        if host in self._cache:
            return self._cache[host]
        found: Profile | None = None
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None:
            for entry in self._table:
                if address.version == entry.network.version and address in entry.network:
                    found = entry.profile
                    break
        if len(self._cache) < 65536:
            self._cache[host] = found
        return found

    def inbound(self, message: Message, source: Peer) -> Message:
        profile = self.profile_for(source.host)
        if profile is None:
            return message
        try:
            message = inbound(message, profile)
            if self._intervals and isinstance(message, Response) and message.status >= 200:
                key = _transaction(message)         # a 2xx's retransmissions need the same answer: kept
                interval = self._intervals.get(key) if message.status < 300 else self._intervals.pop(key, None)
                if interval is not None:
                    message = refresher_uac(message, interval)
            return message
        except Exception:  # noqa: BLE001 - a rule that fails leaves the message as it came
            self.errors += 1
            return message

    def refuse(self, request: Request, hop: Peer) -> tuple[int, tuple[Header, ...]] | None:
        """The status and headers the PBX at ``hop`` must answer ``request`` with (an
        extension it lacks), given by the proxy in its place; None: forward it."""
        profile = self.profile_for(hop.host)
        refused = None if profile is None or not limits_extensions(profile) else refusal(request, profile)
        return None if refused is None else (refused.status, refused.headers)

    def outbound(self, sends: list[Send]) -> list[Send]:
        if not sends or not self._table:
            return sends
        out: list[Send] = []
        for send in sends:
            profile = self.profile_for(send.peer.host)
            out.append(send if profile is None else self._rewrite(send, profile))
        return out

    def _rewrite(self, send: Send, profile: Profile) -> Send:
        try:
            message = parse_message(send.data, 1 << 20)
            if isinstance(message, Request) and not profile.session_timers:
                self._remember(message, profile)
            return Send(serialize(outbound(message, profile)), send.peer)
        except Exception:  # noqa: BLE001 - our own bytes; never lose a send over a rule
            self.errors += 1
            return send

    def _remember(self, request: Request, profile: Profile) -> None:
        interval = interval_to_remember(request, profile)
        if interval is not None:
            if len(self._intervals) >= 4096:                  # never answered: the oldest go first
                del self._intervals[next(iter(self._intervals))]
            self._intervals[_transaction(request)] = interval


def _transaction(message: Message) -> tuple[str, str]:
    return message.header("call-id") or "", " ".join((message.header("cseq") or "").split())
