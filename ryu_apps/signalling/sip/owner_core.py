"""The admission owner's side of the channel (sans-IO apart from each link's ``write``).

One :class:`OwnerCore` holds the process's :class:`~ryu_apps.signalling.call_control.
CallControl` (the :class:`~ryu_apps.service.MamService` the single-process proxy runs)
and one :class:`Link` per worker connection. A link's bytes are cut into frames and
each job is run with :func:`~.control_jobs.run_job`, in the order read, and answered
with its id: the same function and the same decisions as the in-process proxy.

Bookkeeping per admitted call: which worker holds it and, once the call is confirmed
(the worker's ``SaveDialog``), its dialog. With it the owner

* tells the right worker when admission ends a call on its own (:meth:`OwnerCore.
  on_changes`: preempted, aggregate deleted) — the worker BYEs its parties;
* answers a job it already ran from a per-worker replay cache (a worker resends what
  was in flight after a reconnection): retries are idempotent;
* decides what a dead worker's calls become (:meth:`OwnerCore.worker_gone`): a call
  still being set up (no dialog: its INVITE transaction died with the worker and the
  caller will give up) is released at once, cause ``worker-lost``; a confirmed call is
  kept — its parties may still be talking, and releasing it would let new calls
  oversubscribe the pool — and handed to the worker started in its place, whose hello
  brings a :class:`~.channel_codec.Restore` of those dialogs: its BYEs come to the same
  port (the owner keeps each worker's socket), and the proxy's usual BYE, session-timer
  and ``max_call_s`` logic ends them.

Nothing a worker sends can stop the owner: a frame that does not decode is counted and
dropped (the link stays), a broken stream raises :class:`~.channel_codec.FrameError`
for the shell to close that link, a job that raises is answered ``ControlFailed``.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ryu_apps.core.admission import Admitted

from ..call_control import Admit, CallControl, Release
from .channel_codec import (CodecError, Ended, FrameDecoder, FrameError, Hello, JobReply, JobRequest, Restore, decode,
                            encode)
from .control_jobs import AdmitCall, CallAdmission, ControlFailed, JobResult, SaveDialog, run_job

log = logging.getLogger(__name__)
REPLAY = 4096                      # answers kept per worker for resent jobs
WORKER_LOST = "worker-lost"


@dataclass
class Held:
    worker: int
    serial: int
    dialog: Mapping[str, Any] | None = None


@dataclass
class OwnerCounters:
    jobs: int = 0
    replayed: int = 0
    failed: int = 0
    bad_frames: int = 0
    broken_links: int = 0
    ended_sent: int = 0
    released_worker_lost: int = 0
    kept_for_restore: int = 0
    restored: int = 0
    bad_examples: list[str] = field(default_factory=list)


class Link:
    """One worker's connection: frames in, replies out through ``write``."""

    def __init__(self, core: "OwnerCore", write: Callable[[bytes], None]) -> None:
        self.core = core
        self.write = write
        self.index: int | None = None
        self.pid: int | None = None
        self._decoder = FrameDecoder()

    def receive(self, data: bytes) -> None:
        """Bytes from the worker; raises FrameError when the stream is broken (close the link)."""
        replies: list[bytes] = []
        for payload in self._decoder.feed(data):
            try:
                message = decode(payload)
            except CodecError as error:
                self.core.bad(f"worker {self.index}: {error}")
                continue
            if isinstance(message, JobRequest):
                replies.append(self.core.run(self, message))
            elif isinstance(message, Hello):
                self.core.hello(self, message)
            else:
                self.core.bad(f"worker {self.index}: unexpected {type(message).__name__}")
        if replies:
            self.write(b"".join(replies))

    def feed(self, data: bytes) -> bool:
        """:meth:`receive`, guarded for a shell: nothing a worker sends gets past it. False when
        the stream is broken (counted; the shell closes this link), True otherwise."""
        try:
            self.receive(data)
        except FrameError as error:
            self.core.counters.broken_links += 1
            self.core.bad(f"worker {self.who}: {error}; closing its channel")
            return False
        except Exception as error:  # noqa: BLE001 - the owner outlives any message
            self.core.bad(f"worker {self.who}: {type(error).__name__}: {error}")
            log.exception("admission channel")
        return True

    @property
    def who(self) -> str:
        return "?" if self.index is None else str(self.index)

    def closed(self) -> None:
        self.core.closed(self)


class OwnerCore:
    def __init__(self, control: CallControl, replay: int = REPLAY) -> None:
        self.control = control
        self.calls: dict[str, Held] = {}
        self.links: dict[int, Link] = {}
        self.counters = OwnerCounters()
        self._replay_size = replay
        self._replay: dict[int, collections.OrderedDict[int, bytes]] = {}
        self._pids: dict[int, int] = {}

    def link(self, write: Callable[[bytes], None]) -> Link:
        return Link(self, write)

    def bad(self, text: str) -> None:
        self.counters.bad_frames += 1
        examples = self.counters.bad_examples
        if len(examples) < 10:
            examples.append(text[:200])
            log.warning("admission channel: %s", text[:200])

    # --- a worker's messages ---------------------------------------------------------

    def hello(self, link: Link, hello: Hello) -> None:
        link.index, link.pid = hello.index, hello.pid
        self.links[hello.index] = link
        if self._pids.get(hello.index) == hello.pid:
            return                                     # the same process, reconnected
        self._pids[hello.index] = hello.pid
        self._replay[hello.index] = collections.OrderedDict()   # a new process numbers its jobs anew
        dialogs = [held.dialog for held in self.calls.values()
                   if held.worker == hello.index and held.dialog is not None]
        if dialogs:
            self.counters.restored += len(dialogs)
            link.write(encode(Restore(tuple(dialogs))))

    def run(self, link: Link, request: JobRequest) -> bytes:
        index = link.index
        if index is None:
            self.bad("a job before the hello")
            return encode(JobReply(request.id, ControlFailed("say hello first")))
        cache = self._replay.setdefault(index, collections.OrderedDict())
        cached = cache.get(request.id)
        if cached is not None:
            self.counters.replayed += 1
            return cached
        self.counters.jobs += 1
        job = request.job
        if isinstance(job, Release):
            self.calls.pop(job.call_id, None)          # before: the notification is not echoed back
        try:
            result: JobResult = run_job(self.control, job)
        except Exception as error:  # noqa: BLE001 - a failing job is an answer, not the owner's end
            self.counters.failed += 1
            log.warning("call control %s failed: %s", type(job).__name__, error, exc_info=True)
            result = ControlFailed(f"{type(error).__name__}: {error}")
        decision = result.decision if isinstance(result, CallAdmission) else result
        if isinstance(decision, Admitted) and isinstance(job, (Admit, AdmitCall)):
            self.calls[decision.call_id] = Held(index, decision.serial)
        elif isinstance(job, SaveDialog):
            held = self.calls.get(job.call_id)
            if held is not None:
                held.dialog = job.dialog
        reply = encode(JobReply(request.id, result))
        cache[request.id] = reply
        if len(cache) > self._replay_size:
            cache.popitem(last=False)
        return reply

    def closed(self, link: Link) -> None:
        if link.index is not None and self.links.get(link.index) is link:
            del self.links[link.index]

    # --- events from elsewhere -------------------------------------------------------

    def on_changes(self, changes: Any) -> None:
        """A MamService listener: a call admission ended itself goes to the worker holding it."""
        for released in getattr(changes, "released", ()):
            held = self.calls.get(released.call_id)
            if held is None or held.serial != released.serial:
                continue
            del self.calls[released.call_id]
            link = self.links.get(held.worker)
            if link is not None:
                self.counters.ended_sent += 1
                link.write(encode(Ended(released.call_id, released.serial, released.cause)))

    def worker_gone(self, index: int) -> tuple[int, int]:
        """Worker ``index`` died: release its calls still being set up, keep its confirmed
        ones for the worker started in its place. Returns (released, kept)."""
        link = self.links.pop(index, None)
        if link is not None:
            link.index = None
        doomed = [call_id for call_id, held in self.calls.items() if held.worker == index and held.dialog is None]
        for call_id in doomed:
            self.calls.pop(call_id, None)
            try:
                self.control.release(call_id, WORKER_LOST)
            except Exception as error:  # noqa: BLE001
                self.counters.failed += 1
                log.warning("releasing %s after its worker died: %s", call_id, error)
        kept = sum(1 for held in self.calls.values() if held.worker == index)
        self.counters.released_worker_lost += len(doomed)
        self.counters.kept_for_restore += kept
        return len(doomed), kept

    def adopt(self, index: int, call_id: str, serial: int, dialog: Mapping[str, Any]) -> None:
        """A confirmed call from before a restart (its saved dialog): worker ``index`` is given
        it with its hello, as a dead worker's successor is given its calls."""
        self.calls[call_id] = Held(index, serial, dialog)

    def held_by(self) -> dict[int, int]:
        """Calls held per worker index."""
        counts: dict[int, int] = {}
        for held in self.calls.values():
            counts[held.worker] = counts.get(held.worker, 0) + 1
        return counts
