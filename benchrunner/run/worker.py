"""The worker process: loads the pipeline once, then measures the cases it is sent.

Protocol over a multiprocessing Pipe (parent -> worker): ``("group", [Case, ...], next_refs)``
or ``("group", [Case, ...], next_refs, part)`` and ``("stop",)``. ``part`` (see
:class:`GroupPart`) asks for a slice of the group: its warm-ups only, or rounds
``[first, stop)`` only, so a parent can interleave the rounds of several workers. Worker -> parent: ``("ready", info)`` or ``("load_error", ...)`` once,
then per group ``("call_started", case_id, repeat)`` before every call (repeat < 0 for a
warm-up), ``("repeat", case_id, rows)`` after each measured repeat, and ``("group_done",
timelines, baseline_after, diagnostics, case_util)`` at the end (``case_util``: the
case-level utilisation for rows labelled ``nvml_gpu_case``). After a sticky CUDA error the
worker sends ``("worker_error", message)`` and ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import signal
import socket
import time
import traceback
from contextlib import nullcontext
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..measure.memory import CpuMemoryTracker, CudaMemoryTracker, read_status_bytes
from ..measure.sampler import SOURCE_CPU, UTIL_METRIC, CpuBackend, CpuTimeWindow, Sampler
from ..measure.timing import make_stage_timer, synchronize
from ..pipeline import Pipeline, load_pipeline
from ..store.results import INPUT_ERROR, now_iso
from ..suite import VariantSpec
from .cases import Case
from .failures import WorkerMustEnd, classify_exception, describe_exception, free_memory, is_sticky_cuda_error
from .hoststore import HostStore
from .inputs import InputRef, Prefetcher
from .modes import ChunkedMode, ChunkFailed, ModeResult, execute_mode, parse_mode
from .quality import accuracy_columns, count_nonfinite, output_deviation, stream_accuracy
from .rows import UTIL_SOURCE_CASE_LEVEL, RepeatMeasurement, repeat_rows


@dataclass(frozen=True)
class WorkerConfig:
    pipeline: str
    pipeline_args: dict[str, Any]
    device: str
    sampler_enabled: bool = True
    sampler_hz: float = 10.0
    timer: str = "auto"
    input_loading: str = "before"  # see inputs.Prefetcher: "before" the call, or "overlap"
    backend: VariantSpec = field(default_factory=VariantSpec)
    build_dir: str | None = None   # where exported models are cached (a temporary folder when None)
    seed: int = 0                  # of the example clip the variant is built and first called on
    setup_call: bool = False       # a plain variant makes the set-up call too (when the suite compares variants)

    stage_devices: tuple[tuple[str, str], ...] = ()  # the throughput scenario's placement


@dataclass(frozen=True)
class GroupPart:
    """A slice of a group's calls: the warm-ups (``warmup``) and/or measured rounds
    ``[first_round, stop_round)``. The whole group is ``GroupPart(True, 0, None)``."""

    warmup: bool = True
    first_round: int = 0
    stop_round: int | None = None
def serve(conn, config: WorkerConfig) -> None:
    """Entry point of the worker process. It dies with its parent (no orphan keeps a GPU
    busy) and leaves SIGINT to the parent, which decides what happens to the case."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker = Worker(config)
    except BaseException as exc:  # reported to the parent as one line, then exit
        message = str(exc) if isinstance(exc, UserError) else describe_exception(exc)
        conn.send(("load_error", isinstance(exc, UserError), message, traceback.format_exc(limit=5)))
        return
    try:
        conn.send(("ready", worker.info()))
        while (message := conn.recv())[0] != "stop":
            try:
                if message[0] == "level":
                    worker.run_level(message[1], conn.send)
                    continue
                _, cases, next_refs, *part = message
                worker.run_group(cases, next_refs, conn.send, part[0] if part else None)
            except WorkerMustEnd as exc:  # a broken CUDA context: end, the parent starts a fresh worker
                conn.send(("worker_error", str(exc)))
                break
            except Exception as exc:  # a harness bug or a broken pipeline: the parent records it as a crash
                conn.send(("worker_error", f"worker error: {describe_exception(exc)}"))
                raise
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone
    worker.close()


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class Worker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.device = _select_device(config.device)
        self.gpu = None  # the one NVML backend (measure.gpu.WorkerGpu), closed with the worker
        started = time.perf_counter()
        self.pipeline: Pipeline = load_pipeline(config.pipeline, config.pipeline_args, device=self.device)
        load_ms = (time.perf_counter() - started) * 1000.0
        self.pipeline, self.variant_build = self._apply_variant(config, load_ms)
        self.stages = self.pipeline.stage_names()
        self.stage_device_list = self._place_stages(config)
        self.timer = make_stage_timer(self.device, config.timer)
        if self.device.startswith("cuda"):
            from ..measure.gpu import WorkerGpu
            self.gpu = WorkerGpu(self.device)
        self.sampler = Sampler(self._sampler_backend(), config.sampler_hz) if config.sampler_enabled else None
        self.memory = self._memory_tracker()
        measures_cpu = self.sampler.util_source == SOURCE_CPU if self.sampler else not self.device.startswith("cuda")
        self.cpu_window = CpuTimeWindow() if measures_cpu else None
        self.prefetcher = Prefetcher(self.pipeline, overlap=config.input_loading == "overlap")
        self._group_start_ms = 0.0
        self.pending: list[InputRef] = []
        self.references = HostStore()  # single-pass outputs by input, outside the measured RSS
        self.references_failed: set[InputRef] = set()  # inputs whose untimed single pass failed
        self.accuracy_references: dict[str, dict | None] = {}  # reference variant's outputs, by file
        self.quality_problems: list[str] = []
        self._sticky_error = False  # the last call broke the CUDA context (see failures.is_sticky_cuda_error)
        if self.sampler:
            self.sampler.start()

    def _apply_variant(self, config: WorkerConfig, load_ms: float) -> tuple[Pipeline, dict[str, Any]]:
        """The pipeline as the variant runs it (backend, precision, quantisation) and its build
        report: sizes and set-up cost (load, export/quantise/compile, first call)."""
        if config.backend.is_plain():
            from ..backends.apply import plain_report

            report = plain_report(self.pipeline, config.backend, first_call=config.setup_call, seed=config.seed)
        else:
            from ..backends.apply import apply_variant

            build_dir = config.build_dir or tempfile.mkdtemp(prefix="benchrunner-build-")
            pipeline, report = apply_variant(self.pipeline, config.backend, build_dir=Path(build_dir),
                                             seed=config.seed)
            self.pipeline = pipeline
        report["load_ms"] = round(load_ms, 3)
        report["setup_ms"] = round(load_ms + (report.get("setup_ms") or 0.0), 3)
        self.variant_columns = {"variant_backend": report["label"], "variant_param_bytes": report["param_bytes"],
                                "variant_file_bytes": report["file_bytes"], "variant_setup_ms": report["setup_ms"]}
        return self.pipeline, report

    def _place_stages(self, config: WorkerConfig) -> list[str] | None:
        """The throughput scenario's stage placement, checked and applied once at load (a bad
        stage name or device is bad input before anything runs)."""
        if not config.stage_devices:
            return None
        from .throughput.placement import place_modules, plan_devices

        devices = plan_devices(self.stages, self.device, dict(config.stage_devices))
        place_modules(self.pipeline.stages, devices, self.device)
        return devices

    def run_level(self, task, send) -> None:
        """Measure one concurrency level of the throughput scenario; reply ``("level_done",
        rows, samples, notes)``."""
        from .throughput.level import measure_level

        devices = self.stage_device_list or [self.device] * len(self.stages)
        self._repeat_start_ms = self.sampler.now_ms() if self.sampler else 0.0  # the memory tracker's window
        result = measure_level(self.pipeline, task, devices, self.memory, memory_limit)
        send(("level_done", result.rows, result.samples, result.notes))

    def _sampler_backend(self):
        return self.gpu.sampler_backend() if self.gpu else CpuBackend()

    def _memory_tracker(self):
        if self.gpu:
            return CudaMemoryTracker(self.device, self.gpu.process_bytes)
        peak = (lambda: self.sampler.peak(self._repeat_start_ms, self.sampler.now_ms(), "rss_bytes")) \
            if self.sampler else None
        return CpuMemoryTracker(sampled_peak=peak)

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "stages": self.stages, "pipeline_name": self.pipeline.name,
            "timer_source": self.timer.source, "util_source": self.sampler.util_source if self.sampler else "off",
            "baseline_mem_bytes": self.memory.baseline_bytes(), **self.placement(),
            "device_index": self.gpu.index if self.gpu else None, "device_uuid": self.gpu.uuid if self.gpu else None,
            "file_input_problem": self.pipeline.file_input_problem(),
            **loaded_environment(self.config.pipeline),
            "variant_build": self.variant_build,
            **self._device_memory(),
        }

    def _device_memory(self) -> dict[str, int]:
        """CUDA: free and total device memory once the pipeline is loaded (the parent decides
        from them whether one worker per variant fits on the device at once)."""
        if not self.device.startswith("cuda"):
            return {}
        free, total = torch.cuda.mem_get_info(torch.device(self.device))
        return {"device_free_bytes": int(free), "device_total_bytes": int(total)}

    def placement(self) -> dict[str, str]:
        """Where this worker measures: the host and the GPU (samples.csv's host and gpu)."""
        from ..measure.gpu import describe_gpu

        return {"host": socket.gethostname(), "device": self.device, "gpu": describe_gpu(self.device)}

    def close(self) -> None:
        self.prefetcher.close()
        if self.sampler:
            self.sampler.stop()
        if self.gpu:
            self.gpu.close()  # after the sampler: it reads the same backend

    # -- a group of cases ---------------------------------------------------------------

    def run_group(self, cases: list[Case], next_refs: list[InputRef], send, part: GroupPart | None = None) -> None:
        """Measure the cases of one clip length together: every case's warm-up first, then
        round r runs repeat r of each case, the order rotated by one case per round. Drift
        of the machine over time then falls on every case alike instead of on whichever ran
        last. A group of one case is the plain sequential case. ``part`` runs only a slice
        (the parent interleaves the rounds of several workers, one per variant)."""
        if any(ref.clip_s != cases[0].clip_s for ref in self.references.keys()):
            self.references.clear()  # references serve one clip length at a time
            self.references_failed.clear()
        if self.accuracy_references and cases[0].clip_s != self._accuracy_clip_s:
            self.accuracy_references = {}
        self._accuracy_clip_s = cases[0].clip_s
        part = part or GroupPart()
        order = call_order(cases, part)
        look_ahead = list(next_refs) if self.prefetcher.overlap else []  # loading before a call needs none
        self._schedule([cases[c].input_for(i) for c, i in order] + look_ahead)
        start_ms = self.sampler.now_ms() if self.sampler else 0.0
        if part.warmup:
            self._group_start_ms = start_ms
        start_ms = self._group_start_ms  # t_ms counts from the start of the whole group
        windows: dict[str, list[tuple[int | None, float, float]]] = {case.case_id: [] for case in cases}
        with memory_limit(cases[0].memory_limit_bytes, self.device):
            for c, index in order:
                case = cases[c]
                repeat = index - case.warmup
                send(("call_started", case.case_id, repeat))
                measurement, window = self._run_repeat(case, ChunkedMode(**asdict(case.chunk)), repeat)
                self._end_if_device_broken(measurement)
                windows[case.case_id].append((repeat if repeat >= 0 else None, *window))
                if repeat >= 0:
                    send(("repeat", case.case_id, repeat_rows(case, self.stages, measurement)))
        timelines = self._timelines(cases, start_ms, windows)
        # The memory check frees cached memory (gc, CUDA cache): only once the group's last round
        # is done, never between rounds, where it would make the next call allocate afresh.
        final = part.stop_round is None or part.stop_round >= max(case.repeats for case in cases)
        send(("group_done", timelines, self._baseline_after() if final else None, self.diagnostics(),
              case_level_util(timelines)))

    def _end_if_device_broken(self, m: RepeatMeasurement) -> None:
        """After a sticky CUDA error every later case would fail in this process: stop here
        (the repeat is recorded by the parent as the worker's loss, with this message)."""
        if self._sticky_error:
            raise WorkerMustEnd(f"CUDA error left the device unusable; worker replaced: {m.error}")

    def diagnostics(self) -> dict[str, Any]:
        """What the sampler's backend had to say so far: failed queries, source changes, why it
        fell back to the CPU, and other processes seen on the GPU."""
        backend = self.sampler.backend if self.sampler else None
        others = self.gpu.other_processes() if self.gpu else []
        return {
            "util_source": self.sampler.util_source if self.sampler else "off",
            "errors": list(getattr(backend, "errors", [])) + (self.sampler.errors if self.sampler else []),
            "source_changes": [list(c) for c in getattr(backend, "source_changes", [])],
            "fallback_reason": getattr(backend, "fallback_reason", None),
            "other_gpu_pids": others,
            "quality_problems": list(self.quality_problems),
            "device_mem_notes": list(self.gpu.device_mem_notes) if self.gpu else [],
        }

    def _baseline_after(self) -> int:
        """Memory held after the case, less the kept single-pass references where they live in
        the memory measured (host RSS on the CPU; on CUDA they are host copies, not in the
        allocator's figure): what must come back to the first case's level, or the worker is
        replaced."""
        free_memory()
        return (self.memory.baseline_bytes() - self.references.resident_bytes(self.device)
                - resident_reference_bytes(self.accuracy_references, self.device))

    def _schedule(self, refs: list[InputRef]) -> None:
        """Queue this case's inputs (unless already queued as the previous case's look-ahead)
        and the next case's first input, so it loads while this case runs."""
        if self.pending != refs[: len(self.pending)]:
            for _ in self.pending:  # a stale look-ahead: consume it to keep the order
                self.prefetcher.get()
            self.pending = []
        new = refs[len(self.pending):]
        self.prefetcher.schedule(new)
        self.pending.extend(new)

    def _next_clip(self) -> tuple[InputRef, Any, float]:
        ref, clip, wait_ms = self.prefetcher.get()
        self.pending.pop(0)
        if isinstance(clip, BaseException) or not self.device.startswith("cuda"):
            return ref, clip, wait_ms
        start = time.perf_counter()
        clip = {k: v.to(self.device, non_blocking=True) for k, v in clip.items()}
        torch.cuda.synchronize()
        return ref, clip, wait_ms + (time.perf_counter() - start) * 1000.0

    def _run_repeat(self, case: Case, chunked: ChunkedMode, repeat: int) -> tuple[RepeatMeasurement, tuple]:
        ref, clip, io_wait_ms = self._next_clip()
        m = RepeatMeasurement(repeat=repeat, io_wait_ms=io_wait_ms, input=ref.label, started_at=now_iso(),
                              timer_source=self.timer.source)
        if isinstance(clip, BaseException):
            m.status, m.error = INPUT_ERROR, f"input {ref.label}: {describe_exception(clip)}"
            return m, (0.0, 0.0)
        result, failure, window = self._timed_call(case, chunked, clip)
        if failure is not None and self._sticky_error:
            m.status, m.error = failure  # nothing more can be asked of this CUDA context
            return m, window
        if failure is not None:
            free_memory()  # after the except block: nothing of the failed call is still referenced
            m.status, m.error = failure
        else:
            m.total_ms, m.stage_ms = self._total_ms, self._stage_ms
            m.executed_as, m.chunks, m.retries = result.executed_as, result.chunks, result.retries
            m.output_nonfinite = count_nonfinite(result.output)
        self._fill_memory_and_util(m, window)
        if result is not None and case.want_quality:
            self._fill_quality(m, case, ref, clip, result)
        m.variant = self.variant_columns
        if result is not None and failure is None and case.accuracy_dir and case.reference_variant:
            self._fill_accuracy(m, case, ref, result)
        del clip, result
        return m, window

    def _timed_call(self, case: Case, chunked: ChunkedMode, clip: dict):
        self.timer.begin_repeat()
        self.memory.begin()
        self._repeat_start_ms = start_ms = self.sampler.now_ms() if self.sampler else 0.0
        if self.cpu_window:
            self.cpu_window.start()
        started = time.perf_counter_ns()
        result, failure = None, None
        self._sticky_error = False
        try:
            with torch.inference_mode():
                result = execute_mode(case.mode, self.pipeline, clip, self.pipeline.duration_s(clip, case.clip_s),
                                      self.timer, chunked)
                synchronize(self.device)
        except ChunkFailed as exc:
            failure = (exc.kind, f"{case.mode.label}: {exc}")
            self._sticky_error = is_sticky_cuda_error(exc)
        except Exception as exc:  # a failing repeat is data, recorded with its kind
            failure = (classify_exception(exc), describe_exception(exc))
            self._sticky_error = is_sticky_cuda_error(exc)
        self._total_ms = (time.perf_counter_ns() - started) / 1e6
        self._cpu_util_pct = self.cpu_window.stop() if self.cpu_window else None
        end_ms = self.sampler.now_ms() if self.sampler else 0.0
        try:
            self._stage_ms = self.timer.end_repeat()
        except Exception as exc:  # e.g. a CUDA error surfacing at synchronize; the first error is kept
            failure = failure or (classify_exception(exc), describe_exception(exc))
            self._sticky_error = self._sticky_error or is_sticky_cuda_error(exc)
        return result, failure, (start_ms, end_ms)

    def _fill_memory_and_util(self, m: RepeatMeasurement, window: tuple[float, float]) -> None:
        reading = self.memory.end()
        m.peak_mem_bytes, m.peak_mem_reserved_bytes = reading.peak_bytes, reading.reserved_bytes
        m.peak_mem_growth_bytes, m.reserved_growth_bytes = reading.growth_bytes, reading.reserved_growth_bytes
        m.device_mem_bytes, m.baseline_mem_bytes, m.mem_source = reading.device_bytes, reading.baseline_bytes, \
            reading.source
        if self.sampler:
            summary = self.sampler.summarise(*window)
            m.util_mean_pct, m.util_p95_pct, m.util_samples = summary.mean, summary.p95, summary.samples
            m.util_source = self.sampler.util_source
            if self._shorter_than_nvml_samples(window):
                m.util_mean_pct = m.util_p95_pct = m.util_samples = None  # filled with the case's figure
                m.util_source = UTIL_SOURCE_CASE_LEVEL
        if self._cpu_util_pct is not None:
            m.util_mean_pct = self._cpu_util_pct  # exact over the repeat; p95 stays the sampler's
            m.util_source = SOURCE_CPU

    def _shorter_than_nvml_samples(self, window: tuple[float, float]) -> bool:
        """nvml_gpu: each NVML sample covers 1/6 s to 1 s, so a repeat shorter than that has no
        figure of its own (a reading in its window is mostly its neighbours' time)."""
        period_s = getattr(self.sampler.backend, "sample_period_s", None)
        return self.sampler.util_source == "nvml_gpu" and period_s is not None and \
            (window[1] - window[0]) / 1000.0 < period_s

    def _fill_quality(self, m: RepeatMeasurement, case: Case, ref: InputRef, clip: dict, result: ModeResult) -> None:
        """Single-pass outputs are kept as references; a chunked output is compared with the
        reference of the same input (computed untimed if no single case produced it)."""
        if result.executed_as == "single":
            self.references.put(ref, _to_cpu(result.output))
            return
        if ref in self.references_failed:
            return  # its single pass failed once: not again every repeat
        if ref not in self.references:
            reference = self._untimed_single(case, clip)
            if not isinstance(reference, dict):
                self.references_failed.add(ref)
                return
            self.references.put(ref, reference)
            del reference
        reference = self.references.get(ref)
        if isinstance(reference, dict):
            try:
                deviation = output_deviation(reference, result.output,
                                             {name: s.time_axis for name, s in self.pipeline.outputs.items()})
            except ValueError as exc:  # outputs that cannot be compared: quality stays blank, and says why
                self._note_quality_problem(f"{case.case_id}: {exc}")
                return
            m.quality_snr_db, m.quality_max_abs_err = deviation.snr_db, deviation.max_abs_err
            m.quality_streams = [asdict(s) for s in deviation.streams]

    def _fill_accuracy(self, m: RepeatMeasurement, case: Case, ref: InputRef, result: ModeResult) -> None:
        """Compare this repeat's output with the reference variant's output for the same input
        and mode. The reference variant runs first and keeps its first output of each input
        and mode on disk (the variants run in different workers); its own later repeats are
        compared with that too (a deterministic variant against itself: SNR inf)."""
        path = Path(case.accuracy_dir) / accuracy_file_name(ref, case)
        if str(path) not in self.accuracy_references:
            if case.variant == case.reference_variant and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(_to_cpu(result.output), tmp)
                os.replace(tmp, path)
            self.accuracy_references[str(path)] = torch.load(path) if path.exists() else None
        reference = self.accuracy_references.get(str(path))
        if reference is None:
            self._note_quality_problem(f"{case.case_id}: no output of reference variant {case.reference_variant} "
                                       f"for this input and mode (it failed or has not run): accuracy left blank")
            return
        try:
            found = stream_accuracy(reference, result.output, self.pipeline.outputs)
        except ValueError as exc:
            self._note_quality_problem(f"{case.case_id}: accuracy: {exc}")
            return
        m.accuracy = accuracy_columns(found, case.reference_variant)

    def _note_quality_problem(self, text: str) -> None:
        if text not in self.quality_problems:
            self.quality_problems.append(text)

    def _untimed_single(self, case: Case, clip: dict) -> dict | str:
        failure = None
        try:
            with torch.inference_mode():
                output = execute_mode(parse_mode("single"), self.pipeline, clip,
                                      self.pipeline.duration_s(clip, case.clip_s), _NullTimer(),
                                      ChunkedMode())
            return _to_cpu(output.output)
        except Exception as exc:  # no single-pass reference: quality stays blank
            failure = describe_exception(exc)
        free_memory()
        return failure

    def _timelines(self, cases: list[Case], start_ms: float,
                   windows: dict[str, list[tuple[int | None, float, float]]]) -> dict[str, list[dict]]:
        """Each case's sampler readings: those taken during its own calls (``repeat`` blank for
        warm-up calls), t_ms from the start of the group."""
        if not self.sampler:
            return {case.case_id: [] for case in cases}
        readings = self.sampler.take_timeline(since_ms=start_ms)
        self.sampler.take_timeline(since_ms=self.sampler.now_ms())
        timelines: dict[str, list[dict]] = {case.case_id: [] for case in cases}
        for t_ms, metric, value in readings:
            owner = next(((case_id, repeat) for case_id, spans in windows.items()
                          for repeat, start, end in spans if start <= t_ms <= end), None)
            if owner is not None:
                timelines[owner[0]].append({"case_id": owner[0], "repeat": owner[1],
                                            "t_ms": round(t_ms - start_ms, 3), "metric": metric, "value": value})
        return timelines


def case_level_util(timelines: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per case, the utilisation readings taken during its measured repeats: mean, p95 and
    count (the figure for repeats too short to have their own)."""
    out = {}
    for case_id, readings in timelines.items():
        values = [r["value"] for r in readings if r["metric"] == UTIL_METRIC and r["repeat"] is not None]
        if values:
            out[case_id] = {"mean": float(np.mean(values)), "p95": float(np.quantile(values, 0.95)),
                            "samples": len(values)}
    return out


def resident_reference_bytes(references: dict, device: str) -> int:
    """Bytes of the kept reference outputs that live on ``device``'s memory (cpu or cuda)."""
    kind = torch.device(device).type
    return sum(t.nbytes for ref in references.values() if isinstance(ref, dict)
               for t in ref.values() if t.device.type == kind)


def _select_device(device: str) -> str:
    """``cuda``/``cuda:N`` made this process's current device, always as ``cuda:N``."""
    if not device.startswith("cuda"):
        return device
    from ..measure.gpu import select_cuda_device
    return select_cuda_device(device)


def loaded_environment(spec: str) -> dict[str, Any]:
    """What this worker runs with once the pipeline is loaded (a plugin may change the thread
    counts on import): torch's intra-/inter-op threads, and the plugin's top-level module with
    its installed distribution and version (None when it is not installed, e.g. on PYTHONPATH)."""
    from importlib import metadata

    top = spec.partition(":")[0].split(".")[0]
    distributions = metadata.packages_distributions().get(top) or []
    plugin = {"module": top, "distribution": None, "version": None}
    for name in distributions:
        try:
            plugin = {"module": top, "distribution": name, "version": metadata.version(name)}
            break
        except metadata.PackageNotFoundError:
            continue
    return {"torch_threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
            "plugin": plugin}


def call_order(cases: list[Case], part: GroupPart | None = None) -> list[tuple[int, int]]:
    """(case index, call index) in run order: all warm-ups, then rounds of one measured
    repeat per case, rotated by one case per round (only the slice ``part`` names)."""
    part = part or GroupPart()
    order = [(c, i) for c, case in enumerate(cases) for i in range(case.warmup)] if part.warmup else []
    rounds = max(case.repeats for case in cases)
    stop = rounds if part.stop_round is None else min(rounds, part.stop_round)
    for r in range(part.first_round, stop):
        for k in range(len(cases)):
            c = (k + r) % len(cases)
            if r < cases[c].repeats:
                order.append((c, cases[c].warmup + r))
    return order


def accuracy_file_name(ref: InputRef, case: Case) -> str:
    """The file that holds the reference variant's output of one input in one mode."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", f"{case.mode.label}__{case.clip_s:g}s__{ref.label}") + ".pt"


class _NullTimer:
    def measure(self, stage: str, label: str):
        return nullcontext()


def _to_cpu(output: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in output.items() if torch.is_tensor(v)}


class memory_limit:
    """A per-case memory limit: what the case may add to what the worker holds when the case
    starts, on both devices. Exceeding it makes allocations fail, recorded as ``oom``.

    CPU: the soft RLIMIT_AS set to the worker's current address space plus the limit.
    CUDA: torch's per-process memory fraction caps the caching allocator's reserved total
    (CUDA context excluded) at fraction x total memory; the cache is emptied first, then the
    fraction is (reserved now + limit) / total, so the cap sits ``limit`` above what the
    worker still holds (weights, kept tensors)."""

    def __init__(self, limit_bytes: int | None, device: str):
        self.limit_bytes, self.device = limit_bytes, device
        self._previous = None

    def __enter__(self):
        if self.limit_bytes is None:
            return self
        if self.device.startswith("cuda"):
            torch.cuda.set_per_process_memory_fraction(cuda_memory_fraction(self.limit_bytes, self.device),
                                                       _cuda_index(self.device))
        else:
            self._previous = resource.getrlimit(resource.RLIMIT_AS)
            address_space = read_status_bytes("VmSize")["VmSize"]
            resource.setrlimit(resource.RLIMIT_AS, (address_space + self.limit_bytes, self._previous[1]))
        return self

    def __exit__(self, *exc_info):
        if self.limit_bytes is None:
            return False
        if self.device.startswith("cuda"):
            torch.cuda.set_per_process_memory_fraction(1.0, _cuda_index(self.device))
        else:
            resource.setrlimit(resource.RLIMIT_AS, self._previous)
        return False


def cuda_memory_fraction(limit_bytes: int, device: str) -> float:
    """The fraction that lets the caching allocator reserve ``limit_bytes`` more than it holds
    after emptying its cache (at most 1.0)."""
    index = _cuda_index(device)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(index).total_memory
    reserved = torch.cuda.memory_reserved(index)
    return float(min(1.0, (reserved + limit_bytes) / total))


def _cuda_index(device: str) -> int:
    from ..measure.gpu import cuda_index
    return cuda_index(device)
