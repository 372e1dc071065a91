"""Deterministic ids for branches and tags: the proxy core draws no randomness itself."""

from __future__ import annotations

import hashlib
from typing import Protocol


class IdSource(Protocol):
    """Deterministic ids (branches, tags) from the given parts."""

    def __call__(self, *parts: str) -> str: ...


class HashIds:
    """Keyed BLAKE2s of the parts: unique per input, unguessable without the key."""

    def __init__(self, key: bytes) -> None:
        self._key = key[:32]

    def __call__(self, *parts: str) -> str:
        return hashlib.blake2s("\x00".join(parts).encode(), key=self._key, digest_size=10).hexdigest()
