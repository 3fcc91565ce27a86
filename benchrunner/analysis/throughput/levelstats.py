"""One concurrency level's records -> its rows of throughput.csv and throughput_samples.csv.

Pure: takes the executor's plain records (times in ns from one perf_counter clock) and the
measurement windows, returns dicts. Figures come from the measured span, the last windows
(see windows.py):

- clips/s: clips completed successfully in the span / the span's length;
- latency per clip (admission to completion) p50/p90/p99 by stats.describe, the same rule as
  summary.csv (a q-quantile needs n >= 1/(1-q) clips, else it stays blank);
- per stage: busy time inside the span (calls clipped to it), utilisation = busy / span,
  mean and largest queue wait in front of the stage (from the previous stage's end to this
  call's start; the first stage has the entry instead, ``entry_wait_mean_ms`` on the total
  row), and the mean time the stage waited to hand its output on (``blocked``: back-pressure
  from a full queue);
- the bottleneck: the stage with the highest utilisation, or every stage within
  BOTTLENECK_TOLERANCE of it joined by ``+`` (a balanced pipeline has no single bottleneck);
- transfers between devices: one row per stage boundary crossed, with time and bytes per move.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from ..stats import describe
from ...store.throughput import KIND_STAGE, KIND_TOTAL, KIND_TRANSFER, THROUGHPUT_SCHEMA_VERSION
from .windows import Window, measured_windows


@dataclass(frozen=True)
class LevelMeta:
    """The columns that say which level a row belongs to, and how it was measured."""

    run_id: str
    suite: str
    pipeline: str
    variant: str
    mode: str
    threshold_s: float | None
    clip_s: float
    concurrency: int
    device: str
    stability_pct: float
    window_s: float | None
    window_clips: int | None
    queue_depth: int
    timer_source: str
    started_at: str

    def columns(self) -> dict[str, Any]:
        return {"schema_version": THROUGHPUT_SCHEMA_VERSION, "run_id": self.run_id, "suite": self.suite,
                "pipeline": self.pipeline, "variant": self.variant, "mode": self.mode,
                "threshold_s": self.threshold_s, "clip_s": self.clip_s, "concurrency": self.concurrency,
                "stability_pct": self.stability_pct, "window_s": self.window_s, "window_clips": self.window_clips,
                "queue_depth": self.queue_depth, "timer_source": self.timer_source, "started_at": self.started_at}


BOTTLENECK_TOLERANCE = 0.05  # relative: stages this close to the busiest share the title


def bottleneck_of(stage_rows: Sequence[dict]) -> str:
    """The busiest stage by utilisation; ``a+b`` when several are within 5% of the busiest."""
    busy = [(r["stage"], r["utilisation_pct"]) for r in stage_rows if r["utilisation_pct"]]
    if not busy:
        return ""
    top = max(u for _, u in busy)
    return "+".join(name for name, u in busy if u >= top * (1 - BOTTLENECK_TOLERANCE))


def _overlap_ns(start: int, end: int, span: tuple[int, int]) -> int:
    return max(0, min(end, span[1]) - max(start, span[0]))


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def window_of(done_ns: int, windows: Sequence[Window]) -> int | None:
    for index, w in enumerate(windows):
        if w.start_ns <= done_ns < w.end_ns:
            return index
    return None


def make_window(clips: Sequence[Any], start_ns: int, end_ns: int) -> Window:
    """A Window from the clip records (``done_ns``, ``status``, ``latency_ms``) completed in it."""
    inside = [c for c in clips if start_ns <= c.done_ns < end_ns]
    ok = [c.latency_ms for c in inside if c.status == "ok"]
    return Window(start_ns, end_ns, len(ok), len(inside) - len(ok), describe(ok).p50 if ok else None)


def level_rows(meta: LevelMeta, stage_names: list[str], devices: list[str], windows: Sequence[Window],
               stable: bool, clips: Sequence[Any], stage_events: Sequence[Any], transfer_events: Sequence[Any],
               *, peak_mem_bytes: float | None, mem_source: str, cpu_util_pct: float | None,
               peak_mem_growth_bytes: float | None = None,
               level_error: str = "", ended_by: str | None = None) -> list[dict[str, Any]]:
    """The total row, one row per stage and one per transfer boundary, for one level.
    ``ended_by`` names what cut the level short (``timeout``), if anything."""
    base = meta.columns()
    measured = measured_windows(windows)
    span = (measured[0].start_ns, measured[-1].end_ns) if measured else (0, 0)
    span_s = (span[1] - span[0]) / 1e9
    in_span = [c for c in clips if span[0] <= c.done_ns < span[1]]
    ok = [c for c in in_span if c.status == "ok"]
    failed = [c for c in in_span if c.status != "ok"]
    kinds = Counter(c.status for c in failed)
    latency = describe([c.latency_ms for c in ok])
    errors = [c.error for c in failed if c.error]
    error = errors[0] if errors else level_error
    stage_rows = [_stage_row(base, i, name, devices[i], span, span_s,
                             [e for e in stage_events if e.stage == i and span[0] <= e.start_ns < span[1]],
                             [e for e in stage_events if e.stage == i])
                  for i, name in enumerate(stage_names)]
    transfer_rows = _transfer_rows(base, stage_names, devices, span, span_s, transfer_events)
    bottleneck = bottleneck_of(stage_rows)
    if ended_by:
        status = ended_by
    elif not ok and failed:
        status = kinds.most_common(1)[0][0]
    elif not ok:
        status = "error"
        error = error or "no clip completed in the measured windows"
    else:
        status = "ok" if stable else "unstable"
    total = {
        **base, "kind": KIND_TOTAL, "stage": KIND_TOTAL, "device": "+".join(dict.fromkeys(devices)),
        "status": status, "error": error, "windows": len(windows), "stable": stable,
        "measured_s": span_s if measured else None, "clips": len(ok), "failures": len(failed),
        "n_oom": kinds.get("oom", 0), "n_error": kinds.get("error", 0),
        "throughput_clips_per_s": len(ok) / span_s if span_s > 0 else None,
        "window_clips_per_s": ";".join(f"{w.clips_per_s:.6g}" for w in measured),
        "latency_p50_ms": latency.p50, "latency_p90_ms": latency.p90, "latency_p99_ms": latency.p99,
        "latency_mean_ms": latency.mean, "latency_max_ms": latency.maximum,
        "entry_wait_mean_ms": _mean([c.entry_wait_ms for c in ok if c.entry_wait_ms is not None]),
        "peak_mem_bytes": peak_mem_bytes, "peak_mem_growth_bytes": peak_mem_growth_bytes, "mem_source": mem_source, "cpu_util_pct": cpu_util_pct,
        "bottleneck": bottleneck,
        "calls": sum(r["calls"] for r in stage_rows), "busy_ms": sum(r["busy_ms"] for r in stage_rows),
    }
    return [total, *stage_rows, *transfer_rows]


def _stage_row(base: dict, index: int, name: str, device: str, span: tuple[int, int], span_s: float,
               started: Sequence[Any], every: Sequence[Any]) -> dict[str, Any]:
    busy_ns = sum(_overlap_ns(e.start_ns, e.end_ns, span) for e in every)
    waits = [e.queue_wait_ns / 1e6 for e in started if e.queue_wait_ns is not None]
    return {
        **base, "kind": KIND_STAGE, "stage": name, "device": device, "calls": len(started),
        "busy_ms": busy_ns / 1e6,
        "busy_mean_ms": _mean([(e.end_ns - e.start_ns) / 1e6 for e in started]),
        "utilisation_pct": 100.0 * busy_ns / 1e9 / span_s if span_s > 0 else None,
        "queue_wait_mean_ms": _mean(waits) if index > 0 else None,
        "queue_wait_max_ms": max(waits) if waits and index > 0 else None,
        "blocked_mean_ms": _mean([e.blocked_ns / 1e6 for e in started]),
    }


def _transfer_rows(base: dict, stage_names: list[str], devices: list[str], span: tuple[int, int], span_s: float,
                   events: Sequence[Any]) -> list[dict[str, Any]]:
    rows = []
    for to_stage in sorted({e.to_stage for e in events}):
        mine = [e for e in events if e.to_stage == to_stage]
        started = [e for e in mine if span[0] <= e.start_ns < span[1]]
        busy_ns = sum(_overlap_ns(e.start_ns, e.end_ns, span) for e in mine)
        before = stage_names[to_stage - 1] if to_stage > 0 else "input"
        source = devices[to_stage - 1] if to_stage > 0 else "?"
        rows.append({
            **base, "kind": KIND_TRANSFER, "stage": f"{before}->{stage_names[to_stage]}",
            "device": f"{source}->{devices[to_stage]}", "calls": len(started), "busy_ms": busy_ns / 1e6,
            "busy_mean_ms": _mean([(e.end_ns - e.start_ns) / 1e6 for e in started]),
            "utilisation_pct": 100.0 * busy_ns / 1e9 / span_s if span_s > 0 else None,
            "transfer_bytes_mean": _mean([float(e.nbytes) for e in started]),
        })
    return rows


def sample_rows(meta: LevelMeta, windows: Sequence[Window], clips: Sequence[Any]) -> list[dict[str, Any]]:
    """One raw row per clip that completed inside a window (warm-up and drain excluded)."""
    rows = []
    origin = windows[0].start_ns if windows else 0
    for c in sorted(clips, key=lambda c: c.done_ns):
        index = window_of(c.done_ns, windows)
        if index is None:
            continue
        rows.append({
            "run_id": meta.run_id, "variant": meta.variant, "mode": meta.mode, "threshold_s": meta.threshold_s,
            "clip_s": meta.clip_s, "concurrency": meta.concurrency, "window": index, "clip": c.clip,
            "status": c.status, "error": c.error, "executed_as": c.executed_as,
            "latency_ms": c.latency_ms if c.status == "ok" else None, "entry_wait_ms": c.entry_wait_ms,
            "done_at_ms": (c.done_ns - origin) / 1e6, "chunks": c.chunks, "retries": c.retries, "input": c.label,
        })
    return rows
