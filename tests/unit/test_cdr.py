"""Call detail records: made on every way a call ends or is refused, stored, kept for
the retention period, exported, and added up into the usage report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from webob import Request

from ryu_apps.config import ApiConfig, ConfigError, build_manager, parse_config
from ryu_apps.core.activity import CallReleased
from ryu_apps.core.admission import AdmissionRequest, Admitted, RejectReason, ServiceLevel
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.cdr import (CDR, MemoryCdrStore, Refusal, from_dict, to_dict, usage, usage_report)
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.changes import ReleasedCall
from ryu_apps.core.replica import RELEASED_ELSEWHERE
from ryu_apps.records import CdrRecorder
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService
from ryu_apps.store import SqliteCdrStore

from test_rest_api import PCMU_KBPS, config

A, B = "site-a", "site-b"
DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rig(pool_kbps: int = 1000, preemption: bool = False) -> tuple[MamService, CdrRecorder, Clock]:
    document = config(pool_kbps)
    document["aggregates"][0]["preemption"] = preemption
    clock = Clock()
    service = MamService(build_manager(parse_config(document)), clock=clock)
    recorder = CdrRecorder(MemoryCdrStore(), clock=clock, batch=1000)
    service.watch(recorder)
    return service, recorder, clock


def request(call_id: str, level: ServiceLevel = ServiceLevel.VOICE, codec: str = "pcmu") -> AdmissionRequest:
    return AdmissionRequest(call_id, A, B, MediaSpec(codec), level)


MEDIA = (MediaEndpoint("10.1.0.5", 4000), MediaEndpoint("10.2.0.5", 5000))


def only_call(recorder: CdrRecorder) -> CDR:
    records = recorder.query()
    assert len(records) == 1 and isinstance(records[0], CDR), records
    return records[0]


# --- one record per way a call ends ------------------------------------------------------

def test_a_released_call_leaves_a_record_with_every_field() -> None:
    service, recorder, clock = rig()
    t0 = clock.now
    assert isinstance(service.admit(request("c1")), Admitted)
    clock.now += 3
    service.attach_media("c1", *MEDIA)              # answered: both media addresses known
    clock.now += 60
    service.release("c1", "bye")                    # what a SIP BYE does
    record = only_call(recorder)
    assert (record.call_id, record.protocol, record.caller_community, record.callee_community,
            record.aggregate_id, record.level, record.codec, record.kbps) == \
        ("c1", "rest", A, B, "a-b", "voice", "pcmu", PCMU_KBPS)
    assert (record.admitted_at, record.answered_at, record.released_at) == (t0, t0 + 3, t0 + 63)
    assert record.duration_s == 60 and record.held_s == 63
    assert record.cause == "bye" and record.preempted_by is None


def test_a_call_never_answered_has_no_answer_time_and_zero_duration() -> None:
    service, recorder, clock = rig()
    service.admit(request("c1"))
    clock.now += 10
    service.release("c1", "cancelled")
    record = only_call(recorder)
    assert record.answered_at is None and record.duration_s == 0 and record.held_s == 10


def test_admitted_with_media_in_one_step_is_answered_at_admission() -> None:
    service, recorder, clock = rig()
    service.admit(request("c1"), MEDIA)
    service.admit(request("c1"), MEDIA)             # a retransmission: no second answer, no second record
    clock.now += 5
    service.release("c1")
    assert only_call(recorder).answered_at == clock.now - 5


def test_media_idle_and_flow_failures_and_timeouts_are_causes() -> None:
    service, recorder, clock = rig()
    serial = service.admit(request("idle"), MEDIA).serial             # type: ignore[union-attr]
    service.release_by_serial(serial, "media-idle")                   # what the data plane's idle detector does
    failed = service.admit(request("fail"), MEDIA).serial             # type: ignore[union-attr]
    service.flows_failed(failed, "flow-install-failed: s2 refused")
    service.admit(request("mute"))                                    # never gets media
    clock.now += 10_000
    service.handle_timer()
    causes = {r.call_id: r.cause for r in recorder.query() if isinstance(r, CDR)}
    assert causes["idle"] == "media-idle" and causes["fail"].startswith("flow-install-failed")
    assert causes["mute"].startswith("no-media")


def test_a_preempted_call_names_the_call_that_took_its_place() -> None:
    service, recorder, clock = rig(pool_kbps=PCMU_KBPS, preemption=True)
    service.admit(request("fax", ServiceLevel.VOICE_BAND_DATA))
    clock.now += 1
    decision = service.admit(request("911", ServiceLevel.EMERGENCY))
    assert isinstance(decision, Admitted) and decision.preempted == ("fax",)
    record = only_call(recorder)
    assert record.call_id == "fax" and record.preempted_by == "911" and record.cause.startswith("preempted")


def test_deleting_an_aggregate_with_force_records_its_calls() -> None:
    service, recorder, _ = rig()
    service.admit(request("c1"))
    service.admit(request("c2"))
    service.delete_aggregate("a-b", force=True)
    assert sorted((r.call_id, r.cause) for r in recorder.query()) == [("c1", "aggregate-deleted"),
                                                                       ("c2", "aggregate-deleted")]


def test_a_call_released_by_another_controller_is_recorded_there_not_here() -> None:
    service, recorder, _ = rig()
    service.admit(request("c1"))
    call = service.read(lambda m: m.call("c1"))
    recorder(CallReleased(5.0, ReleasedCall("c1", "a-b", 91, RELEASED_ELSEWHERE, 1, call)))
    assert recorder.query() == []


def test_every_refusal_leaves_a_record_with_reason_detail_and_pool() -> None:
    service, recorder, clock = rig(pool_kbps=PCMU_KBPS)
    service.admit(request("c1"))
    service.admit(request("c2"))
    service.admit(request("c3", codec="opus-unknown"))
    service.admit(request("c2"))                  # asked again: refused again, recorded again
    refusals = [r for r in recorder.query() if isinstance(r, Refusal)]
    assert [(r.call_id, r.reason) for r in refusals] == [("c2", "pool-full"), ("c3", "codec-not-allowed"),
                                                         ("c2", "pool-full")]
    full = refusals[0]
    assert full.aggregate_id == "a-b" and full.kbps == PCMU_KBPS and "in use" in full.detail
    assert full.refused_at == clock.now and refusals[1].kbps is None


def test_records_round_trip_through_their_dict_form() -> None:
    cdr = CDR("c", "sip", A, B, "a-b", "voice", "pcmu", 91, 1.0, None, 5.0, "bye", "x")
    refusal = Refusal("r", "h323", A, B, None, "voice", "g729", 35, 2.0, "pool-full", "full")
    assert from_dict(to_dict(cdr)) == cdr and from_dict(to_dict(refusal)) == refusal
    assert to_dict(cdr)["kind"] == "call" and to_dict(refusal)["kind"] == "refusal"


# --- storage and retention ---------------------------------------------------------------

def cdr(call_id: str, admitted: float, answered: float | None, released: float, kbps: int = 80,
        communities: tuple[str, str] = (A, B), aggregate: str = "ab") -> CDR:
    return CDR(call_id, "sip", communities[0], communities[1], aggregate, "voice", "pcmu", kbps, admitted, answered,
               released, "bye")


def refusal(call_id: str, at: float, reason: str = "pool-full", aggregate: str | None = "ab") -> Refusal:
    return Refusal(call_id, "sip", A, B, aggregate, "voice", "pcmu", 80, at, reason, "full")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_stores_select_by_time_community_and_overlap_and_purge(kind: str, tmp_path: Path) -> None:
    store = MemoryCdrStore() if kind == "memory" else SqliteCdrStore(str(tmp_path / "ledger.sqlite"))
    records = [cdr("early", 0, 1, 50), cdr("long", 10, 20, 500), refusal("r", 200),
               cdr("other", 300, None, 400, communities=(A, "site-c"), aggregate="ac")]
    store.add(records)
    assert [r.call_id for r in store.query()] == ["early", "r", "other", "long"]       # ordered by when made
    assert [r.call_id for r in store.query(100, 450)] == ["r", "other"]               # made in the period
    assert [r.call_id for r in store.query(100, 250, overlapping=True)] == ["r", "long"]  # held in it
    assert [r.call_id for r in store.query(community=B)] == ["early", "r", "long"]
    assert [r.call_id for r in store.query(limit=2)] == ["early", "r"]
    assert store.query()[0] == records[0]
    assert store.purge(250) == 2 and [r.call_id for r in store.query()] == ["other", "long"]


def test_sqlite_records_survive_reopening_beside_the_ledger(tmp_path: Path) -> None:
    from ryu_apps.store import SqliteLedger
    path = str(tmp_path / "ledger.sqlite")
    ledger = SqliteLedger(path)
    store = SqliteCdrStore(path)
    store.add([cdr("c", 0, 1, 2)])
    store.close()
    assert [r.call_id for r in SqliteCdrStore(path).query()] == ["c"]
    assert ledger.load().calls == ()


def test_the_recorder_batches_writes_and_a_query_sees_the_buffer() -> None:
    class Counting(MemoryCdrStore):
        adds = 0

        def add(self, records: Any) -> None:
            self.adds += 1
            super().add(records)
    store = Counting()
    recorder = CdrRecorder(store, batch=3, clock=lambda: 1000.0)
    service = MamService(build_manager(parse_config(config(5000))), clock=lambda: 1000.0)
    service.watch(recorder)
    for i in range(7):
        service.admit(request(f"c{i}"))
        service.release(f"c{i}")
    assert store.adds == 2 and len(store.records) == 6            # two full batches written
    assert len(recorder.query()) == 7 and store.adds == 3         # the query wrote the rest first


def test_records_the_store_refuses_wait_for_the_next_batch() -> None:
    class Failing(MemoryCdrStore):
        broken = True

        def add(self, records: Any) -> None:
            if self.broken:
                raise OSError("disk full")
            super().add(records)
    store = Failing()
    recorder = CdrRecorder(store, batch=1, max_buffer=2, clock=lambda: 1.0)
    for i in range(3):
        recorder(CallReleased(1.0, ReleasedCall(f"c{i}", "ab", 80, "bye", i, _call(f"c{i}"))))
    assert recorder.flush() == 0 and recorder.dropped == 1          # the oldest went; nothing raised
    store.broken = False
    assert recorder.flush() == 2 and [r.call_id for r in store.records] == ["c1", "c2"]


def _call(call_id: str) -> Any:
    service = MamService(build_manager(parse_config(config())), clock=lambda: 0.0)
    service.admit(request(call_id))
    return service.read(lambda m: m.call(call_id))


def test_retention_purges_records_older_than_the_configured_days() -> None:
    clock = Clock(100 * DAY)
    store = MemoryCdrStore()
    store.add([cdr("old", 0, None, 100 * DAY - 31 * DAY), cdr("recent", 0, None, 100 * DAY - 29 * DAY)])
    recorder = CdrRecorder(store, retention_days=30, clock=clock, purge_every_s=3600)
    recorder.flush()
    assert [r.call_id for r in store.records] == ["recent"]
    store.add([cdr("aged", 0, None, 0)])
    recorder.flush()                                 # not an hour since the last purge
    assert len(store.records) == 2
    clock.now += 3600
    recorder.flush()
    assert [r.call_id for r in store.records] == ["recent"]


def test_records_in_memory_keep_the_newest_up_to_their_limit(caplog: pytest.LogCaptureFixture) -> None:
    """A controller with no store runs for weeks: its records must not grow without bound."""
    store = MemoryCdrStore(limit=3)
    recorder = CdrRecorder(store, clock=lambda: 0.0, batch=1000)
    store.add([cdr("c0", 0, None, 10), cdr("c1", 0, None, 11)])
    with caplog.at_level("WARNING", logger="ryu_apps.records"):
        recorder.flush()
        assert "limit" not in caplog.text
        store.add([cdr("c2", 0, None, 12)])
        recorder._buffer += [cdr("c3", 0, None, 13), cdr("c4", 0, None, 14)]
        recorder.flush()
        assert caplog.text.count("reached their limit") == 1
        recorder._buffer += [cdr("c5", 0, None, 15)]
        recorder.flush()
        assert caplog.text.count("reached their limit") == 1          # once, not per batch
    assert [r.call_id for r in store.query()] == ["c3", "c4", "c5"] and store.evicted == 3
    assert store.purge(14) == 1 and [r.call_id for r in store.query()] == ["c4", "c5"]
    store.add([cdr(f"d{n}", 0, None, 20 + n) for n in range(5)])      # the limit survives a purge
    assert [r.call_id for r in store.query()] == ["d2", "d3", "d4"] and store.evicted == 7
    unbounded = MemoryCdrStore()
    unbounded.add([cdr(f"e{n}", 0, None, n) for n in range(1000)])
    assert len(unbounded.query()) == 1000 and unbounded.evicted == 0


def test_cdr_configuration_is_checked_strictly() -> None:
    document = config()
    assert parse_config(document).cdr.retention_days == 90
    document["cdr"] = {"retention_days": 7, "path": "/var/lib/mam/cdr.sqlite"}
    parsed = parse_config(document).cdr
    assert (parsed.retention_days, parsed.path) == (7, "/var/lib/mam/cdr.sqlite")
    assert parse_config(document).cdr.memory_limit == 100_000
    document["cdr"] = {"memory_limit": 5000}
    assert parse_config(document).cdr.memory_limit == 5000
    for bad, where in (({"retention_days": 0}, "cdr.retention_days"), ({"retention_days": "7"}, "cdr.retention_days"),
                       ({"retention": 7}, "cdr.retention"), ({"path": ""}, "cdr.path"),
                       ({"memory_limit": 0}, "cdr.memory_limit"), ({"memory_limit": 1.5}, "cdr.memory_limit")):
        document["cdr"] = bad
        with pytest.raises(ConfigError) as error:
            parse_config(document)
        assert where in str(error.value)


# --- the usage report, against a hand-computed example ---------------------------------

def test_usage_report_matches_the_hand_computed_example() -> None:
    # period [0, 100). Calls between A and B on pool ab:
    #   c1 held 10-70, answered 20-70, 80 kbit/s; c2 held 30-130, answered 40-, 24 kbit/s;
    #   c3 held -20-15, answered -10-15, 80 kbit/s. Refusals: one at 50 (in), one at 120 (out).
    # held kbit/s: 0-10: 80, 10-15: 160 (2 calls), 15-30: 80, 30-70: 104 (2 calls), 70-100: 24
    # time at level: 24 for 30 s, 80 for 25 s, 104 for 40 s, 160 for 5 s: 95 % is reached at 104.
    records = [cdr("c1", 10, 20, 70), cdr("c2", 30, 40, 130, kbps=24), cdr("c3", -20, -10, 15),
               refusal("r1", 50), refusal("r2", 120), refusal("r3", 99, reason="path-down")]
    report = usage_report(records, 0, 100)
    ab = report.aggregates["ab"]
    assert ab.calls == 2                                   # admitted in the period: c1, c2
    assert ab.minutes == pytest.approx((50 + 60 + 15) / 60)
    assert (ab.peak_concurrent, ab.peak_kbps, ab.p95_kbps) == (2, 160, 104)
    assert ab.refusals == {"path-down": 1, "pool-full": 1}
    assert ab.blocking_rate == pytest.approx(2 / 4)
    assert report.communities[B] == ab and report.communities[A] == ab
    assert ab.to_dict()["refused"] == 2


def test_usage_is_split_by_community_and_aggregate() -> None:
    records = [cdr("c1", 10, 20, 70), cdr("c4", 50, None, 60, communities=(A, "site-c"), aggregate="ac")]
    report = usage_report(records, 0, 100)
    assert (report.communities[A].calls, report.communities[A].peak_concurrent,
            report.communities[A].peak_kbps) == (2, 2, 160)
    assert report.communities["site-c"].minutes == 0 and report.aggregates["ac"].calls == 1
    assert report.aggregates["ab"].peak_concurrent == 1 and set(report.aggregates) == {"ab", "ac"}


def test_back_to_back_calls_are_not_a_false_peak_and_empty_periods_are_zero() -> None:
    assert usage([cdr("x", 0, 0, 50), cdr("y", 50, 50, 100)], 0, 100).peak_concurrent == 1
    empty = usage([], 0, 100)
    assert (empty.calls, empty.peak_kbps, empty.p95_kbps, empty.blocking_rate) == (0, 0, 0, 0.0)
    with pytest.raises(ValueError):
        usage_report([], 5, 5)


# --- REST export and report, and mamctl -------------------------------------------------

class Rest:
    def __init__(self) -> None:
        self.clock = Clock(1_800_000_000.0)     # 2027-01-15T08:00:00Z
        self.service = MamService(build_manager(parse_config(config(PCMU_KBPS))), clock=self.clock)
        self.app = make_wsgi_app(self.service, ApiConfig())

    def get(self, path: str) -> tuple[int, Any, str]:
        response = Request.blank(path).get_response(self.app)
        body = json.loads(response.text) if response.content_type == "application/json" else None
        return response.status_int, body, response.text


@pytest.fixture
def rest() -> Rest:
    rest = Rest()
    rest.service.admit(request("c1"))
    rest.clock.now += 60
    rest.service.admit(request("c2"))                 # refused: the pool holds one call
    rest.clock.now += 60
    rest.service.release("c1", "bye")
    return rest


def test_cdrs_export_as_json_lines_and_csv_with_iso_times(rest: Rest) -> None:
    status, _, text = rest.get("/mam/v1/cdrs")
    rows = [json.loads(line) for line in text.splitlines()]
    assert status == 200 and [(r["kind"], r["call_id"]) for r in rows] == [("refusal", "c2"), ("call", "c1")]
    assert rows[1]["admitted_at"] == "2027-01-15T08:00:00.000Z" and rows[1]["released_at"] == "2027-01-15T08:02:00.000Z"
    assert rows[0]["reason"] == "pool-full" and rows[1]["cause"] == "bye"
    status, _, text = rest.get("/mam/v1/cdrs?format=csv&from=2027-01-15T08:01:30Z")
    table = list(csv.DictReader(io.StringIO(text)))
    assert status == 200 and [(r["kind"], r["call_id"], r["kbps"]) for r in table] == [("call", "c1", "91")]
    assert table[0]["answered_at"] == "" and table[0]["duration_s"] == "0.0"
    assert rest.get("/mam/v1/cdrs?community=site-c")[2] == ""
    assert len(rest.get("/mam/v1/cdrs?to=1800000061")[2].splitlines()) == 1        # epoch seconds work too
    assert rest.get("/mam/v1/cdrs?format=json")[1]["cdrs"][0]["call_id"] == "c2"
    assert rest.get("/mam/v1/cdrs?community=site-a;x")[2] == ""     # one name with a ';', not site-a
    assert rest.get("/mam/v1/cdrs?community=site-a&format=json")[1]["cdrs"][0]["call_id"] == "c2"


@pytest.mark.parametrize("query, field", [
    ("from=yesterday", "from"), ("to=2027-13-01", "to"), ("from=nan", "from"), ("from=", "from"),
    ("from=2027-01-15T09:00Z&to=2027-01-15T08:00Z", "to"), ("format=xml", "format"), ("limit=0", "limit"),
    ("limit=x", "limit"), ("community=", "community"),
    ("community=" + "a" * 40 + ";" + "b" * 40, "community"),     # ';' is inside the value: 81 characters
    ("community=%FF", "query")])
def test_bad_query_parameters_are_400_naming_the_parameter(rest: Rest, query: str, field: str) -> None:
    status, body, _ = rest.get(f"/mam/v1/cdrs?{query}")
    assert status == 400 and body["error"]["field"] == field, body
    assert body["error"]["message"]


def test_the_usage_report_over_rest_and_its_bad_periods(rest: Rest) -> None:
    rest.service.admit(request("c3"))                  # still up: counted up to now
    rest.clock.now += 60
    status, body, _ = rest.get("/mam/v1/reports/usage?from=2027-01-15T08:00:00Z&to=2027-01-15T08:04:00Z")
    assert status == 200 and body["from"] == "2027-01-15T08:00:00.000Z"
    pool = body["aggregates"]["a-b"]
    assert (pool["calls"], pool["peak_concurrent"], pool["peak_kbps"], pool["refusals"]) == \
        (2, 1, PCMU_KBPS, {"pool-full": 1})
    assert pool["blocking_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert body["communities"][A]["calls"] == 2
    assert rest.get("/mam/v1/reports/usage")[0] == 200              # default: the last day
    status, body, _ = rest.get("/mam/v1/reports/usage?from=2027-01-15T08:00:00Z&to=2027-01-15T08:00:00Z")
    assert status == 400 and body["error"]["field"] == "to"


def test_mamctl_cdrs_csv_and_report(rest: Rest) -> None:
    from test_cli import serve
    from ryu_apps.cli import main
    for url in serve(rest.app):
        out = io.StringIO()
        assert main(["--url", url, "cdrs", "--csv"], out) == 0
        assert out.getvalue().splitlines()[0].startswith("kind,call_id,protocol")
        assert len(out.getvalue().splitlines()) == 3
        out = io.StringIO()
        assert main(["--url", url, "cdrs"], out) == 0 and "pool-full" in out.getvalue()
        out = io.StringIO()
        assert main(["--url", url, "report", "--from", "2027-01-15T08:00Z", "--to", "2027-01-15T09:00Z"], out) == 0
        assert "a-b" in out.getvalue() and "pool-full 1" in out.getvalue()
        err = io.StringIO()
        assert main(["--url", url, "report", "--from", "soon"], io.StringIO(), err) == 1
        assert "from" in err.getvalue()


def test_calls_ended_because_their_path_stayed_down_are_recorded_after_the_grace_period() -> None:
    from ryu_apps.core.survey import PortInfo
    from ryu_apps.events import EventHub, ThreadWakeup
    service, recorder, clock = rig()
    hub = EventHub(wakeup=ThreadWakeup)
    service.watch(hub)
    client, _, _ = hub.subscribe(None)
    decision = service.admit(request("c1"), MEDIA)
    assert isinstance(decision, Admitted)
    service.flows_installed(decision.serial)                            # the switches confirmed: active
    ports = {10: PortInfo("p10"), 11: PortInfo("p11", 0, False)}       # s2's port toward s3 goes down
    service.observe(lambda survey: survey.ports_described("s2", ports))
    service.handle_timer()
    assert recorder.query() == []                                        # within the grace period: nothing ends
    clock.now += 11
    service.handle_timer()
    record = only_call(recorder)
    assert record.cause.startswith("preempted: path-down") and record.preempted_by is None
    assert record.answered_at is not None and record.duration_s == pytest.approx(11)
    kinds = [e.type for e in client.take()]
    assert kinds[:2] == ["call.admitted", "call.answered"] and "link.state" in kinds and kinds[-1] == "call.released"


def test_chart_series_held_kbps_and_refusals_by_bucket() -> None:
    from ryu_apps.core.cdr import held_steps, refusal_counts
    records = [cdr("c1", 10, 20, 70), cdr("c2", 30, 40, 130, kbps=24), cdr("c3", -20, -10, 15),
               refusal("r1", 50), refusal("r2", 120), refusal("r3", 99, reason="path-down"), refusal("r4", 0)]
    assert held_steps(records, 0, 100) == [(0, 80), (10, 160), (15, 80), (30, 104), (70, 24)]
    assert refusal_counts(records, 0, 100, 50) == {"path-down": [0, 1], "pool-full": [1, 1]}
    with pytest.raises(ValueError):
        refusal_counts(records, 0, 100, 0)


def test_mamctl_report_draws_a_png_of_a_pool(rest: Rest, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from test_cli import serve
    from ryu_apps.cli import main
    rest.service.admit(request("c3"))                   # still up: drawn up to the end
    chart = tmp_path / "a-b.png"
    for url in serve(rest.app):
        out = io.StringIO()
        assert main(["--url", url, "report", "--from", "2027-01-15T07:55Z", "--to", "2027-01-15T08:10Z",
                     "--png", str(chart)], out) == 0, out.getvalue()
        assert "written to" in out.getvalue()
        err = io.StringIO()
        assert main(["--url", url, "report", "--png", str(chart), "--aggregate", "nope"], io.StringIO(), err) == 1
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_a_sip_call_through_the_proxy_leaves_a_record_when_either_side_hangs_up() -> None:
    """The SIP front end: INVITE, 200 with SDP (answered), ACK, BYE; and a refused INVITE."""
    from test_sip_proxy import CALLER, PROXY_HOST, Harness, establish, invite, request
    document = {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 100}],
    }
    clock = Clock()
    service = MamService(build_manager(parse_config(document)), clock=clock)
    recorder = CdrRecorder(MemoryCdrStore(), clock=clock)
    service.watch(recorder)
    h = Harness()
    h.proxy.control = service  # type: ignore[assignment]
    establish(h, "s1")
    h.send(invite("s2", "z9hG4bKs2"), CALLER)                    # the pool holds one call: 503/488 to the caller
    clock.now += 30
    h.send(request("BYE", "s1", "z9hG4bKbye", 2, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"), CALLER)
    records = recorder.query()
    refusal, call = records
    assert isinstance(refusal, Refusal) and refusal.protocol == "sip" and refusal.reason == "pool-full"
    assert isinstance(call, CDR) and (call.call_id, call.protocol, call.aggregate_id) == ("s1", "sip", "a-b")
    assert call.answered_at is not None and call.duration_s == pytest.approx(30) and call.cause


def test_an_h323_call_released_by_drq_leaves_a_record() -> None:
    """The H.323 front end: ARQ, Setup, Connect (answered), DRQ; and an ARJ for a full pool."""
    import h323sim as sim
    from h323_harness import PHONE_A, Harness, service as h323_service
    harness = Harness(service=h323_service(91))
    recorder = CdrRecorder(MemoryCdrStore(), clock=lambda: 0.0)
    harness.service.watch(recorder)
    a, _ = harness.two_phones()
    first = harness.call(a)
    refused = harness.call(a, seq=11)
    assert refused["ras"][0] == "admissionReject"
    assert harness.ras(PHONE_A, sim.drq(50, a, first["guid"]))[0][0] == "disengageConfirm"
    refusal, call = recorder.query()
    assert isinstance(refusal, Refusal) and (refusal.protocol, refusal.reason) == ("h323", "pool-full")
    assert isinstance(call, CDR) and call.call_id == "h323-" + first["guid"].hex() and call.protocol == "h323"
    assert call.answered_at is not None and call.kbps == PCMU_KBPS and call.cause
