"""CI-sized fuzz of the gatekeeper core: mutated RAS datagrams and Q.931/TPKT streams.

No input raises out of the core or breaks it inside; each bad input is counted by kind;
a valid GRQ is answered after every batch. ``benchmarks/bench_h323_fuzz.py`` runs the
same generator at >= 100,000 inputs.
"""

from __future__ import annotations

from h323fuzz import run


def test_fuzzed_ras_and_streams_are_counted_and_the_gatekeeper_keeps_answering() -> None:
    result = run(datagrams=4000, streams=400, seed=14, check_every=500)
    assert result.datagrams == 4000 and result.streams == 400
    assert result.grq_checks >= 4000 // 500 + 400 // 50
    for kind in ("ras-undecodable", "tpkt-broken", "q931-malformed"):
        assert result.dropped.get(kind, 0) > 0, (kind, result.dropped)
