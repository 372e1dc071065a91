"""A PNG chart of one pool over a period: kbit/s held against its size, and refusals by
reason (``mamctl report --png``). matplotlib is imported only here (the ``demo`` extra)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from .core.cdr import Record, held_steps, refusal_counts


def pool_chart(path: str, aggregate: str, size_kbps: int, records: Sequence[Record], start: float, end: float,
               step_s: float = 300.0) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("the PNG chart needs matplotlib (pip install '.[demo]')") from None
    mine = [r for r in records if r.aggregate_id == aggregate]
    steps = held_steps(mine, start, end)
    refusals = refusal_counts(mine, start, end, step_s)

    def when(seconds: float) -> Any:
        return datetime.fromtimestamp(seconds, timezone.utc)
    figure, (use, refused) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 2]})
    xs = [when(t) for t, _ in steps] + [when(end)]
    ys = [level for _, level in steps] + [steps[-1][1]]
    use.step(xs, ys, where="post", label="held kbit/s")
    use.axhline(size_kbps, color="tab:red", linestyle="--", label=f"size now ({size_kbps} kbit/s)")
    use.set_ylabel("kbit/s")
    use.set_title(f"aggregate {aggregate}: use and refusals (UTC)")
    use.legend(loc="upper left")
    bottom = [0] * (len(next(iter(refusals.values()))) if refusals else 0)
    for reason, counts in refusals.items():
        lefts = [when(start + i * step_s) for i in range(len(counts))]
        refused.bar(lefts, counts, width=step_s / 86400 * 0.9, bottom=bottom, align="edge", label=reason)
        bottom = [b + c for b, c in zip(bottom, counts)]
    refused.set_ylabel(f"refusals / {step_s / 60:g} min")
    if refusals:
        refused.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
