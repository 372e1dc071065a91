"""Runs the proxy core's call-control jobs off the asyncio loop (REST mode).

Each job goes to a worker thread (HTTP round trips block); its result comes back on the
loop, to ``on_done(ticket, result)``. Jobs of one call run one after another in the
order given: a release never overtakes the admission it undoes, nor a media update the
release. Different calls run in parallel, up to ``workers`` at a time. A job that
raises is answered :class:`~.control_jobs.ControlFailed`; it never reaches the loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from typing import Callable, Protocol

from ..call_control import CallControl
from .control_jobs import ControlFailed, Job, JobResult, job_call_id, run_job

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the shell needs of whatever runs a deferred proxy's jobs: this module's thread
    pool (REST), or a worker's admission channel (:mod:`.workers`)."""

    @property
    def in_flight(self) -> int: ...

    def submit(self, jobs: list[tuple[int, Job]]) -> None: ...

    def close(self) -> None: ...


class JobRunner:
    def __init__(self, control: CallControl, loop: asyncio.AbstractEventLoop,
                 on_done: Callable[[int, JobResult], None], workers: int = 8) -> None:
        self.control = control
        self._loop = loop
        self._on_done = on_done
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sip-control")
        self._queues: dict[str, collections.deque[tuple[int, Job]]] = {}
        self.in_flight = 0                     # jobs submitted and not yet answered (a load figure)

    def submit(self, jobs: list[tuple[int, Job]]) -> None:
        """From the loop: run these jobs (in order per call id)."""
        for ticket, job in jobs:
            self.in_flight += 1
            key = job_call_id(job)
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = collections.deque()
                self._start(key, ticket, job)
            else:
                queue.append((ticket, job))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, key: str, ticket: int, job: Job) -> None:
        future = self._executor.submit(self._run, job)

        def back_to_the_loop(done: "concurrent.futures.Future[JobResult]") -> None:
            try:
                self._loop.call_soon_threadsafe(self._finished, key, ticket, done)
            except RuntimeError:          # the loop closed while the job ran (shutdown)
                pass
        future.add_done_callback(back_to_the_loop)

    def _run(self, job: Job) -> JobResult:
        try:
            return run_job(self.control, job)
        except Exception as error:  # noqa: BLE001 - answered as a failure, never raised on the loop
            log.debug("call control %s failed: %s", type(job).__name__, error)
            return ControlFailed(f"{type(error).__name__}: {error}")

    def _finished(self, key: str, ticket: int, future: "concurrent.futures.Future[JobResult]") -> None:
        self.in_flight -= 1
        try:
            result = future.result()
        except BaseException as error:  # noqa: BLE001 - cancelled at shutdown
            result = ControlFailed(f"{type(error).__name__}: {error}")
        queue = self._queues.get(key)
        if queue:
            self._start(key, *queue.popleft())
        else:
            self._queues.pop(key, None)
        self._on_done(ticket, result)
