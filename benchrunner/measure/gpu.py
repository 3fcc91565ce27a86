"""The worker's view of its GPU: the sampler backend and NVML's figure for this process.

Each falls back to a labelled CPU equivalent, never to a silent zero: when NVML is not
usable the sampler measures CPU (``util_source = cpu``) and says why in ``fallback_reason``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .nvml_backend import GpuBackend, NvmlUnavailable, open_gpu_backend
from .sampler import CpuBackend

GPM_MIN_INTERVAL_S = 0.105  # GPM needs two samples more than 100 ms apart; leave room for jitter


def torch_device_identity(device: str) -> tuple[int, str | None]:
    """The CUDA device index and its UUID (as torch reports it), to find the same GPU in NVML
    whatever CUDA_DEVICE_ORDER says."""
    import torch

    index = torch.device(device).index or 0
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return index, (str(uuid) if uuid is not None else None)


def open_sampler_backend(device: str, *, nvml: Any = None,
                         identity: Callable[[str], tuple[int, str | None]] = torch_device_identity):
    """The GPU backend for ``device``, or :class:`CpuBackend` with the reason attached."""
    try:
        index, uuid = identity(device)
        backend = open_gpu_backend(device_index=index, device_uuid=uuid, nvml=nvml)
    except NvmlUnavailable as exc:
        fallback = CpuBackend()
        fallback.fallback_reason = f"NVML unavailable ({exc}); utilisation is the CPU's"
        return fallback
    if backend.util_source == "gpm_sm":
        backend.min_interval_s = GPM_MIN_INTERVAL_S
    return backend


def process_device_bytes_reader(device: str, *, nvml: Any = None,
                                identity: Callable[[str], tuple[int, str | None]] = torch_device_identity
                                ) -> Callable[[], int | None] | None:
    """A function returning this process's device memory per NVML (CUDA context included),
    or None when NVML cannot be opened (the column then stays blank)."""
    try:
        index, uuid = identity(device)
        backend: GpuBackend = open_gpu_backend(device_index=index, device_uuid=uuid, nvml=nvml)
    except NvmlUnavailable:
        return None
    pid = os.getpid()
    return lambda: backend.process_memory_bytes(pid)
