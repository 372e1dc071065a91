"""Session timers (RFC 4028) and reliable provisional responses (RFC 3262) as a PBX supports them (pure).

A profile says whether its PBX does session timers (``session_timers``, its minimum
interval ``min_se_s``) and 100rel/PRACK (``reliable_provisional``). The proxy is not a
B2BUA: it can only rewrite headers and, for a request the PBX cannot take, answer it
itself. The rules (docs/gateway.md, "Session timers and 100rel"):

* Toward a PBX without an extension, its option tag leaves Supported (and ``timer`` also
  Require); from it, a tag it lists but does not do is removed from Supported and Require,
  so the other side neither relies on it nor makes it the refresher (RFC 4028 §9: a UAS
  whose UAC does not support timers refreshes itself, ``refresher=uas``; RFC 3262 §3: a
  UAS sends provisionals reliably only to a UAC that listed 100rel).
* Session-Expires and Min-SE pass unchanged: a UA without the extension ignores them
  (RFC 3261 §8.2.2). A request that *requires* timers still works through a PBX without
  them: the proxy remembers the interval and, when the PBX's 2xx comes back without
  Session-Expires, adds ``Session-Expires: N;refresher=uac`` and ``Require: timer``
  (RFC 4028 §8.2), so the caller, which supports timers, refreshes.
* ``Require: 100rel`` toward a PBX without PRACK is answered by the proxy, as the PBX
  should (RFC 3261 §8.2.2.3): ``420 Bad Extension`` with ``Unsupported: 100rel``; the
  caller may retry without it (RFC 3261 §8.1.3.5).
* ``min_se_s``: a Session-Expires below it from a caller that supports timers is answered
  ``422`` with ``Min-SE`` (RFC 4028 §8.1, a proxy MAY); from a caller that does not (it
  cannot retry on a 422) Min-SE is raised to it and Session-Expires with it (§8.1, SHOULD /
  MUST).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip.message import Header, Message, Request, Response, set_header, split_list
from .profile import Profile

__all__ = ["Refusal", "any_headers", "from_pbx", "interval_to_remember", "limits_extensions", "option_tags", "refusal",
           "refresher_uac", "toward_pbx"]

_OFFERS = ("INVITE", "UPDATE")          # the requests that carry Session-Expires (RFC 4028 §7.4)


def any_headers(message: Message, headers: tuple[Header, ...]) -> Message:
    """The same request or response with other headers."""
    if isinstance(message, Request):
        return Request(message.method, message.uri, headers, message.body)
    return Response(message.status, message.reason, headers, message.body)


@dataclass(frozen=True)
class Refusal:
    """The answer the proxy gives in the PBX's place."""

    status: int
    reason: str
    headers: tuple[Header, ...]


def limits_extensions(profile: Profile) -> bool:
    """Whether the profile says anything about timers or 100rel (else nothing here applies)."""
    return not profile.session_timers or not profile.reliable_provisional or profile.min_se_s is not None


def option_tags(message: Message, name: str) -> set[str]:
    """The option tags of Supported / Require / Proxy-Require, lower case."""
    return {tag.strip().lower() for value in message.headers if value[0] == name for tag in split_list(value[1])}


def _lacks(profile: Profile) -> frozenset[str]:
    return frozenset(({"timer"} if not profile.session_timers else set()) |
                     ({"100rel"} if not profile.reliable_provisional else set()))


def _drop_tags(message: Message, tags: frozenset[str], names: tuple[str, ...]) -> Message:
    """``tags`` removed from the listed headers (a header left empty goes)."""
    headers: list[Header] = []
    changed = False
    for name, value in message.headers:
        if name in names:
            items = split_list(value)
            kept = [item for item in items if item.lower() not in tags]
            if len(kept) != len(items):
                changed = True
                if kept:
                    headers.append((name, ", ".join(kept)))
                continue
        headers.append((name, value))
    return any_headers(message, tuple(headers)) if changed else message


def _delta(value: str | None) -> int | None:
    """The seconds of a Session-Expires / Min-SE value (``1800;refresher=uac`` -> 1800)."""
    if value is None:
        return None
    delta = value.split(";", 1)[0].strip()
    return int(delta) if delta.isdigit() and len(delta) <= 9 else None


def _uac_does_timers(request: Request) -> bool:
    return "timer" in option_tags(request, "supported") or "timer" in option_tags(request, "require")


def refusal(request: Request, profile: Profile) -> Refusal | None:
    """What ``profile``'s PBX must answer to ``request`` and the proxy answers for it, or None."""
    if not profile.reliable_provisional and "100rel" in option_tags(request, "require"):
        return Refusal(420, "Bad Extension", (("unsupported", "100rel"),))
    if profile.min_se_s is not None and request.method in _OFFERS and _uac_does_timers(request):
        expires = _delta(request.header("session-expires"))
        if expires is not None and expires < profile.min_se_s:
            return Refusal(422, "Session Interval Too Small", (("min-se", str(profile.min_se_s)),))
    return None


def toward_pbx(message: Message, profile: Profile) -> Message:
    """A message about to be sent to ``profile``'s PBX: option tags it lacks removed (``timer``
    from Supported and Require, ``100rel`` from Supported), a too short interval of a
    caller without timers raised to ``min_se_s``."""
    lacks = _lacks(profile)
    if "timer" in lacks:
        message = _drop_tags(message, frozenset({"timer"}), ("supported", "require"))
    if "100rel" in lacks:
        message = _drop_tags(message, frozenset({"100rel"}), ("supported",))
    if (profile.min_se_s is not None and isinstance(message, Request) and message.method in _OFFERS
            and not _uac_does_timers(message)):
        message = _raise_interval(message, profile.min_se_s)
    return message


def _raise_interval(request: Request, minimum: int) -> Request:
    value = request.header("session-expires")
    expires = _delta(value)
    if value is None or expires is None or expires >= minimum:
        return request
    floor = max(minimum, _delta(request.header("min-se")) or 0)
    _, semi, params = value.partition(";")
    request = set_header(request, "min-se", str(floor))
    return set_header(request, "session-expires", f"{floor}{semi}{params}")


def from_pbx(message: Message, profile: Profile) -> Message:
    """A message from ``profile``'s PBX: option tags it lists but does not do removed from
    Supported and Require; a request of a PBX without timers that names itself the refresher
    (``refresher=uac``) loses the parameter, so the UAS picks (itself, RFC 4028 §9)."""
    lacks = _lacks(profile)
    if not lacks:
        return message
    message = _drop_tags(message, lacks, ("supported", "require"))
    if "timer" in lacks and isinstance(message, Request):
        expires = message.header("session-expires")
        if expires is not None and _refresher(expires) == "uac":
            kept = [p for p in expires.split(";") if p.partition("=")[0].strip().lower() != "refresher"]
            return set_header(message, "session-expires", ";".join(kept))
    return message


def _refresher(value: str) -> str | None:
    for part in value.split(";")[1:]:
        name, _, found = part.partition("=")
        if name.strip().lower() == "refresher":
            return found.strip().lower()
    return None


def interval_to_remember(request: Request, profile: Profile) -> int | None:
    """For a request to a PBX without timers: the interval a caller that does timers asked
    for (the proxy answers for the PBX in :func:`refresher_uac`), else None."""
    if profile.session_timers or request.method not in _OFFERS or not _uac_does_timers(request):
        return None
    return _delta(request.header("session-expires"))


def refresher_uac(response: Response, interval: int) -> Response:
    """RFC 4028 §8.2: a 2xx of a UAS without timers to a caller that does them gets
    ``Session-Expires: <interval>;refresher=uac`` and ``Require: timer`` (one that echoed
    Session-Expires naming itself, ``refresher=uas``, too: it will not refresh). A 2xx whose
    Session-Expires names the caller, or any other response, is returned unchanged."""
    expires = response.header("session-expires")
    if not 200 <= response.status < 300 or (expires is not None and _refresher(expires) != "uas"):
        return response
    headers = tuple(h for h in response.headers if h[0] != "session-expires")
    headers += (("session-expires", f"{interval};refresher=uac"),)
    if "timer" not in option_tags(response, "require"):
        headers += (("require", "timer"),)
    return Response(response.status, response.reason, headers, response.body)
