"""What the signalling shells need from admission: the :class:`CallControl` protocol.

The SIP proxy (and later the H.323 gatekeeper) decide nothing about bandwidth; they
describe a call and ask. :class:`ryu_apps.service.MamService` satisfies this protocol
in the controller process; :class:`ryu_apps.signalling.sip.rest_client.RestCallControl`
satisfies it from a standalone proxy by asking the controller's REST API.
"""

from __future__ import annotations

from typing import Protocol

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Decision, Rejected, RejectReason,
                                     ServiceLevel)
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

__all__ = ["AdmissionRequest", "Admitted", "CallControl", "Decision", "MediaEndpoint", "MediaSpec",
           "Rejected", "RejectReason", "ServiceLevel"]


class CallControl(Protocol):
    """Admission as a signalling shell sees it. Every method takes ``now`` (seconds, from
    the shell's clock). Return values other than decisions are ignored by the proxy, so
    implementations may return what they like (the service returns the Call)."""

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        """Admit a new call (idempotent per call id) or say why not."""

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint, now: float) -> object:
        """Both media addresses are known: install the call's flows."""

    def modify(self, call_id: str, media: MediaSpec, now: float) -> Decision:
        """The call's media changed (re-INVITE): re-admit; a refusal keeps the old allocation."""

    def release(self, call_id: str, now: float, cause: str) -> object:
        """The call ended: give its bandwidth back. Unknown call ids are ignored."""

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        """The community a party belongs to, by SIP domain first, then by IP address."""
