"""GPU metrics from NVML: one small backend the sampler thread polls.

`open_gpu_backend()` finds the NVML device that matches a torch CUDA device and returns a
`GpuBackend`; `GpuBackend.read()` returns one sample's metrics as a dict. A metric is in
the dict only when NVML actually measured it: a failed or unsupported query leaves the key
out and adds one line to `GpuBackend.errors`; nothing is ever filled in with 0.

Utilisation comes from one of two sources, named by `GpuBackend.util_source`:

- "gpm_sm": GPU Performance Monitoring (Hopper and newer). SM_UTIL is the share of SMs
  that were busy, which is what "how busy is the GPU" means for a compute benchmark.
  Metrics are computed between two GPM samples taken at least 100 ms apart (NVML's GPM
  counters refresh about every 100 ms; a shorter window has nothing new to report).
- "nvml_gpu": the classic utilization.gpu, the share of time at least one kernel ran.
  Read in bulk with nvmlDeviceGetSamples since the previous read (mean of the new
  samples); a read without a new sample has no util_pct (each sample covers the 1/6 s
  to 1 s before it; `sample_period_s` says how long). nvmlDeviceGetUtilizationRates only
  where nvmlDeviceGetSamples is not supported.

If GPM breaks mid-run the backend switches to "nvml_gpu" and appends
(read index, new source, reason) to `GpuBackend.source_changes`, so a caller can see that
the headline metric changed meaning.

`nvml` is the `pynvml` module (package nvidia-ml-py) or anything with the same functions,
return shapes and exception classes (tests use tests/fake_nvml.py).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

# GPM counters refresh about every 100 ms; the NVML reference for nvmlGpmMetricsGet asks
# for at least that much between the two nvmlGpmSampleGet calls.
GPM_MIN_INTERVAL_S = 0.1

UTIL_SOURCE_GPM = "gpm_sm"
UTIL_SOURCE_NVML = "nvml_gpu"

# (read() key, pynvml constant name) for the GPM metrics we request, headline first.
_GPM_METRICS = (
    ("util_pct", "NVML_GPM_METRIC_SM_UTIL"),
    ("sm_occupancy_pct", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("tensor_util_pct", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
)

# Errors that will not go away by asking again: the metric is not queried any more.
_PERMANENT_ERRORS = frozenset({"NotSupported", "FunctionNotFound", "NoPermission"})

# Clock event ("throttle") reason bits, as in nvml.h (nvmlClocksEventReason*, formerly
# nvmlClocksThrottleReason*). The last two exist only in the throttle-reason list.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
# Reasons that do not mean the GPU was slowed against the benchmark's will.
BENIGN_THROTTLE_MASK = 0x001 | 0x002


class NvmlUnavailable(Exception):
    """NVML missing, init failed or device not found; str() says why."""


# ---------------------------------------------------------------------------------------
# throttle reasons


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the bits set in a clock-event-reason mask, low bit first.

    Bits this module does not know come out as "unknown_0x...", never silently dropped.
    """
    mask = int(mask)
    names = []
    known = 0
    for bit, name in THROTTLE_REASONS:
        known |= bit
        if mask & bit:
            names.append(name)
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"unknown_{bit:#x}")
            rest &= ~bit
        bit <<= 1
    return names


def is_harmful_throttle(mask: int) -> bool:
    """True when any reason other than idle or application-clock settings is set."""
    return bool(int(mask) & ~BENIGN_THROTTLE_MASK)


# ---------------------------------------------------------------------------------------
# device matching (pure)

_UUID_HEX_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalise_gpu_uuid(value: Any) -> str:
    """NVML's spelling of a GPU UUID: "GPU-" (or "MIG-") then lower-case hex.

    Accepts NVML's own form, torch's `get_device_properties(i).uuid` (a `_CUuuid` whose
    str() is the bare 8-4-4-4-12 hex form and whose `.bytes` are the 16 raw bytes), raw
    bytes, and `uuid.UUID`. A bare UUID gets "GPU-"; for a MIG device NVML wants "MIG-"
    (`open_gpu_backend` tries both). A prefix stays a prefix (CUDA_VISIBLE_DEVICES allows it).
    """
    if not isinstance(value, (str, bytes)):
        raw = getattr(value, "bytes", None)
        if raw is not None and len(bytes(raw)) == 16:
            return "GPU-" + _dashed_hex(bytes(raw))
        value = str(value)
    if isinstance(value, bytes):
        if len(value) == 16 and not _is_uuid_text(value):
            return "GPU-" + _dashed_hex(value)
        value = value.decode("ascii", "replace")
    text = value.strip()
    prefix = "GPU-"
    if text[:4].upper() in ("GPU-", "MIG-"):
        prefix, text = text[:4].upper(), text[4:]
    if not text:
        raise ValueError(f"not a GPU UUID: {value!r}")
    return prefix + text.lower()


def _dashed_hex(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _is_uuid_text(value: bytes) -> bool:
    """True for 16 bytes that are UUID text (a prefix) rather than a raw UUID."""
    if value[:4].upper() in (b"GPU-", b"MIG-"):
        return True
    return re.fullmatch(rb"[0-9a-fA-F-]+", value) is not None


@dataclass(frozen=True)
class DeviceTarget:
    """Which NVML device to open: by NVML index, or by (possibly partial) UUID."""

    by: str  # "index" or "uuid"
    value: int | str
    warnings: tuple[str, ...] = ()


def parse_cuda_visible_devices(value: str | None) -> list[int | str] | None:
    """The device list CUDA builds from CUDA_VISIBLE_DEVICES; None when it is unset.

    Follows CUDA's rules: comma-separated indices or UUIDs ("GPU-..."/"MIG-...", a unique
    prefix is enough); the list ends at the first entry that is neither; a repeated entry
    makes CUDA see no device at all (an empty list).
    """
    if value is None:
        return None
    out: list[int | str] = []
    for entry in value.split(","):
        entry = entry.strip()
        if entry[:4].upper() in ("GPU-", "MIG-"):
            item: int | str = normalise_gpu_uuid(entry)
        else:
            digits = re.match(r"^\+?(\d+)", entry)
            if digits is None:
                break
            item = int(digits.group(1))
        if item in out:
            return []
        out.append(item)
    return out


def resolve_device_target(
    *,
    device_index: int,
    device_uuid: Any = None,
    cuda_visible_devices: str | None = None,
    cuda_device_order: str | None = None,
    nvml_device_count: int | None = None,
) -> DeviceTarget:
    """Map a torch CUDA device (index or UUID) to the NVML device to open.

    NVML ignores CUDA_VISIBLE_DEVICES and numbers devices in PCI bus order; CUDA numbers
    the devices it lists, by default fastest first (CUDA_DEVICE_ORDER=FASTEST_FIRST). An
    index therefore maps through CUDA_VISIBLE_DEVICES and, unless CUDA_DEVICE_ORDER is
    PCI_BUS_ID, may name a different GPU on a machine with several: we say so in the
    warnings. A UUID is unambiguous. Raises ValueError when the device cannot be visible.
    """
    if device_uuid is not None:
        return DeviceTarget("uuid", normalise_gpu_uuid(device_uuid))
    if device_index < 0:
        raise ValueError(f"device_index must be >= 0, got {device_index}")
    visible = parse_cuda_visible_devices(cuda_visible_devices)
    if visible is None:
        entry: int | str = device_index
    else:
        if device_index >= len(visible):
            raise ValueError(
                f"CUDA device {device_index} is not visible: CUDA_VISIBLE_DEVICES="
                f"{cuda_visible_devices!r} makes {len(visible)} device(s) visible"
                " (a repeated or invalid entry ends the list)"
            )
        entry = visible[device_index]
    if isinstance(entry, str):
        return DeviceTarget("uuid", entry)
    if nvml_device_count is not None and entry >= nvml_device_count:
        raise ValueError(
            f"CUDA device {device_index} maps to NVML index {entry}, but NVML sees only "
            f"{nvml_device_count} device(s); check CUDA_VISIBLE_DEVICES"
        )
    warnings: tuple[str, ...] = ()
    order = (cuda_device_order or "").strip().upper()
    if order != "PCI_BUS_ID" and (nvml_device_count is None or nvml_device_count > 1):
        warnings = (
            f"device: CUDA_DEVICE_ORDER is {cuda_device_order or 'unset (FASTEST_FIRST)'}, "
            f"so CUDA device {device_index} may not be NVML device {entry}; set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID or pass device_uuid="
            "torch.cuda.get_device_properties(i).uuid",
        )
    return DeviceTarget("index", entry, warnings)


def match_uuid_prefix(prefix: str, uuids: Sequence[str]) -> int:
    """Index of the one UUID in `uuids` that starts with `prefix` (case-insensitive).

    Raises ValueError when none or several match.
    """
    want = normalise_gpu_uuid(prefix)
    hits = [i for i, u in enumerate(uuids) if normalise_gpu_uuid(u).startswith(want)]
    if len(hits) != 1:
        what = "no" if not hits else "more than one"
        raise ValueError(f"{what} NVML device has a UUID starting with {want!r}")
    return hits[0]


# ---------------------------------------------------------------------------------------
# opening


def open_gpu_backend(
    *,
    device_index: int = 0,
    device_uuid: Any = None,
    nvml: Any = None,
    prefer_gpm: bool = True,
    pci_bus_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> "GpuBackend":
    """Initialise NVML and open the device torch calls `cuda:device_index`.

    `device_uuid` (torch's `get_device_properties(i).uuid` or NVML's "GPU-..." string) or
    `pci_bus_id` wins over the index. `nvml` defaults to `import pynvml`. `clock` (seconds,
    monotonic) spaces GPM samples and `sleep` waits between the two set-up samples; tests
    pass fake ones. Raises NvmlUnavailable with the
    reason when NVML cannot be loaded or initialised or the device is not found.
    """
    if nvml is None:
        try:
            import pynvml as nvml  # noqa: PLC0415 (optional at import time)
        except ImportError as exc:
            raise NvmlUnavailable(
                f"cannot import pynvml ({exc}); install nvidia-ml-py"
            ) from exc
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(
            f"nvmlInit failed: {_error_name(exc)} ({exc}); is the NVIDIA driver installed "
            "and is a GPU visible to this process?"
        ) from exc
    try:
        handle, warnings = _find_handle(
            nvml, device_index=device_index, device_uuid=device_uuid,
            pci_bus_id=pci_bus_id, environ=os.environ,
        )
        return GpuBackend(nvml, handle, prefer_gpm=prefer_gpm, clock=clock, sleep=sleep, warnings=warnings)
    except BaseException:
        _shutdown_quietly(nvml)
        raise


def _find_handle(
    nvml: Any, *, device_index: int, device_uuid: Any, pci_bus_id: str | None,
    environ: Mapping[str, str],
) -> tuple[Any, list[str]]:
    if pci_bus_id is not None:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id), []
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(
                f"no NVML device at PCI bus id {pci_bus_id!r}: {_error_name(exc)}"
            ) from exc
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"nvmlDeviceGetCount failed: {_error_name(exc)}") from exc
    if count == 0:
        raise NvmlUnavailable("NVML sees no GPU")
    try:
        target = resolve_device_target(
            device_index=device_index,
            device_uuid=device_uuid,
            cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
            cuda_device_order=environ.get("CUDA_DEVICE_ORDER"),
            nvml_device_count=count,
        )
    except ValueError as exc:
        raise NvmlUnavailable(str(exc)) from exc
    if target.by == "index":
        try:
            return nvml.nvmlDeviceGetHandleByIndex(target.value), list(target.warnings)
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(
                f"nvmlDeviceGetHandleByIndex({target.value}) failed: {_error_name(exc)}"
            ) from exc
    return _handle_by_uuid(nvml, str(target.value), count), list(target.warnings)


def _handle_by_uuid(nvml: Any, uuid: str, count: int) -> Any:
    """Exact UUID first; a torch-style bare UUID may be a MIG device; then a prefix."""
    candidates = [uuid]
    if uuid.startswith("GPU-") and _UUID_HEX_RE.match(uuid[4:]):
        candidates.append("MIG-" + uuid[4:])
    for candidate in candidates:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(candidate)
        except nvml.NVMLError:
            pass
    handles, uuids = [], []
    for i in range(count):
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            uuids.append(nvml_text(nvml.nvmlDeviceGetUUID(h)))
            handles.append(h)
        except nvml.NVMLError:
            continue
    try:
        return handles[match_uuid_prefix(uuid, uuids)]
    except ValueError as exc:
        raise NvmlUnavailable(f"{exc} (NVML sees {', '.join(uuids) or 'none'})") from exc


# ---------------------------------------------------------------------------------------
# the backend


class GpuBackend:
    """One open NVML device. Thread-safe; `close()` when done (or use `with`)."""

    def __init__(
        self, nvml: Any, handle: Any, *, prefer_gpm: bool = True,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        warnings: Sequence[str] = (),
    ) -> None:
        self._nvml = nvml
        self._handle = handle
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._closed = False
        self.errors: list[str] = []
        self.source_changes: list[tuple[int, str, str]] = []
        self._error_keys: set[str] = set()
        self._disabled: set[str] = set()
        self._read_count = 0
        self._query_errors = _query_error_types(nvml)
        for w in warnings:
            self._note(w)
        # nvml_gpu state
        self._samples_supported = True
        self._samples_primed = False
        self._last_seen_us = 0
        self.sample_period_s: float | None = None  # nvml_gpu: NVML's sample spacing, once seen
        # gpm state
        self._gpm_buffers: list[Any] = []
        self._gpm_ref: int | None = None  # index into _gpm_buffers of the reference sample
        self._gpm_ref_t = 0.0
        self._throttle_fn: str | None = None
        self.gpm_supported, self.gpm_unsupported_reason = self._setup_gpm(prefer_gpm)
        self.util_source = UTIL_SOURCE_GPM if self.gpm_supported else UTIL_SOURCE_NVML
        if self.util_source == UTIL_SOURCE_NVML:
            self._prime_samples()

    # -- public -------------------------------------------------------------------------

    def read(self) -> dict[str, float]:
        """One sample's metrics; keys only for what was measured (see module docstring)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("GpuBackend.read() after close()")
            index = self._read_count
            self._read_count += 1
            out: dict[str, float] = {}
            if self.util_source == UTIL_SOURCE_GPM:
                self._read_gpm(out, index)
            if self.util_source == UTIL_SOURCE_NVML:
                self._read_nvml_util(out)
            n, h = self._nvml, self._handle
            mem = self._query("mem_used_bytes", n.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                out["mem_used_bytes"] = float(mem.used)
            power_mw = self._query("power_w", n.nvmlDeviceGetPowerUsage, h)
            if power_mw is not None:
                out["power_w"] = power_mw / 1000.0
            clock_mhz = self._query("sm_clock_mhz", n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM)
            if clock_mhz is not None:
                out["sm_clock_mhz"] = float(clock_mhz)
            temp = self._query("temp_c", n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU)
            if temp is not None:
                out["temp_c"] = float(temp)
            mask = self._read_throttle()
            if mask is not None:
                out["throttle_reasons"] = float(mask)
            return out

    def process_memory_bytes(self, pid: int) -> int | None:
        """Device memory NVML reports for `pid` (usedGpuMemory); None if not listed or unknown.

        NVML lists host PIDs: inside a container with its own PID namespace the own PID
        is usually not found.
        """
        procs = self._processes()
        for p in procs or ():
            if int(p.pid) == int(pid):
                used = getattr(p, "usedGpuMemory", None)
                return None if used is None else int(used)
        return None

    def processes(self) -> list[tuple[int, int | None]] | None:
        """(pid, usedGpuMemory or None) of the GPU's compute processes, as NVML lists them
        (host PIDs); None when NVML cannot list them."""
        procs = self._processes()
        if procs is None:
            return None
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append((int(p.pid), None if used is None else int(used)))
        return out

    def other_processes(self, own_pid: int) -> list[int]:
        """PIDs of the other compute processes on this GPU (empty if NVML cannot list them)."""
        procs = self._processes()
        return sorted({int(p.pid) for p in procs or () if int(p.pid) != int(own_pid)})

    def describe(self) -> dict:
        """Static facts about the device; a field NVML cannot give is None (and in errors)."""
        with self._lock:
            n, h = self._nvml, self._handle
            name = self._query("describe.name", n.nvmlDeviceGetName, h)
            uuid = self._query("describe.uuid", n.nvmlDeviceGetUUID, h)
            pci = self._query("describe.pci_bus_id", n.nvmlDeviceGetPciInfo, h)
            driver = self._query("describe.driver_version", n.nvmlSystemGetDriverVersion)
            mem = self._query("describe.memory_total_bytes", n.nvmlDeviceGetMemoryInfo, h)
            return {
                "name": nvml_text(name),
                "uuid": nvml_text(uuid),
                "pci_bus_id": nvml_text(pci.busId) if pci is not None else None,
                "driver_version": nvml_text(driver),
                "memory_total_bytes": int(mem.total) if mem is not None else None,
                "gpm_supported": self.gpm_supported,
                "gpm_unsupported_reason": self.gpm_unsupported_reason,
                "util_source": self.util_source,
            }

    def close(self) -> None:
        """Free the GPM sample buffers and shut NVML down; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._free_gpm_buffers()
            try:
                self._nvml.nvmlShutdown()
            except self._query_errors as exc:
                self._note(f"close: nvmlShutdown {_error_name(exc)}")

    def __enter__(self) -> "GpuBackend":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- errors -------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        if message not in self._error_keys:
            self._error_keys.add(message)
            self.errors.append(message)

    def _query(self, metric: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None after recording why (once per metric and error)."""
        if metric in self._disabled:
            return None
        try:
            return fn(*args)
        except self._query_errors as exc:
            name = _error_name(exc)
            self._note(f"{metric}: {name}")
            if name in _PERMANENT_ERRORS:
                self._disabled.add(metric)
            return None

    # -- nvml_gpu utilisation -----------------------------------------------------------

    def _get_util_samples(self, last_seen_us: int) -> list[tuple[int, float]] | None:
        """New (timestamp, value) samples after last_seen_us; None if the query failed."""
        n = self._nvml
        try:
            value_type, samples = n.nvmlDeviceGetSamples(
                self._handle, n.NVML_GPU_UTILIZATION_SAMPLES, last_seen_us
            )
        except n.NVMLError_NotFound:
            return []  # the driver has no sample newer than last_seen_us
        except self._query_errors as exc:
            name = _error_name(exc)
            self._note(
                f"util_pct: nvmlDeviceGetSamples {name}, using nvmlDeviceGetUtilizationRates"
            )
            if name in _PERMANENT_ERRORS:
                self._samples_supported = False
            return None
        out = []
        for s in samples:
            ts = int(s.timeStamp)
            if ts > last_seen_us:
                out.append((ts, _sample_value(n, value_type, s.sampleValue)))
        return out

    def _prime_samples(self) -> None:
        """Move the sample cursor to now, so the next read averages only newer samples.

        NVML's sample timestamps are in the driver's clock, not ours, so the cursor can
        only come from a sample NVML returned.
        """
        if not self._samples_supported or "util_pct" in self._disabled:
            return
        got = self._get_util_samples(0)
        if got is None:
            return
        if got:
            self._note_sample_period([ts for ts, _ in got])
            self._last_seen_us = max(ts for ts, _ in got)
        self._samples_primed = True

    def _read_nvml_util(self, out: dict[str, float]) -> None:
        """The mean of the utilisation samples NVML took since the previous read, and nothing
        when it took none: each sample covers the 1/6 s to 1 s before it, so re-reporting an
        old one (or nvmlDeviceGetUtilizationRates, the latest sample) would charge the
        previous window to this one. nvmlDeviceGetUtilizationRates serves only where
        nvmlDeviceGetSamples is not supported at all."""
        if "util_pct" in self._disabled:
            return
        if self._samples_supported:
            if not self._samples_primed:
                self._prime_samples()
                return  # the cursor is set: the next read averages what came after it
            got = self._get_util_samples(self._last_seen_us)
            if got is not None:
                if got:
                    self._note_sample_period([ts for ts, _ in got])
                    self._last_seen_us = max(ts for ts, _ in got)
                    mean = sum(v for _, v in got) / len(got)
                    if 0.0 <= mean <= 100.0:
                        out["util_pct"] = mean
                    else:
                        self._note(f"util_pct: nvmlDeviceGetSamples gave {mean:g}, outside 0-100")
                return
            if self._samples_supported:
                return  # a transient failure: nothing new this time
        rates = self._query("util_pct", self._nvml.nvmlDeviceGetUtilizationRates, self._handle)
        if rates is not None:
            out["util_pct"] = float(rates.gpu)

    def _note_sample_period(self, timestamps_us: list[int]) -> None:
        """NVML's utilisation sample period (driver-chosen, 1/6 s to 1 s), from the spacing
        of consecutive samples: ``sample_period_s``."""
        stamps = sorted(set(timestamps_us) | ({self._last_seen_us} if self._last_seen_us else set()))
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
        if gaps:
            gaps.sort()
            self.sample_period_s = gaps[len(gaps) // 2] / 1e6

    # -- GPM ----------------------------------------------------------------------------

    def _setup_gpm(self, prefer_gpm: bool) -> tuple[bool, str | None]:
        n = self._nvml
        if not prefer_gpm:
            return False, "not requested (prefer_gpm=False)"
        if not hasattr(n, "nvmlGpmQueryDeviceSupport"):
            return False, "this nvidia-ml-py has no GPM API; upgrade nvidia-ml-py"
        try:
            is_mig = bool(_ctypes_int(n.nvmlDeviceIsMigDeviceHandle(self._handle)))
        except (AttributeError, *self._query_errors):
            is_mig = False  # older nvidia-ml-py or driver: no MIG handles to worry about
        if is_mig:
            return False, "MIG device: per-instance GPM (nvmlGpmMigSampleGet) is not implemented"
        try:
            support = n.nvmlGpmQueryDeviceSupport(self._handle)
        except self._query_errors as exc:
            return False, f"nvmlGpmQueryDeviceSupport: {_error_name(exc)} (driver too old?)"
        if not support.isSupportedDevice:
            return False, "device does not support GPM (needs Hopper or newer)"
        try:
            for _ in range(2):
                self._gpm_buffers.append(n.nvmlGpmSampleAlloc())
        except self._query_errors as exc:
            self._free_gpm_buffers()
            return False, f"nvmlGpmSampleAlloc: {_error_name(exc)}"
        reason = self._gpm_trial()
        if reason is not None:
            self._free_gpm_buffers()
            return False, reason
        return True, None

    def _gpm_trial(self) -> str | None:
        """Take two GPM samples at least 100 ms apart and read the metrics from them, as every
        later read will: support and buffers alone do not show that sampling works (in an
        unprivileged container nvmlGpmSampleGet gives NoPermission). None when it worked
        (the second sample is then the reference), else why not."""
        try:
            self._nvml.nvmlGpmSampleGet(self._handle, self._gpm_buffers[0])
        except self._query_errors as exc:
            return f"nvmlGpmSampleGet: {_error_name(exc)}"
        first_t = self._clock()
        while (waited := self._clock() - first_t) < GPM_MIN_INTERVAL_S:
            self._sleep(GPM_MIN_INTERVAL_S - waited)
        try:
            self._nvml.nvmlGpmSampleGet(self._handle, self._gpm_buffers[1])
        except self._query_errors as exc:
            return f"nvmlGpmSampleGet (second sample): {_error_name(exc)}"
        values, problem = self._gpm_metrics(0, 1)
        if problem is not None:
            return problem
        if "util_pct" not in values:
            return "GPM SM_UTIL gave no finite value"
        self._gpm_ref = None  # the first read takes a fresh reference sample
        return None

    def _gpm_metrics(self, ref: int, cur: int) -> tuple[dict[str, float], str | None]:
        """The GPM metrics between buffers ``ref`` and ``cur`` (both filled); a reason instead
        when the call or SM_UTIL fails. Other metrics that fail are noted and left out."""
        n = self._nvml
        request = n.c_nvmlGpmMetricsGet_t()
        request.version = n.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(_GPM_METRICS)
        request.sample1 = self._gpm_buffers[ref]
        request.sample2 = self._gpm_buffers[cur]
        for i, (_, const) in enumerate(_GPM_METRICS):
            request.metrics[i].metricId = getattr(n, const)
        try:
            n.nvmlGpmMetricsGet(request)
        except self._query_errors as exc:
            return {}, f"nvmlGpmMetricsGet failed: {_error_name(exc)}"
        out: dict[str, float] = {}
        for i, (key, const) in enumerate(_GPM_METRICS):
            metric = request.metrics[i]
            if metric.nvmlReturn != n.NVML_SUCCESS:
                name = _error_name(n.NVMLError(metric.nvmlReturn))
                if key == "util_pct":
                    return {}, f"GPM SM_UTIL returned {name}"
                self._note(f"{key}: GPM {const[len('NVML_GPM_METRIC_'):]} {name}")
                continue
            value = float(metric.value)
            if not math.isfinite(value):
                self._note(f"{key}: GPM returned {value}")
                continue
            out[key] = value
        return out, None

    def _free_gpm_buffers(self) -> None:
        buffers, self._gpm_buffers = self._gpm_buffers, []
        self._gpm_ref = None
        for buf in buffers:
            try:
                self._nvml.nvmlGpmSampleFree(buf)
            except self._query_errors as exc:
                self._note(f"gpm: nvmlGpmSampleFree {_error_name(exc)}")

    def _switch_to_nvml(self, index: int, reason: str) -> None:
        self.util_source = UTIL_SOURCE_NVML
        self.source_changes.append((index, UTIL_SOURCE_NVML, reason))
        self._note(f"gpm: {reason}; util_pct is utilization.gpu from read {index} on")
        self._free_gpm_buffers()

    def _read_gpm(self, out: dict[str, float], index: int) -> None:
        n, h = self._nvml, self._handle
        now = self._clock()
        if self._gpm_ref is None:
            try:
                n.nvmlGpmSampleGet(h, self._gpm_buffers[0])
            except self._query_errors as exc:
                self._switch_to_nvml(index, f"nvmlGpmSampleGet failed: {_error_name(exc)}")
                return
            self._gpm_ref, self._gpm_ref_t = 0, now
            return  # one sample: nothing to compute yet
        if now - self._gpm_ref_t < GPM_MIN_INTERVAL_S:
            return  # too soon: keep the older sample as the reference
        cur = 1 - self._gpm_ref
        try:
            n.nvmlGpmSampleGet(h, self._gpm_buffers[cur])
        except self._query_errors as exc:
            self._switch_to_nvml(index, f"nvmlGpmSampleGet failed: {_error_name(exc)}")
            return
        values, problem = self._gpm_metrics(self._gpm_ref, cur)
        if problem is not None:
            self._switch_to_nvml(index, problem)
            return
        self._gpm_ref, self._gpm_ref_t = cur, now
        out.update(values)

    # -- the rest -----------------------------------------------------------------------

    def _read_throttle(self) -> int | None:
        """Clock event reasons; the older ...ThrottleReasons name where the new one is missing."""
        n = self._nvml
        if "throttle_reasons" in self._disabled:
            return None
        if self._throttle_fn is None:
            self._throttle_fn = (
                "nvmlDeviceGetCurrentClocksEventReasons"
                if hasattr(n, "nvmlDeviceGetCurrentClocksEventReasons")
                else "nvmlDeviceGetCurrentClocksThrottleReasons"
            )
        try:
            return int(getattr(n, self._throttle_fn)(self._handle))
        except n.NVMLError_FunctionNotFound:
            if self._throttle_fn == "nvmlDeviceGetCurrentClocksEventReasons":
                self._throttle_fn = "nvmlDeviceGetCurrentClocksThrottleReasons"  # older driver
                return self._query("throttle_reasons", getattr(n, self._throttle_fn), self._handle)
            self._note("throttle_reasons: FunctionNotFound")
            self._disabled.add("throttle_reasons")
            return None
        except self._query_errors as exc:
            name = _error_name(exc)
            self._note(f"throttle_reasons: {name}")
            if name in _PERMANENT_ERRORS:
                self._disabled.add("throttle_reasons")
            return None

    def _processes(self) -> list[Any] | None:
        with self._lock:
            return self._query(
                "processes", self._nvml.nvmlDeviceGetComputeRunningProcesses, self._handle
            )


# ---------------------------------------------------------------------------------------
# helpers


def _ctypes_int(value: Any) -> int:
    """pynvml returns some integers as the ctypes object it passed by reference (c_uint)."""
    return int(getattr(value, "value", value))


def _query_error_types(nvml: Any) -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [nvml.NVMLError]
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)  # from @throwOnVersionMismatch
    if isinstance(mismatch, type):
        types.append(mismatch)
    return tuple(types)


def _error_name(exc: BaseException) -> str:
    """"NotSupported" for pynvml.NVMLError_NotSupported; the class name otherwise."""
    name = type(exc).__name__
    return name[len("NVMLError_"):] if name.startswith("NVMLError_") else name


def nvml_text(value: Any) -> str | None:
    """pynvml returns str (newer releases) or bytes (older ones)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_VALUE_FIELDS = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)


def _sample_value(nvml: Any, value_type: int, value: Any) -> float:
    """The member of the nvmlValue_t union that `value_type` says is filled."""
    for const, field in _VALUE_FIELDS:
        if getattr(nvml, const, None) == value_type:
            return float(getattr(value, field))
    return float(value.uiVal)  # utilisation samples are documented as unsigned int


def _shutdown_quietly(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 (already failing; the first error is the one to report)
        pass
