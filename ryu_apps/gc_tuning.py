"""Garbage-collector schedule for the controller process and the standalone SIP proxy and
gatekeeper (not the core: no policy there).

A controller holds every live call (the calls, their flows in the valve and the arbiter,
dialogs). With CPython 3.11 every collection stops the process for a time proportional to
the objects it scans, so the schedule bounds what each collection scans
(``benchmarks/bench_gc.py`` prints the collections, 2026-12-02: see docs/performance.md):

* ``gc.freeze()`` after start-up: the framework's and the configuration's objects are
  never scanned again.
* generation 0 at 1,000 allocations, generation 1 after 2 of those: a burst of admissions
  is scanned in slices of at most ~4,000 objects (in the controller under load, ~0.6-0.8 µs
  an object: a generation-1 collection over ~8,000 took 4.8 ms of CPU with 2,000 / 2).
* no automatic full collection (generation 2's threshold is never reached): a full
  collection scans every live call, hundreds of milliseconds at 10,000 calls.
* a :class:`Sweeper` collects the young generations (what was allocated since its last
  sweep or the last automatic collection) and freezes what survived (generation 2 then
  holds only what two collections since the last sweep kept), every few tens of
  milliseconds. This is what bounds the young generations under churn: CPython counts
  allocations *minus deallocations*, so a controller that admits and releases calls at the
  same rate never reaches generation 0's threshold while its young list grows with every
  call admitted (measured: 400,000 objects, a 114 ms generation-1 collection, after 15,000
  calls of churn). The sweep's interval follows its own measured cost (shorter when a sweep
  took longer than :data:`TARGET_S`).

The price: reference cycles that are still alive at a sweep and die later are not
collected by the sweeps (they are frozen). The per-call objects are acyclic (they die by
reference count; ``tests/unit/test_gc_tuning.py`` holds that), and
``mam_gc_collected_objects_total`` shows how much cyclic garbage the sweeps still find, i.e.
whether something makes cycles. What other code leaves frozen is bounded by a reclaim (a
full collection) each time the frozen objects double (:data:`RECLAIM_GROWTH`, at least
:data:`RECLAIM_FLOOR` objects): rare, but a pause of the heap's size when it comes.

:data:`PAUSES` times every collection (``gc.callbacks``) for the metrics
(``mam_gc_pause_seconds``, ``mam_gc_pause_max_seconds``); the sweeps are generation-1
collections; after ``tune()`` the only generation-2 collections are the reclaims.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

NEVER = 2**31 - 1
THRESHOLDS = (1_000, 2, NEVER)
INTERVAL_S = 0.05                # first sweep interval; then between MIN_INTERVAL_S and MAX_INTERVAL_S
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.02, 1.0
TARGET_S = 0.001                 # what a sweep should cost (CPU): well under the 5 ms goal
#: a full collection (frozen objects included) once the frozen objects grew this many times
#: over what the last one kept, and never under RECLAIM_FLOOR objects: cycles that died
#: frozen never outnumber the live heap (see Sweeper.reclaim) — when the sweeps have found
#: cyclic garbage since (the process makes cycles); when they found none, only once the
#: frozen objects grew BLIND_GROWTH times: growth without cycles is live calls (a ramp-up),
#: and a full collection over them finds nothing and stalls the loop for its whole heap
RECLAIM_GROWTH, RECLAIM_FLOOR, BLIND_GROWTH = 2.0, 250_000, 8.0
#: how often (seconds of sweep intervals) the frozen objects are counted: counting walks them
#: all (gc.get_freeze_count() is O(n)), a millisecond per few hundred thousand
RECLAIM_CHECK_S = 10.0
#: collection pauses: tens of microseconds (a young collection) to a second (a full one over a big heap)
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Pauses:
    """Every collection while installed: count, time, longest and objects found, per
    generation, and a histogram of the pauses (wall clock: what the call path waits)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]
        self.buckets = [[0] * (len(BUCKETS) + 1) for _ in range(3)]   # last: over the largest bound
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += seconds
        self.collected[generation] += info["collected"]
        if seconds > self.longest[generation]:
            self.longest[generation] = seconds
        self.buckets[generation][_bucket(seconds)] += 1

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def _bucket(seconds: float) -> int:
    for index, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return index
    return len(BUCKETS)


#: the controller's pauses (the collector is one per process)
PAUSES = Pauses()


def tune(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Call once, when start-up is done; then run a :class:`Sweeper`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    PAUSES.install()


def acyclic_wsgi(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` whose requests leave no reference cycle behind: the request's ``environ``
    (which webob and eventlet.wsgi tie into cycles: the parsed query, the input wrappers,
    ~18 objects a request) is emptied once the response is done, so they die by reference
    count. Otherwise a keep-alive connection's last request, still held by the server
    while it waits for the next one, is frozen by a sweep and never collected (measured:
    ~1 object a request left for ever)."""
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        hooks = environ.get("eventlet.posthooks")
        if hooks is not None:             # eventlet.wsgi: run after the response, then nothing reads environ
            hooks.append((_empty, (), {}))
            return app(environ, start_response)
        return _Emptying(app(environ, start_response), environ)
    return wrapped


def _empty(environ: dict[str, Any]) -> None:
    environ.clear()


class _Emptying:
    """A response that empties its request's environ when the server closes it (PEP 3333)."""

    def __init__(self, result: Any, environ: dict[str, Any]) -> None:
        self._result, self._environ = result, environ

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._environ.clear()


class Sweeper:
    """Collects the young generations, then freezes the survivors: no collection ever
    scans an object again once it survived a sweep — until the frozen objects doubled
    (:meth:`reclaim`)."""

    def __init__(self, interval_s: float = INTERVAL_S, target_s: float = TARGET_S,
                 cpu: Callable[[], float] = time.thread_time,
                 growth: float = RECLAIM_GROWTH, floor: int = RECLAIM_FLOOR,
                 check_s: float = RECLAIM_CHECK_S, blind_growth: float = BLIND_GROWTH) -> None:
        self.interval_s = interval_s
        self.target_s = target_s
        self._cpu = cpu
        self.growth, self.floor = growth, floor
        self._reclaim_at: float | None = None      # frozen objects that call for a reclaim
        self._blind_at = 0.0                        # ... when the sweeps found no cyclic garbage
        self.blind_growth = blind_growth
        self._found = 0                             # cyclic garbage the sweeps found since the last reclaim
        self.check_s = check_s
        self._unchecked_s = check_s                 # sweep intervals since the frozen objects were counted
        self.sweeps = 0
        self.reclaims = 0

    def sweep(self) -> float:
        """One sweep; returns the interval until the next one."""
        started = self._cpu()
        self._found += gc.collect(1)   # the young generations: what came since the last sweep or collection
        gc.freeze()          # and generation 2: what two collections since the last sweep kept
        cost = self._cpu() - started
        self.sweeps += 1
        self._unchecked_s += self.interval_s
        if self._unchecked_s >= self.check_s:
            self._unchecked_s = 0.0
            frozen = gc.get_freeze_count()
            if self._reclaim_at is None:
                self._rebase(frozen)
            elif frozen >= (self._reclaim_at if self._found else self._blind_at):
                self.reclaim()
        if cost > self.target_s:
            self.interval_s = max(MIN_INTERVAL_S, self.interval_s / 2)
        elif cost < self.target_s / 4:
            self.interval_s = min(MAX_INTERVAL_S, self.interval_s * 1.25)
        return self.interval_s

    def reclaim(self) -> None:
        """A full collection of everything, frozen included, then freeze again.

        A reference cycle still alive at a sweep and dead later is frozen garbage: no sweep
        sees it again (eventlet's socket timeouts on idle OpenFlow connections make ~23
        objects of it each time). Amortised as CPython's own full collections are: one
        reclaim each time the frozen objects double, so frozen garbage never outgrows the
        live heap. It is a pause proportional to the heap (generation 2 in the metrics);
        the call path's own objects die by reference count and give it nothing to find."""
        before = gc.get_freeze_count()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        after = gc.get_freeze_count()
        self._rebase(after)
        self.reclaims += 1
        log.info("garbage collection: full reclaim of %d frozen objects found %d unreachable; %d kept",
                 before, found, after)

    def _rebase(self, frozen: int) -> None:
        self._reclaim_at = max(self.floor, self.growth * frozen)
        self._blind_at = max(self.floor, self.blind_growth * frozen)
        self._found = 0

    def guarded_sweep(self) -> float:
        """:meth:`sweep` for a loop that must survive anything one round meets: a failure is
        logged and the loop goes on at the same interval."""
        try:
            return self.sweep()
        except Exception:
            log.exception("garbage-collection sweep failed")
            return self.interval_s

    def start(self, call_later: Callable[[float, Callable[[], None]], object]) -> None:
        """Sweep on an event loop's timers (``sweeper.start(loop.call_later)``: the
        standalone SIP proxy and gatekeeper); each sweep schedules the next."""
        def tick() -> None:
            call_later(self.guarded_sweep(), tick)
        call_later(self.interval_s, tick)

    def run(self, sleep: Callable[[float], None]) -> None:
        """The controller's sweeping thread (``hub.spawn(sweeper.run, hub.sleep)``)."""
        interval = self.interval_s
        while True:
            sleep(interval)
            interval = self.guarded_sweep()
