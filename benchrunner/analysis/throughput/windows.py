"""When a concurrency level has been measured long enough: the stability rule.

As in Triton's perf_analyzer: a level is measured in consecutive windows (a fixed time, or a
fixed count of completed clips); it is stable when the last ``STABLE_WINDOWS`` windows each lie
within ``stability_pct`` percent of their mean, both in throughput and in median latency. After
``max_windows`` windows without that, the level stops and is reported as unstable, with the
figures of its last windows. Pure: no clocks, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

STABLE_WINDOWS = 3


@dataclass(frozen=True)
class Window:
    """One measurement window: how long it lasted, the clips that completed in it."""

    start_ns: int
    end_ns: int
    ok: int                  # clips completed successfully in the window
    failed: int              # clips that failed in the window
    latency_p50_ms: float | None

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def clips_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


def within(values: Sequence[float], pct: float) -> bool:
    """Every value within ``pct`` percent of the values' mean (a mean of 0 never is)."""
    mean = sum(values) / len(values)
    return mean > 0 and all(abs(v - mean) <= mean * pct / 100.0 for v in values)


def is_stable(windows: Sequence[Window], stability_pct: float) -> bool:
    """The last STABLE_WINDOWS windows agree within ``stability_pct`` % in clips/s and in p50
    latency (a window with no successful clip never counts as stable)."""
    if len(windows) < STABLE_WINDOWS:
        return False
    last = windows[-STABLE_WINDOWS:]
    if any(w.ok == 0 or w.latency_p50_ms is None for w in last):
        return False
    return within([w.clips_per_s for w in last], stability_pct) and \
        within([w.latency_p50_ms for w in last], stability_pct)


def should_stop(windows: Sequence[Window], stability_pct: float, max_windows: int) -> tuple[bool, bool]:
    """(stop, stable): stop when stable, when ``max_windows`` were measured, or when every
    clip so far failed over STABLE_WINDOWS windows (nothing more to learn at this level)."""
    if is_stable(windows, stability_pct):
        return True, True
    if len(windows) >= max_windows:
        return True, False
    recent = windows[-STABLE_WINDOWS:]
    if len(recent) == STABLE_WINDOWS and all(w.ok == 0 and w.failed > 0 for w in recent):
        return True, False
    return False, False


def measured_windows(windows: Sequence[Window]) -> list[Window]:
    """The windows the level's figures come from: the last STABLE_WINDOWS (all, when fewer)."""
    return list(windows[-STABLE_WINDOWS:])
