"""The controller's owner of SIP workers (``sip.workers``) on a hub, with real unix sockets
and native threads for the hub (no worker processes: the tests speak the workers' side).

Nothing a worker sends stops the hub: garbage frames are counted and the link goes on, a
broken stream closes that link only, an exception past the core is counted; the owner
keeps accepting and answering. Admission's own endings reach the worker holding the call,
calls from before a restart go to the worker their Call-ID steers to, and a dead worker's
ringing calls are released through the hub's lock.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from fakes.sip_peer import service
from ryu_apps.core.admission import ServiceLevel
from ryu_apps.core.codec import MediaSpec
from ryu_apps.service import MamService
from ryu_apps.signalling.call_control import Release
from ryu_apps.signalling.sip.channel_codec import (Ended, FrameDecoder, Hello, JobReply, JobRequest, Restore,
                                                   decode, encode, frame)
from ryu_apps.signalling.sip.control_jobs import AdmitCall, CallAdmission, Job, SaveDialog
from ryu_apps.signalling.sip.hub_owner import HubOwner
from ryu_apps.signalling.sip.hub_server import ThreadWakeup
from ryu_apps.signalling.sip.steering import worker_of_call

PCMU_KBPS = 91


def admit_call(call_id: str) -> AdmitCall:
    return AdmitCall(call_id, "site-a.example", "10.1.0.10", "site-b.example", None, MediaSpec("pcmu"),
                     ServiceLevel.VOICE)


class _Process:
    def __init__(self, pid: int, returncode: int | None = None) -> None:
        self.pid, self.returncode = pid, returncode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.returncode = -sig

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


def spawn(fn: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def owner(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubOwner, MamService]]:
    svc = service(pool_kbps=4 * PCMU_KBPS)
    hub = HubOwner(svc, [], 2, "127.0.0.1", 0, spawn=spawn, sleep=time.sleep, wakeup_factory=ThreadWakeup)
    started: list[int] = []

    def fake_spawn(worker: Any) -> None:          # the tests play the workers
        started.append(worker.index)
        worker.process, worker.started_at = _Process(90000 + len(started)), time.monotonic()
        worker.starts += 1
    monkeypatch.setattr(hub.pool, "spawn", fake_spawn)
    svc.subscribe(hub.on_changes)
    hub.start()
    try:
        yield hub, svc
    finally:
        hub.stop()


class FakeWorker:
    """A worker's end of the admission channel."""

    def __init__(self, hub: HubOwner, index: int, pid: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(hub.pool.address)
        self.decoder = FrameDecoder()
        self.sock.sendall(encode(Hello(index, pid)))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, *jobs: tuple[int, Job]) -> list[Any]:
        self.send(b"".join(encode(JobRequest(i, j)) for i, j in jobs))
        return self.read(len(jobs))

    def read(self, count: int) -> list[Any]:
        messages: list[Any] = []
        while len(messages) < count:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the owner closed the channel")
            messages += [decode(f) for f in self.decoder.feed(data)]
        return messages

    def closed_by_owner(self) -> bool:
        try:
            return self.sock.recv(65536) == b""
        except OSError:
            return True


def until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_bad_frames_never_stop_the_hub_and_a_broken_stream_closes_only_its_link(
        owner: tuple[HubOwner, MamService], monkeypatch: pytest.MonkeyPatch) -> None:
    hub, svc = owner
    zero = FakeWorker(hub, 0, os.getpid())
    zero.send(frame(b"not json") + frame(b'["job",1]') + frame(b'["done",1,null]') + frame(b"\xff\xfe"))
    (reply,) = zero.ask((1, admit_call("a")))
    assert isinstance(reply, JobReply) and isinstance(reply.result, CallAdmission)
    assert hub.core.counters.bad_frames == 4                                # counted, the link went on
    original = hub.core.run
    monkeypatch.setattr(hub.core, "run", lambda link, request: (_ for _ in ()).throw(RuntimeError("bug")))
    zero.send(encode(JobRequest(2, admit_call("b"))))                       # an exception past the core
    assert until(lambda: hub.core.counters.bad_frames == 5)
    monkeypatch.setattr(hub.core, "run", original)
    (reply,) = zero.ask((3, admit_call("c")))                               # the same link still answers
    assert isinstance(reply.result, CallAdmission)
    one = FakeWorker(hub, 1, os.getpid() + 1)
    one.send(b"\x7f\xff\xff\xff" + b"x" * 16)                               # an impossible length: broken
    assert one.closed_by_owner() and hub.core.counters.broken_links == 1
    assert until(lambda: 1 not in hub.core.links)
    again = FakeWorker(hub, 1, os.getpid() + 1)                             # the hub still accepts and answers
    (reply,) = again.ask((1, admit_call("d")))
    assert isinstance(reply.result, CallAdmission)
    assert hub.running and set(hub.faults.snapshot()) <= {"channel"}
    assert svc.read(lambda m: sorted(c.call_id for c in m.calls())) == ["a", "c", "d"]


def test_admissions_own_ending_goes_to_the_worker_holding_the_call_and_a_release_is_not_echoed(
        owner: tuple[HubOwner, MamService]) -> None:
    hub, svc = owner
    zero, one = FakeWorker(hub, 0, 100), FakeWorker(hub, 1, 101)
    zero.ask((1, admit_call("z")))
    one.ask((1, admit_call("o")))
    assert [type(m) for m in zero.ask((2, Release("z", "bye")))] == [JobReply]
    serial = svc.read(lambda m: m.call("o").serial)
    svc.release("o", "preempted: priority: x")                              # the controller ends it itself
    assert one.read(1) == [Ended("o", serial, "preempted: priority: x")]
    assert hub.core.counters.ended_sent == 1
    assert svc.read(lambda m: m.used_kbps("a-b")) == 0


def test_calls_from_before_a_restart_go_to_the_worker_their_call_id_steers_to(
        owner: tuple[HubOwner, MamService]) -> None:
    hub, _ = owner
    dialog = {"protocol": "sip", "call_id": "old-1"}
    assert hub.restore([("old-1", 7, dialog)]) == 1
    index = worker_of_call(b"old-1", 2)
    worker = FakeWorker(hub, index, 200)
    assert worker.read(1) == [Restore((dialog,))]
    assert hub.core.held_by() == {index: 1}


def test_a_dead_workers_ringing_call_is_released_its_confirmed_call_kept_and_the_worker_restarted(
        owner: tuple[HubOwner, MamService]) -> None:
    hub, svc = owner
    zero = FakeWorker(hub, 0, 300)
    zero.ask((1, admit_call("ringing")), (2, admit_call("talking")),
             (3, SaveDialog("talking", {"protocol": "sip", "call_id": "talking"})))
    first = hub.pool.workers[0].process
    assert first is not None
    first.returncode = -9                                                   # SIGKILL
    assert until(lambda: svc.read(lambda m: [c.call_id for c in m.calls()]) == ["talking"])
    assert hub.core.counters.released_worker_lost == 1 and hub.core.counters.kept_for_restore == 1
    assert until(lambda: hub.pool.workers[0].starts == 2, 3)                # started again after a second
    assert hub.pool.workers[0].pid != first.pid and hub.pool.workers[1].starts == 1
    successor = FakeWorker(hub, 0, 301)
    assert successor.read(1) == [Restore(({"protocol": "sip", "call_id": "talking"},))]


def test_stop_stops_the_workers_by_pid_and_starts_none_again(owner: tuple[HubOwner, MamService]) -> None:
    hub, _ = owner
    processes = [w.process for w in hub.pool.workers]
    hub.stop()
    assert all(p is not None and p.returncode == -15 for p in processes)    # SIGTERM each
    time.sleep(0.5)
    assert [w.starts for w in hub.pool.workers] == [1, 1] and not hub.running
