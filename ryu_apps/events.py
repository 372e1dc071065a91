"""The live event stream (``GET /mam/v1/events``, server-sent events) behind the console.

:class:`EventHub` watches the service (``MamService.watch``) and turns what each mutation
did into numbered events: ``call.admitted``, ``call.answered``, ``call.released`` (with
its cause), ``call.refused`` (with its reason), ``aggregate.created`` / ``resized`` /
``moved`` / ``resized-moved`` / ``reconfigured`` / ``deleted`` and ``link.state``.

* Ids count up from 1 in the order the service decided; the last ``ring_size`` events
  are kept, so a client that reconnects with ``Last-Event-ID`` gets what it missed. A
  client whose last id fell out of the ring (or came from an earlier run of the
  controller) gets a ``stream.reset`` event first: reload the state, then follow.
* Publishing never waits for a client: each has a bounded queue (``client_queue``); a
  client that falls that far behind is dropped (its stream ends; it reconnects and
  resumes from the ring). Admission never waits for a slow reader.
* A stream ends after ``max_stream_s`` (clients reconnect, and resume), and says
  ``: keepalive`` every ``keepalive_s`` so proxies keep it open.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import compat
from .core.activity import (Activity, AggregateChanged, CallAdmitted, CallAnswered, CallRefused, CallReleased,
                            LinkChanged)
from .core.serialize import aggregate_to_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: str          # JSON

    def frame(self) -> bytes:
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n".encode()


def describe(activity: Activity) -> tuple[str, dict[str, Any]] | None:
    """An event's type and data for what the service reported (None: not streamed)."""
    if isinstance(activity, CallAdmitted):
        call = activity.call
        return "call.admitted", {"call_id": call.call_id, "aggregate_id": call.aggregate_id,
                                 "caller_community": call.caller_community, "callee_community": call.callee_community,
                                 "level": call.level.label, "codec": call.media.codec, "kbps": call.kbps,
                                 "protocol": call.protocol.value, "state": call.state.value,
                                 "preempted": list(activity.preempted), "at": activity.at}
    if isinstance(activity, CallAnswered):
        return "call.answered", {"call_id": activity.call.call_id, "aggregate_id": activity.call.aggregate_id,
                                 "at": activity.at}
    if isinstance(activity, CallReleased):
        released = activity.released
        return "call.released", {"call_id": released.call_id, "aggregate_id": released.aggregate_id,
                                 "kbps": released.kbps, "cause": released.cause,
                                 "preempted_by": released.preempted_by, "at": activity.at}
    if isinstance(activity, CallRefused):
        request = activity.request
        return "call.refused", {"call_id": request.call_id, "caller_community": request.caller_community,
                                "callee_community": request.callee_community, "level": request.level.label,
                                "codec": request.media.codec, "protocol": request.protocol.value,
                                "aggregate_id": activity.aggregate_id, "kbps": activity.kbps,
                                "reason": activity.rejected.reason.value, "detail": activity.rejected.detail,
                                "at": activity.at}
    if isinstance(activity, AggregateChanged):
        return f"aggregate.{activity.change}", {
            "aggregate_id": activity.aggregate_id,
            "aggregate": None if activity.new is None else aggregate_to_dict(activity.new),
            "old_size_kbps": None if activity.old is None else activity.old.size_kbps,
            "old_path": None if activity.old is None else list(activity.old.path), "at": activity.at}
    if isinstance(activity, LinkChanged):
        transition = activity.transition
        return "link.state", {"link": transition.subject, "old": transition.old, "new": transition.new,
                              "detail": transition.detail, "at": activity.at}
    return None


class Subscription:
    """One client's queue. ``dropped`` once it fell ``limit`` events behind."""

    def __init__(self, limit: int, wakeup: Any) -> None:
        self.limit = limit
        self.queue: collections.deque[Event] = collections.deque()
        self.dropped = False
        self.closed = False
        self._wakeup = wakeup

    def offer(self, event: Event) -> bool:
        """Queue ``event`` (never blocks); False when the client is too far behind (dropped)."""
        if len(self.queue) >= self.limit:
            self.dropped = True
            self._wakeup.wake()
            return False
        self.queue.append(event)
        self._wakeup.wake()
        return True

    def wait(self, seconds: float) -> None:
        if not self.queue and not self.dropped and not self.closed:
            self._wakeup.sleep(seconds)

    def take(self) -> list[Event]:
        out = []
        while self.queue:
            out.append(self.queue.popleft())
        return out


class ThreadWakeup:
    """:class:`compat.Wakeup`'s words on native threads (a WSGI server with a thread per
    request: os-ken's native hub, tests)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def sleep(self, seconds: float) -> bool:
        woken = self._event.wait(max(0.0, seconds))
        self._event.clear()
        return woken

    def wake(self) -> None:
        self._event.set()


class EventHub:
    def __init__(self, *, ring_size: int = 10_000, client_queue: int = 1_000, max_clients: int = 200,
                 keepalive_s: float = 15.0, max_stream_s: float = 3600.0, retry_ms: int = 2000,
                 clock: Callable[[], float] = time.monotonic, wakeup: Callable[[], Any] = compat.Wakeup) -> None:
        self.ring: collections.deque[Event] = collections.deque(maxlen=ring_size)
        self.client_queue, self.max_clients = client_queue, max_clients
        self.keepalive_s, self.max_stream_s, self.retry_ms = keepalive_s, max_stream_s, retry_ms
        self.clock, self._wakeup = clock, wakeup
        self._ids = itertools.count(1)
        self._last = 0
        self._clients: list[Subscription] = []
        self._lock = threading.Lock()
        self.dropped = 0            # clients dropped for falling behind
        self.published = 0

    @property
    def last_id(self) -> int:
        return self._last

    @property
    def clients(self) -> int:
        return len(self._clients)

    def __call__(self, activity: Activity) -> None:
        """A service watcher: number the event, keep it in the ring, offer it to every client."""
        described = describe(activity)
        if described is None:
            return
        kind, data = described
        with self._lock:
            event = Event(next(self._ids), kind, json.dumps(data, separators=(",", ":")))
            self._last = event.id
            self.ring.append(event)
            self.published += 1
            behind = [client for client in self._clients if not client.offer(event)]
            for client in behind:
                self._clients.remove(client)
                self.dropped += 1
        for _ in behind:
            log.warning("event stream client dropped: more than %d events behind", self.client_queue)

    def subscribe(self, last_id: int | None) -> tuple[Subscription, list[Event], bool]:
        """A new client, what it missed after ``last_id`` (from the ring), and whether
        that is incomplete (the client must reload its state). Raises OverflowError
        when ``max_clients`` are connected."""
        with self._lock:
            if len(self._clients) >= self.max_clients:
                raise OverflowError(f"{self.max_clients} event stream clients already connected")
            client = Subscription(self.client_queue, self._wakeup())
            self._clients.append(client)
            if last_id is None:
                return client, [], False
            missed = [event for event in self.ring if event.id > last_id]
            oldest = self.ring[0].id if self.ring else self._last + 1
            reset = last_id > self._last or last_id < oldest - 1
            return client, missed, reset

    def unsubscribe(self, client: Subscription) -> None:
        with self._lock:
            client.closed = True
            if client in self._clients:
                self._clients.remove(client)

    def stream(self, last_id: int | None) -> Iterator[bytes]:
        """The bytes of one client's stream (a WSGI app_iter). Ends when the client is
        dropped or ``max_stream_s`` passed; closing it (the client went away) unsubscribes."""
        client, missed, reset = self.subscribe(last_id)
        return self._frames(client, missed, reset)

    def _frames(self, client: Subscription, missed: list[Event], reset: bool) -> Iterator[bytes]:
        try:
            yield f"retry: {self.retry_ms}\n\n".encode()
            if reset:
                yield (f"event: stream.reset\ndata: {json.dumps({'last_id': self._last})}\n\n").encode()
            seen = 0
            for event in missed:
                seen = event.id
                yield event.frame()
            ends = self.clock() + self.max_stream_s
            quiet_since = self.clock()
            while not client.dropped:
                now = self.clock()
                if now >= ends:
                    return
                client.wait(min(self.keepalive_s, ends - now))
                events = [e for e in client.take() if e.id > seen]      # a backlog event may be queued too
                if events:
                    seen = events[-1].id
                    yield b"".join(event.frame() for event in events)
                    quiet_since = self.clock()
                elif self.clock() - quiet_since >= self.keepalive_s:
                    yield b": keepalive\n\n"
                    quiet_since = self.clock()
        finally:
            self.unsubscribe(client)
