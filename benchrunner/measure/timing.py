"""Stage timers: CUDA events resolved after one synchronize, or perf_counter_ns on CPU.

A timer accumulates time per stage name over one repeat (chunked mode runs each stage
once per chunk) and names an NVTX range per call, so Nsight Systems shows
``<mode>/<stage>/chunk<k>``.

On CUDA the default timer (``timer = "auto"``) records an event pair on the current stream
of the current device, so it sees only work queued there. ``timer = "sync"`` synchronizes
every visible device before and after each stage and reads ``perf_counter_ns``: it counts
side streams and other GPUs too, at the price of one synchronize per stage boundary.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch

TIMER_SOURCE_CPU = "perf_counter"
TIMER_SOURCE_CUDA = "cuda_event"
TIMER_SOURCE_SYNC = "sync_perf_counter"
TIMER_KINDS = ("auto", "sync")


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
        except BaseException:
            # A failed call still counts (as on the CPU), but recording the end event can
            # raise again (a sticky CUDA error does): that must not hide the stage's own error.
            try:
                end.record()
                self._events.append((stage, start, end))
            except Exception:  # noqa: BLE001
                pass
            _pop_range_quietly()
            raise
        end.record()
        torch.cuda.nvtx.range_pop()
        self._events.append((stage, start, end))

    def end_repeat(self) -> dict[str, float]:
        torch.cuda.synchronize()
        elapsed: dict[str, float] = defaultdict(float)
        for stage, start, end in self._events:
            elapsed[stage] += start.elapsed_time(end)
        return dict(elapsed)


class SyncStageTimer(CpuStageTimer):
    """Host wall time per stage between two synchronizations of every visible CUDA device:
    covers side streams and other GPUs (``CudaStageTimer`` sees the current stream only)."""

    source = TIMER_SOURCE_SYNC

    @contextmanager
    def measure(self, stage: str, label: str) -> Iterator[None]:
        synchronize_all()
        torch.cuda.nvtx.range_push(label)
        start = time.perf_counter_ns()
        try:
            yield
        except BaseException:
            try:
                synchronize_all()
                self._elapsed_ns[stage] += time.perf_counter_ns() - start  # a failed call still counts
            except Exception:  # noqa: BLE001 (a sticky CUDA error: keep the stage's own error)
                pass
            _pop_range_quietly()
            raise
        synchronize_all()
        self._elapsed_ns[stage] += time.perf_counter_ns() - start
        torch.cuda.nvtx.range_pop()


def make_stage_timer(device: str, kind: str = "auto") -> CpuStageTimer | CudaStageTimer:
    """``auto``: CUDA events on CUDA, perf_counter on the CPU; ``sync``: see SyncStageTimer
    (on the CPU it is the perf_counter timer: there is nothing to synchronize)."""
    if kind not in TIMER_KINDS:
        raise ValueError(f"timer: {kind!r} (expected one of {', '.join(TIMER_KINDS)})")
    if not device.startswith("cuda"):
        return CpuStageTimer()
    return SyncStageTimer() if kind == "sync" else CudaStageTimer()


def synchronize_all() -> None:
    """Wait for every stream of every visible CUDA device."""
    for index in range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


def _pop_range_quietly() -> None:
    try:
        torch.cuda.nvtx.range_pop()
    except Exception:  # noqa: BLE001 (the stage's own error is the one to report)
        pass


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
