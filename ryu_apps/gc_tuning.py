"""Garbage-collector settings for the controller process (not the core: no policy there).

A controller holds every live call (the calls, their flows in the valve, dialogs): with
CPython's default thresholds (700, 10, 10) those objects are scanned again and again as
they age, and a full collection over tens of thousands of calls stalls the call path
for hundreds of milliseconds. ``bench_openflow.py`` part A prints the collections on the
core's call path with the default and with these settings (20,000 calls, 2026-12-02:
default 2,756 ms of collections, longest 464 ms; these 163 ms, longest 11 ms).

* ``gc.freeze()`` after start-up: the framework's and the configuration's objects are
  never scanned again.
* generation 0 at 10,000 allocations: fewer, still short, young collections.
* generation 1 after 2 of those: survivors leave the young generations quickly, so a
  generation-1 collection stays short; the full collection waits for 1,000 of them (and
  CPython's own rule: a quarter of the long-lived objects must be new).
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 2, 1_000)


def tune(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Call once, when start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
