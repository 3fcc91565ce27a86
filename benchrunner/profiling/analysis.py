"""Where the time goes in one profiled case: a pure function of the exported trace.

Input: the Chrome/Perfetto trace torch.profiler exported (a dict), the map from range
label (``chunked/acoustic/chunk2``) to stage name the profiling timer kept, and whether
the device is the CPU or a CUDA GPU. Output: per *region* (each stage, ``io_wait`` = the
main thread waiting for its input from the prefetch thread, ``other`` = everything else
inside a repeat: cutting, overlap-add merging, Python) the wall time the host spent
there, how much of it the device was busy, and the idle gaps; plus the top operators
(CPU) or kernels (CUDA) by self time per region. All times are per profiled repeat.

*Busy* means, on CUDA: a kernel, memcpy or memset was running on the GPU (any stream).
On the CPU there is no separate device: busy means a torch operator was executing on
the main thread, and "idle" means no torch op was running there (Python, queue waits,
sleeps). A region is a host-side range, so with asynchronous CUDA a region's busy time
is the GPU work that overlapped the host being in that region.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import intervals as iv

IO_WAIT = "io_wait"
OTHER = "other"
STEP_PREFIX = "ProfilerStep#"
RANGE_CATS = ("user_annotation", "cpu_op")  # record_function ranges (older torch: cpu_op)
KERNEL_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")
BUSY_MEANING = {
    "cpu": "host-side: busy = a torch op executing on the main thread; idle = no torch op running there "
           "(there is no separate device on the CPU)",
    "cuda": "device-side: busy = a kernel/memcpy/memset running on the GPU; idle = gaps between them",
}


@dataclass(frozen=True)
class Span:
    name: str
    cat: str
    start: float  # microseconds, as in the trace
    end: float
    tid: Any
    correlation: Any = None


@dataclass(frozen=True)
class RegionStats:
    region: str
    kind: str  # stage | io_wait | other
    calls: float
    wall_ms: float
    busy_ms: float
    idle_ms: float
    busy_pct: float
    largest_gap_ms: float
    gaps: float


@dataclass(frozen=True)
class OpStats:
    region: str
    kind: str  # cpu_op | kernel
    op: str
    self_time_ms: float
    calls: float
    share: float


@dataclass(frozen=True)
class Gap:
    repeat: int
    offset_ms: float
    duration_ms: float
    region: str


@dataclass
class Analysis:
    activity: str
    repeats: int
    window_ms: float
    busy_ms: float
    idle_ms: float
    busy_pct: float
    min_gap_ms: float
    regions: list[RegionStats] = field(default_factory=list)
    ops: list[OpStats] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)


class TraceError(ValueError):
    """The trace lacks what the analysis needs (e.g. no profiled step)."""


def analyse(trace: Mapping[str, Any], stage_of: Mapping[str, str], stages: list[str], activity: str, *,
            min_gap_ms: float = 0.1, max_gaps: int = 10) -> Analysis:
    spans = parse_spans(trace)
    steps, main_tid = _steps(spans)
    window = iv.union((s.start, s.end) for s in steps)
    ranges, calls = _region_ranges(spans, main_tid, stage_of, window)
    locate = _RegionLocator(ranges)
    ops, busy = _ops_and_busy(spans, main_tid, activity, locate, window, _is_range(stage_of))
    n = len(steps)
    gaps = iv.subtract(window, busy)
    regions = [_region_stats(name, kind, ranges.get(name, []), calls.get(name, n), busy, gaps, n, min_gap_ms)
               for name, kind in _region_order(stages, ranges)]
    window_us, busy_us = iv.total(window), iv.total(busy)
    return Analysis(
        activity=activity, repeats=n, window_ms=window_us / n / 1e3, busy_ms=busy_us / n / 1e3,
        idle_ms=(window_us - busy_us) / n / 1e3, busy_pct=_pct(busy_us, window_us), min_gap_ms=min_gap_ms,
        regions=regions, ops=_op_stats(ops, n), gaps=_largest_gaps(gaps, steps, ranges, max_gaps),
    )


def parse_spans(trace: Mapping[str, Any]) -> list[Span]:
    """Complete events (``ph == "X"``) of the trace as spans."""
    spans = []
    for event in trace.get("traceEvents", []):
        if event.get("ph") != "X" or "dur" not in event or "ts" not in event:
            continue
        start = float(event["ts"])
        args = event.get("args") or {}
        spans.append(Span(str(event.get("name", "")), str(event.get("cat", "")), start,
                          start + float(event["dur"]), event.get("tid"), args.get("correlation")))
    return spans


def _steps(spans: list[Span]) -> tuple[list[Span], Any]:
    steps = sorted((s for s in spans if s.name.startswith(STEP_PREFIX) and s.cat in RANGE_CATS),
                   key=lambda s: s.start)
    if not steps:
        raise TraceError("the trace has no ProfilerStep ranges (no profiled repeat)")
    main_tid = steps[0].tid
    return [s for s in steps if s.tid == main_tid], main_tid


def _region_ranges(spans: list[Span], main_tid: Any, stage_of: Mapping[str, str], window: list[iv.Interval]
                   ) -> tuple[dict[str, list[iv.Interval]], dict[str, int]]:
    """Host intervals of each stage and of io_wait (main thread, inside the window) and
    how many ranges each had; ``other`` is the rest of the window."""
    inside = _Window(window)
    raw: dict[str, list[iv.Interval]] = defaultdict(list)
    for s in spans:
        if s.tid != main_tid or s.cat not in RANGE_CATS or not inside(s.start):
            continue
        region = IO_WAIT if s.name == IO_WAIT else stage_of.get(s.name)
        if region is not None:
            raw[region].append((s.start, s.end))
    ranges = {name: iv.intersect(iv.union(items), window) for name, items in raw.items()}
    covered = iv.union(i for items in ranges.values() for i in items)
    ranges[OTHER] = iv.subtract(window, covered)
    return ranges, {name: len(items) for name, items in raw.items()}


class _Window:
    """Whether a timestamp falls inside the profiled window (merged intervals)."""

    def __init__(self, window: list[iv.Interval]):
        self._window = window
        self._starts = [w[0] for w in window]

    def __call__(self, t: float) -> bool:
        k = bisect.bisect_right(self._starts, t) - 1
        return k >= 0 and t < self._window[k][1]


class _RegionLocator:
    """Which region a host timestamp falls in (stages and io_wait do not overlap)."""

    def __init__(self, ranges: Mapping[str, list[iv.Interval]]):
        items = sorted((start, end, name) for name, spans in ranges.items()
                       if name != OTHER for start, end in spans)
        self._starts = [i[0] for i in items]
        self._items = items

    def __call__(self, t: float) -> str:
        k = bisect.bisect_right(self._starts, t) - 1
        if k >= 0 and t < self._items[k][1]:
            return self._items[k][2]
        return OTHER


def _is_range(stage_of: Mapping[str, str]) -> Callable[[str], bool]:
    """Whether a name is one of our ranges (step, stage call, io_wait) rather than an op."""
    return lambda name: name in stage_of or name == IO_WAIT or name.startswith(STEP_PREFIX)


def _ops_and_busy(spans: list[Span], main_tid: Any, activity: str, locate: _RegionLocator,
                  window: list[iv.Interval], is_range: Callable[[str], bool]
                  ) -> tuple[list[tuple[str, str, str, float]], list[iv.Interval]]:
    """(region, kind, name, self_us) of every op/kernel in the window, and the busy intervals."""
    inside = _Window(window)
    cpu_ops = [s for s in spans
               if s.tid == main_tid and s.cat == "cpu_op" and not is_range(s.name) and inside(s.start)]
    ops = [(locate(s.start), "cpu_op", s.name, self_us) for s, self_us in _self_times(cpu_ops)]
    if activity != "cuda":
        return ops, iv.intersect(iv.union((s.start, s.end) for s in cpu_ops), window)
    launches = {s.correlation: s for s in spans if s.cat in LAUNCH_CATS and s.correlation is not None}
    kernels = [s for s in spans if s.cat in KERNEL_CATS and inside(s.start)]
    for k in kernels:
        launch = launches.get(k.correlation)
        region = locate(launch.start) if launch is not None and launch.tid == main_tid else OTHER
        ops.append((region, "kernel", k.name, k.end - k.start))
    return ops, iv.intersect(iv.union((k.start, k.end) for k in kernels), window)


def _self_times(ops: list[Span]) -> list[tuple[Span, float]]:
    """Each op's duration minus that of the ops nested directly inside it (same thread)."""
    ordered = sorted(ops, key=lambda s: (s.start, -s.end))
    child_us = [0.0] * len(ordered)
    stack: list[int] = []
    for i, op in enumerate(ordered):
        while stack and ordered[stack[-1]].end <= op.start:
            stack.pop()
        if stack:
            child_us[stack[-1]] += op.end - op.start
        stack.append(i)
    return [(op, max(0.0, op.end - op.start - child_us[i])) for i, op in enumerate(ordered)]


def _region_order(stages: list[str], ranges: Mapping[str, Any]) -> list[tuple[str, str]]:
    order = [(name, "stage") for name in stages]
    extra = [(name, "stage") for name in ranges if name not in stages and name not in (IO_WAIT, OTHER)]
    return order + extra + [(IO_WAIT, IO_WAIT), (OTHER, OTHER)]


def _region_stats(name: str, kind: str, spans: list[iv.Interval], calls: int, busy: list[iv.Interval],
                  gaps: list[iv.Interval], n: int, min_gap_ms: float) -> RegionStats:
    wall_us = iv.total(spans)
    busy_us = iv.total(iv.intersect(spans, busy))
    pieces = [end - start for start, end in iv.intersect(spans, gaps)]
    return RegionStats(
        region=name, kind=kind, calls=calls / n, wall_ms=wall_us / n / 1e3, busy_ms=busy_us / n / 1e3,
        idle_ms=(wall_us - busy_us) / n / 1e3, busy_pct=_pct(busy_us, wall_us),
        largest_gap_ms=max(pieces, default=0.0) / 1e3,
        gaps=sum(1 for p in pieces if p >= min_gap_ms * 1e3) / n,
    )


def _op_stats(ops: list[tuple[str, str, str, float]], n: int) -> list[OpStats]:
    self_us: dict[tuple[str, str, str], float] = defaultdict(float)
    calls: dict[tuple[str, str, str], int] = defaultdict(int)
    per_group: dict[tuple[str, str], float] = defaultdict(float)
    for region, kind, name, us in ops:
        self_us[(region, kind, name)] += us
        calls[(region, kind, name)] += 1
        per_group[(region, kind)] += us
    rows = [OpStats(region, kind, name, us / n / 1e3, calls[(region, kind, name)] / n,
                    us / per_group[(region, kind)] if per_group[(region, kind)] else 0.0)
            for (region, kind, name), us in self_us.items()]
    return sorted(rows, key=lambda r: (r.region, r.kind, -r.self_time_ms, r.op))


def _largest_gaps(gaps: list[iv.Interval], steps: list[Span], ranges: Mapping[str, list[iv.Interval]],
                  limit: int) -> list[Gap]:
    biggest = sorted(gaps, key=lambda g: g[1] - g[0], reverse=True)[:limit]
    starts = [s.start for s in steps]
    out = []
    for start, end in biggest:
        k = max(0, bisect.bisect_right(starts, start) - 1)
        region = max(ranges, key=lambda name: iv.total(iv.intersect([(start, end)], ranges[name])))
        out.append(Gap(repeat=k, offset_ms=(start - starts[k]) / 1e3, duration_ms=(end - start) / 1e3, region=region))
    return out


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0
