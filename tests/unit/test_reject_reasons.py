"""Every admission refusal reason has an answer in every front end.

A reason added to the core (``RejectReason``) without a row in a front end's table used to
surface as a KeyError inside the H.323 gatekeeper and the gateway (``store-unavailable`` and
``contended`` from the shared ledger did): the tables must be exhaustive, and a refusal with
any reason must reach the caller as that front end's refusal, not as an exception.
"""

from __future__ import annotations

from typing import Any

import h323sim as sim
import pytest
from h323_harness import PHONE_A, SIGNAL_A, Harness

from ryu_apps.core.admission import Rejected, RejectReason
from ryu_apps.rest.api import REJECT_STATUS
from ryu_apps.signalling.h323.reasons import REJECTIONS as H323_REJECTIONS
from ryu_apps.signalling.sip.calls import REJECTIONS as SIP_REJECTIONS

EVERY_REASON = list(RejectReason)


@pytest.mark.parametrize("table", [SIP_REJECTIONS, H323_REJECTIONS, REJECT_STATUS], ids=["sip", "h323", "rest"])
def test_every_front_end_table_answers_every_reason(table: dict[RejectReason, Any]) -> None:
    assert set(table) == set(RejectReason)


def test_refusals_that_mean_try_again_are_temporary_failures_everywhere() -> None:
    for reason in (RejectReason.STORE_UNAVAILABLE, RejectReason.CONTENDED):
        assert SIP_REJECTIONS[reason] == (503, 41)
        assert H323_REJECTIONS[reason] == ("resourceUnavailable", 41)
        assert REJECT_STATUS[reason] == 503


def refusing(h: Harness, reason: RejectReason) -> None:
    """Admission in ``h`` refuses every call with ``reason``."""
    def admit(request: Any) -> Rejected:
        return Rejected(request.call_id, reason, "refused by the test")
    h.service.admit = admit  # type: ignore[method-assign]


@pytest.mark.parametrize("reason", EVERY_REASON, ids=[r.value for r in EVERY_REASON])
def test_the_gatekeeper_answers_an_arq_refused_for_any_reason_with_an_arj(reason: RejectReason) -> None:
    h = Harness()
    a, _ = h.two_phones()
    refusing(h, reason)
    answer = h.ras(PHONE_A, sim.arq(3, a, sim.new_guid(), [("dialledDigits", "2001")]))
    assert answer[0][0] == "admissionReject"
    assert answer[0][1]["rejectReason"][0] == H323_REJECTIONS[reason][0]
    assert h.calls() == 0 and not h.gk.calls


@pytest.mark.parametrize("reason", EVERY_REASON, ids=[r.value for r in EVERY_REASON])
def test_a_setup_without_arq_refused_for_any_reason_gets_its_q850_cause(reason: RejectReason) -> None:
    h = Harness()
    h.two_phones()
    refusing(h, reason)
    caller = h.connect(("10.0.1.6", 30000))
    h.stream(caller, sim.q931(sim.SETUP, 9, False, sim.setup_body(sim.new_guid(), [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1002")], [], SIGNAL_A)))
    answer = h.messages(caller)
    assert answer[-1]["type"] == sim.RELEASE_COMPLETE and answer[-1]["cause"] == H323_REJECTIONS[reason][1]
    assert not h.gk.calls
