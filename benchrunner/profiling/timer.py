"""The profiling timer: the StageTimer protocol, measuring nothing itself, naming ranges.

Every stage call becomes a ``torch.profiler.record_function`` range named like the
worker's NVTX ranges (``<mode>/<stage>`` or ``<mode>/<stage>/chunk<k>``), plus an NVTX
range on CUDA so Nsight Systems shows the same names. The timer remembers which stage
each label belongs to, so the analysis never has to parse labels.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch.profiler import record_function


class ProfilingStageTimer:
    source = "torch_profiler"

    def __init__(self, device: str, *, torch_ranges: bool = True):
        self.nvtx = device.startswith("cuda")
        self.torch_ranges = torch_ranges
        self.stage_of: dict[str, str] = {}

    @contextmanager
    def measure(self, stage: str, label: str) -> Iterator[None]:
        self.stage_of[label] = stage
        with self.range(label):
            yield

    @contextmanager
    def range(self, name: str) -> Iterator[None]:
        """A named range in the torch trace and, on CUDA, in NVTX (for nsys)."""
        if self.nvtx:
            torch.cuda.nvtx.range_push(name)
        try:
            with record_function(name) if self.torch_ranges else nullcontext():
                yield
        finally:
            if self.nvtx:
                torch.cuda.nvtx.range_pop()
