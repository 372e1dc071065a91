"""The controller's collector schedule (ryu_apps/gc_tuning.py) and what it relies on: the
objects a live call holds are few, and a call admitted and released leaves no reference
cycle behind (frozen by a sweep, a cycle would never be collected).

The settings are global: what changes them runs in a fresh interpreter."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any, Iterator

import pytest
from webob import Request

from ryu_apps import gc_tuning
from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.flowplan import PRIORITY_CALL, FlowEntry
from ryu_apps.core.manager import MediaAggregationManager

from fakes.valve_rig import Rig
from test_rest_api import TOKEN, Api

CONFIG = {
    "topology": {
        "switches": [{"name": n, "dpid": i + 1} for i, n in enumerate(("e1", "c1", "e2"))],
        "links": [{"a": "e1", "a_port": 20, "b": "c1", "b_port": 21, "capacity_kbps": 10_000_000},
                  {"a": "c1", "a_port": 20, "b": "e2", "b_port": 21, "capacity_kbps": 10_000_000}]},
    "communities": [{"name": "a", "edge": "e1", "access_ports": [1], "prefixes": ["10.1.0.0/16"]},
                    {"name": "b", "edge": "e2", "access_ports": [1], "prefixes": ["10.2.0.0/16"]}],
    "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 1_000_000}],
    "dataplane": {"class_mode": "none", "call_idle_timeout_s": 30},
}


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_tune_freezes_start_up_objects_sets_the_thresholds_and_times_collections() -> None:
    code = ("import gc; from ryu_apps import gc_tuning; gc_tuning.tune(); gc_tuning.tune(); "
            "print(gc.get_threshold(), gc.get_freeze_count() > 0, gc.isenabled(), "
            "gc.callbacks.count(gc_tuning.PAUSES))")
    assert run(code) == f"(1000, 2, {gc_tuning.NEVER}) True True 1"


def test_a_sweep_collects_what_came_since_the_last_and_freezes_the_survivors() -> None:
    code = ("import gc; from ryu_apps import gc_tuning; gc_tuning.tune(); "
            "frozen = gc.get_freeze_count(); kept = [[n] for n in range(500)]; "
            "cycle = []; cycle.append(cycle); del cycle; "
            "gc_tuning.Sweeper().sweep(); "
            "print(gc.get_freeze_count() - frozen >= 500, len(gc.get_objects()), "
            "gc_tuning.PAUSES.count[1], gc_tuning.PAUSES.collected[1])")
    assert run(code) == "True 0 1 1"       # the cycle found, the 500 lists frozen, nothing left to scan


def test_the_sweep_interval_follows_its_cost_within_bounds() -> None:
    code = ("from ryu_apps import gc_tuning as g\n"
            "costs = iter([0.0, 0.01] * 10 + [0.0, 0.0] * 40)\n"
            "s = g.Sweeper(interval_s=0.2, target_s=0.001, cpu=lambda: next(costs))\n"
            "slow = [s.sweep() for _ in range(10)]\n"
            "fast = [s.sweep() for _ in range(40)]\n"
            "print(slow[0], slow[-1] == g.MIN_INTERVAL_S, fast[-1] == g.MAX_INTERVAL_S)")
    assert run(code) == "0.1 True True"


def test_pauses_are_counted_by_generation_with_their_histogram() -> None:
    pauses = gc_tuning.Pauses()
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(1)
    finally:
        pauses.uninstall()
    assert pauses.count[0] >= 1 and pauses.count[1] >= 1
    assert [sum(b) for b in pauses.buckets] == pauses.count
    assert pauses.longest[0] > 0 and pauses.seconds[1] >= pauses.longest[1]
    assert pauses not in gc.callbacks


# --- what a live call holds ----------------------------------------------------------------

def admit(manager: MediaAggregationManager, n: int) -> None:
    decision = manager.admit(AdmissionRequest(f"call-{n}", "a", "b", MediaSpec("pcmu")), 0.0)
    assert isinstance(decision, Admitted), decision
    # a few terminals, each call its own ports: a new address is also remembered in
    # network.parse_address's cache (bounded), which is not the call's
    manager.attach_media(f"call-{n}", MediaEndpoint(f"10.1.0.{n % 20 + 1}", 20_000 + 2 * n),
                         MediaEndpoint(f"10.2.0.{n % 20 + 1}", 30_000 + 2 * n), 0.0)
    manager.drain()


@pytest.fixture
def collector_off() -> Iterator[None]:
    """No automatic collection in between: what the test's own gc.collect() finds is ours."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_calls_of_one_aggregate_share_their_actions_but_the_label() -> None:
    manager = build_manager(parse_config(CONFIG))
    for n in range(2):
        admit(manager, n)
    ingress = [[e for e in manager.expected_plan() if isinstance(e, FlowEntry) and e.priority == PRIORITY_CALL
                and e.meter is not None and e.cookie & 0xFF_FFFF_FFFF == call.serial and e.switch == "e1"][0]
               for call in manager.calls()]
    first, second = (entry.actions for entry in ingress)
    assert first != second                                     # the call's own label
    shared = [a is b for a, b in zip(first, second)]
    assert shared.count(False) == 1 and len(shared) == 7, (first, second)


def test_a_live_call_holds_few_objects_the_collector_tracks(collector_off: None) -> None:
    """Measured: the call, its media spec and two media addresses, and its two ingress
    entries (held by the arbiter) with their label actions: 8 (20 before the actions were
    shared), besides tuples (CPython untracks those of numbers and strings when it can).
    Each one is scanned by the young collections."""
    manager = build_manager(parse_config(CONFIG))
    for n in range(50):
        admit(manager, n)

    def tracked() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is not tuple)

    before = tracked()
    for n in range(50, 550):
        admit(manager, n)
    per_call = (tracked() - before) / 500
    assert per_call <= 8.2, per_call


def test_calls_admitted_and_released_through_the_valve_leave_no_cyclic_garbage(collector_off: None) -> None:
    rig = Rig(CONFIG)
    rig.connect()

    def calls(first: int, count: int) -> None:
        for n in range(first, first + count):
            rig.admit(f"call-{n}", "a", "b", caller=(f"10.1.0.{n % 200 + 1}", 20_000 + 2 * n),
                      callee=(f"10.2.0.{n % 200 + 1}", 30_000 + 2 * n))
            assert rig.state(f"call-{n}") == "active"
        for n in range(first, first + count):
            rig.service.release(f"call-{n}")
            rig.deliver()
            assert rig.state(f"call-{n}") is None

    calls(0, 20)                    # warm-up: caches, first messages
    gc.collect()
    calls(20, 200)
    assert gc.collect() == 0        # every object of those calls died by reference count


# --- REST requests -------------------------------------------------------------------------

def serve(app: Any, request: Request, eventlet: bool) -> int:
    """One request as a WSGI server runs it: the body read, the response closed (PEP 3333),
    then (``eventlet``) eventlet.wsgi's post-response hooks."""
    environ = request.environ
    hooks: list[Any] = []
    if eventlet:
        environ["eventlet.posthooks"] = hooks
    status: list[str] = []
    result = app(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    for hook, args, kwargs in hooks:
        hook(environ, *args, **kwargs)
    return int(status[0].split()[0])


def rest_round(app: Any, n: int, eventlet: bool) -> None:
    """Admit, list and release a call over the REST API."""
    for method, path, body in (("POST", "/mam/v1/calls", {"call_id": f"r{n}", "caller_community": "site-a",
                                                          "callee_community": "site-b", "media": {"codec": "pcmu"}}),
                               ("GET", f"/mam/v1/calls?aggregate=a-b&n={n}", None),
                               ("DELETE", f"/mam/v1/calls/r{n}", None)):
        request = Request.blank(path, method=method)
        request.headers["Authorization"] = f"Bearer {TOKEN}"
        if body is not None:
            request.body = json.dumps(body).encode()
            request.content_type = "application/json"
        assert serve(app, request, eventlet) in (200, 201, 204)


@pytest.mark.parametrize("eventlet", [True, False])
def test_rest_requests_leave_no_cyclic_garbage_once_wrapped(collector_off: None, eventlet: bool) -> None:
    api = Api()

    def cyclic(environ: dict[str, Any], start_response: Any) -> Any:
        Request(environ).GET        # webob's own query parse: its dict and the environ point at each other
        return api.app(environ, start_response)
    plain, wrapped = cyclic, gc_tuning.acyclic_wsgi(cyclic)
    rest_round(wrapped, 0, eventlet)            # warm-up
    gc.collect()
    rest_round(plain, 1, eventlet)
    assert gc.collect() > 0                     # webob ties a request's environ into cycles
    for n in range(2, 12):
        rest_round(wrapped, n, eventlet)
    assert gc.collect() == 0


RECLAIM_PROBE = ("import gc; from ryu_apps import gc_tuning as g; g.tune()\n"
                 "s = g.Sweeper(floor=0, growth=2.0, blind_growth=4.0, check_s=0); s.sweep()\n"
                 "base = gc.get_freeze_count(); reclaimed_at = None\n"
                 "for n in range(1, 2000):\n"
                 "    alive = [[] for _ in range(500)]\n"
                 "    for c in alive: c.append(c)\n"            # 500 cycles, alive at the sweep
                 "    if YOUNG: young = []; young.append(young); del young\n"   # one that dies young
                 "    before = gc.get_freeze_count()\n"
                 "    s.sweep(); del alive, c\n"                # ... and dead after it: frozen garbage
                 "    if s.reclaims: reclaimed_at = n; break\n"
                 "print(reclaimed_at is not None, round(before / base, 1), gc.get_freeze_count() < 1.5 * base, "
                 "g.PAUSES.count[2], g.PAUSES.collected[2] >= 500 * (reclaimed_at or 0) - 500)")


def test_cycles_that_died_frozen_are_reclaimed_once_the_frozen_objects_double() -> None:
    """A cycle alive at a sweep and dead later is frozen garbage; in a process whose sweeps
    find cyclic garbage (it makes cycles), the reclaim (a full collection) finds it once the
    frozen objects grew past twice what the last kept."""
    found, growth, shrunk, full, collected = run("YOUNG = True\n" + RECLAIM_PROBE).split()
    assert (found, shrunk, full, collected) == ("True", "True", "1", "True")
    assert 1.9 <= float(growth) <= 2.1


def test_without_cyclic_garbage_in_the_sweeps_the_reclaim_waits_for_the_blind_growth() -> None:
    """Frozen objects that grow while the sweeps find no cycle are most likely live calls (a
    ramp-up): a full collection over them would stall for nothing. The reclaim still comes,
    later (here 4x instead of 2x), so cycles that die frozen stay bounded."""
    found, growth, shrunk, full, collected = run("YOUNG = False\n" + RECLAIM_PROBE).split()
    assert (found, shrunk, full, collected) == ("True", "True", "1", "True")
    assert 3.9 <= float(growth) <= 4.1


def test_sweeps_alone_never_reclaim_while_nothing_grows() -> None:
    code = ("import gc; from ryu_apps import gc_tuning as g; g.tune()\n"
            "s = g.Sweeper(floor=0, growth=2.0, check_s=0)\n"
            "for _ in range(200):\n"
            "    churn = [[n] for n in range(300)]; s.sweep(); del churn\n"   # acyclic: dies by refcount
            "print(s.reclaims, g.PAUSES.count[2])")
    assert run(code) == "0 0"


def test_the_frozen_objects_are_counted_once_per_check_period_not_per_sweep() -> None:
    """Counting them walks them all (O(n)): a sweep every 20-50 ms must not pay it each time."""
    code = ("import gc; from ryu_apps import gc_tuning as g\n"
            "counted = []; real = gc.get_freeze_count\n"
            "g.gc = type('G', (), {'collect': staticmethod(gc.collect), 'freeze': staticmethod(gc.freeze),\n"
            "    'get_freeze_count': staticmethod(lambda: counted.append(1) or real())})\n"
            "s = g.Sweeper(interval_s=0.05, check_s=1.0, cpu=lambda: 0.0)\n"
            "for _ in range(100):\n"
            "    s.sweep(); s.interval_s = 0.05\n"
            "print(len(counted))")
    assert int(run(code)) in (5, 6)        # 100 sweeps of 50 ms: 5 s, one count a second


def test_a_sweep_that_fails_is_logged_and_the_loop_keeps_its_interval(caplog: pytest.LogCaptureFixture) -> None:
    sweeper = gc_tuning.Sweeper(interval_s=0.3)

    def broken() -> float:
        raise RuntimeError("collector exploded")
    sweeper.sweep = broken      # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="ryu_apps.gc_tuning"):
        assert sweeper.guarded_sweep() == 0.3
    assert "garbage-collection sweep failed" in caplog.text and "collector exploded" in caplog.text


def test_an_event_loop_sweeper_reschedules_itself_even_after_a_failure() -> None:
    scheduled: list[tuple[float, Any]] = []
    sweeper = gc_tuning.Sweeper(interval_s=0.05, cpu=lambda: 0.0)
    sweeper.start(lambda delay, callback: scheduled.append((delay, callback)))
    assert [delay for delay, _ in scheduled] == [0.05] and sweeper.sweeps == 0
    scheduled.pop()[1]()                       # the loop runs the tick: one sweep, the next one booked
    assert sweeper.sweeps == 1 and len(scheduled) == 1
    sweeper.sweep = lambda: 1 / 0              # type: ignore[method-assign,assignment,return-value]
    scheduled.pop()[1]()                       # a failing sweep still books the next one
    assert len(scheduled) == 1 and scheduled[0][0] == sweeper.interval_s


def test_the_standalone_loop_tunes_the_collector_and_sweeps_on_its_timers() -> None:
    out = run("import asyncio, gc, json\n"
              "from ryu_apps.signalling import event_loop\n"
              "from ryu_apps import gc_tuning\n"
              "async def main():\n"
              "    before = gc_tuning.PAUSES.count[1]\n"
              "    await asyncio.sleep(0.3)\n"
              "    return [gc.get_threshold(), gc_tuning.PAUSES.count[1] - before, gc.get_freeze_count() > 0]\n"
              "print(json.dumps(event_loop.run(main())))")
    thresholds, sweeps, frozen = json.loads(out)
    assert tuple(thresholds) == gc_tuning.THRESHOLDS
    assert sweeps >= 2 and frozen          # sweeps (generation-1 collections) ran on the loop's timers
