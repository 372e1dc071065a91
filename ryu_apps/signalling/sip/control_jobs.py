"""What the proxy core asks of call control, as values: run now, or later by the shell.

The core never calls :class:`~ryu_apps.signalling.call_control.CallControl` by name: it
describes a :data:`Job` and a continuation. With in-process admission
(:class:`~ryu_apps.service.MamService`) the core runs the job at once (:func:`run_job`);
a REST-mode shell on an event loop takes the jobs (``SipProxy.take_jobs()``), runs them
off the loop and hands each result back (``SipProxy.job_done()``): an INVITE waits,
parked with its 100 Trying sent, while its admission runs; releases, media and dialog
saves are fire-and-forget.

Jobs of one call must run in the order given (a release must not overtake the admission
it undoes): :attr:`call_id` names the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

from ryu_apps.core.admission import (AdmissionRequest, Decision, ServiceLevel, SignallingProtocol)
from ryu_apps.core.codec import MediaSpec

from ..call_control import Admit, AttachMedia, CallControl, Modify, Release, perform


@dataclass(frozen=True)
class AdmitCall:
    """An initial INVITE: the parties' communities, then admission when they differ."""

    call_id: str
    caller_domain: str | None
    caller_address: str | None
    callee_domain: str | None
    callee_address: str | None
    media: MediaSpec
    level: ServiceLevel


@dataclass(frozen=True)
class SaveDialog:
    """Keep the dialog with the call (a :class:`~ryu_apps.signalling.call_control.DialogStore`)."""

    call_id: str
    dialog: Mapping[str, Any]


@dataclass(frozen=True)
class CallAdmission:
    """The answer to :class:`AdmitCall`: ``decision`` is None when there was nothing to ask
    (a party outside every community, or both in one)."""

    caller: str | None
    callee: str | None
    decision: Decision | None


@dataclass(frozen=True)
class ControlFailed:
    """Call control raised, or did not answer in time."""

    error: str


Job = Union[AdmitCall, Admit, Modify, AttachMedia, Release, SaveDialog]
JobResult = Union[CallAdmission, Decision, ControlFailed, None]


def job_call_id(job: Job) -> str:
    return job.request.call_id if isinstance(job, Admit) else job.call_id


def run_job(control: CallControl, job: Job) -> JobResult:
    """Run one job against ``control`` (raises whatever ``control`` raises)."""
    if isinstance(job, AdmitCall):
        caller = control.community_of(job.caller_domain, job.caller_address)
        if caller is None:
            return CallAdmission(None, None, None)
        callee = control.community_of(job.callee_domain, job.callee_address)
        if callee is None or callee == caller:
            return CallAdmission(caller, callee, None)
        request = AdmissionRequest(job.call_id, caller, callee, job.media, job.level, SignallingProtocol.SIP)
        return CallAdmission(caller, callee, control.admit(request))
    if isinstance(job, SaveDialog):
        save = getattr(control, "save_dialog", None)
        if save is not None:
            save(job.call_id, job.dialog)
        return None
    return perform(control, job)


def stores_dialogs(control: object) -> bool:
    """Whether ``control`` keeps dialogs with its calls (in-process admission does)."""
    return callable(getattr(control, "save_dialog", None))
