"""The sans-IO gatekeeper against real admission (MamService) in virtual time."""

from __future__ import annotations

import h323sim as sim
import pytest
from h323_harness import GK_CALL, GK_RAS, PHONE_A, PHONE_B, SIGNAL_A, SIGNAL_B, Harness, service

from ryu_apps.core.codec import MediaSpec
from ryu_apps.signalling.call_control import Admit, perform
from ryu_apps.signalling.h323.gatekeeper import GatekeeperSettings
from ryu_apps.signalling.h323.media import spec_from_bandwidth

RC = sim.RELEASE_COMPLETE


def test_register_and_call_through_attaches_media_exactly_as_sip() -> None:
    h = Harness()
    a, b = h.two_phones()
    c = h.call(a)
    assert c["ras"][0] == "admissionConfirm"
    assert c["ras"][1]["callModel"][0] == "gatekeeperRouted"
    assert c["ras"][1]["destCallSignalAddress"][1]["port"] == GK_CALL[1]
    assert [m["type"] for m in h.messages(c["caller"])] == [sim.CALL_PROCEEDING, sim.ALERTING, sim.CONNECT]
    assert h.opened[c["callee"]] == SIGNAL_B
    (call,) = h.service.read(lambda m: m.calls())
    assert call.protocol.value == "h323" and call.kbps == 91
    assert (call.caller_media.ip, call.caller_media.port) == ("10.0.1.5", 4000)
    assert (call.callee_media.ip, call.callee_media.port) == ("10.0.2.5", 5000)


def test_bandwidth_units_cost_what_the_same_call_costs_over_sip() -> None:
    assert spec_from_bandwidth(1280) == MediaSpec("pcmu", 20)
    assert spec_from_bandwidth(160) == MediaSpec("g729", 20)
    sip = service()
    assert sip.read(lambda m: m.bandwidth_kbps(MediaSpec("pcmu", 20))) == \
        sip.read(lambda m: m.bandwidth_kbps(spec_from_bandwidth(1280)))
    odd = spec_from_bandwidth(1000)            # 50 kbit/s each way: declared + RTP/UDP/IP at 20 ms
    assert odd.explicit_kbps == 66 and odd.codec == "g729"


def test_pool_of_2000_holds_21_g711_calls_then_arj_and_returns_to_zero() -> None:
    h = Harness()
    a, _ = h.two_phones()
    calls = [h.call(a, seq=100 + i) for i in range(21)]
    assert all(c["ras"][0] == "admissionConfirm" for c in calls)
    assert h.used() == 21 * 91
    refused = h.call(a, seq=200)
    assert refused["ras"] == ("admissionReject", {"requestSeqNum": 200, "rejectReason": ("resourceUnavailable", 0)})
    for c in calls:
        h.stream(c["caller"], sim.q931(RC, 7, False, sim.release_body(c["guid"]), cause=16))
        to_callee = h.messages(c["callee"])
        assert to_callee[-1]["type"] == RC and to_callee[-1]["cause"] == 16
        assert {c["caller"], c["callee"]} <= h.closed
    assert h.used() == 0 and h.calls() == 0 and not h.gk.calls


def test_retransmitted_arq_is_answered_again_and_admitted_once() -> None:
    h = Harness()
    a, _ = h.two_phones()
    guid = sim.new_guid()
    message = sim.arq(5, a, guid, [("dialledDigits", "2001")])
    first = h.ras(PHONE_A, message)
    again = h.ras(PHONE_A, message)
    assert first == again and first[0][0] == "admissionConfirm"
    assert h.calls() == 1 and h.gk.stats.retransmissions == 1
    assert sum(1 for kind, data in h.sent_bytes if kind == "ras") == 4      # 2 RCF + ACF twice


@pytest.mark.parametrize("case, reason", [("unregistered", "callerNotRegistered"),
                                          ("nowhere", "calledPartyNotRegistered")])
def test_arj_reasons(case: str, reason: str) -> None:
    h = Harness()
    a, _ = h.two_phones()
    endpoint = "ep-nobody" if case == "unregistered" else a
    number = "2001" if case == "unregistered" else "9999"
    answer = h.ras(PHONE_A, sim.arq(3, endpoint, sim.new_guid(), [("dialledDigits", number)]))
    assert answer[0][0] == "admissionReject" and answer[0][1]["rejectReason"][0] == reason
    assert h.calls() == 0


def test_destination_by_domain_and_unregistered_callee_number_prefix() -> None:
    h = Harness()
    a = h.register(PHONE_A, SIGNAL_A, "1001")
    by_number = h.ras(PHONE_A, sim.arq(3, a, sim.new_guid(), [("dialledDigits", "2999")]))
    by_domain = h.ras(PHONE_A, sim.arq(4, a, sim.new_guid(), [("h323-ID", "bob@b.example")]))
    assert by_number[0][0] == by_domain[0][0] == "admissionConfirm"
    assert {c.callee_community for c in h.service.read(lambda m: m.calls())} == {"site-b"}


def test_codec_outside_policy_releases_with_cause_65_and_nothing_stays() -> None:
    h = Harness()
    a, _ = h.two_phones()
    c = h.call(a, codec="g7231", frames=1)
    to_caller = h.messages(c["caller"])
    assert to_caller[-1]["type"] == RC and to_caller[-1]["cause"] == 65
    assert c["callee"] is None and h.used() == 0 and h.calls() == 0


def test_faststart_codec_refines_the_allocation() -> None:
    h = Harness()
    a, _ = h.two_phones()
    h.call(a, codec="g729", frames=2)
    (call,) = h.service.read(lambda m: m.calls())
    assert call.media == MediaSpec("g729", 20) and call.kbps < 91


def test_answer_with_another_codec_modifies_again() -> None:
    h = Harness()
    a, _ = h.two_phones()
    h.call(a, codec="g711Ulaw64k", frames=20, answer_codec="g729")
    (call,) = h.service.read(lambda m: m.calls())
    assert call.media.codec == "g729"


def test_full_pool_refuses_setup_without_arq_with_cause_34() -> None:
    h = Harness(service=service(size_kbps=100))
    a, _ = h.two_phones()
    assert h.call(a)["ras"][0] == "admissionConfirm"
    caller = h.connect(("10.0.1.6", 30000))
    guid = sim.new_guid()
    h.stream(caller, sim.q931(sim.SETUP, 9, False, sim.setup_body(guid, [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1002")], [], SIGNAL_A)))
    answer = h.messages(caller)
    assert [m["type"] for m in answer] == [sim.CALL_PROCEEDING, RC] and answer[-1]["cause"] == 34
    assert h.calls() == 1


def test_setup_without_arq_is_admitted_at_setup() -> None:
    h = Harness()
    h.two_phones()
    caller = h.connect(("10.0.1.6", 30000))
    guid = sim.new_guid()
    h.stream(caller, sim.q931(sim.SETUP, 9, False, sim.setup_body(guid, [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1002")], [], SIGNAL_A)))
    assert h.calls() == 1 and SIGNAL_B in h.opened.values()


@pytest.mark.parametrize("path", ["callee-release", "drq", "tcp-close", "tcp-reset", "media-idle", "rest-release",
                                  "aggregate-deleted", "data-plane-idle", "preempted"])
def test_every_release_path_returns_the_pool_to_zero(path: str) -> None:
    h = Harness()
    a, b = h.two_phones()
    c = h.call(a)
    call_id = "h323-" + c["guid"].hex()
    assert h.used() == 91
    if path == "callee-release":
        h.stream(c["callee"], sim.q931(RC, c["crv"], True, sim.release_body(c["guid"]), cause=17))
        assert h.messages(c["caller"])[-1]["cause"] == 17
    elif path == "drq":
        assert h.ras(PHONE_A, sim.drq(50, a, c["guid"]))[0][0] == "disengageConfirm"
        assert h.messages(c["caller"])[-1]["type"] == RC and h.messages(c["callee"])[-1]["type"] == RC
    elif path in ("tcp-close", "tcp-reset"):
        h.take(h.gk.stream_closed(c["caller"], h.now, reset=path == "tcp-reset"))
        assert h.messages(c["callee"])[-1]["cause"] == 41
    elif path == "media-idle":
        h.take(h.gk.media_idle(call_id, h.now))
        assert h.messages(c["caller"])[-1]["cause"] == 102
        assert {m[0] for d, m in h.datagrams if d in (PHONE_A, PHONE_B)} >= {"disengageRequest"}
    else:
        released = []
        h.service.subscribe(lambda changes: released.extend(changes.released))
        if path == "rest-release":
            h.service.release(call_id, "released")
        elif path == "data-plane-idle":           # the fabric's flow idle timeout releases it in the controller
            h.service.release(call_id, "media-idle")
        elif path == "preempted":
            h.service.release(call_id, "preempted by emergency call")
        else:
            h.service.delete_aggregate("a-b", force=True)
        for r in released:
            h.take(h.gk.call_ended(r.call_id, r.serial, r.cause, h.now))
        expected = {"rest-release": 16, "data-plane-idle": 102, "preempted": 8, "aggregate-deleted": 47}[path]
        assert h.messages(c["caller"])[-1]["cause"] == expected
        assert h.messages(c["callee"])[-1]["cause"] == expected
    if path != "aggregate-deleted":
        assert h.used() == 0
    assert h.calls() == 0 and not h.gk.calls


@pytest.mark.parametrize("silent_after, cause", [("setup", 102), ("proceeding", 102), ("alerting", 19)])
def test_q931_timers_release(silent_after: str, cause: int) -> None:
    h = Harness(settings=GatekeeperSettings(ras=GK_RAS, call_signal=GK_CALL, irq_interval_s=0))
    a, _ = h.two_phones()
    guid = sim.new_guid()
    h.ras(PHONE_A, sim.arq(3, a, guid, [("dialledDigits", "2001")]))
    caller = h.connect(SIGNAL_A)
    h.stream(caller, sim.q931(sim.SETUP, 7, False, sim.setup_body(guid, [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1001")], [], SIGNAL_A)))
    callee = max(h.opened)
    crv = h.messages(callee)[0]["crv"]
    if silent_after in ("proceeding", "alerting"):
        h.stream(callee, sim.q931(sim.CALL_PROCEEDING, crv, True, sim.answer_body("callProceeding", guid)))
        h.advance(5)                         # T303 (4 s) no longer runs
        assert h.calls() == 1
    if silent_after == "alerting":
        h.stream(callee, sim.q931(sim.ALERTING, crv, True, sim.answer_body("alerting", guid)))
        h.advance(60)                        # T310 (30 s) no longer runs
        assert h.calls() == 1
    h.advance(200)
    assert h.calls() == 0 and h.messages(caller)[-1]["cause"] == cause


def test_acf_without_setup_is_returned() -> None:
    h = Harness()
    a, _ = h.two_phones()
    h.ras(PHONE_A, sim.arq(3, a, sim.new_guid(), [("dialledDigits", "2001")]))
    assert h.calls() == 1
    h.advance(31)
    assert h.calls() == 0


def test_irq_polling_releases_calls_an_endpoint_no_longer_reports() -> None:
    h = Harness()
    a, b = h.two_phones()
    c = h.call(a)
    h.advance(31)
    irqs = [d for d, m in h.datagrams if m[0] == "infoRequest"]
    assert set(irqs) == {PHONE_A, PHONE_B}
    h.ras(PHONE_B, sim.irr(9, b, PHONE_B, SIGNAL_B, [c["guid"]]))
    assert h.calls() == 1
    h.ras(PHONE_A, sim.irr(9, a, PHONE_A, SIGNAL_A, []))
    assert h.calls() == 0 and h.messages(c["callee"])[-1]["cause"] == 102


def test_endpoint_that_answers_no_irq_loses_its_calls() -> None:
    h = Harness()
    a, _ = h.two_phones()
    h.call(a)
    h.advance(30 * 3 + 1)
    assert h.calls() == 0


def test_keepalive_and_ttl_expiry_unregister_with_urq() -> None:
    h = Harness()
    a = h.register(PHONE_A, SIGNAL_A, "1001")
    h.advance(250)
    keep = h.ras(PHONE_A, sim.rrq(2, PHONE_A, SIGNAL_A, [], keep_alive_id=a))
    assert keep[0][0] == "registrationConfirm" and keep[0][1]["endpointIdentifier"] == a
    h.advance(400)
    assert a in h.gk.registry.by_id
    h.advance(100)
    assert a not in h.gk.registry.by_id
    assert any(m[0] == "unregistrationRequest" and m[1]["reason"][0] == "ttlExpired" for d, m in h.datagrams)
    stale = h.ras(PHONE_A, sim.rrq(3, PHONE_A, SIGNAL_A, [], keep_alive_id=a))
    assert stale[0][1]["rejectReason"][0] == "fullRegistrationRequired"


def test_duplicate_alias_urq_lrq_grq() -> None:
    h = Harness()
    a = h.register(PHONE_A, SIGNAL_A, "1001")
    other = h.ras(("10.0.1.9", 1719), sim.rrq(1, ("10.0.1.9", 1719), SIGNAL_A, [("dialledDigits", "1001")]))
    assert other[0][1]["rejectReason"][0] == "duplicateAlias"
    found = h.ras(PHONE_B, sim.lrq(4, [("dialledDigits", "1001")], PHONE_B))
    missing = h.ras(PHONE_B, sim.lrq(5, [("dialledDigits", "7777")], PHONE_B))
    assert found[0][0] == "locationConfirm" and missing[0][0] == "locationReject"
    assert h.ras(PHONE_A, sim.urq(6, a, SIGNAL_A))[0][0] == "unregistrationConfirm"
    assert h.ras(PHONE_A, sim.urq(7, a, SIGNAL_A))[0][0] == "unregistrationReject"
    assert h.ras(PHONE_B, sim.grq(8, PHONE_B))[0][0] == "gatekeeperConfirm"
    assert h.ras(PHONE_B, sim.grq(9, PHONE_B, "other-gk"))[0][0] == "gatekeeperReject"


def test_brq_modifies_and_a_refused_brq_keeps_the_allocation() -> None:
    h = Harness(service=service(size_kbps=200))
    a, _ = h.two_phones()
    c = h.call(a)
    assert h.ras(PHONE_A, sim.brq(40, a, c["guid"], 160))[0] == ("bandwidthConfirm", {"requestSeqNum": 40,
                                                                                       "bandWidth": 160})
    small = h.used()
    refused = h.ras(PHONE_A, sim.brq(41, a, c["guid"], 12800))
    assert refused[0][0] == "bandwidthReject" and refused[0][1]["allowedBandWidth"] == 160
    assert h.used() == small < 91


def test_deferred_admission_answers_rip_then_the_decision() -> None:
    h = Harness(defer=True)
    a, _ = h.two_phones()
    message = sim.arq(3, a, sim.new_guid(), [("dialledDigits", "2001")])
    assert h.ras(PHONE_A, message) == []
    (pending,) = h.performs
    assert isinstance(pending.op, Admit)
    h.advance(0.6)
    assert [m[0] for d, m in h.datagrams if d == PHONE_A][-1] == "requestInProgress"
    assert h.ras(PHONE_A, message)[0][0] == "requestInProgress"         # retransmitted: still deciding
    h.take(h.gk.performed(pending.ticket, perform(h.service, pending.op), h.now))
    assert [m[0] for d, m in h.datagrams if d == PHONE_A][-1] == "admissionConfirm"
    assert h.ras(PHONE_A, message)[0][0] == "admissionConfirm" and h.calls() == 1


def test_controller_unreachable_gives_arj_not_a_crash() -> None:
    class Down:
        def __getattr__(self, name: str):
            raise ConnectionError("controller down")
    h = Harness()
    a, _ = h.two_phones()
    h.gk.control = Down()  # type: ignore[assignment]
    answer = h.ras(PHONE_A, sim.arq(3, a, sim.new_guid(), [("dialledDigits", "2001")]))
    assert answer[0][1]["rejectReason"][0] == "resourceUnavailable"
    assert h.gk.stats.dropped["admission-error"] == 1


def test_a_burst_of_expiring_deadlines_is_worked_off_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from ryu_apps.signalling.h323 import gatekeeper
    TIMER_SLICE = 50
    monkeypatch.setattr(gatekeeper, "TIMER_SLICE", TIMER_SLICE)
    h = Harness(service=service(size_kbps=5000))
    a, _ = h.two_phones()
    for i in range(TIMER_SLICE + 20):
        h.ras(PHONE_A, sim.arq(i + 1, a, sim.new_guid(), [("dialledDigits", "2001")], bandwidth=2))
    admitted = len(h.gk.calls)
    assert admitted > TIMER_SLICE
    h.now = 31.0
    h.take(h.gk.handle_timer(h.now))
    assert admitted - TIMER_SLICE <= len(h.gk.calls) < admitted       # (the IRQ poll is due too)
    assert h.gk.next_timer() is not None
    assert h.gk.next_timer() <= h.now                    # the rest is due at once, after the shell's I/O
    h.take(h.gk.handle_timer(h.now))
    assert not h.gk.calls and h.calls() == 0


def test_tunnelled_h245_without_faststart_gives_codec_and_media() -> None:
    h = Harness()
    a, _ = h.two_phones()
    guid = sim.new_guid()
    h.ras(PHONE_A, sim.arq(3, a, guid, [("dialledDigits", "2001")]))
    caller = h.connect(SIGNAL_A)
    tunnel = {"h245Tunnelling": True}
    h.stream(caller, sim.q931(sim.SETUP, 7, False, sim.setup_body(guid, [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1001")], [], SIGNAL_A),
                              extra_pdu=tunnel))
    callee = max(h.opened)
    crv = h.messages(callee)[0]["crv"]
    h.stream(callee, sim.q931(sim.CONNECT, crv, True, sim.answer_body("connect", guid), extra_pdu=tunnel))
    facility = lambda control: ("facility", {"protocolIdentifier": sim.PID, "reason": ("transportedInformation", 0),  # noqa: E731
                                             "callIdentifier": {"guid": guid}})
    # caller opens G.729 toward the callee; the callee acks with where it receives; and back
    h.stream(caller, sim.q931(sim.FACILITY, 7, False, facility(None), extra_pdu={
        **tunnel, "h245Control": [sim.h245_olc(1, "g729AnnexA", 2, ("10.0.1.5", 4001))]}))
    h.stream(callee, sim.q931(sim.FACILITY, crv, True, facility(None), extra_pdu={
        **tunnel, "h245Control": [sim.h245_olc_ack(1, ("10.0.2.5", 5000), ("10.0.2.5", 5001))]}))
    assert [m["type"] for m in h.messages(callee)] == [sim.FACILITY]            # relayed unchanged
    h.stream(caller, sim.q931(sim.FACILITY, 7, False, facility(None), extra_pdu={
        **tunnel, "h245Control": [sim.h245_olc_ack(2, ("10.0.1.5", 4000), ("10.0.1.5", 4001))]}))
    relayed = h.messages(callee)[-1]["uu"]["h323-uu-pdu"]
    assert relayed["h245Tunnelling"] is True and len(relayed["h245Control"]) == 1
    (call,) = h.service.read(lambda m: m.calls())
    assert call.media.codec == "g729"
    assert (call.caller_media.ip, call.caller_media.port) == ("10.0.1.5", 4000)
    assert (call.callee_media.ip, call.callee_media.port) == ("10.0.2.5", 5000)


def test_separate_h245_address_passes_unchanged() -> None:
    h = Harness()
    a, _ = h.two_phones()
    guid = sim.new_guid()
    h.ras(PHONE_A, sim.arq(3, a, guid, [("dialledDigits", "2001")]))
    caller = h.connect(SIGNAL_A)
    name, body = sim.setup_body(guid, [("dialledDigits", "2001")], [("dialledDigits", "1001")], [], SIGNAL_A)
    body["h245Address"] = sim.taddr("10.0.1.5", 1800)
    h.stream(caller, sim.q931(sim.SETUP, 7, False, (name, body)))
    callee = max(h.opened)
    (setup,) = h.messages(callee)
    assert sim.body_of(setup)[1]["h245Address"] == sim.taddr("10.0.1.5", 1800)
    answer = sim.answer_body("connect", guid)
    answer[1]["h245Address"] = sim.taddr("10.0.2.5", 1801)
    h.stream(callee, sim.q931(sim.CONNECT, setup["crv"], True, answer))
    connect = h.messages(caller)[-1]
    assert connect["type"] == sim.CONNECT and sim.body_of(connect)[1]["h245Address"] == sim.taddr("10.0.2.5", 1801)
    assert h.calls() == 1


def test_deferred_setup_admission_whose_caller_left_is_released() -> None:
    h = Harness(defer=True)
    h.two_phones()
    caller = h.connect(("10.0.1.6", 30000))
    h.stream(caller, sim.q931(sim.SETUP, 9, False, sim.setup_body(sim.new_guid(), [("dialledDigits", "2001")],
                                                                   [("dialledDigits", "1002")], [], SIGNAL_A)))
    (admit,) = h.performs
    h.take(h.gk.stream_closed(caller, h.now, reset=True))       # gone before the controller answers
    h.take(h.gk.performed(admit.ticket, perform(h.service, admit.op), h.now))
    assert h.calls() == 1 and not h.gk.calls                   # admitted by the controller, not kept here ...
    (release,) = h.performs[1:]
    h.take(h.gk.performed(release.ticket, perform(h.service, release.op), h.now))
    assert h.calls() == 0 and SIGNAL_B not in h.opened.values()  # ... released at once, nothing routed


def test_an_endpoint_whose_calls_ended_is_not_counted_as_silent_later() -> None:
    h = Harness()
    a, _ = h.two_phones()
    first = h.call(a)
    h.advance(31)                                                # IRQ sent; nobody answers
    h.stream(first["caller"], sim.q931(RC, 7, False, sim.release_body(first["guid"]), cause=16))
    h.advance(30)                                                # no calls: the pending IRQ is forgotten
    h.call(a, seq=50)
    h.advance(60)                                                # two polls for the new call: one miss so far
    assert h.calls() == 1


def test_reconcile_clears_calls_the_controller_no_longer_holds() -> None:
    h = Harness()
    a, _ = h.two_phones()
    old = h.call(a)
    asked_at = h.now + 1
    h.now += 2
    new = h.call(a, seq=60)                                     # admitted after the list was asked for
    h.service.release("h323-" + old["guid"].hex(), "released")  # the controller ended it, unheard
    h.take(h.gk.reconcile(set(), asked_at, h.now))             # the new call is too young to judge
    assert h.messages(old["caller"])[-1]["type"] == RC and h.messages(old["callee"])[-1]["cause"] == 16
    assert set(h.gk.calls) == {"h323-" + new["guid"].hex()} and h.calls() == 1
