"""SIP and H.323 calls share one pool: the arithmetic holds under random interleavings.

H.323 calls go through the sans-IO gatekeeper (ARQ, Setup with fastStart, callee's
answer; releases by ReleaseComplete, DRQ or a dropped connection); SIP calls are admitted
as the SIP proxy admits them (protocol sip, the SDP's codec and ptime). After every step
the pool's use equals the sum of the live calls' allocations, never exceeds the pool,
and a G.711 call costs the same whichever protocol brought it.
"""

from __future__ import annotations

import itertools

import h323sim as sim
import hypothesis.strategies as st
from h323_harness import PHONE_A, Harness, service
from hypothesis import HealthCheck, example, given, settings

from ryu_apps.core.admission import AdmissionRequest, Admitted, SignallingProtocol
from ryu_apps.core.codec import MediaSpec

POOL = 400     # small enough that random runs fill it (about 4 G.711 calls)
H323_CODECS = {"g711Ulaw64k": (20, "pcmu"), "g729AnnexA": (2, "g729"), "g711Alaw64k": (30, "pcma")}
SIP_CODECS = {"pcmu": 20, "g729": 20, "pcma": 30}

step = st.one_of(
    st.tuples(st.just("h323"), st.sampled_from(sorted(H323_CODECS))),
    st.tuples(st.just("sip"), st.sampled_from(sorted(SIP_CODECS))),
    st.tuples(st.just("end"), st.integers(0, 30), st.sampled_from(["caller-rc", "callee-rc", "drq", "tcp",
                                                                   "sip-bye"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
@example([("h323", "g711Ulaw64k")] * 3 + [("sip", "pcmu")] * 3 + [("end", 0, "drq"), ("sip", "pcmu"),
                                                                  ("end", 0, "sip-bye"), ("h323", "g729AnnexA")])
def test_mixed_calls_share_the_pool_and_the_arithmetic_holds(steps: list[tuple]) -> None:
    h = Harness(service=service(size_kbps=POOL))
    a, _ = h.two_phones()
    seq = itertools.count(100)
    h323_calls: list[dict] = []
    sip_calls: list[str] = []
    for item in steps:
        if item[0] == "h323":
            frames, _ = H323_CODECS[item[1]]
            c = h.call(a, seq=next(seq), codec=item[1], frames=frames)
            if "crv" in c and "h323-" + c["guid"].hex() in h.gk.calls:
                h323_calls.append(c)
        elif item[0] == "sip":
            call_id = f"sip-{next(seq)}@pbx"
            decision = h.service.admit(AdmissionRequest(call_id, "site-a", "site-b",
                                                        MediaSpec(item[1], SIP_CODECS[item[1]]),
                                                        protocol=SignallingProtocol.SIP))
            if isinstance(decision, Admitted):
                sip_calls.append(call_id)
        else:
            _, index, how = item
            if how == "sip-bye" and sip_calls:
                h.service.release(sip_calls.pop(index % len(sip_calls)), "bye")
            elif how != "sip-bye" and h323_calls:
                c = h323_calls.pop(index % len(h323_calls))
                if how == "caller-rc":
                    h.stream(c["caller"], sim.q931(sim.RELEASE_COMPLETE, 7, False, sim.release_body(c["guid"]), cause=16))
                elif how == "callee-rc":
                    h.stream(c["callee"], sim.q931(sim.RELEASE_COMPLETE, c["crv"], True, sim.release_body(c["guid"])))
                elif how == "drq":
                    h.ras(PHONE_A, sim.drq(next(seq), a, c["guid"]))
                else:
                    h.take(h.gk.stream_closed(c["callee"], h.now, reset=True))
        calls = h.service.read(lambda m: m.calls())
        used = h.used()
        assert used == sum(call.kbps for call in calls) <= POOL
        assert {c.call_id for c in calls if c.protocol is SignallingProtocol.H323} == set(h.gk.calls)
        assert {c.call_id for c in calls if c.protocol is SignallingProtocol.SIP} == set(sip_calls)
        by_codec = {}
        for call in calls:
            by_codec.setdefault((call.media.codec, call.media.ptime_ms), set()).add(call.kbps)
        assert all(len(costs) == 1 for costs in by_codec.values()), by_codec   # same media, same cost
    for c in h323_calls:
        h.take(h.gk.stream_closed(c["caller"], h.now))
    for call_id in sip_calls:
        h.service.release(call_id, "bye")
    assert h.used() == 0 and not h.gk.calls

