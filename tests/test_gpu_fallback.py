"""The worker's GPU measurement path against the fake NVML: a labelled CPU fallback when
NVML is missing, GPM pacing when it is there; never a silent zero."""

from __future__ import annotations

import time

import pynvml

from benchrunner.analysis.warnings import sampler_warnings
from benchrunner.measure.gpu import GPM_MIN_INTERVAL_S, open_sampler_backend, process_device_bytes_reader
from benchrunner.measure.sampler import Sampler
from fake_nvml import FakeDevice, FakeNvml


def identity(device):
    return 0, "5f1d2c3b-0a9e-4c7d-8b6a-1e2f3a4b5c6d"


def test_without_nvml_the_sampler_measures_the_cpu_and_says_why():
    backend = open_sampler_backend("cuda:0", nvml=FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound),
                                   identity=identity)
    assert backend.util_source == "cpu"
    assert "NVML unavailable" in backend.fallback_reason
    sampler = Sampler(backend, hz=20)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    summary = sampler.summarise(0, sampler.now_ms())
    assert summary.samples >= 2 and summary.mean is not None
    codes = [w.code for w in sampler_warnings([], [], backend.util_source, backend.fallback_reason)]
    assert codes == ["util_on_cpu"]


def test_with_gpm_the_sampler_paces_itself_above_100_ms_and_reads_sm_activity():
    fake = FakeNvml([FakeDevice()], clock=time.monotonic)  # the fake's counters move in real time
    backend = open_sampler_backend("cuda:0", nvml=fake, identity=identity)
    assert backend.util_source == "gpm_sm"
    sampler = Sampler(backend, hz=10)
    assert sampler.interval_s >= GPM_MIN_INTERVAL_S
    sampler.start()
    time.sleep(0.6)
    sampler.stop()
    values = [v for _, metric, v in sampler.take_timeline() if metric == "util_pct"]
    assert values and all(v > 0 for v in values)
    assert all(interval >= 0.1 for interval in fake.gpm_intervals)


def test_process_memory_comes_from_nvml_or_stays_blank():
    assert process_device_bytes_reader("cuda:0", nvml=FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound),
                                       identity=identity) is None
    reader = process_device_bytes_reader("cuda:0", nvml=FakeNvml([FakeDevice()]), identity=identity)
    assert reader is not None and reader() is None  # this pid is not among the fake's processes: blank, not 0
