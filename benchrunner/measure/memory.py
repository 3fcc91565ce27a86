"""Peak memory per repeat: the CUDA allocator (plus NVML's view of the process) or host RSS.

Every reading has the same two figures on both devices:
- ``peak_bytes``: the absolute peak during the repeat (CPU: resident memory of the worker;
  CUDA: bytes allocated by torch's allocator), what has to fit in the machine;
- ``growth_bytes``: that peak minus the same quantity just before the repeat, what the
  case itself added.
On CUDA also the caching allocator's reserved bytes (absolute peak, and growth over the
repeat: an earlier case's cache is not this one's) and NVML's figure for the process at
the end of the repeat.

On CPU the kernel's high-water mark of resident memory (``VmHWM``) is reset through
``/proc/self/clear_refs`` before each repeat, so the peak is exact rather than sampled
(``mem_source = rss_hwm``). Where that file is not writable, the sampler's RSS readings
are used (``rss_sampled``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

SOURCE_CUDA = "cuda_allocator"
SOURCE_RSS_HWM = "rss_hwm"
SOURCE_RSS_SAMPLED = "rss_sampled"

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryReading:
    peak_bytes: int | None              # absolute peak during the repeat
    reserved_bytes: int | None          # CUDA: absolute peak reserved by the caching allocator
    device_bytes: int | None            # CUDA: NVML's figure for the process at the end of the repeat
    baseline_bytes: int | None          # the peak's quantity just before the repeat
    source: str
    growth_bytes: int | None = None     # peak_bytes - baseline_bytes
    reserved_growth_bytes: int | None = None  # CUDA: peak reserved - reserved just before the repeat


def read_status_bytes(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in bytes (VmRSS, VmHWM, VmSize, ...)."""
    values = {}
    for line in _STATUS.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in keys:
            values[name] = int(rest.split()[0]) * 1024
    return values


def release_free_heap() -> None:
    """Give memory that glibc's malloc holds but no longer uses back to the kernel
    (``malloc_trim(0)``), so the next peak measures what a case needs, not what an
    earlier case left resident. A no-op where libc has no malloc_trim."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class CpuMemoryTracker:
    """Peak RSS of this process during a repeat, minus its RSS just before."""

    def __init__(self, sampled_peak: Callable[[], int | None] | None = None) -> None:
        self._sampled_peak = sampled_peak
        self._baseline = 0
        self._exact = False

    def begin(self) -> None:
        release_free_heap()
        self._exact = reset_rss_peak()
        self._baseline = read_status_bytes("VmRSS")["VmRSS"]

    def end(self) -> MemoryReading:
        if self._exact:
            return self._reading(read_status_bytes("VmHWM")["VmHWM"], SOURCE_RSS_HWM)
        sampled = self._sampled_peak() if self._sampled_peak else None
        return self._reading(None if sampled is None else int(sampled), SOURCE_RSS_SAMPLED)

    def _reading(self, peak: int | None, source: str) -> MemoryReading:
        if peak is not None:
            peak = max(peak, self._baseline)  # a peak is at least where the repeat started
        growth = None if peak is None else peak - self._baseline
        return MemoryReading(peak, None, None, self._baseline, source, growth_bytes=growth)

    def baseline_bytes(self) -> int:
        release_free_heap()
        return read_status_bytes("VmRSS")["VmRSS"]


class CudaMemoryTracker:
    """Peak allocated and reserved bytes from torch's allocator, reset before each repeat;
    the process's device memory (CUDA context included) from NVML when available."""

    def __init__(self, device: str, process_device_bytes: Callable[[], int | None] | None = None) -> None:
        self._device = torch.device(device)
        self._process_device_bytes = process_device_bytes
        self._baseline = 0
        self._reserved_before = 0

    def begin(self) -> None:
        torch.cuda.synchronize(self._device)
        torch.cuda.reset_peak_memory_stats(self._device)
        self._baseline = torch.cuda.memory_allocated(self._device)
        self._reserved_before = torch.cuda.memory_reserved(self._device)

    def end(self) -> MemoryReading:
        torch.cuda.synchronize(self._device)
        device_bytes = self._process_device_bytes() if self._process_device_bytes else None
        peak = torch.cuda.max_memory_allocated(self._device)
        reserved = torch.cuda.max_memory_reserved(self._device)
        return MemoryReading(
            peak_bytes=peak,
            reserved_bytes=reserved,
            device_bytes=device_bytes,
            baseline_bytes=self._baseline,
            source=SOURCE_CUDA,
            growth_bytes=peak - self._baseline,
            reserved_growth_bytes=reserved - self._reserved_before,
        )

    def baseline_bytes(self) -> int:
        return torch.cuda.memory_allocated(self._device)
