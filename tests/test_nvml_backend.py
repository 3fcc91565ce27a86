"""benchrunner.measure.nvml_backend against the fake NVML in tests/fake_nvml.py.

The fake's defaults contain no 0 anywhere, so every read is also checked for a 0 that the
fake did not report (`assert_no_fake_zero`).
"""

from __future__ import annotations

import ctypes
import os
import sys
import uuid as uuidlib

import pynvml
import pytest

from benchrunner.measure import nvml_backend as nb
from benchrunner.measure.nvml_backend import (
    NvmlUnavailable,
    is_harmful_throttle,
    match_uuid_prefix,
    normalise_gpu_uuid,
    open_gpu_backend,
    parse_cuda_visible_devices,
    resolve_device_target,
    throttle_reason_names,
)
from fake_nvml import GIB, FakeDevice, FakeNvml

GPM_KEYS = {"util_pct", "sm_occupancy_pct", "tensor_util_pct"}
STATIC_KEYS = {"mem_used_bytes", "power_w", "sm_clock_mhz", "temp_c", "throttle_reasons"}


@pytest.fixture(autouse=True)
def _clean_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


def assert_no_fake_zero(sample: dict[str, float]) -> None:
    zeros = [k for k, v in sample.items() if v == 0]
    assert not zeros, f"metrics reported as 0 that the fake never said were 0: {zeros}"


def open_fake(fake: FakeNvml, **kwargs):
    return open_gpu_backend(nvml=fake, clock=fake.clock, sleep=fake.clock.sleep, **kwargs)


def assert_static_metrics(sample: dict[str, float], dev: FakeDevice) -> None:
    assert sample["mem_used_bytes"] == dev.memory_used
    assert sample["power_w"] == dev.power_mw / 1000.0  # NVML reports milliwatts
    assert sample["sm_clock_mhz"] == dev.clocks_mhz[pynvml.NVML_CLOCK_SM]
    assert sample["temp_c"] == dev.temp_c
    assert sample["throttle_reasons"] == float(dev.throttle_mask)


# ---------------------------------------------------------------------------------------
# GPM supported


def test_gpm_values_come_from_gpm_metrics_between_two_samples():
    fake = FakeNvml()
    dev = fake.devices[0]
    with open_fake(fake) as gpu:
        assert gpu.util_source == "gpm_sm"
        assert gpu.gpm_supported and gpu.gpm_unsupported_reason is None

        first = gpu.read()  # takes the reference sample only
        assert not GPM_KEYS & first.keys()
        assert_static_metrics(first, dev)
        assert_no_fake_zero(first)

        fake.clock.advance(0.25)
        second = gpu.read()
        assert second["util_pct"] == 63.5
        assert second["sm_occupancy_pct"] == 41.25
        assert second["tensor_util_pct"] == 12.75
        assert_static_metrics(second, dev)
        assert_no_fake_zero(second)
        # the set-up trial pair (>= 100 ms apart), then the read pair
        assert fake.gpm_intervals == [pytest.approx(0.1), pytest.approx(0.25)]
        assert gpu.errors == [] and gpu.source_changes == []

        dev.gpm_metrics[pynvml.NVML_GPM_METRIC_SM_UTIL] = 97.0
        fake.clock.advance(0.5)
        third = gpu.read()
        assert third["util_pct"] == 97.0
        # set-up trial (1, 2); then each window starts at the previous window's end sample
        assert fake.gpm_pairs == [(1, 2), (3, 4), (4, 5)]


def test_gpm_reads_closer_than_100ms_keep_the_older_reference():
    fake = FakeNvml()
    with open_fake(fake) as gpu:
        gpu.read()
        fake.clock.advance(0.04)
        soon = gpu.read()
        assert not GPM_KEYS & soon.keys()  # no GPM metric, and certainly no 0
        assert STATIC_KEYS <= soon.keys()
        assert_no_fake_zero(soon)
        fake.clock.advance(0.04)
        assert not GPM_KEYS & gpu.read().keys()
        assert fake.calls["nvmlGpmSampleGet"] == 2 + 1  # set-up's two, the reference; none discarded
        fake.clock.advance(0.03)  # 0.11 s after the reference
        later = gpu.read()
        assert later["util_pct"] == 63.5
        assert_no_fake_zero(later)
        assert fake.gpm_intervals == [pytest.approx(0.1), pytest.approx(0.11)]
        assert gpu.util_source == "gpm_sm"


def test_gpm_metric_unsupported_on_this_gpu_is_left_out_and_reported():
    fake = FakeNvml()
    fake.devices[0].gpm_metric_errors[pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL] = (
        pynvml.NVML_ERROR_NOT_SUPPORTED
    )
    with open_fake(fake) as gpu:
        gpu.read()
        for _ in range(3):
            fake.clock.advance(0.2)
            sample = gpu.read()
            assert "tensor_util_pct" not in sample
            assert sample["util_pct"] == 63.5 and sample["sm_occupancy_pct"] == 41.25
            assert_no_fake_zero(sample)
        assert gpu.util_source == "gpm_sm"
        assert gpu.errors == ["tensor_util_pct: GPM ANY_TENSOR_UTIL NotSupported"]


def test_gpm_set_up_samples_twice_100ms_apart_and_reads_metrics():
    fake = FakeNvml()
    with open_fake(fake) as gpu:
        assert gpu.util_source == "gpm_sm"
        assert fake.calls["nvmlGpmSampleGet"] == 2 and fake.calls["nvmlGpmMetricsGet"] == 1
        assert fake.gpm_intervals[0] >= 0.1


@pytest.mark.parametrize("error", [pynvml.NVMLError_NoPermission, pynvml.NVMLError_NotSupported])
def test_gpm_sampling_refused_at_set_up_falls_back_to_nvml_gpu_with_the_reason(error):
    """GPM support is reported and buffers allocate, but sampling is refused (an unprivileged
    container): the backend starts on nvml_gpu, says why, and frees the buffers."""
    fake = FakeNvml([FakeDevice(gpm_sample_error=error)])
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert not gpu.gpm_supported
        assert _name(error) in gpu.gpm_unsupported_reason and "nvmlGpmSampleGet" in gpu.gpm_unsupported_reason
        assert fake.live_gpm_samples == 0
        assert gpu.source_changes == []  # it never was gpm_sm: no mid-run change
        fake.add_util_samples([50, 70])
        assert gpu.read()["util_pct"] == 60.0


def test_gpm_sm_util_failing_at_set_up_falls_back():
    fake = FakeNvml()
    fake.devices[0].gpm_metric_errors[pynvml.NVML_GPM_METRIC_SM_UTIL] = pynvml.NVML_ERROR_NO_PERMISSION
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert "SM_UTIL returned NoPermission" in gpu.gpm_unsupported_reason


def test_fake_refuses_gpm_samples_under_100ms_apart():
    """Undefined in NVML: the fake does not invent a value for it."""
    from fake_nvml import GpmIntervalTooShort

    fake = FakeNvml()
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    a, b = fake.nvmlGpmSampleAlloc(), fake.nvmlGpmSampleAlloc()
    fake.nvmlGpmSampleGet(h, a)
    fake.clock.advance(0.05)
    fake.nvmlGpmSampleGet(h, b)
    request = pynvml.c_nvmlGpmMetricsGet_t()
    request.version, request.numMetrics = pynvml.NVML_GPM_METRICS_GET_VERSION, 1
    request.sample1, request.sample2 = a, b
    request.metrics[0].metricId = pynvml.NVML_GPM_METRIC_SM_UTIL
    with pytest.raises(GpmIntervalTooShort):
        fake.nvmlGpmMetricsGet(request)


def test_mig_handle_answer_is_pynvmls_c_uint():
    fake = FakeNvml([FakeDevice(is_mig=False)])
    fake.nvmlInit()
    answer = fake.nvmlDeviceIsMigDeviceHandle(fake.nvmlDeviceGetHandleByIndex(0))
    assert isinstance(answer, ctypes.c_uint) and answer.value == 0


def _name(error) -> str:
    return error.__name__[len("NVMLError_"):]


# ---------------------------------------------------------------------------------------
# GPM not supported: utilization.gpu


@pytest.mark.parametrize("no_new_samples", ["not_found", "empty"])
def test_no_gpm_uses_only_new_bulk_samples(no_new_samples):
    fake = FakeNvml([FakeDevice(gpm_supported=False, util_gpu=33)], no_new_samples=no_new_samples)
    fake.add_util_samples([99, 99, 99])  # before open: not this run's
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        info = gpu.describe()
        assert info["gpm_supported"] is False
        assert "Hopper" in info["gpm_unsupported_reason"]
        assert fake.calls["nvmlGpmSampleAlloc"] == 0

        fake.add_util_samples([40, 60, 80])
        s1 = gpu.read()
        assert s1["util_pct"] == 60.0  # mean of the samples since open, not the old 99s
        assert not {"sm_occupancy_pct", "tensor_util_pct"} & s1.keys()
        assert_no_fake_zero(s1)

        s2 = gpu.read()  # no new sample (NotFound, or success with none): nothing to report
        assert "util_pct" not in s2  # not the last window again, not utilization rates
        assert fake.calls["nvmlDeviceGetUtilizationRates"] == 0
        assert_no_fake_zero(s2)
        assert gpu.sample_period_s == pytest.approx(0.166667)

        fake.add_util_samples([10, 20])
        s3 = gpu.read()
        assert s3["util_pct"] == 15.0
        # each request asked only for samples after the newest one already seen
        last_seen = fake.samples_requests
        assert last_seen[0] == 0 and last_seen[1:] == sorted(last_seen[1:])
        assert last_seen[-1] == fake.devices[0].util_samples[-3][0]
        assert gpu.errors == []


def test_real_idle_zero_is_passed_through():
    fake = FakeNvml([FakeDevice(gpm_supported=False, util_gpu=0)])
    with open_fake(fake) as gpu:
        fake.add_util_samples([0, 0])
        assert gpu.read()["util_pct"] == 0.0  # NVML said 0: that is a measurement


def test_utilization_rates_only_where_get_samples_is_not_supported():
    fake = FakeNvml([FakeDevice(gpm_supported=False, util_gpu=33)])
    fake.fail("nvmlDeviceGetSamples", pynvml.NVMLError_NotSupported)
    with open_fake(fake) as gpu:
        assert gpu.read()["util_pct"] == 33.0


def test_prefer_gpm_false_and_old_driver_fall_back_to_nvml_gpu():
    fake = FakeNvml()
    with open_fake(fake, prefer_gpm=False) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert "prefer_gpm=False" in gpu.describe()["gpm_unsupported_reason"]

    fake = FakeNvml()
    fake.fail("nvmlGpmQueryDeviceSupport", pynvml.NVMLError_FunctionNotFound)
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert "FunctionNotFound" in gpu.gpm_unsupported_reason
        fake.add_util_samples([87])
        assert gpu.read()["util_pct"] == 87.0

    fake = FakeNvml()
    fake.hide("nvmlGpmQueryDeviceSupport")  # nvidia-ml-py from before GPM
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert "upgrade nvidia-ml-py" in gpu.gpm_unsupported_reason

    fake = FakeNvml([FakeDevice(is_mig=True)])
    with open_fake(fake) as gpu:
        assert gpu.util_source == "nvml_gpu"
        assert "MIG" in gpu.gpm_unsupported_reason


# ---------------------------------------------------------------------------------------
# NVML missing


def test_library_not_found_on_init_raises_nvml_unavailable():
    fake = FakeNvml(init_error=pynvml.NVMLError_LibraryNotFound)
    with pytest.raises(NvmlUnavailable, match="nvmlInit failed: LibraryNotFound"):
        open_fake(fake)


def test_driver_not_loaded_and_no_device():
    with pytest.raises(NvmlUnavailable, match="DriverNotLoaded"):
        open_fake(FakeNvml(init_error=pynvml.NVMLError_DriverNotLoaded))
    fake = FakeNvml(devices=[])
    with pytest.raises(NvmlUnavailable, match="no GPU"):
        open_fake(fake)
    assert fake.init_count == 0  # shut down again after the failed open


def test_pynvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py"):
        open_gpu_backend()


def test_real_pynvml_without_a_driver_raises_nvml_unavailable():
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        pass
    else:
        pytest.skip("an NVIDIA driver is installed here")
    with pytest.raises(NvmlUnavailable, match="LibraryNotFound"):
        open_gpu_backend()  # the real pynvml, real error path


# ---------------------------------------------------------------------------------------
# failures mid-run


def test_query_failing_mid_run_leaves_metric_out_and_records_once():
    fake = FakeNvml([FakeDevice(gpm_supported=False)])
    fake.fail("nvmlDeviceGetPowerUsage", pynvml.NVMLError_Unknown, after=2)
    with open_fake(fake) as gpu:
        samples = []
        for _ in range(5):
            fake.add_util_samples([50])  # a new utilisation sample before each read
            samples.append(gpu.read())
    assert [("power_w" in s) for s in samples] == [True, True, False, False, False]
    for s in samples:
        assert_no_fake_zero(s)
        assert {"mem_used_bytes", "sm_clock_mhz", "temp_c", "util_pct"} <= s.keys()
    assert gpu.errors == ["power_w: Unknown"]
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 5  # transient: asked again each time


def test_transient_failure_recovers_and_permanent_one_stops_asking():
    fake = FakeNvml([FakeDevice(gpm_supported=False)])
    fake.fail("nvmlDeviceGetTemperature", pynvml.NVMLError_Timeout, after=1, times=1)
    fake.fail("nvmlDeviceGetClockInfo", pynvml.NVMLError_NotSupported)
    with open_fake(fake) as gpu:
        samples = [gpu.read() for _ in range(4)]
    assert [("temp_c" in s) for s in samples] == [True, False, True, True]
    assert all("sm_clock_mhz" not in s for s in samples)
    assert fake.calls["nvmlDeviceGetClockInfo"] == 1
    assert gpu.errors == ["sm_clock_mhz: NotSupported", "temp_c: Timeout"]
    for s in samples:
        assert_no_fake_zero(s)


def test_throttle_reasons_fall_back_to_the_older_function():
    fake = FakeNvml([FakeDevice(gpm_supported=False, throttle_mask=0x28)])
    fake.fail("nvmlDeviceGetCurrentClocksEventReasons", pynvml.NVMLError_FunctionNotFound)
    with open_fake(fake) as gpu:
        assert gpu.read()["throttle_reasons"] == 0x28
        assert gpu.read()["throttle_reasons"] == 0x28
    assert fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert gpu.errors == []

    fake = FakeNvml([FakeDevice(gpm_supported=False, throttle_mask=0x28)])
    fake.hide("nvmlDeviceGetCurrentClocksEventReasons")
    with open_fake(fake) as gpu:
        assert gpu.read()["throttle_reasons"] == 0x28


# after the set-up trial's two nvmlGpmSampleGet and one nvmlGpmMetricsGet
@pytest.mark.parametrize("function, after", [("nvmlGpmSampleGet", 2 + 2), ("nvmlGpmMetricsGet", 1 + 1)])
def test_gpm_failing_mid_run_switches_to_nvml_gpu(function, after):
    fake = FakeNvml()
    fake.fail(function, pynvml.NVMLError_Unknown, after=after)
    with open_fake(fake) as gpu:
        reads = [gpu.read()]
        fake.clock.advance(0.2)
        reads.append(gpu.read())  # second GPM sample: metrics
        assert reads[-1]["util_pct"] == 63.5
        fake.clock.advance(0.2)
        reads.append(gpu.read())  # third sample fails: switch; no new NVML sample yet, no util_pct
        assert gpu.util_source == "nvml_gpu"
        assert "util_pct" not in reads[-1]
        assert not {"sm_occupancy_pct", "tensor_util_pct"} & reads[-1].keys()
        fake.add_util_samples([50, 70])
        reads.append(gpu.read())
        assert reads[-1]["util_pct"] == 60.0
        assert len(gpu.source_changes) == 1
        index, source, reason = gpu.source_changes[0]
        assert (index, source) == (2, "nvml_gpu")
        assert reason == f"{function} failed: Unknown"
        assert any(e.startswith("gpm: ") for e in gpu.errors)
        assert fake.live_gpm_samples == 0  # freed on the switch
        assert gpu.describe()["util_source"] == "nvml_gpu"
    for r in reads:
        assert_no_fake_zero(r)


def test_gpm_sm_util_metric_error_switches_source():
    fake = FakeNvml()
    dev = fake.devices[0]
    with open_fake(fake) as gpu:
        gpu.read()
        fake.clock.advance(0.2)
        assert gpu.read()["util_pct"] == 63.5
        dev.gpm_metric_errors[pynvml.NVML_GPM_METRIC_SM_UTIL] = pynvml.NVML_ERROR_GPU_IS_LOST
        fake.clock.advance(0.2)
        sample = gpu.read()
        assert gpu.util_source == "nvml_gpu"
        assert "util_pct" not in sample  # the switch read: no new NVML sample to report
        assert gpu.source_changes == [(2, "nvml_gpu", "GPM SM_UTIL returned GpuIsLost")]
        assert_no_fake_zero(sample)


# ---------------------------------------------------------------------------------------
# device matching


TORCH_STYLE = "5f1d2c3b-0a9e-4c7d-8b6a-1e2f3a4b5c6d"


class TorchCUuuid:
    """What torch.cuda.get_device_properties(i).uuid looks like (torch._C._CUuuid)."""

    def __init__(self, text: str) -> None:
        self._u = uuidlib.UUID(text)

    @property
    def bytes(self) -> list[int]:
        return list(self._u.bytes)

    def __str__(self) -> str:
        return str(self._u)


def test_normalise_gpu_uuid_accepts_torch_and_nvml_forms():
    want = "GPU-" + TORCH_STYLE
    assert normalise_gpu_uuid(TORCH_STYLE) == want
    assert normalise_gpu_uuid(TORCH_STYLE.upper()) == want
    assert normalise_gpu_uuid("gpu-" + TORCH_STYLE) == want
    assert normalise_gpu_uuid(("GPU-" + TORCH_STYLE).encode()) == want
    assert normalise_gpu_uuid(TorchCUuuid(TORCH_STYLE)) == want
    assert normalise_gpu_uuid(uuidlib.UUID(TORCH_STYLE)) == want
    assert normalise_gpu_uuid(uuidlib.UUID(TORCH_STYLE).bytes) == want
    assert normalise_gpu_uuid(" MIG-ABC ") == "MIG-abc"
    with pytest.raises(ValueError):
        normalise_gpu_uuid("GPU-")


def test_parse_cuda_visible_devices_follows_cuda_rules():
    assert parse_cuda_visible_devices(None) is None
    assert parse_cuda_visible_devices("") == []
    assert parse_cuda_visible_devices("2, 0") == [2, 0]
    assert parse_cuda_visible_devices("1,foo,3") == [1]  # an invalid entry ends the list
    assert parse_cuda_visible_devices("1,-1,3") == [1]
    assert parse_cuda_visible_devices("1,1") == []  # a repeat hides every device
    assert parse_cuda_visible_devices("GPU-5F1D,0") == ["GPU-5f1d", 0]


def test_resolve_device_target():
    r = resolve_device_target(device_index=1, cuda_visible_devices="2,0",
                              cuda_device_order="PCI_BUS_ID", nvml_device_count=4)
    assert (r.by, r.value, r.warnings) == ("index", 0, ())

    r = resolve_device_target(device_index=1, cuda_visible_devices="2,0", nvml_device_count=4)
    assert r.value == 0 and len(r.warnings) == 1
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in r.warnings[0]  # the warning names its fix

    r = resolve_device_target(device_index=0, nvml_device_count=1)  # one GPU: no ambiguity
    assert (r.by, r.value, r.warnings) == ("index", 0, ())

    r = resolve_device_target(device_index=0, cuda_visible_devices="GPU-5f1d,GPU-77")
    assert (r.by, r.value, r.warnings) == ("uuid", "GPU-5f1d", ())

    r = resolve_device_target(device_index=3, device_uuid=TorchCUuuid(TORCH_STYLE),
                              cuda_visible_devices="0")  # a UUID wins over everything
    assert (r.by, r.value) == ("uuid", "GPU-" + TORCH_STYLE)

    with pytest.raises(ValueError, match="not visible"):
        resolve_device_target(device_index=0, cuda_visible_devices="")
    with pytest.raises(ValueError, match="not visible"):
        resolve_device_target(device_index=2, cuda_visible_devices="0,1")
    with pytest.raises(ValueError, match="NVML sees only 2"):
        resolve_device_target(device_index=0, cuda_visible_devices="5", nvml_device_count=2)


def test_match_uuid_prefix():
    uuids = ["GPU-5f1d0000-aaaa", "GPU-5f2e0000-bbbb", "GPU-77000000-cccc"]
    assert match_uuid_prefix("GPU-5F2", uuids) == 1
    assert match_uuid_prefix("gpu-77000000-cccc", uuids) == 2
    with pytest.raises(ValueError, match="more than one"):
        match_uuid_prefix("GPU-5f", uuids)
    with pytest.raises(ValueError, match="no NVML device"):
        match_uuid_prefix("GPU-99", uuids)


def three_gpus() -> FakeNvml:
    return FakeNvml([
        FakeDevice(uuid="GPU-aaaa1111-0000-0000-0000-000000000000", pci_bus_id="00000000:1B:00.0"),
        FakeDevice(uuid="GPU-bbbb2222-0000-0000-0000-000000000000", pci_bus_id="00000000:3D:00.0"),
        FakeDevice(uuid="GPU-" + TORCH_STYLE, pci_bus_id="00000000:9C:00.0"),
    ])


def test_open_by_torch_uuid_and_visible_devices(monkeypatch):
    fake = three_gpus()
    with open_fake(fake, device_uuid=TorchCUuuid(TORCH_STYLE)) as gpu:
        assert gpu.describe()["uuid"] == "GPU-" + TORCH_STYLE
        assert gpu.errors == []

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-BBBB")  # a unique prefix, any case
    with open_fake(fake) as gpu:
        assert gpu.describe()["uuid"] == fake.devices[1].uuid
        assert gpu.errors == []

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,1")
    with open_fake(fake, device_index=1) as gpu:
        assert gpu.describe()["pci_bus_id"] == "00000000:3D:00.0"
        assert len(gpu.errors) == 1 and "CUDA_DEVICE_ORDER" in gpu.errors[0]

    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    with open_fake(fake, device_index=0) as gpu:
        assert gpu.describe()["uuid"] == "GPU-" + TORCH_STYLE
        assert gpu.errors == []

    with open_fake(fake, pci_bus_id="0000:3d:00.0") as gpu:
        assert gpu.describe()["uuid"] == fake.devices[1].uuid

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ffff")
    with pytest.raises(NvmlUnavailable, match="no NVML device"):
        open_fake(fake)
    assert fake.init_count == 0


def test_bare_torch_uuid_of_a_mig_device_finds_the_mig_handle():
    mig = "MIG-" + TORCH_STYLE
    fake = FakeNvml([FakeDevice(uuid=mig, is_mig=True)])
    with open_fake(fake, device_uuid=TORCH_STYLE) as gpu:
        assert gpu.describe()["uuid"] == mig


# ---------------------------------------------------------------------------------------
# processes, describe, close


def test_process_memory_and_other_processes():
    me = os.getpid()
    fake = FakeNvml([FakeDevice(processes=[(me, 3 * GIB), (4242, 512 << 20), (4343, None)])])
    with open_fake(fake) as gpu:
        assert gpu.process_memory_bytes(me) == 3 * GIB
        assert gpu.process_memory_bytes(4343) is None  # listed, memory unknown (WDDM)
        assert gpu.process_memory_bytes(1) is None  # not listed
        assert gpu.other_processes(me) == [4242, 4343]
        fake.fail("nvmlDeviceGetComputeRunningProcesses", pynvml.NVMLError_NoPermission)
        assert gpu.process_memory_bytes(me) is None
        assert gpu.other_processes(me) == []
        assert gpu.errors == ["processes: NoPermission"]


def test_describe_and_close():
    fake = FakeNvml()
    gpu = open_fake(fake)
    info = gpu.describe()
    dev = fake.devices[0]
    assert info == {
        "name": dev.name, "uuid": dev.uuid, "pci_bus_id": dev.pci_bus_id,
        "driver_version": "550.54.15", "memory_total_bytes": dev.memory_total,
        "gpm_supported": True, "gpm_unsupported_reason": None, "util_source": "gpm_sm",
    }
    assert fake.live_gpm_samples == 2
    gpu.close()
    gpu.close()
    assert fake.live_gpm_samples == 0
    assert fake.init_count == 0
    assert fake.calls["nvmlShutdown"] == 1
    with pytest.raises(RuntimeError):
        gpu.read()


def test_describe_field_failure_is_none_not_a_crash():
    fake = FakeNvml()
    fake.fail("nvmlDeviceGetPciInfo", pynvml.NVMLError_NotSupported)
    with open_fake(fake) as gpu:
        info = gpu.describe()
    assert info["pci_bus_id"] is None and info["name"] == fake.devices[0].name
    assert gpu.errors == ["describe.pci_bus_id: NotSupported"]


# ---------------------------------------------------------------------------------------
# throttle reasons


def test_throttle_reason_names_and_harm():
    assert throttle_reason_names(0) == []
    assert throttle_reason_names(0x8 | 0x20) == ["hw_slowdown", "sw_thermal"]
    assert throttle_reason_names(0x4 | 0x80) == ["sw_power_cap", "hw_power_brake"]
    assert throttle_reason_names(0x1 | 0x1000) == ["gpu_idle", "unknown_0x1000"]
    assert not is_harmful_throttle(0)
    assert not is_harmful_throttle(0x1 | 0x2)  # idle, application clocks
    assert is_harmful_throttle(0x4)
    assert is_harmful_throttle(0x1 | 0x40)


def test_throttle_bits_match_pynvml_constants():
    for bit, name in nb.THROTTLE_REASONS:
        camel = {
            "gpu_idle": "GpuIdle", "applications_clocks_setting": "ApplicationsClocksSetting",
            "sw_power_cap": "SwPowerCap", "hw_slowdown": "HwSlowdown", "sync_boost": "SyncBoost",
            "sw_thermal": "SwThermalSlowdown", "hw_thermal": "HwThermalSlowdown",
            "hw_power_brake": "HwPowerBrakeSlowdown",
            "display_clock_setting": "DisplayClockSetting", "board_limit": "BoardLimit",
            "reliability": "Reliability",
        }[name]
        assert getattr(pynvml, "nvmlClocksThrottleReason" + camel) == bit
        event = getattr(pynvml, "nvmlClocksEventReason" + camel, None)
        assert event in (None, bit)


def test_gpm_metric_ids_are_the_pynvml_constants():
    assert pynvml.NVML_GPM_METRIC_SM_UTIL == 2
    assert pynvml.NVML_GPM_METRIC_SM_OCCUPANCY == 3
    assert pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL == 5
    for _, const in nb._GPM_METRICS:
        assert hasattr(pynvml, const)
