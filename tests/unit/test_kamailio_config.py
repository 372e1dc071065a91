"""The shipped Kamailio configuration answers refusals exactly as the project's SIP proxy does.

docs/examples/kamailio/kamailio-mam.cfg maps the controller's refusal reasons to SIP statuses
and Q.850 causes in its own switch; this keeps it equal to REJECTIONS in the proxy, so the
two front ends never drift apart. (tests/integration/test_kamailio_front_end.py runs it.)
"""

from __future__ import annotations

import re
from pathlib import Path

from ryu_apps.core.admission import RejectReason
from ryu_apps.rest.api import REJECT_STATUS
from ryu_apps.signalling.sip.proxy import REJECTIONS

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "examples" / "kamailio" / "kamailio-mam.cfg"


def answers() -> dict[str, list[tuple[int, int]]]:
    """reason -> the (status, cause) pairs its `case` in route[MAM_REFUSE] can answer."""
    text = CONFIG.read_text()
    route = text[text.index("route[MAM_REFUSE]"):]
    route = route[:route.index("\n}\n")]
    defaults = (int(re.search(r"\$var\(status\) = (\d+);", route).group(1)),   # type: ignore[union-attr]
                int(re.search(r"\$var\(cause\) = (\d+);", route).group(1)))    # type: ignore[union-attr]
    found: dict[str, list[tuple[int, int]]] = {"": [defaults]}      # "": the answer to any other reason
    for block in route.split('case "')[1:]:
        reason, body = block.split('"', 1)
        body = body[:body.index("break;")]
        statuses = [int(s) for s in re.findall(r"\$var\(status\) = (\d+);", body)] or [defaults[0]]
        causes = [int(c) for c in re.findall(r"\$var\(cause\) = (\d+);", body)] or [defaults[1]]
        found[reason] = list(zip(statuses, causes)) if len(statuses) == len(causes) else \
            [(statuses[0], c) for c in causes]
    return found


def test_every_refusal_reason_gets_the_proxy_status_and_cause() -> None:
    table = answers()
    for reason, (status, cause) in REJECTIONS.items():
        if reason is RejectReason.UNKNOWN_CALL:       # never the answer to an initial INVITE
            continue
        if REJECT_STATUS[reason] >= 500:              # the route reads no reason from a 5xx: its default answer
            assert table[""] == [(status, cause)], (reason, table[""])
            continue
        assert (status, cause) in table.get(reason.value, []), (reason, table.get(reason.value))


def test_the_callee_outside_every_community_is_404_cause_3_as_in_the_proxy() -> None:
    assert (404, 3) in answers()["unknown-community"]
    assert answers()["invalid-sdp"] == [(488, 88)]


def test_the_configuration_reads_its_settings_from_defines_with_defaults() -> None:
    text = CONFIG.read_text()
    for name in ("LISTEN", "MAM_HTTPCON", "NEXT_HOP", "WORKERS", "MAM_WORKERS", "DIALOG_TIMEOUT",
                 "MAM_RETRY_AFTER", "MAM_TIMEOUT_S", "LATE_OFFER_CODEC"):
        assert f"#!ifndef {name}\n#!define {name} " in text, name
