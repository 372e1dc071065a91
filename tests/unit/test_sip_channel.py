"""The admission channel of ``--workers`` without sockets: the worker-side client
(pipelining, one call's admission before its release, answers out of order, resends,
no owner), the owner's core against a real MamService (replayed retries, a dead
worker's calls, notifications to the right worker, garbage), and a deferred proxy
wired to the owner through both: the same answers as the in-process proxy."""

from __future__ import annotations

from typing import Any

import pytest

from fakes.sip_peer import service
from ryu_apps.core.admission import Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.codec import MediaSpec
from ryu_apps.signalling.call_control import Release
from ryu_apps.signalling.sip.channel_client import UNAVAILABLE, ChannelClient
from ryu_apps.signalling.sip.channel_codec import (Ended, FrameDecoder, FrameError, Hello, JobReply, JobRequest,
                                                   Restore, decode, encode, frame)
from ryu_apps.signalling.sip.control_jobs import AdmitCall, CallAdmission, ControlFailed, Job, JobResult, SaveDialog
from ryu_apps.signalling.sip.ids import HashIds
from ryu_apps.signalling.sip.owner_core import WORKER_LOST, OwnerCore
from ryu_apps.signalling.sip.proxy import SipProxy
from ryu_apps.signalling.sip.proxy_config import ProxyConfig
from ryu_apps.signalling.sip.routing import RouteTable
from ryu_apps.signalling.sip.steering import PACK_BYTES, call_id_of, pack, unwrap, worker_for, wrap
from ryu_apps.signalling.sip.transaction import Peer, Send
from test_sip_proxy import CALLEE, CALLER, PROXY_HOST, answer, invite, only_request, request, sdp, statuses

PCMU = MediaSpec("pcmu")
PCMU_KBPS = 91


def admit_call(call_id: str) -> AdmitCall:
    return AdmitCall(call_id, "site-a.example", "10.1.0.10", "site-b.example", None, PCMU, ServiceLevel.VOICE)


def sent(data: bytes) -> list[Any]:
    return [decode(f) for f in FrameDecoder().feed(data)]


# --- steering on the shared socket -------------------------------------------------------------

@pytest.mark.parametrize("head, call_id", [
    (b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: abc@h\r\n\r\nCall-ID: body", b"abc@h"),
    (b"ACK sip:b@x SIP/2.0\r\ni:  compact \r\n\r\n", b"compact"),
    (b"CANCEL sip:b@x SIP/2.0\r\nCALL-ID : upper\r\n", b"upper"),
    (b"BYE sip:b@x SIP/2.0\r\nVia: x\r\n\r\ni: in the body", None),
    (b"\r\n\r\n", None), (b"\x00\xff", None),
])
def test_the_call_id_is_found_in_the_head_only(head: bytes, call_id: bytes | None) -> None:
    assert call_id_of(head) == call_id


def test_one_calls_datagrams_go_to_one_worker_and_calls_spread_over_all() -> None:
    def message(method: str, call_id: str) -> bytes:
        return f"{method} sip:b@x SIP/2.0\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\r\n".encode()
    for n in range(50):
        targets = {worker_for(message(m, f"call-{n}"), 3) for m in ("INVITE", "CANCEL", "ACK")}
        assert len(targets) == 1 and targets <= {0, 1, 2}
    assert {worker_for(message("INVITE", f"call-{n}"), 3) for n in range(50)} == {0, 1, 2}
    assert worker_for(b"garbage", 3) == 0 and worker_for(message("INVITE", "x"), 1) == 0


def test_a_steered_datagram_keeps_its_source() -> None:
    assert unwrap(wrap(b"INVITE ...", "10.1.0.10", 5062, 0.25)) == [(b"INVITE ...", "10.1.0.10", 5062, 0.25)]
    pieces = [wrap(f"m{n}".encode() * 2000, "::1", n, 0.0) for n in range(40)]
    packets = pack(pieces)
    assert 1 < len(packets) < 40 and all(len(p) <= PACK_BYTES for p in packets)
    assert [d for p in packets for d in unwrap(p)] == [(f"m{n}".encode() * 2000, "::1", n, 0.0) for n in range(40)]
    for broken in (b"\x00" * 5, wrap(b"data", "h", 1, 0.0)[:-1]):
        with pytest.raises(ValueError):
            unwrap(broken)


# --- the worker's client ------------------------------------------------------------------------

def test_jobs_are_pipelined_in_submission_order_before_any_answer() -> None:
    client = ChannelClient(0, 100)
    hello = sent(client.connected())
    assert hello == [Hello(0, 100)]
    jobs: list[tuple[int, Job]] = [(n, admit_call(f"c{n}")) for n in range(1, 51)]
    data, answers = client.submit(jobs)
    assert answers == [] and client.in_flight == 50
    assert [m.id for m in sent(data)] == list(range(1, 51))


def test_one_calls_admission_goes_before_its_release_and_answers_may_come_out_of_order() -> None:
    client = ChannelClient(0, 100)
    client.connected()
    first, _ = client.submit([(1, admit_call("x"))])
    second, _ = client.submit([(2, Release("x", "cancel")), (3, admit_call("y"))])
    assert [(m.id, type(m.job).__name__) for m in sent(first + second)] == [
        (1, "AdmitCall"), (2, "Release"), (3, "AdmitCall")]
    admitted = CallAdmission("a", "b", Admitted("x", "a-b", 91, serial=1))
    replies = encode(JobReply(3, None)) + encode(JobReply(1, admitted)) + encode(JobReply(2, None))
    got = client.receive(replies[:7]) + client.receive(replies[7:])
    assert got == [(3, None), (1, admitted), (2, None)]
    assert client.in_flight == 0
    assert client.receive(encode(JobReply(1, None))) == [] and client.counters.unknown_replies == 1


def test_a_reconnection_resends_what_is_in_flight_after_the_hello() -> None:
    client = ChannelClient(1, 7)
    client.connected()
    client.submit([(1, admit_call("a")), (2, admit_call("b"))])
    client.receive(encode(JobReply(1, None)))
    client.disconnected()
    data, answers = client.submit([(3, Release("b", "bye"))])     # waits for the next connection
    assert data == b"" and answers == []
    assert [type(m).__name__ + str(getattr(m, "id", "")) for m in sent(client.connected())] == [
        "Hello", "JobRequest2", "JobRequest3"]


def test_without_an_owner_every_job_is_answered_at_once_and_an_invite_is_refused_clearly() -> None:
    client = ChannelClient(0, 1)
    client.connected()
    client.submit([(1, admit_call("a")), (2, SaveDialog("a", {}))])
    answers = dict(client.gave_up())
    assert answers[1] == CallAdmission("", "", Rejected("a", RejectReason.STORE_UNAVAILABLE, UNAVAILABLE))
    assert answers[2] == ControlFailed(UNAVAILABLE)
    data, later = client.submit([(3, admit_call("b"))])
    assert data == b"" and later[0][0] == 3 and client.in_flight == 0


def test_a_bad_frame_from_the_owner_is_skipped_and_a_broken_stream_raises() -> None:
    client = ChannelClient(0, 1)
    client.connected()
    client.submit([(1, admit_call("a"))])
    assert client.receive(frame(b"[1,2") + encode(JobReply(1, None))) == [(1, None)]
    assert client.counters.bad_frames == 1
    with pytest.raises(FrameError):
        client.receive(b"\xff\xff\xff\xff")


# --- the owner's core -----------------------------------------------------------------------------

class Wire:
    """An owner link whose writes are kept."""

    def __init__(self, core: OwnerCore, index: int, pid: int) -> None:
        self.out = bytearray()
        self.link = core.link(self.out.extend)
        self.link.receive(encode(Hello(index, pid)))

    def ask(self, *jobs: tuple[int, Job]) -> list[Any]:
        self.out.clear()
        self.link.receive(b"".join(encode(JobRequest(i, j)) for i, j in jobs))
        return sent(bytes(self.out))


def test_the_owner_decides_as_the_service_does_and_replays_a_resent_job() -> None:
    svc = service(pool_kbps=2 * PCMU_KBPS)
    core = OwnerCore(svc)
    wire = Wire(core, 0, 10)
    replies = wire.ask((1, admit_call("a")), (2, admit_call("b")), (3, admit_call("c")))
    decisions = [r.result.decision for r in replies]
    assert [type(d).__name__ for d in decisions] == ["Admitted", "Admitted", "Rejected"]
    assert decisions[2].reason is RejectReason.POOL_FULL
    assert wire.ask((3, admit_call("c")))[0] == replies[2] and core.counters.replayed == 1   # not run again
    assert wire.ask((4, Release("a", "bye")), (4, Release("a", "bye")))[0].result is None
    assert core.counters.replayed == 2
    assert svc.read(lambda m: m.used_kbps("a-b")) == PCMU_KBPS and set(core.calls) == {"b"}


def test_a_dead_workers_ringing_calls_are_released_and_its_confirmed_calls_restored_to_its_successor() -> None:
    svc = service(pool_kbps=4 * PCMU_KBPS)
    core = OwnerCore(svc)
    zero, one = Wire(core, 0, 10), Wire(core, 1, 11)
    zero.ask((1, admit_call("ringing")), (2, admit_call("talking")), (3, SaveDialog("talking", {"call_id": "talking"})))
    one.ask((1, admit_call("other")))
    assert core.worker_gone(0) == (1, 1)
    assert svc.read(lambda m: sorted(c.call_id for c in m.calls())) == ["other", "talking"]
    assert svc.read(lambda m: m.used_kbps("a-b")) == 2 * PCMU_KBPS          # nothing released wrongly
    successor = Wire(core, 0, 12)
    assert sent(bytes(successor.out)) == [Restore(({"call_id": "talking"},))]
    # the successor numbers its jobs from 1 again: nothing is replayed from its predecessor
    assert successor.ask((1, Release("talking", "bye")))[0].result is None and core.counters.replayed == 0
    assert svc.read(lambda m: m.used_kbps("a-b")) == PCMU_KBPS
    assert core.counters.released_worker_lost == 1 and WORKER_LOST == "worker-lost"


def test_a_call_admission_ends_goes_to_the_worker_holding_it_and_a_release_is_not_echoed() -> None:
    svc = service(pool_kbps=4 * PCMU_KBPS)
    core = OwnerCore(svc)
    svc.subscribe(core.on_changes)
    zero, one = Wire(core, 0, 10), Wire(core, 1, 11)
    zero.ask((1, admit_call("z")))
    one.ask((1, admit_call("o")))
    one.out.clear()
    assert [type(m) for m in zero.ask((2, Release("z", "bye")))] == [JobReply]     # no Ended echoed back
    serial = svc.read(lambda m: m.call("o").serial)
    svc.release("o", "preempted: priority: x")                      # the service ends a call itself
    assert sent(bytes(one.out)) == [Ended("o", serial, "preempted: priority: x")]
    assert core.counters.ended_sent == 1


def test_garbage_on_a_link_is_counted_and_the_link_goes_on() -> None:
    core = OwnerCore(service())
    out = bytearray()
    link = core.link(out.extend)
    link.receive(encode(JobRequest(1, admit_call("early"))))         # before its hello
    assert sent(bytes(out))[0].result == ControlFailed("say hello first")
    link.receive(encode(Hello(0, 1)) + frame(b"nonsense") + frame(b'["done",1,null]'))
    out.clear()
    link.receive(encode(JobRequest(2, admit_call("fine"))))
    assert isinstance(sent(bytes(out))[0].result, CallAdmission)
    assert core.counters.bad_frames == 3
    with pytest.raises(FrameError):
        link.receive(b"\x7f\xff\xff\xff")


def test_a_job_that_raises_is_answered_as_a_failure() -> None:
    class Broken:
        def community_of(self, domain: str | None, address: str | None) -> str | None:
            raise RuntimeError("boom")

    core = OwnerCore(Broken())  # type: ignore[arg-type]
    wire = Wire(core, 0, 1)
    assert wire.ask((1, admit_call("x")))[0].result == ControlFailed("RuntimeError: boom")


# --- a deferred proxy through client and owner ------------------------------------------------------

class Worker:
    """A worker's proxy core wired to an owner core through the channel's bytes."""

    def __init__(self, core: OwnerCore, index: int = 0) -> None:
        routes = RouteTable.from_specs(["site-b.example=10.2.0.20:5060"])
        self.proxy = SipProxy(ProxyConfig(host=PROXY_HOST, port=5060, routes=routes), _Unused(), HashIds(b"test"),
                              deferred=True)
        self.client = ChannelClient(index, 1000 + index)
        self.wire = bytearray()
        self.link = core.link(self.wire.extend)
        self.link.receive(self.client.connected())

    def send(self, data: bytes, source: Peer) -> list[Send]:
        out = self.proxy.receive(data, source, 0.0)
        return out + self.pump()

    def pump(self) -> list[Send]:
        out: list[Send] = []
        while True:
            jobs = self.proxy.take_jobs()
            if not jobs:
                return out
            data, answers = self.client.submit(jobs)
            self.wire.clear()
            self.link.receive(data)
            answered: list[tuple[int, JobResult]] = answers + [
                a for a in self.client.receive(bytes(self.wire)) if isinstance(a, tuple)]
            for ticket, result in answered:
                out += self.proxy.job_done(ticket, result, 0.0)


class _Unused:
    def save_dialog(self, call_id: str, dialog: Any) -> None:
        raise AssertionError("a deferred proxy never calls its control")


def test_through_the_channel_the_proxy_answers_as_in_process() -> None:
    svc = service(pool_kbps=2 * PCMU_KBPS)
    worker = Worker(OwnerCore(svc))
    out = worker.send(invite("c1", "z9hG4bK1"), CALLER)
    forwarded, raw = only_request(out, CALLEE, "INVITE")
    assert forwarded.header_values("record-route") == [f"<sip:{PROXY_HOST}:5060;lr>"]
    worker.send(answer(raw, 200, "OK", body=sdp("0", "10.2.0.20", 5000)), CALLEE)
    assert svc.read(lambda m: m.call("c1").dialog) is not None                   # kept for a restore
    worker.send(invite("c2", "z9hG4bK2"), CALLER)
    out = worker.send(invite("c3", "z9hG4bK3"), CALLER)
    assert statuses(out, CALLER) == [100, 503]
    assert b"pool-full" in [s.data for s in out if s.peer == CALLER][-1]
    worker.send(request("BYE", "c1", "z9hG4bKbye", 2, route=f"Route: <sip:{PROXY_HOST}:5060;lr>\r\n"), CALLER)
    assert svc.read(lambda m: m.used_kbps("a-b")) == PCMU_KBPS


def test_without_the_owner_a_new_call_gets_a_503_saying_store_unavailable() -> None:
    worker = Worker(OwnerCore(service()))
    for ticket, result in worker.client.gave_up():
        worker.proxy.job_done(ticket, result, 0.0)
    out = worker.send(invite("c9", "z9hG4bK9"), CALLER)
    assert statuses(out, CALLER) == [100, 503]
    refusal = [s.data for s in out if s.peer == CALLER][-1]
    assert b"store-unavailable: admission owner unavailable" in refusal


# --- the owner's watch over its workers ------------------------------------------------------------

class _Process:
    pid = 4242

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


def test_a_dead_worker_is_settled_once_and_restarted_later_each_time_it_dies_young(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock

    from fakes.sip_peer import site
    from ryu_apps.config import parse_config
    from ryu_apps.signalling.sip import owner as owner_module
    owner = owner_module.Owner([], parse_config(site()), 2, "127.0.0.1", 0, None)
    pool = owner.pool
    now = [1000.0]
    started: list[int] = []

    def spawn(worker: Any) -> None:
        started.append(worker.index)
        worker.started_at, worker.process = now[0], _Process(None)
    try:
        monkeypatch.setattr(pool, "spawn", spawn)
        monkeypatch.setattr(clock, "monotonic", lambda: now[0])
        pool.spawn_all()
        started.clear()
        gaps = []
        for _ in range(4):                   # worker 0 dies at once, every time
            pool.workers[0].process = _Process(-9)
            died = now[0]
            pool.watch()
            while not started:
                now[0] += 0.25
                pool.watch()
            gaps.append(now[0] - died)
            assert started == [0]            # the live worker is never touched
            started.clear()
        assert gaps == [1.0, 2.0, 4.0, 8.0] and pool.workers[0].deaths == 4
        now[0] += 60                         # a worker that lived long is restarted after a second again
        pool.workers[0].process = _Process(1)
        pool.watch()
        now[0] += 1.0
        pool.watch()
        assert started == [0]
    finally:
        pool.close()
