"""A worker's side of the admission channel, sans-IO: jobs in, bytes out; bytes in, answers out.

The proxy core in a worker runs deferred (``SipProxy(deferred=True)``): it hands its
call-control jobs to the shell with a ticket and waits for ``job_done(ticket, result)``.
:class:`ChannelClient` turns those jobs into frames for the owner (the ticket is the
request id), many in flight at once, and the owner's replies back into
``(ticket, result)`` answers in whatever order they come. Jobs go out in the order they
were submitted and the owner runs them in the order read, so one call's admission is
always decided before its release.

The connection's life:

* ``connected()``: a hello, then every job still in flight (after a reconnection: the
  owner answers a job it already ran from its replay cache, so a resent admission or
  release runs once).
* ``disconnected()``: jobs submitted now wait, in order, for the next connection.
* ``gave_up()``: the owner is gone: every job in flight, and every later one at once,
  is answered :func:`unavailable` (an INVITE gets a 503 with a store-unavailable Reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ryu_apps.core.admission import Rejected, RejectReason

from ..call_control import Admit, Modify
from .channel_codec import (CodecError, Ended, FrameDecoder, Hello, JobReply, JobRequest, Restore, decode, encode)
from .control_jobs import AdmitCall, CallAdmission, ControlFailed, Job, JobResult

UNAVAILABLE = "admission owner unavailable"
Answer = tuple[int, JobResult]
Event = Union[Answer, Restore, Ended]


def unavailable(job: Job) -> JobResult:
    """What a job gets when no admission owner answers: a clear refusal, never a hang."""
    if isinstance(job, AdmitCall):            # communities are unknown here; the refusal is what counts
        return CallAdmission("", "", Rejected(job.call_id, RejectReason.STORE_UNAVAILABLE, UNAVAILABLE))
    if isinstance(job, Admit):
        return Rejected(job.request.call_id, RejectReason.STORE_UNAVAILABLE, UNAVAILABLE)
    if isinstance(job, Modify):
        return Rejected(job.call_id, RejectReason.STORE_UNAVAILABLE, UNAVAILABLE)
    return ControlFailed(UNAVAILABLE)


@dataclass
class ClientCounters:
    sent: int = 0
    answered: int = 0
    resent: int = 0
    refused_unavailable: int = 0
    bad_frames: int = 0
    unknown_replies: int = 0
    connections: int = 0


class ChannelClient:
    def __init__(self, index: int, pid: int) -> None:
        self.index = index
        self.pid = pid
        self.state = "connecting"                  # connecting | connected | down
        self.counters = ClientCounters()
        self._in_flight: dict[int, Job] = {}       # by id, in the order sent
        self._decoder = FrameDecoder()
        self.errors: list[str] = []                # the last few bad frames, for the stats

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def connected(self) -> bytes:
        """A new connection is up: the hello, then every job not yet answered, in order."""
        self.state = "connected"
        self.counters.connections += 1
        self._decoder = FrameDecoder()
        out = [encode(Hello(self.index, self.pid))]
        for ident, job in self._in_flight.items():
            out.append(encode(JobRequest(ident, job)))
            self.counters.resent += 1
        return b"".join(out)

    def disconnected(self) -> None:
        if self.state == "connected":
            self.state = "connecting"

    def gave_up(self) -> list[Answer]:
        """No owner: answer everything in flight, and refuse what comes next at once."""
        self.state = "down"
        answers = [(ident, unavailable(job)) for ident, job in self._in_flight.items()]
        self.counters.refused_unavailable += len(answers)
        self._in_flight.clear()
        return answers

    def submit(self, jobs: list[tuple[int, Job]]) -> tuple[bytes, list[Answer]]:
        """Jobs with their tickets: the bytes to write now, and the answers known at once."""
        if self.state == "down":
            self.counters.refused_unavailable += len(jobs)
            return b"", [(ticket, unavailable(job)) for ticket, job in jobs]
        for ticket, job in jobs:
            if ticket in self._in_flight:
                raise ValueError(f"ticket {ticket} is already in flight")
            self._in_flight[ticket] = job
        if self.state != "connected":
            return b"", []
        self.counters.sent += len(jobs)
        return b"".join(encode(JobRequest(ticket, job)) for ticket, job in jobs), []

    def receive(self, data: bytes) -> list[Event]:
        """Bytes from the owner. A broken stream raises :class:`~.channel_codec.FrameError`
        (the shell closes the connection and reconnects); a bad frame is counted and skipped."""
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            try:
                message = decode(payload)
            except CodecError as error:
                self.counters.bad_frames += 1
                self.errors.append(str(error)[:200])
                del self.errors[:-10]
                continue
            if isinstance(message, JobReply):
                if self._in_flight.pop(message.id, None) is None:
                    self.counters.unknown_replies += 1        # answered twice (a resend), or not ours
                    continue
                self.counters.answered += 1
                events.append((message.id, message.result))
            elif isinstance(message, (Restore, Ended)):
                events.append(message)
            else:
                self.counters.bad_frames += 1
        return events
