"""Stage timers: CUDA events resolved after one synchronize, or perf_counter_ns on CPU.

A timer accumulates time per stage name over one repeat (chunked mode runs each stage
once per chunk) and names an NVTX range per call, so Nsight Systems shows
``<mode>/<stage>/chunk<k>``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch

TIMER_SOURCE_CPU = "perf_counter"
TIMER_SOURCE_CUDA = "cuda_event"


class CpuStageTimer:
    """Host wall time per stage with ``time.perf_counter_ns``; a failed call still counts."""

    source = TIMER_SOURCE_CPU

    def __init__(self) -> None:
        self._elapsed_ns: dict[str, int] = defaultdict(int)

    def begin_repeat(self) -> None:
        self._elapsed_ns = defaultdict(int)

    @contextmanager
    def measure(self, stage: str, label: str) -> Iterator[None]:
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self._elapsed_ns[stage] += time.perf_counter_ns() - start

    def end_repeat(self) -> dict[str, float]:
        """Milliseconds per stage for the repeat just finished."""
        return {stage: ns / 1e6 for stage, ns in self._elapsed_ns.items()}


class CudaStageTimer:
    """A CUDA event pair per stage call on the current stream; no per-stage synchronize.

    ``end_repeat`` synchronizes once and sums ``start.elapsed_time(end)`` per stage, so a
    stage is charged for its own kernels, not for the previous stage's queued work.
    """

    source = TIMER_SOURCE_CUDA

    def __init__(self) -> None:
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    def begin_repeat(self) -> None:
        self._events = []

    @contextmanager
    def measure(self, stage: str, label: str) -> Iterator[None]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.nvtx.range_push(label)
        start.record()
        try:
            yield
        finally:
            end.record()
            torch.cuda.nvtx.range_pop()
            self._events.append((stage, start, end))

    def end_repeat(self) -> dict[str, float]:
        torch.cuda.synchronize()
        elapsed: dict[str, float] = defaultdict(float)
        for stage, start, end in self._events:
            elapsed[stage] += start.elapsed_time(end)
        return dict(elapsed)


def make_stage_timer(device: str) -> CpuStageTimer | CudaStageTimer:
    return CudaStageTimer() if device.startswith("cuda") else CpuStageTimer()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
