"""What kind of failure an exception is, and freeing memory after one."""

from __future__ import annotations

import gc

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


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """One line: the type and the first line of the message, bounded in length. A wrapper
    with ``stage`` and ``cause`` reads ``stage: Type: message``."""
    if hasattr(exc, "stage") and hasattr(exc, "cause"):
        return f"{exc.stage}: {describe_exception(exc.cause, limit)}"
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def free_memory() -> None:
    """Collect garbage and return cached device memory. Call outside any ``except`` block,
    so the traceback no longer keeps the failed step's tensors alive."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
