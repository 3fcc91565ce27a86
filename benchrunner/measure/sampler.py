"""Background sampling of utilisation while cases run.

A thread reads a backend at a fixed rate and keeps every reading as a timeline
``(t_ms, metric, value)``; callers summarise a window of it (one repeat) afterwards.
Backends: the GPU one (``nvml_backend``: GPM SM activity or NVML's kernel-busy figure)
or :class:`CpuBackend` (psutil). The headline metric is ``util_pct``; its meaning is
named by ``util_source`` (``gpm_sm``, ``nvml_gpu`` or ``cpu``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import psutil

UTIL_METRIC = "util_pct"
SOURCE_CPU = "cpu"


class Backend(Protocol):
    util_source: str

    def read(self) -> dict[str, float]: ...


class CpuBackend:
    """This process's CPU use as a share of the whole machine (``util_pct``, 0-100), the
    system's CPU use, and the process's RSS."""

    util_source = SOURCE_CPU

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid or os.getpid())
        self._cores = psutil.cpu_count() or 1
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def read(self) -> dict[str, float]:
        with self._process.oneshot():
            process_pct = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
        return {
            UTIL_METRIC: process_pct / self._cores,
            "cpu_process_pct": process_pct,
            "cpu_system_pct": psutil.cpu_percent(None),
            "rss_bytes": float(rss),
        }


class CpuTimeWindow:
    """This process's CPU time over a window (all its threads, from the kernel's accounting via
    ``time.process_time_ns``) as a share of all cores, 0-100. Exact for a window of any
    length, where a 10 Hz sampler has no reading inside a repeat shorter than 100 ms."""

    def __init__(self) -> None:
        self._cores = os.cpu_count() or 1
        self._cpu_ns = self._wall_ns = 0

    def start(self) -> None:
        self._cpu_ns, self._wall_ns = time.process_time_ns(), time.perf_counter_ns()

    def stop(self) -> float | None:
        wall_ns = time.perf_counter_ns() - self._wall_ns
        if wall_ns <= 0:
            return None
        return 100.0 * (time.process_time_ns() - self._cpu_ns) / wall_ns / self._cores


@dataclass(frozen=True)
class WindowSummary:
    mean: float | None
    p95: float | None
    samples: int


class Sampler:
    """Reads ``backend`` every ``1/hz`` seconds on a daemon thread until :meth:`stop`."""

    def __init__(self, backend: Backend, hz: float = 10.0) -> None:
        self.backend = backend
        self.interval_s = max(1.0 / hz, getattr(backend, "min_interval_s", 0.0))
        self._zero = time.perf_counter()
        self._timeline: list[tuple[float, str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    @property
    def util_source(self) -> str:
        return self.backend.util_source

    def now_ms(self) -> float:
        return (time.perf_counter() - self._zero) * 1000.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="benchrunner-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self.sample_once()
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def sample_once(self) -> None:
        t_ms = self.now_ms()
        try:
            values = self.backend.read()
        except Exception as exc:  # a failing backend must not kill the run; it is reported
            message = f"{type(exc).__name__}: {exc}"
            if message not in self.errors:
                self.errors.append(message)
            return
        with self._lock:
            self._timeline.extend((t_ms, metric, float(value)) for metric, value in values.items())

    def take_timeline(self, since_ms: float = 0.0) -> list[tuple[float, str, float]]:
        """Readings at or after ``since_ms``; older ones are dropped from memory."""
        with self._lock:
            kept = [row for row in self._timeline if row[0] >= since_ms]
            self._timeline = kept
            return list(kept)

    def _window(self, start_ms: float, end_ms: float, metric: str) -> list[float]:
        """Readings of ``metric`` whose sampling interval lies mostly inside [start_ms, end_ms]:
        a reading taken at t describes the interval before t, so the window is shifted by half
        an interval."""
        lag = self.interval_s * 500.0
        with self._lock:
            return [v for t, m, v in self._timeline if m == metric and start_ms + lag <= t <= end_ms + lag]

    def summarise(self, start_ms: float, end_ms: float, metric: str = UTIL_METRIC) -> WindowSummary:
        """Mean and 95th percentile of ``metric`` over the readings of the window."""
        values = self._window(start_ms, end_ms, metric)
        if not values:
            return WindowSummary(None, None, 0)
        data = np.asarray(values)
        return WindowSummary(float(data.mean()), float(np.quantile(data, 0.95)), len(values))

    def peak(self, start_ms: float, end_ms: float, metric: str) -> float | None:
        values = self._window(start_ms, end_ms, metric)
        return max(values) if values else None
