"""Issue 11: a fuzz run at a size CI affords, against every shell over real sockets.

Mutated datagrams and TCP streams from real seeds (tests/sip_seeds/, every header of every
seed mutated), with OPTIONS probes in between over UDP and TCP: every probe is answered,
the core has no internal error, and after its timers a clean call leaves the pool at 0.
(benchmarks/fuzz_sip_proxy.py is the same at 200,000 datagrams and 2,000 streams.)
"""

from __future__ import annotations

import time

import pytest

from fakes.sip_fuzz import fuzz
from fakes.sip_peer import clean_call, udp_socket
from fakes.sip_shells import KINDS, running_shell

SIP = {"timers": {"t1_s": 0.05, "t2_s": 0.4, "t4_s": 0.5}, "timer_c_s": 3,
       "tcp": {"message_timeout_s": 2, "idle_timeout_s": 5}}


@pytest.mark.osken
@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_datagrams_and_streams_stop_nothing(kind: str) -> None:
    with running_shell(kind, pool_kbps=5000, loopback=True, **SIP) as shell:
        report = fuzz(shell.port, datagrams=1200, streams=40, seed=11, rate=3000, probe_every=200,
                      callee=shell.callee)
        assert report.answered == report.probes >= 8, report.failed_probes
        covered, headers = report.covered
        assert covered == headers, f"{headers - covered} header(s) of the seeds never mutated"
        deadline = time.monotonic() + 10                 # timer B/C (short here) end what the fuzz began
        while (stats := shell.stats())["pool_used_kbps"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stats["internal_errors"] == 0 and stats["malformed"] > 100, stats
        assert set(stats["faults"]) <= {"tcp-connect", "tcp-send", "udp-send"}, stats["faults"]
        shell.callee.settimeout(3)
        with udp_socket() as caller:
            try:
                while True:                              # what the fuzz left for the callee
                    shell.callee.settimeout(0.2)
                    shell.callee.recv(65535)
            except OSError:
                shell.callee.settimeout(3)
            clean_call(shell.port, caller, shell.callee, "after-fuzz")
        deadline = time.monotonic() + 5
        while (stats := shell.stats())["pool_used_kbps"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats["pool_used_kbps"] == 0 and stats["admitted_calls"] == 0, stats
