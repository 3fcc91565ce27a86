"""The CUDA paths without a GPU (issue 11): each test reproduces what the installed torch
really does (its own ``set_device``, ``set_per_process_memory_fraction`` and
``_get_device_index`` run; only the C calls behind them, which need a driver, are replaced
by recorders), or runs real worker processes on the CPU with a pipeline that raises what
torch raises on a GPU."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pandas as pd
import pytest
import torch

from benchrunner.measure import timing
from benchrunner.measure.gpu import cuda_index, resolve_device, select_cuda_device
from benchrunner.measure.memory import CpuMemoryTracker, CudaMemoryTracker
from benchrunner.store.results import SAMPLE_COLUMNS, upgrade_samples
from benchrunner.run.rows import UTIL_SOURCE_CASE_LEVEL, apply_case_level_util
from benchrunner.suite import TIMERS, load_suite
from benchrunner.run.hoststore import HostStore
from benchrunner.run.worker import Worker, WorkerConfig, case_level_util, cuda_memory_fraction, resident_reference_bytes

GIB = 1 << 30


@pytest.fixture
def cuda_driver(monkeypatch):
    """torch.cuda as on a machine with ``count`` GPUs, current device ``current``: the Python
    layer is torch's own; the C functions it ends in record their arguments."""
    calls: dict[str, list] = {"setDevice": [], "setMemoryFraction": [], "synchronize": [], "empty_cache": 0}
    state = {"current": 1, "count": 2, "reserved": 3 * GIB, "total": 80 * GIB}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["count"])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    monkeypatch.setattr(torch._C, "_cuda_setDevice", lambda i: calls["setDevice"].append(i), raising=False)
    monkeypatch.setattr(torch._C, "_cuda_setMemoryFraction", lambda f, i: calls["setMemoryFraction"].append((f, i)),
                        raising=False)
    monkeypatch.setattr(torch.cuda.memory, "_lazy_init", lambda: None)

    def empty_cache():
        calls["empty_cache"] += 1
        state["reserved"] = 2 * GIB  # the cache held 1 GiB that nothing used

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["reserved"])
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: type("Props", (), {"total_memory": state["total"]})())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls["synchronize"].append(device))
    return calls, state


# -- item 1: a bare cuda device ------------------------------------------------------------

def test_torch_itself_rejects_a_cuda_device_without_an_index():
    """What every worker did before: the real _get_device_index raises, even on a CPU build."""
    with pytest.raises(ValueError, match="Expected a torch.device with a specified index"):
        torch.cuda.set_device(torch.device("cuda"))


def test_auto_and_bare_cuda_resolve_to_the_current_indexed_device(cuda_driver):
    assert resolve_device("auto") == "cuda:1"
    assert resolve_device("cuda") == "cuda:1"
    assert resolve_device("cuda:0") == "cuda:0"
    assert resolve_device("cpu") == "cpu"
    assert cuda_index("cuda:1") == 1
    with pytest.raises(ValueError):
        cuda_index("cuda")


def test_auto_without_cuda_is_cpu():
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_the_runner_and_bench_profile_resolve_the_same_way(cuda_driver):
    from benchrunner.run.runner import resolve_device as runner_resolve

    assert runner_resolve("auto") == runner_resolve("cuda") == "cuda:1"


def test_the_worker_starts_on_a_bare_cuda_device(cuda_driver, monkeypatch):
    """Worker(device="cuda") gets through torch's real set_device to loading the pipeline."""
    calls, _ = cuda_driver

    class Loaded(Exception):
        pass

    def load_pipeline(spec, args, device):
        raise Loaded(device)

    monkeypatch.setattr("benchrunner.run.worker.load_pipeline", load_pipeline)
    with pytest.raises(Loaded, match="^cuda:1$"):
        Worker(WorkerConfig("testing_pipelines:build", {}, "cuda"))
    assert calls["setDevice"] == [1]


def test_bench_profile_selects_the_device_through_torch(cuda_driver):
    calls, _ = cuda_driver
    assert select_cuda_device("cuda") == "cuda:1"
    assert select_cuda_device("cuda:0") == "cuda:0"
    assert calls["setDevice"] == [1, 0]


# -- item 2: the leak check subtracts only device-resident bytes ----------------------------

def test_host_copies_of_references_are_not_subtracted_from_cuda_memory():
    references = {"clip-a": {"audio": torch.zeros(1 << 20)}, "clip-b": "no reference: it failed"}
    assert resident_reference_bytes(references, "cuda:0") == 0  # host copies, not in the allocator
    assert resident_reference_bytes(references, "cpu") == 4 << 20  # in the RSS measured on the CPU


def test_the_workers_baseline_after_a_cuda_group_is_the_allocators(monkeypatch):
    worker = Worker.__new__(Worker)
    worker.device = "cuda:0"
    worker.references = HostStore()
    worker.references.put("clip", {"audio": torch.zeros(1 << 20)})
    worker.accuracy_references = {"clip.pt": {"audio": torch.zeros(1 << 20)}}
    worker.memory = type("Tracker", (), {"baseline_bytes": lambda self: 5 * GIB})()
    monkeypatch.setattr("benchrunner.run.worker.free_memory", lambda: None)
    assert worker._baseline_after() == 5 * GIB


# -- item 3: memory_limit_gb on CUDA is what the case may add -------------------------------

def test_cuda_memory_limit_is_reserved_after_emptying_plus_the_limit(cuda_driver):
    calls, state = cuda_driver
    fraction = cuda_memory_fraction(8 * GIB, "cuda:1")
    assert calls["empty_cache"] == 1
    assert fraction == pytest.approx((2 + 8) / 80)  # reserved after empty_cache, not before
    assert cuda_memory_fraction(100 * GIB, "cuda:1") == 1.0


def test_memory_limit_goes_through_torchs_real_set_per_process_memory_fraction(cuda_driver):
    from benchrunner.run.worker import memory_limit

    calls, _ = cuda_driver
    with memory_limit(8 * GIB, "cuda:1"):
        pass
    assert calls["setMemoryFraction"] == [(pytest.approx(10 / 80), 1), (1.0, 1)]


# -- items 4 and 5: absolute peak and growth on both devices ----------------------------------

def test_cuda_reading_has_absolute_peak_growth_and_reserved_growth(cuda_driver, monkeypatch):
    stats = {"allocated": 4 * GIB, "max_allocated": 7 * GIB, "reserved": 6 * GIB, "max_reserved": 9 * GIB}
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: stats["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: stats["max_allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: stats["reserved"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: stats["max_reserved"])
    tracker = CudaMemoryTracker("cuda:1", lambda: 11 * GIB)
    tracker.begin()  # a previous case left 6 GiB reserved in the cache
    reading = tracker.end()
    assert reading.peak_bytes == 7 * GIB and reading.growth_bytes == 3 * GIB
    assert reading.reserved_bytes == 9 * GIB and reading.reserved_growth_bytes == 3 * GIB
    assert reading.device_bytes == 11 * GIB


def test_cpu_reading_has_absolute_peak_and_growth():
    tracker = CpuMemoryTracker()
    tracker.begin()
    block = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
    reading = tracker.end()
    del block
    assert reading.peak_bytes == reading.baseline_bytes + reading.growth_bytes
    assert reading.peak_bytes > 64 << 20 and reading.growth_bytes >= 60 << 20


def test_schema_1_rows_are_read_in_todays_meaning():
    v1 = pd.DataFrame([
        {"schema_version": 1, "mem_source": "rss_hwm", "peak_mem_bytes": 100.0, "baseline_mem_bytes": 900.0},
        {"schema_version": 1, "mem_source": "cuda_allocator", "peak_mem_bytes": 700.0, "baseline_mem_bytes": 400.0},
    ])
    frame = upgrade_samples(v1.astype({"schema_version": "Int64"}))
    assert list(frame.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert list(frame["peak_mem_bytes"]) == [1000.0, 700.0]       # absolute on both
    assert list(frame["peak_mem_growth_bytes"]) == [100.0, 300.0]  # growth on both


def test_a_run_on_the_cpu_reports_both_figures(bench, write_suite, tmp_path):
    from benchrunner.store.results import read_samples, read_summary

    suite = write_suite("""
        name = "mem"
        pipeline = "testing_pipelines:build"
        device = "cpu"
        clip_lengths_s = [2]
        modes = ["single"]
        repeats = 2
        warmup = 0
    """)
    result = bench("run", str(suite), "--out", "results", "--run-id", "m")
    assert result.returncode == 0, result.stderr
    totals = read_samples(tmp_path / "results" / "m").query("stage == 'total'")
    assert (totals["peak_mem_bytes"] == totals["baseline_mem_bytes"] + totals["peak_mem_growth_bytes"]).all()
    assert (totals["schema_version"] >= 2).all()  # 2 brought the growth columns (3 added accuracy)
    summary = read_summary(tmp_path / "results" / "m").query("stage == 'total'")
    assert summary["peak_mem_growth_bytes"].notna().all()


# -- item 8: short repeats get the case-level figure, labelled --------------------------------

def test_case_level_util_fills_only_rows_labelled_for_it():
    timelines = {"a": [{"repeat": 0, "metric": "util_pct", "value": 40.0},
                       {"repeat": None, "metric": "util_pct", "value": 99.0},  # a warm-up
                       {"repeat": 1, "metric": "util_pct", "value": 60.0},
                       {"repeat": 1, "metric": "power_w", "value": 300.0}]}
    figures = case_level_util(timelines)
    assert figures["a"]["mean"] == 50.0 and figures["a"]["samples"] == 2
    rows = [{"stage": "total", "util_source": UTIL_SOURCE_CASE_LEVEL, "util_mean_pct": None},
            {"stage": "total", "util_source": "nvml_gpu", "util_mean_pct": 70.0}]
    apply_case_level_util(rows, figures["a"])
    assert rows[0]["util_mean_pct"] == 50.0 and rows[0]["util_samples"] == 2
    assert rows[1]["util_mean_pct"] == 70.0


def test_a_repeat_shorter_than_nvmls_sample_period_has_no_figure_of_its_own():
    worker = Worker.__new__(Worker)
    backend = type("B", (), {"util_source": "nvml_gpu", "sample_period_s": 0.5})()
    worker.sampler = type("S", (), {"backend": backend, "util_source": "nvml_gpu"})()
    assert worker._shorter_than_nvml_samples((1000.0, 1200.0))      # 0.2 s < 0.5 s
    assert not worker._shorter_than_nvml_samples((1000.0, 2000.0))  # 1 s


# -- item 9: a sticky CUDA error ends the worker; its message is kept -------------------------

def test_a_sticky_cuda_error_replaces_the_worker_and_later_cases_run(bench, write_suite, tmp_path):
    from benchrunner.store.results import read_manifest, read_samples

    suite = write_suite("""
        name = "sticky"
        pipeline = "testing_pipelines:build"
        pipeline_args = { cuda_error_clip_s = 2 }
        device = "cpu"
        clip_lengths_s = [1, 2, 3, 4]
        modes = ["single"]
        repeats = 2
        warmup = 0
    """)
    result = bench("run", str(suite), "--out", "results", "--run-id", "s")
    assert result.returncode == 0, result.stderr
    totals = read_samples(tmp_path / "results" / "s").query("stage == 'total'")
    status = totals.groupby("case_id")["status"].agg(lambda s: ",".join(sorted(set(s))))
    assert status["default/single/2s"] == "crash"
    assert status["default/single/3s"] == "ok" and status["default/single/4s"] == "ok"  # a fresh context
    error = totals.query("case_id == 'default/single/2s'")["error"].iloc[0]
    assert "an illegal memory access was encountered" in error and "worker replaced" in error
    assert len(read_manifest(tmp_path / "results" / "s")["workers"]) == 2


@contextmanager
def _fake_events(monkeypatch, record_raises: dict):
    class Event:
        def __init__(self, enable_timing=False):
            pass

        def record(self):
            if record_raises["now"]:
                raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda label: None)
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: None)
    yield


def test_the_event_timer_does_not_hide_the_stages_own_error(monkeypatch):
    flag = {"now": False}
    with _fake_events(monkeypatch, flag):
        timer = timing.CudaStageTimer()
        timer.begin_repeat()
        with pytest.raises(torch.AcceleratorError, match="device-side assert triggered"):
            with timer.measure("acoustic", "single/acoustic"):
                flag["now"] = True  # from here every CUDA call fails, as in a broken context
                raise torch.AcceleratorError("CUDA error: device-side assert triggered")


def test_sticky_errors_are_told_from_others():
    from benchrunner.run.failures import is_sticky_cuda_error

    assert is_sticky_cuda_error(torch.AcceleratorError("CUDA error: device-side assert triggered"))
    wrapped = RuntimeError("acoustic: failed")
    wrapped.cause = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
    assert is_sticky_cuda_error(wrapped)
    assert not is_sticky_cuda_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_sticky_cuda_error(RuntimeError("CUDA error: invalid argument"))


# -- item 10: timer = "sync" ------------------------------------------------------------------

def test_sync_timer_synchronizes_every_device_around_each_stage(cuda_driver, monkeypatch):
    calls, state = cuda_driver
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda label: None)
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: None)
    timer = timing.make_stage_timer("cuda:0", "sync")
    assert timer.source == "sync_perf_counter"
    timer.begin_repeat()
    with timer.measure("a", "single/a"):
        time.sleep(0.02)
    assert calls["synchronize"] == [0, 1, 0, 1]  # both GPUs, before and after
    assert 15 <= timer.end_repeat()["a"] <= 2000
    assert timing.make_stage_timer("cpu", "sync").source == "perf_counter"


def test_suite_timer_option(write_suite):
    assert TIMERS == timing.TIMER_KINDS
    assert load_suite(write_suite('name = "t"\nclip_lengths_s = [1]\ntimer = "sync"\n')).timer == "sync"
    assert load_suite(write_suite('name = "t"\nclip_lengths_s = [1]\n')).timer == "auto"


def test_bad_timer_is_one_line_exit_2(bench, write_suite):
    suite = write_suite('name = "t"\nclip_lengths_s = [1]\ntimer = "events"\n')
    result = bench("run", str(suite))
    assert result.returncode == 2
    assert "timer" in result.stderr and "Traceback" not in result.stderr


# -- on a GPU (skipped without CUDA): the same paths against the real driver ------------------

QUICK_SUITE = "suites/quick.toml"


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_gpu_a_run_with_auto_or_bare_cuda_starts_and_records_index_and_uuid(bench, tmp_path, device):
    from benchrunner.store.results import read_manifest, read_samples
    from conftest import REPO

    result = bench("run", str(REPO / QUICK_SUITE), "--device", device, "--lengths", "5", "--repeats", "3",
                   "--out", "results", "--run-id", "g")
    assert result.returncode == 0, result.stderr
    totals = read_samples(tmp_path / "results" / "g").query("stage == 'total'")
    assert (totals["status"] == "ok").all(), totals["error"].tolist()
    assert totals["device"].str.fullmatch(r"cuda:\d+").all()
    assert (totals["peak_mem_bytes"] == totals["baseline_mem_bytes"] + totals["peak_mem_growth_bytes"]).all()
    assert totals["reserved_growth_bytes"].notna().all()
    worker = read_manifest(tmp_path / "results" / "g")["workers"][0]
    assert worker["device"].startswith("cuda:") and worker["device_uuid"]


@pytest.mark.gpu
def test_gpu_bench_profile_on_a_bare_cuda_device(bench, tmp_path):
    from conftest import REPO

    result = bench("profile", str(REPO / QUICK_SUITE), "--set", "device=cuda", "--mode", "single", "--length", "5",
                   "--repeats", "1", "--out", "prof")
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
def test_gpu_a_device_side_assert_replaces_the_worker(bench, write_suite, tmp_path):
    from benchrunner.store.results import read_samples

    suite = write_suite("""
        name = "assert"
        pipeline = "testing_pipelines:build"
        pipeline_args = { device_assert_clip_s = 2 }
        device = "cuda"
        clip_lengths_s = [1, 2, 3]
        modes = ["single"]
        repeats = 2
        warmup = 0
    """)
    result = bench("run", str(suite), "--out", "results", "--run-id", "a")
    assert result.returncode == 0, result.stderr
    totals = read_samples(tmp_path / "results" / "a").query("stage == 'total'")
    status = totals.groupby("case_id")["status"].agg(lambda s: ",".join(sorted(set(s))))
    assert status["default/single/2s"] == "crash" and status["default/single/3s"] == "ok"
    assert totals.query("case_id == 'default/single/2s'")["error"].str.contains("device-side assert").all()


@pytest.mark.gpu
def test_gpu_selfcheck_command_passes(bench):
    result = bench("selfcheck", "--device", "cuda", "--quick", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.gpu
def test_gpu_memory_limit_is_what_the_case_may_add():
    from benchrunner.run.worker import memory_limit

    held = torch.empty(1 * GIB, dtype=torch.uint8, device="cuda:0")  # what the worker holds
    with memory_limit(512 << 20, "cuda:0"):
        fits = torch.empty(256 << 20, dtype=torch.uint8, device="cuda:0")
        del fits
        with pytest.raises(torch.cuda.OutOfMemoryError):
            torch.empty(1 * GIB, dtype=torch.uint8, device="cuda:0")
    del held


@pytest.mark.gpu
def test_gpu_sync_timer_counts_side_stream_work_the_event_timer_misses():
    side = torch.cuda.Stream()
    cycles = 50_000_000  # torch.cuda._sleep spins on the GPU

    def run(timer) -> float:
        timer.begin_repeat()
        with timer.measure("s", "s"):
            with torch.cuda.stream(side):
                torch.cuda._sleep(cycles)
        return timer.end_repeat()["s"]

    event_ms = run(timing.make_stage_timer("cuda:0"))
    sync_ms = run(timing.make_stage_timer("cuda:0", "sync"))
    torch.cuda.synchronize()
    assert sync_ms > 5 * event_ms


@pytest.mark.gpu
def test_gpu_reading_absolute_and_growth_and_reserved_growth():
    tracker = CudaMemoryTracker("cuda:0")
    cached = torch.empty(256 << 20, dtype=torch.uint8, device="cuda:0")
    del cached  # stays reserved in the cache: not the next repeat's growth
    tracker.begin()
    block = torch.empty(64 << 20, dtype=torch.uint8, device="cuda:0")
    reading = tracker.end()
    del block
    assert reading.peak_bytes == reading.baseline_bytes + reading.growth_bytes
    assert reading.growth_bytes == 64 << 20
    assert reading.reserved_growth_bytes == 0  # served from the cache the earlier allocation left


def test_the_memory_self_check_holds_the_absolute_peak(monkeypatch):
    """A tracker that reported the growth where the absolute peak belongs (the CPU's old
    peak_mem_bytes) fails the check: it checks the figure budgets use."""
    from benchrunner.measure.memory import MemoryReading
    from benchrunner.run.selfcheck import check_memory_accuracy

    real_end = CpuMemoryTracker.end

    def growth_as_peak(self):
        r = real_end(self)
        return MemoryReading(r.growth_bytes, None, None, r.baseline_bytes, r.source, growth_bytes=r.growth_bytes)

    assert check_memory_accuracy(repeats=2, n_bytes=32 << 20).passed
    monkeypatch.setattr(CpuMemoryTracker, "end", growth_as_peak)
    assert check_memory_accuracy(repeats=2, n_bytes=32 << 20).passed is False


def test_worker_close_closes_its_nvml_backend():
    from fake_nvml import FakeDevice, FakeNvml

    from benchrunner.measure.gpu import WorkerGpu

    fake = FakeNvml([FakeDevice()])
    worker = Worker.__new__(Worker)
    worker.prefetcher = type("P", (), {"close": lambda self: None})()
    worker.sampler = None
    worker.gpu = WorkerGpu("cuda:0", nvml=fake, identity=lambda d: (0, None), clock=fake.clock,
                           sleep=fake.clock.sleep)
    worker.close()
    assert fake.init_count == 0 and fake.live_gpm_samples == 0


def test_a_short_nvml_gpu_repeat_is_labelled_and_left_for_the_case_figure():
    from benchrunner.measure.memory import MemoryReading
    from benchrunner.measure.sampler import Sampler
    from benchrunner.run.rows import RepeatMeasurement

    class NvmlGpu:  # what GpuBackend offers the worker: a source and NVML's sample spacing
        util_source, sample_period_s = "nvml_gpu", 0.5

        def read(self):
            return {"util_pct": 80.0}

    worker = Worker.__new__(Worker)
    worker.sampler = Sampler(NvmlGpu(), hz=10)
    worker.memory = type("T", (), {"end": lambda self: MemoryReading(1, 1, None, 0, "cuda_allocator", 1, 0)})()
    worker._cpu_util_pct = None
    for _ in range(3):
        worker.sampler.sample_once()
        time.sleep(0.05)
    now = worker.sampler.now_ms()
    short, long = RepeatMeasurement(repeat=0), RepeatMeasurement(repeat=1)
    worker._fill_memory_and_util(short, (now - 100.0, now))       # 0.1 s < 0.5 s
    worker._fill_memory_and_util(long, (now - 1000.0, now - 100))  # 0.9 s
    assert short.util_source == UTIL_SOURCE_CASE_LEVEL and short.util_mean_pct is None
    assert long.util_source == "nvml_gpu" and long.util_mean_pct == 80.0
