"""What every execution mode shares: the chunk table, its result and running the stages once."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ...pipeline import Pipeline


class StageTimer(Protocol):
    def measure(self, stage: str, label: str) -> AbstractContextManager: ...


@dataclass
class ChunkRecord:
    """One row of the chunk table."""

    index: int
    start_s: float
    end_s: float
    state: str = "pending"  # pending | running | done | failed
    attempts: int = 0
    error: str = ""


@dataclass
class ModeResult:
    output: Any
    executed_as: str
    chunks: int = 1
    retries: int = 0
    chunk_table: list[ChunkRecord] = field(default_factory=list)


class StageFailed(Exception):
    """A stage raised; carries the stage's name and the original exception."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"{stage}: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause


class ChunkFailed(Exception):
    """A chunk failed after all its retries; ``kind`` is oom or error."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def run_stages(pipeline: Pipeline, value: Any, timer: StageTimer, label: str, suffix: str = "") -> Any:
    """Run every stage in order, each timed and named ``<label>/<stage><suffix>`` for NVTX
    (e.g. ``chunked/acoustic/chunk3``)."""
    for stage in pipeline.stages:
        with timer.measure(stage.name, f"{label}/{stage.name}{suffix}"):
            try:
                value = stage.fn(value)
            except (Exception, KeyboardInterrupt, SystemExit) as exc:  # a stage's exit is its repeat's error
                raise StageFailed(stage.name, exc) from exc
    if not isinstance(value, dict):
        last = pipeline.stages[-1].name
        raise StageFailed(last, TypeError(f"returned {_what(value)}, expected a dict of tensors (output streams)"))
    return value


def _what(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"

