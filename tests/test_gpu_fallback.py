"""The worker's GPU measurement path against the fake NVML: a labelled CPU fallback when
NVML is missing, GPM pacing when it is there; never a silent zero."""

from __future__ import annotations

import os
import time

import pynvml
import pytest

from benchrunner.analysis.warnings import sampler_warnings
from benchrunner.measure.gpu import GPM_MIN_INTERVAL_S, WorkerGpu, open_sampler_backend, process_view
from benchrunner.measure.sampler import Sampler
from fake_nvml import FakeDevice, FakeNvml


def identity(device):
    return 0, "5f1d2c3b-0a9e-4c7d-8b6a-1e2f3a4b5c6d"


@pytest.mark.alone
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


@pytest.mark.alone
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
    gone = WorkerGpu("cuda:0", nvml=FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound), identity=identity,
                     holds_device_memory=lambda: True)
    assert gone.process_bytes() is None and "NVML unavailable" in gone.device_mem_notes[0]
    fake = FakeNvml([FakeDevice(processes=[(os.getpid(), 3 << 30), (4242, 1 << 30)])])
    gpu = WorkerGpu("cuda:0", nvml=fake, identity=identity, holds_device_memory=lambda: True,
                    host_pid_namespace=lambda: True, clock=fake.clock, sleep=fake.clock.sleep)
    assert gpu.process_bytes() == 3 << 30
    assert gpu.other_processes() == [4242]
    gpu.close()


# -- containers: NVML lists host PIDs (issue 11, item 6) -----------------------------------

def test_in_own_pid_namespace_the_figure_is_blank_with_why_and_no_false_other_process():
    """The worker holds device memory, NVML lists one process under its host PID: that
    process is this worker, so no "another process on the GPU" warning; the blank figure says why."""
    host_pid = os.getpid() + 100_000  # the PID the host gives this worker
    fake = FakeNvml([FakeDevice(processes=[(host_pid, 2 << 30)])])
    gpu = WorkerGpu("cuda:0", nvml=fake, identity=identity, holds_device_memory=lambda: True,
                    host_pid_namespace=lambda: False, clock=fake.clock, sleep=fake.clock.sleep)
    assert gpu.process_bytes() is None
    assert gpu.other_processes() == []
    assert any("host PIDs" in note and "own PID namespace" in note for note in gpu.device_mem_notes)
    gpu.close()


def test_process_view_rules():
    own = 7
    # listed under our own pid (host namespace, or --pid=host)
    assert process_view([(7, 10), (9, 5)], own, holds_device_memory=True, host_pid_namespace=True).own_bytes == 10
    # several processes while we are hidden: there really are others; ours is among them
    view = process_view([(1001, 10), (1002, 5)], own, holds_device_memory=True, host_pid_namespace=False)
    assert view.own_bytes is None and view.other_pids == [1001, 1002] and "PID namespace" in view.note
    # in the host namespace and not listed: every listed process is another one
    view = process_view([(1001, 10)], own, holds_device_memory=True, host_pid_namespace=True)
    assert view.other_pids == [1001]
    # nothing allocated yet: the listed process cannot be ours
    assert process_view([(1001, 10)], own, holds_device_memory=False, host_pid_namespace=False).other_pids == [1001]
    assert process_view(None, own, holds_device_memory=True, host_pid_namespace=False).note


def test_this_machine_reports_its_pid_namespace():
    from benchrunner.measure.gpu import in_host_pid_namespace

    assert in_host_pid_namespace() in (True, False)  # Linux says, one way or the other


# -- one NVML backend per worker, closed with it (item 11) ----------------------------------

def test_the_worker_gpu_opens_nvml_once_and_close_frees_everything():
    fake = FakeNvml([FakeDevice(processes=[(os.getpid(), 1 << 30)])], clock=time.monotonic)
    gpu = WorkerGpu("cuda:0", nvml=fake, identity=identity, holds_device_memory=lambda: True,
                    host_pid_namespace=lambda: True)
    sampler = Sampler(gpu.sampler_backend(), hz=10)
    assert gpu.process_bytes() == 1 << 30 and sampler.backend is gpu.backend
    assert fake.calls["nvmlInit"] == 1 and fake.live_gpm_samples == 2
    gpu.close()
    assert fake.init_count == 0 and fake.live_gpm_samples == 0
    assert fake.calls["nvmlShutdown"] == 1 and fake.calls["nvmlGpmSampleFree"] == 2
