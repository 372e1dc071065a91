"""Calls the proxy ends or releases itself (issue 11) and call control as values (issue 12).

* reclaim: no ACK for the 2xx, an RFC 4028 session not refreshed, a call longer than
  ``max_call_s``: released and both parties get a BYE;
* the controller's view: a release notification with the serial we hold, or a list of
  the controller's calls without ours (REST mode's poll), ends the call with BYEs;
* BYE/CANCEL for a call we do not hold still release it and are forwarded;
* dialogs as plain data: saved with the call, rebuilt after a restart;
* deferred mode: the INVITE waits (100 sent) while admission runs off the loop.
"""

from __future__ import annotations

from typing import Any, Mapping

from ryu_apps.core.admission import (AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel,
                                     SignallingProtocol)
from ryu_apps.core.codec import MediaSpec
from ryu_apps.signalling.call_control import Admit, AttachMedia, Modify, Release
from ryu_apps.signalling.sip.call_state import CallRecord
from ryu_apps.signalling.sip.control_jobs import AdmitCall, CallAdmission, ControlFailed, SaveDialog, job_call_id, run_job
from ryu_apps.signalling.sip.message import Request, Response

from test_sip_proxy import (CALLEE, CALLER, PROXY_HOST, Harness, RecordingControl, answer, establish, invite,
                            only_request, request, sdp, statuses, to)

ROUTE = f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"


def _byes(out: list[Any]) -> dict[str, Request]:
    found = {}
    for peer, side in ((CALLER, "caller"), (CALLEE, "callee")):
        byes = {m.top_via.branch: m for m in to(out, peer) if isinstance(m, Request) and m.method == "BYE"}
        if byes:                                  # (retransmissions over UDP carry the same branch)
            (found[side],) = byes.values()
    return found


def _unacked(h: Harness, session_expires: str = "") -> None:
    out = h.send(invite(), CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    ok = answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000))
    if session_expires:
        ok = ok.replace(b"Content-Type:", f"Session-Expires: {session_expires}\r\nContent-Type:".encode())
    assert statuses(h.send(ok, CALLEE), CALLER) == [200]


def test_a_2xx_never_acked_is_released_and_both_parties_get_a_bye() -> None:
    h = Harness()
    _unacked(h)
    out = h.advance(31)
    assert not _byes(out) and "c1" in h.proxy.calls
    out = h.advance(2)                                    # 64*T1 = 32 s after the 200
    byes = _byes(out)
    assert set(byes) == {"caller", "callee"} and 'text="ack-timeout"' in (byes["callee"].header("reason") or "")
    assert h.control.calls_of("release") == [("release", "c1", "ack-timeout")] and not h.control.used
    assert h.proxy.stats.ack_timeouts == 1


def test_an_acked_call_is_not_touched_by_the_ack_timer() -> None:
    h = Harness()
    establish(h)
    assert not _byes(h.advance(100)) and "c1" in h.proxy.calls and h.control.used == {"c1": 91}


def test_a_session_that_is_not_refreshed_ends_and_a_refresh_keeps_it() -> None:
    h = Harness()
    _unacked(h, session_expires="120;refresher=uac")
    h.send(request("ACK", "c1", "z9hG4bKack", 1, route=ROUTE), CALLER)
    h.advance(60)
    refresh = invite("c1", "z9hG4bKre", to_tag="bt", cseq=2, uri="sip:bob@10.2.0.20:5060", route=ROUTE)
    _, raw = only_request(h.send(refresh, CALLER), CALLEE, "INVITE")
    ok = answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)).replace(
        b"Content-Type:", b"Session-Expires: 120;refresher=uac\r\nContent-Type:")
    h.send(ok, CALLEE)
    assert not _byes(h.advance(100)) and "c1" in h.proxy.calls      # 160 s: refreshed at 60, good until 180
    byes = _byes(h.advance(25))
    assert set(byes) == {"caller", "callee"} and h.proxy.stats.session_expired == 1
    assert 'text="session-expired"' in (byes["caller"].header("reason") or "") and not h.control.used


def test_a_session_refreshed_by_update_lives_on() -> None:
    h = Harness()
    _unacked(h, session_expires="100")
    h.send(request("ACK", "c1", "z9hG4bKack", 1, route=ROUTE), CALLER)
    h.advance(50)
    update = request("UPDATE", "c1", "z9hG4bKupd", 3, route=ROUTE)
    _, raw = only_request(h.send(update, CALLER), CALLEE, "UPDATE")
    h.send(answer(raw, 200, "OK").replace(b"Content-Length:", b"Session-Expires: 100\r\nContent-Length:"), CALLEE)
    assert not _byes(h.advance(90)) and "c1" in h.proxy.calls
    assert set(_byes(h.advance(20))) == {"caller", "callee"}


def test_a_call_without_session_timers_ends_after_max_call_s() -> None:
    h = Harness(max_call_s=600.0)
    establish(h)
    assert not _byes(h.advance(590))
    byes = _byes(h.advance(20))
    assert set(byes) == {"caller", "callee"} and 'text="max-call-duration"' in (byes["caller"].header("reason") or "")
    assert h.proxy.stats.lifetime_ended == 1 and not h.control.used


def test_a_release_notification_for_the_serial_we_hold_sends_byes_another_serial_nothing() -> None:
    h = Harness()
    establish(h)
    serial = h.proxy.calls["c1"].serial
    assert h.proxy.call_ended("c1", "operator", h.now, serial=serial + 7) == []
    byes = _byes(h.proxy.call_ended("c1", "operator", h.now, serial=serial))
    assert set(byes) == {"caller", "callee"} and 'text="operator"' in (byes["callee"].header("reason") or "")
    assert not h.control.calls_of("release")            # admission ended it: nothing to ask


def test_reconcile_with_the_controllers_calls() -> None:
    h = Harness(RecordingControl(capacity=400))
    establish(h, "c1")
    establish(h, "c2")
    serials = {cid: h.proxy.calls[cid].serial for cid in ("c1", "c2")}
    assert h.proxy.reconcile(serials, h.now, h.now) == []
    h.now += 1
    establish(h, "c3")                                  # admitted after the list was taken: untouched
    out = h.proxy.reconcile({"c1": serials["c1"], "c2": serials["c2"] + 1}, h.now - 0.5, h.now)
    assert set(_byes(out)) == {"caller", "callee"} and set(h.proxy.calls) == {"c1", "c3"}
    assert h.proxy.stats.controller_ended == 1 and not h.control.calls_of("release")


def test_a_call_ended_while_ringing_that_is_answered_anyway_gets_byes_after_its_200() -> None:
    h = Harness()
    out = h.send(invite(), CALLER)
    _, raw = only_request(out, CALLEE, "INVITE")
    h.send(answer(raw, 180, "Ringing"), CALLEE)
    serial = h.proxy.calls["c1"].serial
    only_request(h.proxy.call_ended("c1", "preempted by e1", h.now, serial=serial), CALLEE, "CANCEL")
    out = h.send(answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)   # the 200 crossed our CANCEL
    upstream = to(out, CALLER)
    assert isinstance(upstream[0], Response) and upstream[0].status == 200
    assert isinstance(upstream[1], Request) and upstream[1].method == "BYE"
    assert set(_byes(out)) == {"caller", "callee"}
    assert not h.control.calls_of("attach")             # no media for a call that holds no bandwidth


def test_bye_and_cancel_for_a_call_we_do_not_hold_release_it_and_are_forwarded() -> None:
    h = Harness()
    bye = request("BYE", "lost", "z9hG4bKb1", 7, route=ROUTE)
    forwarded, _ = only_request(h.send(bye, CALLER), CALLEE, "BYE")
    assert forwarded.call_id == "lost"
    cancel = request("CANCEL", "gone", "z9hG4bKc1", 1, uri="sip:bob@site-b.example")
    only_request(h.send(cancel, CALLER), CALLEE, "CANCEL")
    assert h.control.calls_of("release") == [("release", "lost", "bye"), ("release", "gone", "cancel")]
    assert h.proxy.stats.released_unknown == 2


class DialogControl(RecordingControl):
    def __init__(self) -> None:
        super().__init__()
        self.dialogs: dict[str, Mapping[str, Any]] = {}

    def save_dialog(self, call_id: str, dialog: Mapping[str, Any]) -> None:
        self.dialogs[call_id] = dialog


def test_dialogs_are_saved_on_2xx_and_a_restarted_proxy_ends_the_call_with_byes() -> None:
    control = DialogControl()
    h = Harness(control)
    establish(h)
    dialog = control.dialogs["c1"]
    original = h.proxy.calls["c1"]
    assert dialog["call_id"] == "c1" and dialog["serial"] == original.serial
    rebuilt = CallRecord.from_dialog(dialog, 0.0)
    assert rebuilt.to_dialog()["caller"]["cseq"] == dialog["caller"]["cseq"] + 100
    assert (rebuilt.caller.header, rebuilt.callee.contact, rebuilt.media) == \
        (original.caller.header, original.callee.contact, original.media)
    restarted = Harness(control)
    restarted.proxy.restore([dialog, {"v": 99}], 0.0)
    assert list(restarted.proxy.calls) == ["c1"] and restarted.proxy.stats.restored == 1
    byes = _byes(restarted.proxy.call_ended("c1", "operator", 0.0, serial=dialog["serial"]))
    assert set(byes) == {"caller", "callee"}
    assert byes["callee"].cseq[0] > 100 and byes["callee"].header("to") == original.callee.header


# --- deferred mode: admission off the loop ----------------------------------------------------

def _deferred(control: RecordingControl | None = None, **config: object) -> Harness:
    h = Harness(control, **config)
    h.proxy.deferred = True
    return h


def _run_jobs(h: Harness) -> list[Any]:
    out = []
    for ticket, job in h.proxy.take_jobs():
        out += h.proxy.job_done(ticket, run_job(h.control, job), h.now)
    return out


def test_deferred_admission_parks_the_invite_and_resumes_it() -> None:
    h = _deferred()
    out = h.send(invite(), CALLER)
    assert statuses(out, CALLER) == [100] and not to(out, CALLEE) and not h.control.log   # nothing asked yet
    jobs = h.proxy.take_jobs()
    assert [type(job) for _, job in jobs] == [AdmitCall] and job_call_id(jobs[0][1]) == "c1"
    (ticket, job), = jobs
    out = h.proxy.job_done(ticket, run_job(h.control, job), h.now)
    _, raw = only_request(out, CALLEE, "INVITE")
    h.send(answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)
    assert [type(job) for _, job in h.proxy.take_jobs()] == [AttachMedia]
    h.send(request("BYE", "c1", "z9hG4bKbye", 2, route=ROUTE), CALLER)
    assert [type(job) for _, job in h.proxy.take_jobs()] == [Release]


def test_deferred_cancel_while_admission_runs_answers_487_and_undoes_the_admission() -> None:
    h = _deferred()
    h.send(invite(), CALLER)
    out = h.send(request("CANCEL", "c1", "z9hG4bKa1", 1, uri="sip:bob@site-b.example"), CALLER)
    assert sorted(statuses(out, CALLER)) == [200, 487]
    out = _run_jobs(h)                                   # admission answers Admitted after all
    assert not to(out, CALLEE)
    assert [type(job) for _, job in h.proxy.take_jobs()] == [Release] and "c1" not in h.proxy.calls


def test_deferred_admission_that_never_answers_is_503_and_a_late_yes_is_undone() -> None:
    h = _deferred(control_timeout_s=2.0)
    h.send(invite(), CALLER)
    (ticket, job), = h.proxy.take_jobs()
    out = h.advance(2.5)
    assert 503 in statuses(out, CALLER) and "admission-unavailable" in (to(out, CALLER)[-1].header("reason") or "")
    assert h.proxy.job_done(ticket, run_job(h.control, job), h.now) == []
    (_, undo), = h.proxy.take_jobs()
    assert undo == Release("c1", "admission-too-late")
    assert h.proxy.stats.control_errors == 1


def test_deferred_reinvite_waits_for_modify_and_a_failed_control_is_503() -> None:
    h = _deferred()
    _, raw = only_request(h.send(invite(), CALLER) + _run_jobs(h), CALLEE, "INVITE")
    h.send(answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)
    h.send(request("ACK", "c1", "z9hG4bKack", 1, route=ROUTE), CALLER)
    _run_jobs(h)
    g729 = invite("c1", "z9hG4bKre1", to_tag="bt", cseq=2, uri="sip:bob@10.2.0.20:5060", route=ROUTE,
                  body=sdp("18"))
    out = h.send(g729, CALLER)
    assert statuses(out, CALLER) == [100] and not to(out, CALLEE)
    (_, job), = jobs = h.proxy.take_jobs()
    assert isinstance(job, Modify) and job.media.codec == "g729"
    out = h.proxy.job_done(jobs[0][0], run_job(h.control, job), h.now)
    only_request(out, CALLEE, "INVITE")
    assert h.proxy.calls["c1"].media.codec == "g729" and h.control.used["c1"] < 91
    again = invite("c1", "z9hG4bKre2", to_tag="bt", cseq=3, uri="sip:bob@10.2.0.20:5060", route=ROUTE)
    h.send(again, CALLER)
    (ticket, _), = h.proxy.take_jobs()
    out = h.proxy.job_done(ticket, ControlFailed("HTTP 502"), h.now)
    assert statuses(out, CALLER) == [503] and h.proxy.calls["c1"].media.codec == "g729"


def test_control_that_raises_is_counted_and_answered_503() -> None:
    class Broken(RecordingControl):
        def community_of(self, domain: str | None, address: str | None) -> str | None:
            raise ConnectionError("controller unreachable")
    h = Harness(Broken())
    out = h.send(invite(), CALLER)
    assert statuses(out, CALLER) == [100, 503] and h.proxy.stats.control_errors == 1
    assert "cause=41" in (to(out, CALLER)[-1].header("reason") or "") and "c1" not in h.proxy.calls


def test_run_job_covers_every_operation() -> None:
    control = DialogControl()
    pcmu = MediaSpec("pcmu")
    admission = run_job(control, AdmitCall("j1", "site-a.example", None, "site-b.example", None, pcmu,
                                           ServiceLevel.VOICE))
    assert isinstance(admission, CallAdmission) and isinstance(admission.decision, Admitted)
    assert (admission.caller, admission.callee) == ("a", "b")
    assert run_job(control, AdmitCall("j2", "site-a.example", None, "site-a.example", None, pcmu,
                                      ServiceLevel.VOICE)) == CallAdmission("a", "a", None)
    assert run_job(control, AdmitCall("j3", "elsewhere", "192.0.2.1", "site-b.example", None, pcmu,
                                      ServiceLevel.VOICE)) == CallAdmission(None, None, None)
    request = AdmissionRequest("j1", "a", "b", pcmu, ServiceLevel.VOICE, SignallingProtocol.SIP)
    assert isinstance(run_job(control, Modify("j1", MediaSpec("g729"))), Admitted)
    assert isinstance(run_job(control, Admit(request)), Admitted)
    assert run_job(control, SaveDialog("j1", {"x": 1})) is None and control.dialogs == {"j1": {"x": 1}}
    assert run_job(control, Release("j1", "done")) is None and not control.used
    refused = run_job(control, Modify("j1", pcmu))
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.UNKNOWN_CALL
