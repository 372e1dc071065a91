"""What a standalone gatekeeper asks the controller's REST API besides CallControl:

* dialled number -> community: ``GET /mam/v1/communities/lookup?number=DIGITS`` (cached);
* which H.323 calls the controller still holds: ``GET /mam/v1/calls?protocol=h323`` (the
  gatekeeper ends the ones it no longer has: REST has no notifications)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Protocol


class _Rest(Protocol):
    def _call(self, method: str, path: str, payload: Any) -> tuple[int, Any]: ...


class RestNumbers:
    def __init__(self, rest: _Rest, cache_s: float = 30.0) -> None:
        self._rest = rest
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, str | None]] = {}

    def community_of_number(self, number: str) -> str | None:
        cached = self._cache.get(number)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        status, body = self._rest._call("GET", "/mam/v1/communities/lookup?"
                                        + urllib.parse.urlencode({"number": number}), None)
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"community lookup for number {number!r}: HTTP {status} {body}")
        community = body.get("community")
        found = community if isinstance(community, str) else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[number] = (time.monotonic() + self._cache_s, found)
        return found


def live_calls(rest: _Rest) -> set[str]:
    """The ids of the H.323 calls the controller holds now."""
    status, body = rest._call("GET", "/mam/v1/calls?protocol=h323", None)
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("calls"), list):
        raise RuntimeError(f"listing calls: HTTP {status} {body}")
    return {str(c["call_id"]) for c in body["calls"] if isinstance(c, dict) and "call_id" in c}
