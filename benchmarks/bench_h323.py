"""H.323 gatekeeper figures: ARQ -> ACF per second and latency, gatekeeper-routed call setups per second.

    .venv/bin/python benchmarks/bench_h323.py [arqs] [calls]

A standalone gatekeeper process (``--config``: admission in its process, a pool large
enough for every call) on free loopback ports; simulated endpoints (tests/h323sim.py)
on the same 2-core machine, so the client's own pycrate work competes with it.

* ARQ: one registered caller sends pre-encoded ARQs keeping ``WINDOW`` outstanding;
  latency is send -> answer per request (answers come back in order on loopback; every
  answer is decoded afterwards and checked to be the ACF for its request).
* Calls: ARQ, Setup with fastStart to the gatekeeper, Setup relayed to the callee, the
  callee's ARQ, Alerting + Connect relayed back, ReleaseComplete; sequential and with
  ``WORKERS`` caller/callee pairs in threads. Setup latency: ARQ sent -> Connect received.
"""

from __future__ import annotations

import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import h323sim as sim  # noqa: E402
from h323lab import GatekeeperProcess  # noqa: E402

WINDOW = 16
WORKERS = 4
BIG_POOL = 50_000_000          # 549,450 G.711 calls: never full during the run


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def _arqs(gk: GatekeeperProcess, count: int, rate: float | None) -> tuple[float, list[float], int]:
    """Send ``count`` ARQs: with ``WINDOW`` outstanding (rate None) or paced at ``rate`` per
    second (open loop). Returns (seconds taken, latency of each answered one, how many got
    no answer within 2 s: a datagram the loaded machine dropped)."""
    caller, callee = sim.Phone(f"1{int(rate or 0)}", gk.ras), sim.Phone(f"2{int(rate or 0)}", gk.ras)
    assert caller.register()[0] == callee.register()[0] == "registrationConfirm"
    assert caller.endpoint_id
    count = min(count, 65535)                       # requestSeqNum identifies each answer
    requests = [sim.enc("ras", sim.arq(i + 1, caller.endpoint_id, sim.new_guid(),
                                       [("dialledDigits", f"2{int(rate or 0)}")])) for i in range(count)]
    sock = caller.ras
    sock.setblocking(False)
    sent_at: list[float] = []
    answers: list[tuple[float, bytes]] = []
    started = last_answer = time.perf_counter()
    while len(answers) < count:
        now = time.perf_counter()
        if len(sent_at) == count and now - last_answer > 2.0:
            break                                   # the rest is lost
        if rate is None:
            while len(sent_at) < count and len(sent_at) - len(answers) < WINDOW:
                sent_at.append(time.perf_counter())
                sock.sendto(requests[len(sent_at) - 1], gk.ras)
            wait = 0.5
        else:
            while len(sent_at) < count and started + len(sent_at) / rate <= now:
                sent_at.append(time.perf_counter())
                sock.sendto(requests[len(sent_at) - 1], gk.ras)
            # wake at the next send time, but at least 0.5 ms later: a client spinning on
            # select() would take the CPU the gatekeeper needs on this 2-core machine
            wait = max(0.0005, started + len(sent_at) / rate - time.perf_counter()) if len(sent_at) < count else 0.5
        ready, _, _ = select.select([sock], [], [], wait)
        if not ready and rate is None and time.perf_counter() - last_answer > 2.0:
            break                                   # a lost datagram stalled the window
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except BlockingIOError:
                break
            last_answer = time.perf_counter()
            answers.append((last_answer, data))
    took = (answers[-1][0] if answers else time.perf_counter()) - started
    latency = []
    for received, data in answers:
        kind, fields = sim.dec("ras", data)
        assert kind == "admissionConfirm", (kind, fields)
        latency.append(received - sent_at[fields["requestSeqNum"] - 1])
    caller.close()
    callee.close()
    return took, latency, count - len(answers)


def arq_rate(gk: GatekeeperProcess, count: int) -> None:
    took, latency, lost = _arqs(gk, count, None)
    print(f"ARQ -> ACF, saturated ({WINDOW} outstanding): {len(latency):,} in {took:.2f} s = "
          f"{len(latency) / took:,.0f} ARQ/s ({lost} unanswered); latency p50 {pct(latency, .5):.2f} ms, "
          f"p99 {pct(latency, .99):.2f} ms (queueing behind the window)")
    for rate in (1000.0, 2000.0, 3000.0):
        took, latency, lost = _arqs(gk, count // 2, rate)
        print(f"ARQ -> ACF, paced at {rate:,.0f}/s: {len(latency):,} answered at {len(latency) / took:,.0f} ARQ/s "
              f"({lost} unanswered); latency p50 {pct(latency, .5):.2f} ms, p90 {pct(latency, .9):.2f} ms, "
              f"p99 {pct(latency, .99):.2f} ms, max {pct(latency, 1):.2f} ms  [goal >= 2,000 ARQ/s, p99 < 2 ms]")


def one_call(caller: sim.Phone, callee: sim.Phone, number: str) -> float:
    started = time.perf_counter()
    out = caller.place(number, codec="g729AnnexA", frames=2, bandwidth=160)
    assert out.admission[0] == "admissionConfirm", out.admission
    incoming = callee.accept()
    assert incoming.admit(160)[0] == "admissionConfirm"
    incoming.answer(codec="g729AnnexA", frames=2)
    connect = out.until(sim.CONNECT)
    took = time.perf_counter() - started
    assert connect is not None
    out.hang_up()
    assert incoming.until(sim.RELEASE_COMPLETE) is not None
    out.close()
    incoming.close()
    return took


def call_rate(gk: GatekeeperProcess, count: int, workers: int) -> tuple[float, list[float]]:
    pairs = []
    for i in range(workers):
        caller, callee = sim.Phone(f"13{workers}{i:02d}", gk.ras), sim.Phone(f"23{workers}{i:02d}", gk.ras)
        assert caller.register()[0] == callee.register()[0] == "registrationConfirm"
        pairs.append((caller, callee, f"23{workers}{i:02d}"))
    latencies: list[float] = []
    errors: list[BaseException] = []

    def work(caller: sim.Phone, callee: sim.Phone, number: str, n: int) -> None:
        try:
            for _ in range(n):
                latencies.append(one_call(caller, callee, number))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(*pair, count // workers)) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    took = time.perf_counter() - started
    for caller, callee, _ in pairs:
        caller.close()
        callee.close()
    if errors:
        raise errors[0]
    return len(latencies) / took, latencies


def main(argv: list[str] | None = None) -> None:
    args = (argv if argv is not None else sys.argv[1:]) if __name__ == "__main__" else []
    arqs = int(args[0]) if args else 20_000
    calls = int(args[1]) if len(args) > 1 else 400
    with tempfile.TemporaryDirectory() as tmp:
        gk = GatekeeperProcess(Path(tmp), pool_kbps=BIG_POOL,
                               extra={"irq_interval_s": 0})
        try:
            arq_rate(gk, arqs)
            for workers in (1, WORKERS):
                rate, latency = call_rate(gk, calls, workers)
                print(f"gatekeeper-routed call setups ({workers} caller/callee pair{'s' if workers > 1 else ''}): "
                      f"{len(latency):,} calls at {rate:,.0f} setups/s (each: ARQ, Setup relayed, callee ARQ, "
                      f"Alerting + Connect relayed, ReleaseComplete); ARQ -> Connect p50 {pct(latency, .5):.2f} ms, "
                      f"p99 {pct(latency, .99):.2f} ms")
            stats = gk.stats()
            own, cpu = stats["ras_latency_us"], stats["ras_cpu_us"]
            print(f"the gatekeeper's own time per RAS datagram (arrival -> answer sent, in its loop): "
                  f"p50 {own['p50']} us, p99 {own['p99']} us, max {own['max']} us over {own['count']:,}; of which "
                  f"on CPU p50 {cpu['p50']} us, p99 {cpu['p99']} us, max {cpu['max']} us (the rest: preempted)")
            print(f"gatekeeper: {stats['admitted']:,} admitted, {stats['relayed']:,} messages relayed, dropped "
                  f"{stats['dropped'] or 'nothing'}, shell faults {stats['shell_faults'] or 'none'}")
        finally:
            gk.stop()


if __name__ == "__main__":
    main()
