"""What the signalling front ends need from admission: the :class:`CallControl` protocol.

The SIP proxy and the H.323 gatekeeper decide nothing about bandwidth; they describe a
call and ask. :class:`ryu_apps.service.MamService` satisfies this protocol in the
controller process; :class:`ryu_apps.signalling.sip.rest_client.RestCallControl`
satisfies it from a standalone front end by asking the controller's REST API.

Time is the controller's business: no method takes the caller's clock (a front end's
loop time is monotonic and its own; admission times are the controller's).

A sans-IO front end that must not block on admission (a REST-mode proxy on an event
loop) can describe what it wants as a :data:`ControlOp` value and let its shell run it,
now (:func:`perform`) or later; the answer goes back to the front end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Union

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Decision, Rejected, RejectReason,
                                     ServiceLevel, SignallingProtocol)
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

__all__ = ["AdmissionRequest", "Admit", "Admitted", "AttachMedia", "CallControl", "ControlOp", "Decision",
           "DialogStore",
           "MediaEndpoint", "MediaSpec", "Modify", "Rejected", "RejectReason", "Release", "ServiceLevel",
           "SignallingProtocol", "perform"]


class CallControl(Protocol):
    """Admission as a signalling front end sees it."""

    def admit(self, request: AdmissionRequest) -> Decision:
        """Admit a new call (idempotent per call id) or say why not."""

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> object:
        """Both media addresses are known: install the call's flows."""

    def modify(self, call_id: str, media: MediaSpec) -> Decision:
        """The call's media changed (re-INVITE, BRQ): re-admit; a refusal keeps the old allocation."""

    def release(self, call_id: str, cause: str) -> object:
        """The call ended: give its bandwidth back. Unknown call ids are ignored."""

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        """The community a party belongs to, by domain first, then by IP address."""


class DialogStore(Protocol):
    """Where a front end in the controller keeps what it needs to end a call itself after a
    restart (SIP: tags, contacts, route sets, CSeqs), stored with the call in the ledger
    and given back in ``Call.dialog`` (``MamService.read(lambda m: m.calls())``).
    :class:`ryu_apps.service.MamService` is one; a front end in its own process has none."""

    def save_dialog(self, call_id: str, dialog: Mapping[str, Any]) -> object:
        """Keep ``dialog`` (plain JSON-ready data) with the live call ``call_id``."""


@dataclass(frozen=True)
class Admit:
    request: AdmissionRequest


@dataclass(frozen=True)
class Modify:
    call_id: str
    media: MediaSpec


@dataclass(frozen=True)
class AttachMedia:
    call_id: str
    caller: MediaEndpoint
    callee: MediaEndpoint


@dataclass(frozen=True)
class Release:
    call_id: str
    cause: str


ControlOp = Union[Admit, Modify, AttachMedia, Release]


def perform(control: CallControl, op: ControlOp) -> Decision | None:
    """Run one operation against ``control``: a decision for Admit/Modify, else None."""
    if isinstance(op, Admit):
        return control.admit(op.request)
    if isinstance(op, Modify):
        return control.modify(op.call_id, op.media)
    if isinstance(op, AttachMedia):
        control.attach_media(op.call_id, op.caller, op.callee)
        return None
    control.release(op.call_id, op.cause)
    return None
