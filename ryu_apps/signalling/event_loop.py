"""The asyncio loop the standalone signalling processes run on (SIP proxy, its workers and
their owner, the H.323 gatekeeper): uvloop when it is installed, and the controller's
garbage-collector schedule (:mod:`ryu_apps.gc_tuning`) with its sweeper on the loop's timers.

Without the schedule, a proxy holding thousands of live calls stalled its loop in
collections scanning them all (``benchmarks/bench_gc.py --sip``: see docs/performance.md),
and a stalled loop drops UDP datagrams."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

from .. import gc_tuning

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop if installed, with the collector tuned and swept."""
    try:
        import uvloop  # type: ignore[import-not-found]
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    return asyncio.run(_tuned(main))


async def _tuned(main: Coroutine[Any, Any, T]) -> T:
    gc_tuning.tune()
    gc_tuning.Sweeper().start(asyncio.get_running_loop().call_later)
    return await main
