"""One asyncio timer that wakes a sans-IO core at its ``next_timer()`` (the standalone
gatekeeper's and gateway's loops): armed again after every step, never earlier than
needed twice, fired through the shell's guard."""

from __future__ import annotations

import asyncio
from typing import Any, Callable


class LoopTimer:
    def __init__(self, next_timer: Callable[[], float | None], fire: Callable[[], Any]) -> None:
        self.next_timer, self.fire = next_timer, fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake at the core's next timer, unless an earlier wake-up is already set."""
        when = self.next_timer()
        if when is None or when == self._at:
            return
        if self._handle is not None:
            if self._at is not None and self._at <= when:
                return
            self._handle.cancel()
        self._at = when
        self._handle = loop.call_at(when, self._wake)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = None

    def _wake(self) -> None:
        self._handle = self._at = None
        self.fire()
