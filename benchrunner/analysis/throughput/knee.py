"""The knee of a latency-throughput curve: the most clips/s whose tail latency stays within a
budget. Pure: plain numbers in, one answer out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SAME_THROUGHPUT = 0.02


@dataclass(frozen=True)
class LevelPoint:
    """One concurrency level as the knee sees it."""

    concurrency: int
    clips_per_s: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    failures: int = 0
    usable: bool = True      # measured (ok or unstable), not lost to a crash or timeout


@dataclass(frozen=True)
class Knee:
    concurrency: int | None  # None: no level qualifies
    clips_per_s: float | None
    quantile: str            # "p99" or "p90": which latency was held to the budget
    latency_ms: float | None
    budget_ms: float
    reason: str              # one line: why this level, or why none


def find_knee(points: Sequence[LevelPoint], budget_ms: float) -> Knee:
    """The level with the highest throughput whose tail latency is within ``budget_ms`` and
    which had no failed clip. Throughputs within SAME_THROUGHPUT (2%) of the highest count as
    the same, and the lowest concurrency among them is the knee: more clips in flight for no
    more clips/s only adds latency (window-to-window noise is of that order).

    The tail is p99 when every usable level has enough clips for it (100), otherwise p90
    (10 clips), the same quantile on every level so that they compare; with fewer clips no
    knee is claimed.
    """
    usable = [p for p in points if p.usable and p.clips_per_s is not None]
    if not usable:
        return Knee(None, None, "p99", None, budget_ms, "no level was measured")
    if all(p.latency_p99_ms is not None for p in usable):
        quantile, tail = "p99", (lambda p: p.latency_p99_ms)
    elif all(p.latency_p90_ms is not None for p in usable):
        quantile, tail = "p90", (lambda p: p.latency_p90_ms)
    else:
        return Knee(None, None, "p90", None, budget_ms,
                    "too few clips per level for a p90 (needs 10): longer windows or more of them")
    within = [p for p in usable if p.failures == 0 and tail(p) <= budget_ms]
    if not within:
        lowest = min(usable, key=lambda p: p.concurrency)
        return Knee(None, None, quantile, None, budget_ms,
                    f"no level keeps {quantile} within {budget_ms:g} ms without failures "
                    f"(concurrency {lowest.concurrency}: {quantile} {tail(lowest):.4g} ms)")
    top = max(p.clips_per_s for p in within)
    best = min((p for p in within if p.clips_per_s >= top * (1 - SAME_THROUGHPUT)), key=lambda p: p.concurrency)
    return Knee(best.concurrency, best.clips_per_s, quantile, tail(best), budget_ms,
                f"concurrency {best.concurrency}: {best.clips_per_s:.4g} clips/s with {quantile} "
                f"{tail(best):.4g} ms <= {budget_ms:g} ms")
