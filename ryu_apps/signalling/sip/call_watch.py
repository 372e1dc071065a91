"""How a standalone proxy in REST mode learns of calls the controller ended on its own
(preempted, released over REST, media idle, aggregate deleted), so it BYEs their parties.

:class:`CallWatch` is the small interface the shell uses; :class:`RestCallPoller` is the
one implementation today: every ``interval_s`` it asks ``GET /mam/v1/calls?protocol=sip``
and hands the list (call id -> serial) with the loop time the question left to
``SipProxy.reconcile``: a call the proxy held before then that the list lacks (or holds
under another serial) ended in the controller. A server-sent event stream can replace it
by calling :meth:`CallSink.ended` per call instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Callable, Mapping, Protocol

log = logging.getLogger(__name__)
DEFAULT_POLL_S = 5.0


class CallSink(Protocol):
    def held(self, calls: Mapping[str, int], as_of: float) -> None:
        """Every SIP call the controller holds (call id -> serial) as of loop time ``as_of``."""

    def ended(self, call_id: str, serial: int | None, cause: str) -> None:
        """One call ended in the controller (an event stream's way)."""


class CallWatch(Protocol):
    def start(self, loop: asyncio.AbstractEventLoop, sink: CallSink) -> None: ...

    def stop(self) -> None: ...


class RestCallPoller:
    """Polls ``list_calls()`` (``RestCallControl.sip_calls``) on a thread of its own."""

    def __init__(self, list_calls: Callable[[], Mapping[str, int]], interval_s: float = DEFAULT_POLL_S,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.list_calls = list_calls
        self.interval_s = interval_s
        self.polls = 0
        self.failures = 0
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sip-call-poll")

    def start(self, loop: asyncio.AbstractEventLoop, sink: CallSink) -> None:
        self._task = loop.create_task(self._poll(loop, sink))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _poll(self, loop: asyncio.AbstractEventLoop, sink: CallSink) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            as_of = loop.time()
            try:
                calls = await loop.run_in_executor(self._executor, self.list_calls)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the controller may be away; try again next time
                self.failures += 1
                if self._on_error is not None:
                    self._on_error(error)
                continue
            self.polls += 1
            sink.held(calls, as_of)
