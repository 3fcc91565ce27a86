"""The worker's view of its GPU: the sampler backend and NVML's figure for this process.

Each falls back to a labelled CPU equivalent, never to a silent zero: when NVML is not
usable the sampler measures CPU (``util_source = cpu``) and says why in ``fallback_reason``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .nvml_backend import GpuBackend, NvmlUnavailable, open_gpu_backend
from .sampler import CpuBackend

GPM_MIN_INTERVAL_S = 0.105  # GPM needs two samples more than 100 ms apart; leave room for jitter


def resolve_device(requested: str) -> str:
    """The device a run measures on, always with an index on CUDA: ``auto`` is ``cuda:N``
    (torch's current device) when CUDA is available, else ``cpu``; a bare ``cuda`` is
    ``cuda:N``. torch's ``set_device`` and ``set_per_process_memory_fraction`` reject a CUDA
    device without an index (``_get_device_index`` raises ValueError), so nothing downstream
    may ever see one."""
    if requested == "cpu":
        return "cpu"
    import torch

    if requested == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        requested = "cuda"
    device = torch.device(requested)
    if device.type != "cuda":
        return requested
    if device.index is not None:
        return f"cuda:{device.index}"
    # without CUDA, cuda:0 (loading the pipeline then fails with torch's own message)
    return f"cuda:{torch.cuda.current_device() if torch.cuda.is_available() else 0}"


def cuda_index(device: str) -> int:
    """N of ``cuda:N`` (see :func:`resolve_device`); ValueError for a device without one."""
    import torch

    index = torch.device(device).index
    if index is None:
        raise ValueError(f"CUDA device {device!r} has no index (resolve it with resolve_device first)")
    return index


def select_cuda_device(device: str) -> str:
    """Make ``device`` (``cuda``, ``cuda:N``) this process's current CUDA device; returns its
    indexed name."""
    import torch

    device = resolve_device(device)
    torch.cuda.set_device(cuda_index(device))
    return device


def torch_device_identity(device: str) -> tuple[int, str | None]:
    """The CUDA device index and its UUID (as torch reports it), to find the same GPU in NVML
    whatever CUDA_DEVICE_ORDER says."""
    import torch

    index = cuda_index(resolve_device(device))
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return index, (str(uuid) if uuid is not None else None)


INIT_PID_NAMESPACE = "pid:[4026531836]"  # the kernel's initial PID namespace (PROC_PID_INIT_INO)


def in_host_pid_namespace() -> bool | None:
    """True when this process sees the host's PIDs (those NVML lists), False inside its own
    PID namespace (a container without ``--pid=host``), None when Linux does not say."""
    try:
        return os.readlink("/proc/self/ns/pid") == INIT_PID_NAMESPACE
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessView:
    """NVML's compute processes on the GPU as seen from this worker."""

    own_bytes: int | None        # this process's device memory (CUDA context included), None if unknown
    other_pids: list[int]        # processes that are not this one
    note: str | None = None      # why own_bytes is blank, when it is


def process_view(listed: list[tuple[int, int | None]] | None, own_pid: int, *, holds_device_memory: bool,
                 host_pid_namespace: bool | None) -> ProcessView:
    """Find this process in NVML's list. NVML reports host PIDs: in its own PID namespace a
    worker that holds device memory is listed under a PID it cannot know, so its figure is
    blank (and why), and with it the only listed process no other process is reported."""
    if listed is None:
        return ProcessView(None, [], "NVML could not list the GPU's processes")
    for pid, used in listed:
        if pid == own_pid:
            return ProcessView(used, sorted({p for p, _ in listed if p != own_pid}),
                               None if used is not None else "NVML does not report this process's memory")
    pids = sorted({p for p, _ in listed})
    if not holds_device_memory or host_pid_namespace is True:
        return ProcessView(None, pids, f"NVML does not list this process (pid {own_pid})")
    where = "its own PID namespace" if host_pid_namespace is False else "a PID namespace NVML does not see"
    note = (f"NVML lists host PIDs ({', '.join(map(str, pids)) or 'none'}) and this worker (pid {own_pid}) runs in "
            f"{where}, so its own entry cannot be told apart")
    return ProcessView(None, [] if len(pids) <= 1 else pids, note)


class WorkerGpu:
    """The worker's one NVML backend: the sampler's source, this process's device memory and
    the other processes on the GPU. ``close()`` (with the worker) frees the GPM samples and
    shuts NVML down. Without NVML, ``backend`` is None and ``unavailable_reason`` says why."""

    def __init__(self, device: str, *, nvml: Any = None,
                 identity: Callable[[str], tuple[int, str | None]] = torch_device_identity,
                 holds_device_memory: Callable[[], bool] | None = None,
                 host_pid_namespace: Callable[[], bool | None] = in_host_pid_namespace,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self.device = device
        self.index, self.uuid = identity(device)
        self.backend: GpuBackend | None = None
        self.unavailable_reason: str | None = None
        self._holds = holds_device_memory or (lambda: _torch_reserved_bytes(self.index) > 0)
        self._host_ns = host_pid_namespace
        timing = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}
        try:
            self.backend = open_gpu_backend(device_index=self.index, device_uuid=self.uuid, nvml=nvml, **timing)
        except NvmlUnavailable as exc:
            self.unavailable_reason = str(exc)
        if self.backend is not None and self.backend.util_source == "gpm_sm":
            self.backend.min_interval_s = GPM_MIN_INTERVAL_S
        self.device_mem_notes: list[str] = []

    def sampler_backend(self):
        """The GPU backend, or :class:`CpuBackend` with the reason attached."""
        if self.backend is not None:
            return self.backend
        fallback = CpuBackend()
        fallback.fallback_reason = f"NVML unavailable ({self.unavailable_reason}); utilisation is the CPU's"
        return fallback

    def view(self) -> ProcessView:
        if self.backend is None:
            view = ProcessView(None, [], f"NVML unavailable ({self.unavailable_reason})")
        else:
            view = process_view(self.backend.processes(), os.getpid(), holds_device_memory=self._holds(),
                                host_pid_namespace=self._host_ns())
        if view.note and view.note not in self.device_mem_notes:
            self.device_mem_notes.append(view.note)
        return view

    def process_bytes(self) -> int | None:
        """This process's device memory per NVML (CUDA context included); None (blank) when
        NVML cannot tell, with the reason in ``device_mem_notes``."""
        return self.view().own_bytes

    def other_processes(self) -> list[int]:
        return self.view().other_pids

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def _torch_reserved_bytes(index: int) -> int:
    import torch

    return int(torch.cuda.memory_reserved(index))


def open_sampler_backend(device: str, *, nvml: Any = None,
                         identity: Callable[[str], tuple[int, str | None]] = torch_device_identity):
    """A sampler backend of its own for ``device`` (a GpuBackend, or :class:`CpuBackend` with
    the reason); the caller closes it. The worker shares one through :class:`WorkerGpu`."""
    return WorkerGpu(device, nvml=nvml, identity=identity).sampler_backend()


def describe_gpu(device: str) -> str:
    """The GPU a worker measures on, as samples.csv's ``gpu`` column records it: its name and
    UUID (the UUID is the same whatever CUDA_VISIBLE_DEVICES renumbers); blank off CUDA."""
    if not device.startswith("cuda"):
        return ""
    import torch

    index, uuid = torch_device_identity(device)
    name = torch.cuda.get_device_properties(index).name
    return f"{name} (GPU-{uuid})" if uuid else f"{name} (cuda:{index})"
