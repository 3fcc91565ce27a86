"""What kind of failure an exception is, and freeing memory after one."""

from __future__ import annotations

import gc

from ..errors import scrub
from ..store.results import ERROR, OOM

_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc")


def classify_exception(exc: BaseException) -> str:
    """``oom`` for CUDA OutOfMemoryError, MemoryError and allocator failures; else ``error``.
    A wrapper that carries the original exception as ``cause`` is classified by it."""
    import torch

    exc = getattr(exc, "cause", exc)
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return OOM
    text = str(exc).lower()
    if isinstance(exc, RuntimeError) and any(message in text for message in _OOM_MESSAGES):
        return OOM
    return ERROR


# CUDA errors that leave the context unusable: every later CUDA call in the process fails
# ("sticky" errors: cudaErrorIllegalAddress, cudaErrorAssert, cudaErrorLaunchFailure,
# cudaErrorIllegalInstruction, cudaErrorMisalignedAddress, cudaErrorInvalidPc,
# cudaErrorHardwareStackError, cudaErrorECCUncorrectable), as torch words them.
_STICKY_CUDA_MESSAGES = (
    "an illegal memory access was encountered", "device-side assert triggered", "unspecified launch failure",
    "an illegal instruction was encountered", "misaligned address", "invalid program counter",
    "hardware stack error", "uncorrectable ecc error",
)


def is_sticky_cuda_error(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what it wraps) is a CUDA error after which the process's CUDA
    context is broken, so the worker must be replaced."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if "cuda error" in text and any(message in text for message in _STICKY_CUDA_MESSAGES):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return False


class WorkerMustEnd(Exception):
    """Raised in the worker after a repeat that broke its CUDA context; str() keeps the
    original error. The parent records the repeat and starts a fresh worker."""


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """One line: the type and the first line of the message, bounded in length. A wrapper
    with ``stage`` and ``cause`` reads ``stage: Type: message``."""
    if hasattr(exc, "stage") and hasattr(exc, "cause"):
        return f"{exc.stage}: {describe_exception(exc.cause, limit)}"
    first_line = scrub((str(exc).strip().splitlines() or [""])[0])  # the error column never holds a password
    text = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def free_memory() -> None:
    """Collect garbage and return cached device memory. Call outside any ``except`` block,
    so the traceback no longer keeps the failed step's tensors alive."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
