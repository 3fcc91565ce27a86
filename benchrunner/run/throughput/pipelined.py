"""The pipelined executor: one thread per stage, bounded queues between stages, and a
concurrency window of clips in flight (a closed loop, as perf_analyzer's concurrency mode).

    feeder --(entry)--> stage 0 --[queue]--> stage 1 --[queue]--> ... --> collector
      ^                                                                       |
      +------------------- a free slot when a clip completes ----------------+

The feeder admits a clip when one of ``concurrency`` slots is free: the clip is ready (loaded
and on the first stage's device) and its clock starts. A single-pass clip is one work item; a
chunked clip (``chunked``, or ``hybrid@T`` above T) is cut into chunk items that flow through
the stages one after the other, so chunk k+1's first stage overlaps chunk k's second stage,
and the collector merges them by overlap-add when the last one arrives. A failed stage call
of a chunk is retried (``chunk.max_retries``) on that stage; a failed clip drops its other
items and frees its slot. A clip's latency runs from admission to completion (merge included):
the latency a clip sees when the system is busy.

Every stage call, transfer and clip is recorded with ``perf_counter_ns`` times; levelstats.py
turns them into figures. Stage functions run under ``torch.inference_mode`` on their thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..failures import classify_exception, describe_exception, free_memory
from ...modespec import ModeSpec
from ..modes.base import ChunkRecord
from ..modes.merge import context_span, cut, merge, plan_chunks
from ...pipeline import (ChunkContext, LoadContext, Pipeline, reset_current_chunk, reset_current_load,
                        set_current_chunk, set_current_load)
from ...suite import ChunkConfig
from .placement import StagePlace, move, same_device, timed_transfer

_STOP = object()


def _touch_malloc() -> None:
    """One malloc/free from the calling thread, so glibc creates its arena now."""
    libc = _libc()
    if libc is not None:
        libc.free(libc.malloc(64))


def _passed(barrier: threading.Barrier) -> bool:
    try:
        barrier.wait()
        return True
    except threading.BrokenBarrierError:
        return False


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        return libc
    except (OSError, AttributeError):
        return None


@dataclass
class StageEvent:
    stage: int
    clip: int
    start_ns: int
    end_ns: int
    queue_wait_ns: int | None   # from the previous stage's end to this call's start (None for stage 0)
    blocked_ns: int             # from this call's end until the next queue took the output
    ok: bool


@dataclass
class TransferEvent:
    to_stage: int
    start_ns: int
    end_ns: int
    nbytes: int


@dataclass
class ClipRecord:
    clip: int
    label: str
    admitted_ns: int
    first_start_ns: int | None
    done_ns: int
    status: str
    error: str
    executed_as: str
    chunks: int
    retries: int

    @property
    def latency_ms(self) -> float:
        return (self.done_ns - self.admitted_ns) / 1e6

    @property
    def entry_wait_ms(self) -> float | None:
        return None if self.first_start_ns is None else (self.first_start_ns - self.admitted_ns) / 1e6


@dataclass
class _Job:
    clip: int
    label: str
    clip_s: float
    admitted_ns: int
    executed_as: str
    table: list[ChunkRecord]
    items_total: int
    outputs: dict[int, Any] = field(default_factory=dict)
    accounted: int = 0
    first_start_ns: int | None = None
    status: str = "ok"
    error: str = ""
    retries: int = 0

    def fail(self, kind: str, message: str) -> None:
        if self.status == "ok":
            self.status, self.error = kind, message


@dataclass
class _Item:
    job: _Job
    index: int               # chunk index (0 for a single pass)
    value: Any
    device: str              # where value lives
    ready_ns: int            # when it became ready for the next stage


class PipelinedExecutor:
    """Runs clips through the pipeline's stages, pipelined, with ``concurrency`` clips in flight.

    ``next_clip()`` returns ``(label, clip)`` for the next clip to admit (a fresh dict of
    tensors). Call :meth:`start`, read :meth:`completed` / :meth:`wait_completed` while it
    runs, then :meth:`stop`. Events and clip records accumulate in ``stage_events``,
    ``transfer_events`` and ``clips``.
    """

    def __init__(self, pipeline: Pipeline, devices: list[str], mode: ModeSpec, chunk: ChunkConfig, *,
                 concurrency: int, queue_depth: int, clip_s: float,
                 next_clip: Callable[[], tuple[str, dict]]):
        if concurrency < 1 or queue_depth < 1:
            raise ValueError("concurrency and queue_depth must be >= 1")
        self.pipeline, self.devices, self.mode, self.chunk = pipeline, devices, mode, chunk
        self.concurrency, self.queue_depth, self.clip_s = concurrency, queue_depth, clip_s
        self.next_clip = next_clip
        self.stage_events: list[StageEvent] = []
        self.transfer_events: list[TransferEvent] = []
        self.clips: list[ClipRecord] = []
        self.feed_errors: list[str] = []
        n = len(pipeline.stages)
        self._entry: queue.Queue = queue.Queue()
        self._queues = [self._entry] + [queue.Queue(maxsize=queue_depth) for _ in range(n - 1)]
        self._done: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(concurrency)
        self._admitting = threading.Event()
        self._admitting.set()
        self._changed = threading.Condition()
        self._in_flight = 0
        self._next_id = 0
        self._threads: list[threading.Thread] = []
        self._broken = False  # a stage thread died of an unexpected error (a harness bug)
        self._ready = threading.Barrier(n + 3)  # the stage threads, collector, feeder and start()
        self._go = threading.Event()

    # -- control --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads; no clip is admitted before :meth:`go`. Each thread has made its
        first allocation when this returns (glibc gives a thread its own malloc arena, tens of
        MB of address space, on its first malloc): a memory limit set between start and go
        then bounds what the clips add, not the threads' bookkeeping."""
        n = len(self.pipeline.stages)
        for i in range(n):
            out = self._queues[i + 1] if i + 1 < n else self._done
            self._threads.append(threading.Thread(target=self._stage_loop, args=(i, out), daemon=True,
                                                  name=f"benchrunner-stage-{self.pipeline.stages[i].name}"))
        self._threads.append(threading.Thread(target=self._collect_loop, daemon=True, name="benchrunner-collector"))
        self._threads.append(threading.Thread(target=self._feed_loop, daemon=True, name="benchrunner-feeder"))
        for thread in self._threads:
            thread.start()
        try:
            self._ready.wait()
        except threading.BrokenBarrierError:
            pass  # a stage thread failed to start: feed_errors says why, the level ends

    def go(self) -> None:
        """Start admitting clips."""
        self._go.set()

    def completed(self) -> int:
        return len(self.clips)

    def wait_completed(self, count: int, deadline_ns: int) -> bool:
        """Block until ``count`` clips completed (True) or ``deadline_ns`` passed (False)."""
        with self._changed:
            while len(self.clips) < count:
                left = (deadline_ns - time.perf_counter_ns()) / 1e9
                if left <= 0 or self._feeder_dead():
                    return len(self.clips) >= count
                self._changed.wait(min(left, 0.1))
        return True

    def _feeder_dead(self) -> bool:
        return bool(self.feed_errors) and (self._in_flight == 0 or self._broken)

    def stop(self, drain_timeout_s: float) -> bool:
        """Admit no more clips, let those in flight finish (up to ``drain_timeout_s``), stop the
        threads. False when clips were still in flight at the deadline (a stage hangs)."""
        self._admitting.clear()
        self._go.set()
        deadline = time.monotonic() + drain_timeout_s
        with self._changed:
            while self._in_flight > 0 and time.monotonic() < deadline:
                self._changed.wait(0.05)
            drained = self._in_flight == 0
        self._entry.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        return drained

    # -- threads ----------------------------------------------------------------------------

    def _feed_loop(self) -> None:
        _touch_malloc()
        if not _passed(self._ready):
            return
        self._go.wait()
        while self._admitting.is_set():
            if not self._slots.acquire(timeout=0.05):
                continue
            if not self._admitting.is_set():
                self._slots.release()
                break
            try:
                label, clip = self.next_clip()
                clip, _ = move(clip, self.devices[0], non_blocking=False)
            except Exception as exc:  # an input that cannot be loaded: no clip to measure, stop admitting
                self.feed_errors.append(f"input: {describe_exception(exc)}")
                self._slots.release()
                with self._changed:
                    self._changed.notify_all()
                break
            self._admit(label, clip)

    def _admit(self, label: str, clip: dict) -> None:
        clip_s = self.pipeline.duration_s(clip, self.clip_s)
        chunked = self.mode.kind == "chunked" or (self.mode.kind == "hybrid" and clip_s > self.mode.threshold_s)
        table = plan_chunks(clip_s, self.chunk.window_s) if chunked else []
        with self._changed:
            self._in_flight += 1
        job = _Job(self._next_id, label, clip_s, 0, "chunked" if chunked else "single", table, max(1, len(table)))
        self._next_id += 1
        job.admitted_ns = now = time.perf_counter_ns()
        if not chunked:
            self._entry.put(_Item(job, 0, clip, self.devices[0], now))
            return
        for record in table:
            part = cut(clip, self.pipeline.inputs, *context_span(record, clip_s, self.chunk.overlap_s))
            self._entry.put(_Item(job, record.index, part, self.devices[0], now))

    def _stage_loop(self, i: int, out: queue.Queue) -> None:
        try:
            self._stage_body(i, out)
        except Exception as exc:  # not a stage's failure (those are caught per call): end the level, say why
            self.feed_errors.append(f"stage thread {self.pipeline.stages[i].name}: {describe_exception(exc)}")
            self._broken = True
            self._ready.abort()  # start() must not wait for a thread that is gone
            with self._changed:
                self._changed.notify_all()

    def _stage_body(self, i: int, out: queue.Queue) -> None:
        stage, place = self.pipeline.stages[i], StagePlace(self.devices[i])
        place.open()
        _touch_malloc()
        if not _passed(self._ready):
            return
        while True:
            item = self._queues[i].get()
            if item is _STOP:
                out.put(_STOP)
                return
            picked = time.perf_counter_ns()
            job = item.job
            if job.status != "ok":
                self._done.put(("dropped", item))
                continue
            if i == 0 and job.first_start_ns is None:
                job.first_start_ns = picked
            wait = None if i == 0 else picked - item.ready_ns
            value = item.value
            if not same_device(item.device, place.device):
                try:
                    value, nbytes, t0, t1 = timed_transfer(value, place)
                except Exception as exc:  # e.g. out of memory on the receiving device: the clip's failure
                    job.fail(classify_exception(exc), f"transfer to {stage.name} ({place.device}): "
                                                      f"{describe_exception(exc)}")
                    del value
                    self._done.put(("dropped", item))
                    continue
                self.transfer_events.append(TransferEvent(i, t0, t1, nbytes))
            output, start, end = self._call(i, stage, place, job, item, value)
            del value
            item.value = None
            if output is None:
                self.stage_events.append(StageEvent(i, job.clip, start, end, wait, 0, False))
                self._done.put(("dropped", item))
                continue
            item.value, item.device, item.ready_ns = output, place.device, end
            out.put(("done", item) if out is self._done else item)
            self.stage_events.append(StageEvent(i, job.clip, start, end, wait, time.perf_counter_ns() - end, True))

    def _call(self, i: int, stage, place: StagePlace, job: _Job, item: _Item, value: Any):
        """The stage's call (retried for a chunk), under inference mode on the stage's stream:
        (output or None when it failed for good, start_ns, end_ns of the last attempt)."""
        attempts = 0
        while True:
            attempts += 1
            record = job.table[item.index] if job.table else None
            chunk_token = set_current_chunk(None if record is None else ChunkContext(
                record.index, len(job.table), attempts, record.start_s, record.end_s))
            load_token = set_current_load(LoadContext(self.concurrency, job.clip))
            start = time.perf_counter_ns()
            failure = None
            try:
                with torch.inference_mode(), place.context():
                    output = stage.fn(value)
                place.finish()
            except Exception as exc:  # a failing call is data, recorded with its kind
                output, failure = None, (classify_exception(exc), f"{stage.name}: {describe_exception(exc)}")
            finally:
                reset_current_load(load_token)
                reset_current_chunk(chunk_token)
            end = time.perf_counter_ns()
            if failure is None:
                return output, start, end
            free_memory()  # outside the except block: the traceback no longer holds the tensors
            if record is not None and attempts <= self.chunk.max_retries and job.status == "ok":
                job.retries += 1
                self.stage_events.append(StageEvent(i, job.clip, start, end, None, 0, False))
                continue
            job.fail(failure[0], failure[1] if record is None else
                     f"{self.mode.label}: chunk {record.index + 1}/{len(job.table)} failed after {attempts} "
                     f"attempt(s): {failure[1]}")
            return None, start, end

    def _collect_loop(self) -> None:
        _touch_malloc()
        if not _passed(self._ready):
            return
        while True:
            message = self._done.get()
            if message is _STOP:
                return
            kind, item = message
            job = item.job
            if kind == "done":
                job.outputs[item.index] = item.value
            item.value = None
            job.accounted += 1
            if job.accounted == job.items_total:
                self._complete(job)

    def _complete(self, job: _Job) -> None:
        if job.status == "ok" and job.table:
            try:
                pieces = [(record, job.outputs[record.index]) for record in job.table]
                merge(pieces, self.pipeline.outputs, job.clip_s, self.chunk.overlap_s)
            except Exception as exc:  # a merge that fails is the clip's failure
                job.fail(classify_exception(exc), f"merge: {describe_exception(exc)}")
        done = time.perf_counter_ns()
        job.outputs.clear()
        record = ClipRecord(job.clip, job.label, job.admitted_ns, job.first_start_ns, done, job.status, job.error,
                            job.executed_as, len(job.table) or 1, job.retries)
        with self._changed:
            self.clips.append(record)
            self._in_flight -= 1
            self._changed.notify_all()
        self._slots.release()
