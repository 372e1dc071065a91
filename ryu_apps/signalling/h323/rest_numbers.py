"""Dialled number -> community over the controller's REST API, for a standalone gatekeeper:
``GET /mam/v1/communities/lookup?number=DIGITS`` -> ``{"community": name | null}``, cached."""

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
