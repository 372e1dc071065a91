"""What call records and the live event stream cost admission.

    .venv/bin/python benchmarks/bench_cdr.py [--calls N] [--clients N]

1. Call detail records: calls admitted and released through the service (as every front
   end does) on the default durable ledger (SQLite, WAL), with 1,000 calls kept up;
   throughput without records, then with the recorder writing every ended call and every
   refusal to the ledger's file (batched). Goal: no more than 10 % lower. Also the cost
   per record, and what it comes to at 1,000 calls/s.
   Then the same at a paced 1,000 calls/s: the rate achieved, admission latency and the
   CPU it takes, with and without records.
2. Event fan-out: the same admissions with 50 clients following GET /mam/v1/events over
   loopback (a threaded WSGI server; one reader thread for every client): admission
   throughput with and without them, every event delivered to every client, and the
   delay from a decision to its arrival at the clients (p50 / p99).
"""

from __future__ import annotations

import argparse
import gc
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]

from ryu_apps.config import ApiConfig, build_manager, parse_config  # noqa: E402
from ryu_apps.core.admission import AdmissionRequest, Admitted  # noqa: E402
from ryu_apps.core.cdr import CDR  # noqa: E402
from ryu_apps.core.codec import MediaSpec  # noqa: E402
from ryu_apps.events import EventHub, ThreadWakeup  # noqa: E402
from ryu_apps.records import CdrRecorder  # noqa: E402
from ryu_apps.rest.api import make_wsgi_app  # noqa: E402
from ryu_apps.service import MamService  # noqa: E402
from ryu_apps.store import SqliteCdrStore, SqliteLedger  # noqa: E402

GOAL_LOSS = 0.10
ACTIVE = 1_000
MEDIA = MediaSpec("pcmu")


def config() -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 10_000_000}]},
        "communities": [{"name": "a", "edge": "s1", "access_ports": [1], "prefixes": ["10.1.0.0/16"]},
                        {"name": "b", "edge": "s2", "access_ports": [1], "prefixes": ["10.2.0.0/16"]}],
        # 1,000 calls of 91 kbit/s and a margin: one in fifty asks for more than is left (refused, recorded)
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": (ACTIVE + 2) * 91}],
    }


def churn(service: MamService, calls: int, tag: str) -> float:
    """Admit ``calls`` calls, releasing the oldest to keep ACTIVE up; calls per second."""
    live: list[str] = []
    for i in range(ACTIVE):
        service.admit(AdmissionRequest(f"{tag}-warm-{i}", "a", "b", MEDIA))
        live.append(f"{tag}-warm-{i}")
    gc.collect()
    started = time.perf_counter()
    for i in range(calls):
        service.release(live[i % ACTIVE], "bye")
        call_id = f"{tag}-{i}"
        big = i % 50 == 0        # a call too big for what is left: a refusal
        decision = service.admit(AdmissionRequest(call_id, "a", "b", MediaSpec("pcmu", explicit_kbps=50_000) if big
                                                  else MEDIA))
        if isinstance(decision, Admitted):
            live[i % ACTIVE] = call_id
        else:
            service.admit(AdmissionRequest(call_id, "a", "b", MEDIA))
            live[i % ACTIVE] = call_id
    return calls / (time.perf_counter() - started)


def sqlite_service(path: str) -> MamService:
    return MamService(build_manager(parse_config(config()), SqliteLedger(path)), clock=time.time)


class Timed:
    """The recorder, with the time spent in it (watching and writing) added up."""

    def __init__(self, recorder: CdrRecorder) -> None:
        self.recorder, self.seconds = recorder, 0.0

    def __call__(self, activity: Any) -> None:
        started = time.perf_counter()
        self.recorder(activity)
        self.seconds += time.perf_counter() - started

    def flush(self) -> None:
        started = time.perf_counter()
        self.recorder.flush()
        self.seconds += time.perf_counter() - started


def bench_records(calls: int, rounds: int = 5) -> None:
    print(f"call detail records: {calls:,} calls through the service, {ACTIVE:,} up, SQLite ledger (WAL); "
          f"{rounds} rounds, alternating")
    ratios, plains, recordeds, costs = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(rounds):               # alternate: the machine is shared, load comes and goes
            plain = churn(sqlite_service(os.path.join(tmp, f"plain{attempt}.sqlite")), calls, f"p{attempt}")
            path = os.path.join(tmp, f"cdr{attempt}.sqlite")
            service = sqlite_service(path)
            recorder = Timed(CdrRecorder(SqliteCdrStore(path)))
            service.watch(recorder)
            recorded = churn(service, calls, f"r{attempt}")
            recorder.flush()                        # what is still buffered is part of the cost (timed)
            written = recorder.recorder.written
            plains.append(plain)
            recordeds.append(recorded)
            ratios.append(recorded / plain)
            costs.append(recorder.seconds / written)
    change = statistics.median(ratios) - 1
    print(f"  without records: {statistics.median(plains):,.0f} calls/s (admit + release; median)")
    print(f"  with records:    {statistics.median(recordeds):,.0f} calls/s, {written:,} records a round; "
          f"median change {change:+.1%} (rounds: {', '.join(f'{r - 1:+.0%}' for r in ratios)}); "
          f"goal: at most {GOAL_LOSS:.0%} lower: {'OK' if -change <= GOAL_LOSS else 'MISSED'}")
    cost = statistics.median(costs)
    per_call = 1 / statistics.median(plains)
    print(f"  time in the recorder: {cost * 1e6:.1f} µs per record (building, buffering, writing), "
          f"{cost / per_call:.1%} of a call's time here; at 1,000 calls/s {cost * 1000:.1%} of one core")
    store = SqliteCdrStore(os.path.join(tempfile.mkdtemp(), "w.sqlite"))
    batch = [CDR(f"c{i}", "sip", "a", "b", "a-b", "voice", "pcmu", 91, 1.0, 2.0, 3.0 + i, "bye") for i in range(256)]
    started = time.perf_counter()
    for _ in range(40):
        store.add(batch)
    per = (time.perf_counter() - started) / (40 * 256)
    print(f"  SQLite write alone: {per * 1e6:.1f} µs per record in batches of 256")


def paced(service: MamService, rate: float, seconds: float, tag: str) -> tuple[float, list[float]]:
    """Offer ``rate`` calls/s (admit one, release the oldest) for ``seconds``: the rate
    achieved and each admission's latency."""
    live: list[str] = []
    for i in range(ACTIVE):
        service.admit(AdmissionRequest(f"{tag}-warm-{i}", "a", "b", MEDIA))
        live.append(f"{tag}-warm-{i}")
    latencies = []
    started = time.perf_counter()
    done = 0
    while (now := time.perf_counter()) - started < seconds:
        due = int((now - started) * rate)
        while done < due:
            service.release(live[done % ACTIVE], "bye")
            t0 = time.perf_counter()
            service.admit(AdmissionRequest(f"{tag}-{done}", "a", "b", MEDIA))
            latencies.append(time.perf_counter() - t0)
            live[done % ACTIVE] = f"{tag}-{done}"
            done += 1
        time.sleep(0.0005)
    return done / (time.perf_counter() - started), sorted(latencies)


def bench_paced(rate: float = 1000.0, seconds: float = 5.0) -> None:
    print(f"\nat {rate:,.0f} calls/s offered for {seconds:g} s (SQLite ledger):")
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("without records", "with records"):
            path = os.path.join(tmp, label.replace(" ", "-") + ".sqlite")
            service = sqlite_service(path)
            recorder = None
            if label == "with records":
                recorder = CdrRecorder(SqliteCdrStore(path))
                service.watch(recorder)
            cpu = time.process_time()
            achieved, latencies = paced(service, rate, seconds, label[:4])
            if recorder is not None:
                recorder.flush()
            busy = (time.process_time() - cpu) / seconds
            print(f"  {label:16} {achieved:,.0f} calls/s, admission p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
                  f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms, CPU {busy:.0%} of one core")


class Followers:
    """``count`` clients of GET /mam/v1/events, read by one thread (selectors)."""

    def __init__(self, port: int, count: int) -> None:
        self.socks = []
        self.last = [0] * count
        self.arrivals: dict[int, list[float]] = {}
        self.selector = selectors.DefaultSelector()
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /mam/v1/events HTTP/1.0\r\nHost: x\r\n\r\n")
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)
            self.socks.append(sock)
        self.tails = [b""] * count
        self.heard = [False] * count           # the stream's first bytes came: subscribed
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            for key, _ in self.selector.select(0.2):
                i = key.data
                try:
                    data = key.fileobj.recv(1 << 20)       # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                now = time.perf_counter()
                self.heard[i] = True
                text = self.tails[i] + data
                cut = text.rfind(b"\n")
                self.tails[i] = text[cut + 1:]
                for line in text[:cut].split(b"\n"):
                    if line.startswith(b"id: "):
                        ident = int(line[4:])
                        self.last[i] = ident
                        if ident % 97 == 0:
                            self.arrivals.setdefault(ident, []).append(now)

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def bench_fanout(calls: int, clients: int) -> None:
    from fakes.loopback import serve
    print(f"\nevent fan-out: {calls:,} calls with {clients} clients on GET /mam/v1/events (loopback)")

    def memory_service() -> tuple[MamService, EventHub]:
        hub = EventHub(wakeup=ThreadWakeup, client_queue=100_000, max_clients=3 * clients)
        service = MamService(build_manager(parse_config(config())), clock=time.time)
        service.watch(hub)
        return service, hub
    service, hub = memory_service()
    alone = churn(service, calls, "alone")
    service, hub = memory_service()
    published: dict[int, float] = {}
    original = hub.__call__

    def timed(activity: Any) -> None:
        original(activity)
        if hub.last_id % 97 == 0:
            published.setdefault(hub.last_id, time.perf_counter())
    service._watchers = [timed]                      # the same hub, with the publish times noted
    for url in serve(make_wsgi_app(service, ApiConfig(), events=hub)):
        followers = Followers(int(url.rsplit(":", 1)[1]), clients)
        deadline = time.monotonic() + 10
        while hub.clients < clients and time.monotonic() < deadline:
            time.sleep(0.01)
        followed = churn(service, calls, "fan")
        last = hub.last_id
        started = time.monotonic()
        while min(followers.last) < last and time.monotonic() - started < 60:
            time.sleep(0.02)
        drained = time.monotonic() - started
        followers.close()
        delays = sorted(arrival - published[ident] for ident, arrivals in followers.arrivals.items()
                        if ident in published for arrival in arrivals)
        complete = sum(1 for n in followers.last if n == last)
        print(f"  admission without clients: {alone:,.0f} calls/s; with {clients} clients: {followed:,.0f} calls/s "
              f"({followed / alone - 1:+.1%})")
        print(f"  {last:,} events; {complete} of {clients} clients got every one "
              f"({hub.dropped} dropped), the last {drained * 1000:.0f} ms after the last decision")
        if delays:
            print(f"  decision to client at full speed: p50 {statistics.median(delays) * 1000:.1f} ms, "
                  f"p99 {delays[int(len(delays) * 0.99)] * 1000:.1f} ms ({len(delays):,} samples)")
        # the same clients at a paced 1,000 calls/s (2,000 events/s)
        followers = Followers(int(url.rsplit(":", 1)[1]), clients)
        started = time.monotonic()
        while not all(followers.heard) and time.monotonic() - started < 20:
            time.sleep(0.01)
        first = hub.last_id
        published.clear()
        achieved, latencies = paced(service, 1000.0, 3.0, "paced")
        last = hub.last_id
        started = time.monotonic()
        while min(followers.last) < last and time.monotonic() - started < 30:
            time.sleep(0.02)
        followers.close()
        delays = sorted(arrival - published[ident] for ident, arrivals in followers.arrivals.items()
                        if ident in published and ident > first for arrival in arrivals)
        complete = sum(1 for n in followers.last if n == last)
        if delays:
            print(f"  at 1,000 calls/s: {achieved:,.0f} achieved, admission p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms; "
                  f"{complete} of {clients} clients got every event; decision to client p50 "
                  f"{statistics.median(delays) * 1000:.1f} ms, p99 {delays[int(len(delays) * 0.99)] * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args(argv if argv is not None else [])
    bench_records(args.calls)
    bench_paced()
    bench_fanout(args.calls // 4, args.clients)


if __name__ == "__main__":
    main(sys.argv[1:])
