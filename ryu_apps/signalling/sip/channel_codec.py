"""The admission channel between SIP worker processes and the admission owner (pure).

``--workers N`` runs N proxy processes and one process that owns admission (the
manager). Each worker keeps one unix stream connection to the owner and sends it the
proxy's call-control jobs (:mod:`.control_jobs`: the :class:`~ryu_apps.signalling.
call_control.CallControl` operations as values), many in flight at once; the owner
runs each with :func:`~.control_jobs.run_job` — the function the in-process proxy
uses — and answers with the job's id. See docs/performance.md ("SIP workers").

Framing: a 4-byte big-endian length, then that many bytes of compact JSON (one array).
:class:`FrameDecoder` cuts frames from a byte stream (a length over ``max_frame`` is a
:class:`FrameError`: the stream cannot be resynchronised, close it). A frame whose JSON
or shape is wrong is a :class:`CodecError`: that one message is bad, the stream is not.

Messages (first element names the kind):

* worker -> owner: ``["hello", index, pid]`` once per connection; ``["job", id, job]``.
* owner -> worker: ``["done", id, result]``; ``["restore", [dialog, ...]]`` (calls a
  worker of this index held before it died); ``["ended", call_id, serial, cause]``
  (admission ended a call this worker holds: preempted, aggregate deleted).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Mapping, Union

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Decision, Rejected, RejectReason, ServiceLevel,
                                     SignallingProtocol)
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.serialize import media_from_dict, media_to_dict

from ..call_control import Admit, AttachMedia, Modify, Release
from .control_jobs import AdmitCall, CallAdmission, ControlFailed, Job, JobResult, SaveDialog

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20                   # a dialog is a few kB; anything near this is garbage


class FrameError(ValueError):
    """The byte stream is broken (an impossible length): close the connection."""


class CodecError(ValueError):
    """One frame is not a message we know: drop it, keep the connection."""


@dataclass(frozen=True)
class Hello:
    index: int
    pid: int


@dataclass(frozen=True)
class JobRequest:
    id: int
    job: Job


@dataclass(frozen=True)
class JobReply:
    id: int
    result: JobResult


@dataclass(frozen=True)
class Restore:
    dialogs: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Ended:
    call_id: str
    serial: int | None
    cause: str


ChannelMessage = Union[Hello, JobRequest, JobReply, Restore, Ended]


# --- framing --------------------------------------------------------------------------------

def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Cuts length-prefixed frames out of a byte stream fed in arbitrary pieces."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        size = len(buffer)
        while size - start >= 4:
            (length,) = HEADER.unpack_from(buffer, start)
            if length > self.max_frame:
                raise FrameError(f"frame of {length} bytes (at most {self.max_frame})")
            end = start + 4 + length
            if end > size:
                break
            frames.append(bytes(buffer[start + 4:end]))
            start = end
        if start:
            del buffer[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)


# --- values <-> JSON-ready lists -------------------------------------------------------------

def _endpoint(value: MediaEndpoint) -> list[Any]:
    return [value.ip, value.port]


def encode_job(job: Job) -> list[Any]:
    if isinstance(job, AdmitCall):
        return ["admit-call", job.call_id, job.caller_domain, job.caller_address, job.callee_domain,
                job.callee_address, media_to_dict(job.media), int(job.level)]
    if isinstance(job, Admit):
        r = job.request
        return ["admit", r.call_id, r.caller_community, r.callee_community, media_to_dict(r.media), int(r.level),
                r.protocol.value]
    if isinstance(job, Modify):
        return ["modify", job.call_id, media_to_dict(job.media)]
    if isinstance(job, AttachMedia):
        return ["attach", job.call_id, _endpoint(job.caller), _endpoint(job.callee)]
    if isinstance(job, Release):
        return ["release", job.call_id, job.cause]
    if isinstance(job, SaveDialog):
        return ["save-dialog", job.call_id, dict(job.dialog)]
    raise TypeError(f"not a job: {job!r}")


def encode_decision(decision: Decision) -> list[Any]:
    if isinstance(decision, Admitted):
        return ["admitted", decision.call_id, decision.aggregate_id, decision.kbps, list(decision.preempted),
                decision.serial]
    return ["rejected", decision.call_id, decision.reason.value, decision.detail]


def encode_result(result: JobResult) -> Any:
    if result is None:
        return None
    if isinstance(result, CallAdmission):
        return ["call-admission", result.caller, result.callee,
                None if result.decision is None else encode_decision(result.decision)]
    if isinstance(result, ControlFailed):
        return ["failed", result.error]
    return encode_decision(result)


def encode(message: ChannelMessage) -> bytes:
    """One message as a frame, ready to write."""
    body: list[Any]
    if isinstance(message, JobRequest):
        body = ["job", message.id, encode_job(message.job)]
    elif isinstance(message, JobReply):
        body = ["done", message.id, encode_result(message.result)]
    elif isinstance(message, Hello):
        body = ["hello", message.index, message.pid]
    elif isinstance(message, Restore):
        body = ["restore", [dict(d) for d in message.dialogs]]
    elif isinstance(message, Ended):
        body = ["ended", message.call_id, message.serial, message.cause]
    else:
        raise TypeError(f"not a channel message: {message!r}")
    return frame(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# --- decoding (strict: any surprise is a CodecError) -------------------------------------------

def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise CodecError(f"expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError(f"expected an integer, got {type(value).__name__}")
    return value


def _list(value: Any, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise CodecError(f"expected a list{'' if length is None else f' of {length}'}, got {value!r:.60}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"expected an object, got {type(value).__name__}")
    return value


def _media(value: Any) -> Any:
    try:
        return media_from_dict(_dict(value))
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CodecError):
            raise
        raise CodecError(f"bad media {value!r:.80}: {error}") from None


def _endpoint_of(value: Any) -> MediaEndpoint:
    ip, port = _list(value, 2)
    return MediaEndpoint(_str(ip), _int(port))


def decode_job(value: Any) -> Job:
    item = _list(value)
    if not item:
        raise CodecError("empty job")
    kind = item[0]
    try:
        if kind == "admit-call":
            _, call_id, caller_domain, caller_address, callee_domain, callee_address, media, level = _list(item, 8)
            return AdmitCall(_str(call_id), _opt_str(caller_domain), _opt_str(caller_address),
                             _opt_str(callee_domain), _opt_str(callee_address), _media(media),
                             ServiceLevel(_int(level)))
        if kind == "admit":
            _, call_id, caller, callee, media, level, protocol = _list(item, 7)
            return Admit(AdmissionRequest(_str(call_id), _str(caller), _str(callee), _media(media),
                                          ServiceLevel(_int(level)), SignallingProtocol(_str(protocol))))
        if kind == "modify":
            _, call_id, media = _list(item, 3)
            return Modify(_str(call_id), _media(media))
        if kind == "attach":
            _, call_id, caller, callee = _list(item, 4)
            return AttachMedia(_str(call_id), _endpoint_of(caller), _endpoint_of(callee))
        if kind == "release":
            _, call_id, cause = _list(item, 3)
            return Release(_str(call_id), _str(cause))
        if kind == "save-dialog":
            _, call_id, dialog = _list(item, 3)
            return SaveDialog(_str(call_id), _dict(dialog))
    except CodecError:
        raise
    except ValueError as error:            # an enum value we do not know
        raise CodecError(f"bad {kind!r} job: {error}") from None
    raise CodecError(f"unknown job kind {kind!r:.40}")


def decode_decision(value: Any) -> Decision:
    item = _list(value)
    if item and item[0] == "admitted":
        _, call_id, aggregate_id, kbps, preempted, serial = _list(item, 6)
        return Admitted(_str(call_id), _str(aggregate_id), _int(kbps),
                        tuple(_str(p) for p in _list(preempted)), _int(serial))
    if item and item[0] == "rejected":
        _, call_id, reason, detail = _list(item, 4)
        try:
            why = RejectReason(_str(reason))
        except ValueError:
            raise CodecError(f"unknown reject reason {reason!r:.40}") from None
        return Rejected(_str(call_id), why, _str(detail))
    raise CodecError(f"not a decision: {value!r:.60}")


def decode_result(value: Any) -> JobResult:
    if value is None:
        return None
    item = _list(value)
    if item and item[0] == "call-admission":
        _, caller, callee, decision = _list(item, 4)
        return CallAdmission(_opt_str(caller), _opt_str(callee), None if decision is None else decode_decision(decision))
    if item and item[0] == "failed":
        _, error = _list(item, 2)
        return ControlFailed(_str(error))
    return decode_decision(item)


def decode(payload: bytes) -> ChannelMessage:
    """One frame's payload (without its length) as a message; :class:`CodecError` if it is not one."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CodecError(f"not JSON: {error}") from None
    item = _list(body)
    if not item:
        raise CodecError("empty message")
    kind = item[0]
    if kind == "job":
        _, ident, job = _list(item, 3)
        return JobRequest(_int(ident), decode_job(job))
    if kind == "done":
        _, ident, result = _list(item, 3)
        return JobReply(_int(ident), decode_result(result))
    if kind == "hello":
        _, index, pid = _list(item, 3)
        return Hello(_int(index), _int(pid))
    if kind == "restore":
        _, dialogs = _list(item, 2)
        return Restore(tuple(_dict(d) for d in _list(dialogs)))
    if kind == "ended":
        _, call_id, serial, cause = _list(item, 4)
        return Ended(_str(call_id), None if serial is None else _int(serial), _str(cause))
    raise CodecError(f"unknown message kind {kind!r:.40}")
