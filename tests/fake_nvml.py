"""A fake NVML that stands where the `pynvml` module (nvidia-ml-py) would.

`FakeNvml` has pynvml's function names, arguments and return shapes, and raises pynvml's
own `NVMLError_*` classes. Constants, exception classes and ctypes structures are the real
ones, read from the installed pynvml (which imports fine without a GPU; only its
functions need the driver). Functions the fake does not implement raise AttributeError
rather than reaching the real library.

Behaviours copied from the real library, because code under test depends on them:
- every call but nvmlInit raises NVMLError_Uninitialized before nvmlInit / after the
  last nvmlShutdown;
- nvmlDeviceGetSamples returns (value type, [c_nvmlSample_t]) with only the samples newer
  than the timestamp given. With none newer, the documented NVMLError_NotFound, or (as
  drivers also do: pynvml's size query then reports a count of 0) success with an empty
  list: `FakeNvml(no_new_samples="empty")`. Timestamps are microseconds in the driver's
  clock, unrelated to time.time();
- nvmlDeviceIsMigDeviceHandle returns the ctypes c_uint pynvml passed by reference, not
  a bool;
- nvmlDeviceGetComputeRunningProcesses lists host PIDs: a worker in a container with its
  own PID namespace is listed under a PID it does not know (`FakeDevice.processes`);
- GPM samples are ctypes pointers from nvmlGpmSampleAlloc; nvmlGpmSampleGet can fail on a
  device that supports GPM (`FakeDevice.gpm_sample_error`, e.g. NVMLError_NoPermission in
  an unprivileged container); nvmlGpmMetricsGet fills a real c_nvmlGpmMetricsGet_t, with
  a per-metric nvmlReturn. What NVML returns for two samples less than 100 ms apart is
  not documented, so the fake invents nothing: it raises GpmIntervalTooShort (not an
  NVMLError), and a caller that ignores the 100 ms rule fails its test.

Per test, configure the devices (`FakeDevice`), push utilisation samples
(`add_util_samples`), make a function start failing (`fail`), or hide a function as an
older nvidia-ml-py would (`hide`). `calls` counts calls per function.
"""

from __future__ import annotations

import ctypes
import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynvml as _real

GIB = 1 << 30


class GpmIntervalTooShort(AssertionError):
    """nvmlGpmMetricsGet on samples < 100 ms apart: undefined in NVML, so refused here."""


class FakeClock:
    """A monotonic clock in seconds that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    sleep = advance  # time.sleep's stand-in: sleeping moves the clock


@dataclass
class FakeDevice:
    """One GPU as the fake reports it. Defaults look like a busy H100; none is 0."""

    uuid: str = "GPU-5f1d2c3b-0a9e-4c7d-8b6a-1e2f3a4b5c6d"
    name: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = "00000000:1B:00.0"
    memory_total: int = 80 * GIB
    memory_used: int = 17 * GIB
    power_mw: int = 312_500
    clocks_mhz: dict[int, int] = field(default_factory=lambda: {
        _real.NVML_CLOCK_GRAPHICS: 1755, _real.NVML_CLOCK_SM: 1980,
        _real.NVML_CLOCK_MEM: 2619, _real.NVML_CLOCK_VIDEO: 1545,
    })
    temp_c: int = 61
    throttle_mask: int = 0x004  # sw_power_cap
    util_gpu: int = 87  # nvmlDeviceGetUtilizationRates().gpu
    util_memory: int = 35
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    is_mig: bool = False
    gpm_supported: bool = True
    gpm_metrics: dict[int, float] = field(default_factory=lambda: {
        _real.NVML_GPM_METRIC_SM_UTIL: 63.5,
        _real.NVML_GPM_METRIC_SM_OCCUPANCY: 41.25,
        _real.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 12.75,
    })
    gpm_metric_errors: dict[int, int] = field(default_factory=dict)  # id -> NVML_ERROR_*
    gpm_sample_error: type[_real.NVMLError] | None = None  # nvmlGpmSampleGet raises it (e.g. NoPermission)
    # driver-side utilisation sample buffer: (timestamp_us, percent), oldest first
    util_samples: list[tuple[int, int]] = field(default_factory=list)
    sample_clock_us: int = 7_200_000_000  # "microseconds since boot": not our clock


class FakeHandle:
    """Opaque device handle (the real one is a ctypes pointer)."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device

    def __repr__(self) -> str:
        return f"FakeHandle({self.device.uuid})"


class FakeNvml:
    """Configurable stand-in for the pynvml module."""

    SAMPLE_BUFFER_LEN = 100  # the driver keeps about this many utilisation samples

    def __init__(
        self, devices: list[FakeDevice] | None = None, *, clock: FakeClock | None = None,
        init_error: type[_real.NVMLError] | None = None, driver_version: str = "550.54.15",
        no_new_samples: str = "not_found",
    ) -> None:
        if no_new_samples not in ("not_found", "empty"):
            raise ValueError("no_new_samples: 'not_found' or 'empty'")
        self.no_new_samples = no_new_samples
        self.devices = devices if devices is not None else [FakeDevice()]
        self.clock = clock if clock is not None else FakeClock()
        self.init_error = init_error
        self.driver_version = driver_version
        self.init_count = 0
        self.calls: Counter[str] = Counter()
        self.samples_requests: list[int] = []  # lastSeenTimeStamp of each GetSamples call
        self.gpm_intervals: list[float] = []  # seconds between the two samples of a MetricsGet
        self.gpm_pairs: list[tuple[int, int]] = []  # (seq1, seq2) of each MetricsGet
        self._failures: dict[str, tuple[type[_real.NVMLError], int, int | None]] = {}
        self._hidden: set[str] = set()
        self._gpm_buffers: dict[int, ctypes.Array] = {}  # address -> buffer (keeps it alive)
        self._gpm_filled: dict[int, tuple[FakeDevice, float, int]] = {}  # address -> sample
        self._gpm_seq = 0

    # -- configuration ------------------------------------------------------------------

    def fail(
        self, function: str, error: type[_real.NVMLError], *, after: int = 0,
        times: int | None = None,
    ) -> None:
        """Make `function` raise `error()` once it has succeeded `after` more times.

        `times` limits how many calls fail (None: every call from then on).
        """
        self._failures[function] = (error, self.calls[function] + after, times)

    def hide(self, function: str) -> None:
        """Remove a function, as an older nvidia-ml-py without it would."""
        self._hidden.add(function)

    def add_util_samples(
        self, values: list[int], *, index: int = 0, step_us: int = 166_667
    ) -> None:
        """Append utilisation samples to a device's driver buffer (newest last)."""
        dev = self.devices[index]
        for v in values:
            dev.sample_clock_us += step_us
            dev.util_samples.append((dev.sample_clock_us, int(v)))
        del dev.util_samples[: -self.SAMPLE_BUFFER_LEN]

    @property
    def live_gpm_samples(self) -> int:
        return len(self._gpm_buffers)

    # -- module-like lookups --------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "_hidden"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r} (hidden by the fake)")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the fake does not define: constants, NVMLError classes,
        # ctypes structures come from the real module; its functions do not.
        value = getattr(_real, name)
        if inspect.isfunction(value):
            raise AttributeError(f"the fake NVML does not implement {name}")
        return value

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if name != "nvmlInit" and self.init_count == 0:
            raise _real.NVMLError_Uninitialized()
        failure = self._failures.get(name)
        if failure is not None:
            error, from_call, times = failure
            n = self.calls[name]  # this call's number, 1-based
            if n > from_call and (times is None or n <= from_call + times):
                raise error()

    def _device(self, handle: Any) -> FakeDevice:
        if not isinstance(handle, FakeHandle):
            raise _real.NVMLError_InvalidArgument()
        return handle.device

    # -- init ---------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.init_error is not None:
            raise self.init_error()
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    # -- devices ------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= int(index) < len(self.devices):
            raise _real.NVMLError_InvalidArgument()
        return FakeHandle(self.devices[int(index)])

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByUUID")
        if isinstance(uuid, bytes):
            uuid = uuid.decode()
        for dev in self.devices:  # exact match, as the driver does
            if dev.uuid == uuid:
                return FakeHandle(dev)
        raise _real.NVMLError_NotFound()

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByPciBusId")
        if isinstance(bus_id, bytes):
            bus_id = bus_id.decode()
        want = _canonical_bus_id(bus_id)
        for dev in self.devices:
            if _canonical_bus_id(dev.pci_bus_id) == want:
                return FakeHandle(dev)
        raise _real.NVMLError_NotFound()

    def nvmlDeviceIsMigDeviceHandle(self, handle: FakeHandle) -> ctypes.c_uint:
        self._enter("nvmlDeviceIsMigDeviceHandle")
        return ctypes.c_uint(int(self._device(handle).is_mig))  # pynvml returns its c_uint

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        self._enter("nvmlDeviceGetName")
        return self._device(handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        self._enter("nvmlDeviceGetUUID")
        return self._device(handle).uuid

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> _real.nvmlPciInfo_t:
        self._enter("nvmlDeviceGetPciInfo")
        info = _real.nvmlPciInfo_t()
        info.busId = self._device(handle).pci_bus_id.encode()
        return info

    # -- metrics ------------------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None):
        self._enter("nvmlDeviceGetMemoryInfo")
        dev = self._device(handle)
        free = dev.memory_total - dev.memory_used
        if not version:
            return _real.c_nvmlMemory_t(total=dev.memory_total, free=free, used=dev.memory_used)
        return _real.c_nvmlMemory_v2_t(
            version=version, total=dev.memory_total, reserved=0, free=free, used=dev.memory_used
        )

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        return self._device(handle).power_mw

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo")
        clocks = self._device(handle).clocks_mhz
        if clock_type not in clocks:
            raise _real.NVMLError_InvalidArgument()
        return clocks[clock_type]

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature")
        if sensor != _real.NVML_TEMPERATURE_GPU:
            raise _real.NVMLError_InvalidArgument()
        return self._device(handle).temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons")
        return self._device(handle).throttle_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons")
        return self._device(handle).throttle_mask

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> _real.c_nvmlUtilization_t:
        self._enter("nvmlDeviceGetUtilizationRates")
        dev = self._device(handle)
        return _real.c_nvmlUtilization_t(gpu=dev.util_gpu, memory=dev.util_memory)

    def nvmlDeviceGetSamples(self, device: FakeHandle, sampling_type: int, timeStamp: int):
        self._enter("nvmlDeviceGetSamples")
        dev = self._device(device)
        if sampling_type != _real.NVML_GPU_UTILIZATION_SAMPLES:
            raise _real.NVMLError_NotSupported()
        self.samples_requests.append(int(timeStamp))
        new = [(ts, v) for ts, v in dev.util_samples if ts > int(timeStamp)]
        if not new and self.no_new_samples == "not_found":
            raise _real.NVMLError_NotFound()
        out = []
        for ts, v in new:
            s = _real.c_nvmlSample_t()
            s.timeStamp = ts
            s.sampleValue.uiVal = v
            out.append(s)
        return (_real.NVML_VALUE_TYPE_UNSIGNED_INT, out)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [
            _real.nvmlFriendlyObject({
                "pid": pid, "usedGpuMemory": used,
                "gpuInstanceId": 0xFFFFFFFF, "computeInstanceId": 0xFFFFFFFF,
            })
            for pid, used in self._device(handle).processes
        ]

    # -- GPM ----------------------------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, device: FakeHandle) -> _real.c_nvmlGpmSupport_t:
        self._enter("nvmlGpmQueryDeviceSupport")
        support = _real.c_nvmlGpmSupport_t()
        support.version = _real.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = int(self._device(device).gpm_supported)
        return support

    def nvmlGpmSampleAlloc(self):
        self._enter("nvmlGpmSampleAlloc")
        buf = ctypes.create_string_buffer(64)
        self._gpm_buffers[ctypes.addressof(buf)] = buf
        return ctypes.cast(buf, _real.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, gpmSample) -> None:
        self._enter("nvmlGpmSampleFree")
        addr = _address(gpmSample)
        if addr not in self._gpm_buffers:
            raise _real.NVMLError_InvalidArgument()  # not allocated, or freed twice
        del self._gpm_buffers[addr]
        self._gpm_filled.pop(addr, None)

    def nvmlGpmSampleGet(self, device: FakeHandle, gpmSample):
        self._enter("nvmlGpmSampleGet")
        dev = self._device(device)
        addr = _address(gpmSample)
        if addr not in self._gpm_buffers:
            raise _real.NVMLError_InvalidArgument()
        if not dev.gpm_supported:
            raise _real.NVMLError_NotSupported()
        if dev.gpm_sample_error is not None:
            raise dev.gpm_sample_error()
        self._gpm_seq += 1
        self._gpm_filled[addr] = (dev, self.clock(), self._gpm_seq)
        return gpmSample

    def nvmlGpmMetricsGet(self, metricsGet):
        self._enter("nvmlGpmMetricsGet")
        if not isinstance(metricsGet, _real.c_nvmlGpmMetricsGet_t):
            raise _real.NVMLError_InvalidArgument()
        if metricsGet.version != _real.NVML_GPM_METRICS_GET_VERSION:
            raise _real.NVMLError(_real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first = self._gpm_filled.get(_address(metricsGet.sample1))
        second = self._gpm_filled.get(_address(metricsGet.sample2))
        if first is None or second is None or first[0] is not second[0] or second[2] <= first[2]:
            raise _real.NVMLError_InvalidArgument()  # unfilled, mixed devices, or wrong order
        dev, interval = first[0], second[1] - first[1]
        self.gpm_intervals.append(interval)
        self.gpm_pairs.append((first[2], second[2]))
        if not 0 < metricsGet.numMetrics <= _real.NVML_GPM_METRIC_MAX:
            raise _real.NVMLError_InvalidArgument()
        if interval < 0.1:
            raise GpmIntervalTooShort(f"GPM samples {interval * 1000:.1f} ms apart: NVML asks for >= 100 ms")
        for i in range(metricsGet.numMetrics):
            metric = metricsGet.metrics[i]
            mid = metric.metricId
            if mid in dev.gpm_metric_errors:
                metric.nvmlReturn, metric.value = dev.gpm_metric_errors[mid], 0.0
            elif mid not in dev.gpm_metrics:
                metric.nvmlReturn, metric.value = _real.NVML_ERROR_NOT_SUPPORTED, 0.0
            else:
                metric.nvmlReturn = _real.NVML_SUCCESS
                metric.value = dev.gpm_metrics[mid]
        return metricsGet


def _address(sample: Any) -> int | None:
    return ctypes.cast(sample, ctypes.c_void_p).value


def _canonical_bus_id(bus_id: str) -> str:
    """"0000:1b:00.0" and "00000000:1B:00.0" name the same device."""
    domain, rest = bus_id.strip().split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}"
