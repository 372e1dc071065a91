"""Overload control: refuse new calls early and cheaply, keep finishing the calls we have.

The shell tells the core how long each datagram waited in the kernel before it was read
(``SO_TIMESTAMPNS``); like CoDel (RFC 8289) it takes the smallest delay of each half
second: a backlog that never drains, not a single stall, is overload. The core knows how many transactions are open and how many
admissions are waiting for the controller. Over any configured limit the proxy is
*overloaded*: a new INVITE (no To tag) is answered ``503 Service Unavailable`` with
``Retry-After`` (RFC 3261 §21.5.4) and ``Reason: Q.850;cause=42`` (switching equipment
congestion), statelessly, from its raw bytes (:func:`fast_reject`: no parse, no
transaction, nothing kept), and its ACK is dropped on sight (:func:`is_reject_ack`).
Everything else (responses, ACK, BYE, CANCEL, re-INVITEs) is served as usual, and the
shells read it first. A client that put ``oc`` in its Via (RFC 7339) gets loss-based
feedback in that Via of the 503: ``oc=<percent>;oc-algo="loss";oc-validity=<ms>;oc-seq=<n>``,
the share of new INVITEs refused over the last second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOW_S = 1.0
REMEMBER_S = 16.0              # a refused INVITE's retransmissions are refused too, for 16-32 s
REMEMBER_MAX = 100_000         # ... at most this many per generation (memory stays bounded)
DELAY_INTERVAL_S = 0.5         # CoDel-like: the smallest queue delay seen in each such interval; a
                               # one-off stall (a GC pause, a busy neighbour) refuses nothing, a queue
                               # that never empties does
_TO_TAG = re.compile(rb"^(?:to|t)[ \t]*:[^\r\n]*;[ \t]*tag[ \t]*=", re.I | re.M)
_HEADERS = {b"via": b"Via", b"v": b"Via", b"from": b"From", b"f": b"From", b"to": b"To", b"t": b"To",
            b"call-id": b"Call-ID", b"i": b"Call-ID", b"cseq": b"CSeq"}


@dataclass(frozen=True)
class OverloadLimits:
    max_queue_delay_s: float = 0.1           # a datagram read later than this after it arrived
    max_transactions: int = 200_000          # open server + client transactions
    max_pending_admissions: int = 1_000      # REST mode: INVITEs waiting for the controller
    retry_after_s: int = 5                   # in the 503 (RFC 3261 §21.5.4)
    oc_validity_ms: int = 1_000              # RFC 7339 feedback validity


class OverloadGate:
    """Decides, per new INVITE, whether the proxy is over a limit; keeps the refusal share."""

    def __init__(self, limits: OverloadLimits) -> None:
        self.limits = limits
        self._window_end = 0.0
        self._offered = self._refused = 0
        self._last_offered = self._last_refused = 0
        self.seq = 0
        self._refused_now: set[tuple[str, str]] = set()
        self._refused_old: set[tuple[str, str]] = set()
        self._rotate_at = 0.0
        self.delay = 0.0                # the smallest queue delay of the last interval (s)
        self._window_min = 0.0
        self._window_end = 0.0

    def note(self, waited: float, now: float) -> None:
        """How long a datagram waited in the kernel (every datagram counts)."""
        if now < self._window_end:
            if waited < self._window_min:
                self._window_min = waited
            return
        # an interval ended: its minimum is the delay now (after a silence, only what we see now)
        late = now - self._window_end >= DELAY_INTERVAL_S
        self.delay = min(self._window_min, waited) if late else self._window_min
        self._window_min = waited
        self._window_end = now + DELAY_INTERVAL_S

    def remember(self, key: tuple[str, str], now: float) -> None:
        """A refused INVITE (branch, sent-by): its retransmissions get the same answer, even
        once the proxy has caught up (else a late copy would be admitted after the caller
        heard 503 and moved on)."""
        if now >= self._rotate_at or len(self._refused_now) >= REMEMBER_MAX:
            self._refused_old, self._refused_now = self._refused_now, set()
            self._rotate_at = now + REMEMBER_S
        self._refused_now.add(key)

    def refused_before(self, key: tuple[str, str]) -> bool:
        return key in self._refused_now or key in self._refused_old

    def over(self, transactions: int, pending: int) -> str | None:
        """Which limit is exceeded (``queue-delay``, ``transactions``, ``pending-admissions``), if any."""
        limits = self.limits
        if self.delay > limits.max_queue_delay_s:
            return "queue-delay"
        if transactions > limits.max_transactions:
            return "transactions"
        if pending > limits.max_pending_admissions:
            return "pending-admissions"
        return None

    def count(self, refused: bool, now: float) -> None:
        """One new INVITE offered (and whether it was refused), for the loss share."""
        if now >= self._window_end:
            self._last_offered, self._last_refused = self._offered, self._refused
            self._offered = self._refused = 0
            self._window_end = now + WINDOW_S
        self._offered += 1
        self._refused += refused

    def loss_percent(self, refusing: bool = False) -> int:
        """The share of new INVITEs refused over the last one to two seconds (``refusing``:
        counting the one being refused now)."""
        offered = self._offered + self._last_offered + refusing
        refused = self._refused + self._last_refused + refusing
        return max(1, min(100, round(100 * refused / offered))) if offered else 1

    def feedback(self) -> bytes:
        """The RFC 7339 Via parameters for a client that supports ``oc`` (in a refusal)."""
        self.seq += 1
        return (f';oc={self.loss_percent(refusing=True)};oc-algo="loss";oc-validity={self.limits.oc_validity_ms}'
                f';oc-seq={self.seq}').encode()


def fast_reject(data: bytes, tag: bytes, retry_after_s: int, gate: OverloadGate | None
                ) -> tuple[bytes, bytes] | None:
    """A stateless 503 for a new INVITE, from its raw bytes: its Via lines, From, To with our
    ``tag``, Call-ID and CSeq copied; returned with the request's top Via (the caller checks
    it is not a retransmission of an INVITE in progress). None when this is not a new INVITE
    we can answer (a To tag: in-dialog; a header missing or folded): the normal path decides."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or _TO_TAG.search(data, 0, end):
        return None
    lines = data[:end].split(b"\r\n")
    vias: list[bytes] = []
    found: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or line[:1] in (b" ", b"\t"):
            return None                                  # folded or odd: the parser's business
        canonical = _HEADERS.get(name.strip().lower())
        if canonical is None:
            continue
        value = value.strip()
        if canonical == b"Via":
            vias.extend(item.strip() for item in value.split(b",") if item.strip())
        elif canonical in found:
            return None                                  # duplicated: let the parser say 400
        else:
            found[canonical] = value
    if not vias or len(found) != 4 or not found[b"CSeq"].endswith(b"INVITE"):
        return None
    top = vias[0]
    if gate is not None and re.search(rb";\s*oc(?:[;=\s]|$)", top):
        vias[0] = top + gate.feedback()
    out = [b"SIP/2.0 503 Service Unavailable"]
    out += [b"Via: " + via for via in vias]
    out += [b"From: " + found[b"From"], b"To: " + found[b"To"] + b";tag=" + tag,
            b"Call-ID: " + found[b"Call-ID"], b"CSeq: " + found[b"CSeq"],
            b"Retry-After: " + str(retry_after_s).encode(),
            b'Reason: Q.850;cause=42;text="overload: new calls refused, calls in progress served"',
            b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out), top


def is_reject_ack(data: bytes, tag: bytes) -> bool:
    """The ACK of one of our stateless 503s (its To carries our overload tag)."""
    return data[:4] == b"ACK " and tag in data
