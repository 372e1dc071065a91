"""SIP transactions for a stateful proxy (RFC 3261 section 17, with RFC 6026's Accepted state).

Sans-IO: a transaction is given messages and ``now`` and returns :class:`Send` outputs;
its timers live in a :class:`Timers` heap owned by the proxy, which calls
``on_timer(name, now)`` when a deadline passes. Server transactions absorb request
retransmissions (the proxy core sees a request once); client transactions retransmit
over UDP, time out (timers B/F), ACK non-2xx finals hop by hop, and run the proxy's
timer C on INVITEs.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from dataclasses import dataclass
from typing import Hashable

from .message import Request, Response, parse_name_addr, serialize


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes: transport (``udp``/``tcp``), IP address, port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True, slots=True)
class Send:
    """An output of the protocol core: send ``data`` to ``peer``."""

    data: bytes
    peer: Peer


@dataclass(frozen=True)
class TimerSettings:
    """RFC 3261 timer values (seconds). ``timer_c`` is the proxy's INVITE timer (> 3 min
    by the RFC; shorter values turn it into a no-answer timeout)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_c: float = 180.0

    @property
    def transaction_timeout(self) -> float:   # timers B, F, H, J, L, M
        return 64 * self.t1


class State(str, enum.Enum):
    TRYING = "trying"
    CALLING = "calling"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Event(str, enum.Enum):
    """What a timer told the proxy."""

    TERMINATED = "terminated"      # forget the transaction
    TIMEOUT = "timeout"            # timer B/F: no final response; answer 408 upstream
    TIMER_C = "timer-c"            # INVITE rang too long: CANCEL (or 408 when nothing came back)
    ACK_TIMEOUT = "ack-timeout"    # a call's 2xx was never ACKed: end it
    SESSION_EXPIRED = "session-expired"   # RFC 4028: no session refresh in time: end it
    LIFETIME = "max-call-duration"        # the call outlived its bound: end it
    CONTROL_TIMEOUT = "control-timeout"   # call control did not answer in time


class Timers:
    """Deadlines keyed by (owner, name) in a heap with lazy deletion.

    A cancelled deadline stays in the heap until it would have passed, and keeps its
    owner alive till then: a call's 4-hour lifetime timer, cancelled when the call ends,
    would hold the call's record for 4 hours. So the heap is rebuilt without the stale
    entries whenever they outnumber the live ones (amortised O(1) per timer set)."""

    COMPACT_SLACK = 4096        # stale entries tolerated beyond the live ones

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._live: dict[tuple[Hashable, str], float] = {}
        self._seq = itertools.count()

    def set(self, owner: Hashable, name: str, when: float) -> None:
        live = self._live
        live[(owner, name)] = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), owner, name))
        if len(heap) > 2 * len(live) + self.COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get((entry[2], entry[3])) == entry[0]]
        heapq.heapify(self._heap)

    def cancel(self, owner: Hashable, *names: str) -> None:
        pop = self._live.pop
        for name in names:
            pop((owner, name), None)

    def is_set(self, owner: Hashable, name: str) -> bool:
        return (owner, name) in self._live

    def next(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, owner, name = heap[0]
            if self._live.get((owner, name)) == when:
                return when
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[tuple[Hashable, str]]:
        fired: list[tuple[Hashable, str]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, owner, name = heapq.heappop(heap)
            if self._live.get((owner, name)) == when:
                del self._live[(owner, name)]
                fired.append((owner, name))
        return fired

    def __len__(self) -> int:
        return len(self._live)


class ServerTransaction:
    """A request we received: absorbs its retransmissions, keeps and repeats our answer."""

    __slots__ = ("key", "request", "peer", "state", "last_response", "status", "client", "_timers",
                 "_settings", "_interval", "context")

    def __init__(self, key: tuple[str, str, str], request: Request, peer: Peer, timers: Timers,
                 settings: TimerSettings) -> None:
        self.key = key
        self.request = request
        self.peer = peer
        self.state = State.PROCEEDING if request.method == "INVITE" else State.TRYING
        self.last_response: bytes | None = None
        self.status = 0
        self.client: ClientTransaction | None = None
        self.context: object = None
        self._timers = timers
        self._settings = settings
        self._interval = settings.t1

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"

    @property
    def final_sent(self) -> bool:
        return self.status >= 200

    def respond(self, response: Response, now: float) -> list[Send]:
        """Send a response (ours or forwarded) upstream, moving the state machine."""
        if self.state is State.TERMINATED or (self.final_sent and not (self.invite and self.state is State.ACCEPTED
                                                                        and 200 <= response.status < 300)):
            return []   # one final per transaction; only 2xx retransmissions pass in Accepted
        data = serialize(response)
        self.last_response = data
        self.status = max(self.status, response.status)
        settings = self._settings
        if response.status >= 200:
            self.request = slim(self.request)      # no more forwarding: keep what answers need
        if response.status < 200:
            self.state = State.PROCEEDING
        elif self.invite and response.status < 300:
            self.last_response = None             # 2xx retransmissions come from downstream
            if self.state is not State.ACCEPTED:
                self.state = State.ACCEPTED
                self._timers.set(self, "L", now + settings.transaction_timeout)
        elif self.invite:
            self.state = State.COMPLETED
            if not self.peer.reliable:
                self._timers.set(self, "G", now + self._interval)
            self._timers.set(self, "H", now + settings.transaction_timeout)
        else:
            self.state = State.COMPLETED
            self._timers.set(self, "J", now + (0 if self.peer.reliable else settings.transaction_timeout))
        return [Send(data, self.peer)]

    def retransmission(self) -> list[Send]:
        """The same request came again: repeat our last answer (none yet: stay silent)."""
        if self.state in (State.ACCEPTED, State.TERMINATED, State.CONFIRMED) or self.last_response is None:
            return []
        return [Send(self.last_response, self.peer)]

    def ack(self, now: float) -> None:
        """ACK of our non-2xx final response: stop repeating it."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._timers.cancel(self, "G", "H")
            self._timers.set(self, "I", now + (0 if self.peer.reliable else self._settings.t4))

    def on_timer(self, name: str, now: float) -> tuple[list[Send], Event | None]:
        if name == "G" and self.state is State.COMPLETED and self.last_response is not None:
            self._interval = min(2 * self._interval, self._settings.t2)
            self._timers.set(self, "G", now + self._interval)
            return [Send(self.last_response, self.peer)], None
        if name in ("H", "I", "J", "L"):
            self.terminate()
            return [], Event.TERMINATED
        return [], None

    def terminate(self) -> None:
        self.state = State.TERMINATED
        self._timers.cancel(self, "G", "H", "I", "J", "L")


class ClientTransaction:
    """A request we sent (forwarded or our own): retransmits, times out, ACKs non-2xx."""

    __slots__ = ("key", "request", "data", "peer", "server", "state", "status", "cancel_pending", "cancelled",
                 "_timers", "_settings", "_interval", "context")

    def __init__(self, key: tuple[str, str], request: Request, peer: Peer, server: ServerTransaction | None,
                 timers: Timers, settings: TimerSettings) -> None:
        self.key = key
        self.request = request
        self.data = serialize(request)
        self.peer = peer
        self.server = server
        self.state = State.CALLING if request.method == "INVITE" else State.TRYING
        self.status = 0
        self.cancel_pending = False
        self.cancelled = False
        self.context: object = None
        self._timers = timers
        self._settings = settings
        self._interval = settings.t1

    @property
    def invite(self) -> bool:
        return self.request.method == "INVITE"

    def start(self, now: float) -> list[Send]:
        settings = self._settings
        if not self.peer.reliable:
            self._timers.set(self, "A" if self.invite else "E", now + self._interval)
        self._timers.set(self, "B" if self.invite else "F", now + settings.transaction_timeout)
        if self.invite:
            self._timers.set(self, "C", now + settings.timer_c)
        return [Send(self.data, self.peer)]

    def receive(self, response: Response, now: float) -> tuple[bool, list[Send]]:
        """A response matched this transaction. Returns (pass it to the proxy core?, outputs)."""
        status = response.status
        timers = self._timers
        if self.state in (State.COMPLETED, State.TERMINATED):
            if self.invite and status >= 300 and self.state is State.COMPLETED:
                return False, [Send(serialize(self._ack(response)), self.peer)]   # repeated final: repeat ACK
            return False, []
        if self.state is State.ACCEPTED:
            return 200 <= status < 300, []            # 2xx retransmissions go on upstream
        if status < 200:
            self.state = State.PROCEEDING
            timers.cancel(self, "A", "E")
            if self.invite:
                timers.cancel(self, "B")
                timers.set(self, "C", now + self._settings.timer_c)
            elif not self.peer.reliable:
                timers.set(self, "E", now + self._settings.t2)
            self.status = max(self.status, status)
            return True, []
        self.status = status
        timers.cancel(self, "A", "B", "C", "E", "F", "cancel")
        self.data = b""                            # final: nothing to retransmit any more
        self.request = slim(self.request)          # ... but an ACK to build
        if self.invite and status < 300:
            self.state = State.ACCEPTED
            timers.set(self, "M", now + self._settings.transaction_timeout)
            return True, []
        self.state = State.COMPLETED
        if self.invite:
            timers.set(self, "D", now + (0 if self.peer.reliable else 32.0))
            return True, [Send(serialize(self._ack(response)), self.peer)]
        timers.set(self, "K", now + (0 if self.peer.reliable else self._settings.t4))
        return True, []

    def on_timer(self, name: str, now: float) -> tuple[list[Send], Event | None]:
        if name in ("A", "E") and self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._interval = min(2 * self._interval, self._settings.t2) if name == "E" else 2 * self._interval
            self._timers.set(self, name, now + self._interval)
            return [Send(self.data, self.peer)], None
        if name in ("B", "F", "cancel") and self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.terminate()
            return [], Event.TIMEOUT
        if name == "C" and self.state in (State.CALLING, State.PROCEEDING):
            return [], Event.TIMER_C
        if name in ("D", "K", "M"):
            self.terminate()
            return [], Event.TERMINATED
        return [], None

    def cancel_sent(self, now: float) -> None:
        """We sent CANCEL for this INVITE: wait 64*T1 for its final before giving up (16.8)."""
        self.cancelled = True
        self.cancel_pending = False
        self._timers.cancel(self, "C")
        self._timers.set(self, "cancel", now + self._settings.transaction_timeout)

    def terminate(self) -> None:
        self.state = State.TERMINATED
        self._timers.cancel(self, "A", "B", "C", "D", "E", "F", "K", "M", "cancel")

    def _ack(self, response: Response) -> Request:
        """The hop-by-hop ACK of a non-2xx final (RFC 3261 17.1.1.3)."""
        request = self.request
        headers = [("via", request.header_values("via")[0])]
        headers += [(k, v) for k, v in request.headers if k == "route"]
        headers += [("max-forwards", "70"), ("from", request.header("from") or ""),
                    ("to", response.header("to") or request.header("to") or ""),
                    ("call-id", request.header("call-id") or ""),
                    ("cseq", f"{request.cseq[0]} ACK")]
        return Request("ACK", request.uri, tuple(headers))

    def cancel_request(self) -> Request:
        """CANCEL of this INVITE (RFC 3261 9.1): same Request-URI, top Via, Route, From, To, Call-ID."""
        request = self.request
        headers = [("via", request.header_values("via")[0])]
        headers += [(k, v) for k, v in request.headers if k == "route"]
        headers += [("max-forwards", "70"), ("from", request.header("from") or ""),
                    ("to", request.header("to") or ""), ("call-id", request.header("call-id") or ""),
                    ("cseq", f"{request.cseq[0]} CANCEL")]
        return Request("CANCEL", request.uri, tuple(headers))


#: What a transaction still needs of its request once it has a final response.
_KEPT = frozenset({"via", "route", "from", "to", "call-id", "cseq"})


def slim(request: Request) -> Request:
    """The request without body and without headers a finished transaction never reads
    (memory stays bounded under load: no request copies beyond what is still needed)."""
    headers = request.headers
    kept = tuple([header for header in headers if header[0] in _KEPT])
    if not request.body and len(kept) == len(headers):
        return request
    return Request(request.method, request.uri, kept, b"")


def server_key(branch: str | None, sent_by: str, method: str, request: Request) -> tuple[str, str, str]:
    """RFC 3261 17.2.3: branch + sent-by + method (ACK matches its INVITE). Requests without
    an RFC 3261 branch fall back to Call-ID, CSeq number and From tag."""
    kind = "INVITE" if method == "ACK" else method
    if branch and branch.startswith("z9hG4bK"):
        return branch, sent_by, kind
    try:
        tag = parse_name_addr(request.header("from") or "").tag or ""
    except Exception:  # noqa: BLE001 - a key of last resort
        tag = ""
    return f"2543:{request.header('call-id')}:{request.cseq[0]}:{tag}", sent_by, kind
