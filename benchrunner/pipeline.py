"""The pipeline protocol: a named, ordered list of stages over time-aligned tensors.

A *clip* is a dict of named tensors (streams) that share one time line, e.g.
``{"audio": (B, N) at 16 kHz, "frames": (B, F, 3, H, W) at 25 fps}``. Each stage takes
the previous stage's output (the first takes the clip) and returns the next value.
The last stage's output is again a dict of streams, which chunked mode cuts and
merges along each stream's time axis (:class:`Stream`).

Users load their own pipeline with a factory ``"module:function"`` called with the
suite's ``pipeline_args``; it returns a :class:`Pipeline`.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from .errors import UserError


@dataclass(frozen=True)
class Stream:
    """Where the time axis of one named tensor is, and its rate in steps per second.

    ``rate_hz`` None means: infer it from each chunk's output length over the chunk's
    duration (exact only when the stage keeps time proportional).
    """

    time_axis: int
    rate_hz: float | None = None


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: ``fn(value) -> value``, run under ``torch.inference_mode``."""

    name: str
    fn: Callable[[Any], Any]


@dataclass
class Pipeline:
    """An ordered list of stages plus what the harness needs to feed and merge it.

    ``inputs`` describes the streams of the clip the first stage takes (how to cut it),
    ``outputs`` the streams of the last stage's output (how to merge chunk outputs).
    ``make_clip(clip_s, seed)`` builds a deterministic synthetic clip; ``sample_rate``
    is what real WAV inputs are resampled to. ``batchable`` says the stages accept a
    batch dimension > 1, so equal-length chunks may run together. ``file_input`` names the
    input stream that a suite's ``inputs = "dir"`` files replace (mono, at ``sample_rate``,
    shaped (1, samples)); a suite with inputs and a pipeline without that stream is bad input.
    """

    name: str
    stages: list[Stage]
    inputs: Mapping[str, Stream]
    outputs: Mapping[str, Stream]
    make_clip: Callable[[float, int], dict[str, torch.Tensor]]
    sample_rate: int = 16000
    frame_rate: float = 25.0
    batchable: bool = False
    device: str = "cpu"
    modules: list[torch.nn.Module] = field(default_factory=list)
    file_input: str = "audio"

    def file_input_problem(self) -> str | None:
        """Why files could not feed this pipeline (None when they can): the stream
        ``file_input`` names must be an input stream (Pipeline.inputs or make_clip's keys)."""
        names = set(self.inputs)
        if self.file_input not in names:
            try:
                names |= set(self.make_clip(1.0, 0))
            except Exception:  # make_clip's own failure shows when the run needs a clip
                pass
        if self.file_input in names:
            return None
        return (f"pipeline {self.name!r} has no input stream {self.file_input!r} to take the files' audio "
                f"(its input streams: {', '.join(sorted(names)) or 'none'}; expected Pipeline(file_input=NAME) "
                "naming one of them)")

    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def duration_s(self, clip: dict, nominal_s: float) -> float:
        """The clip's real length, from its first input stream with a declared rate (a WAV file
        in the 5 s bucket may last 5.2 s); ``nominal_s`` when no stream says."""
        for name, stream in self.inputs.items():
            if stream.rate_hz and name in clip and torch.is_tensor(clip[name]):
                return clip[name].shape[stream.time_axis] / stream.rate_hz
        return nominal_s


@dataclass(frozen=True)
class ChunkContext:
    """What a stage may ask about the chunk it is running on (see :func:`current_chunk`)."""

    index: int
    count: int
    attempt: int
    start_s: float
    end_s: float


_current_chunk: contextvars.ContextVar[ChunkContext | None] = contextvars.ContextVar(
    "benchrunner_current_chunk", default=None
)


def current_chunk() -> ChunkContext | None:
    """The chunk being processed, or None in a single pass. For fault injection and logging."""
    return _current_chunk.get()


def set_current_chunk(chunk: ChunkContext | None) -> contextvars.Token:
    return _current_chunk.set(chunk)


def reset_current_chunk(token: contextvars.Token) -> None:
    _current_chunk.reset(token)


def resolve_factory(spec: str, *, source: str = "suite", field_name: str = "pipeline") -> Callable:
    """Import ``"package.module:function"``; a bad spec is a one-line :class:`UserError`."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"{source}: {field_name}: {spec!r} is not 'module:function' (expected e.g. 'mypkg.pipe:build')")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's path or their module
        raise UserError(f"{source}: {field_name}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{source}: {field_name}: {module_name!r} has no callable {attr!r}")
    return factory


def check_factory_args(factory: Callable, args: Mapping[str, Any], *, source: str, field_name: str) -> None:
    """Fail early, with the field's name, when pipeline_args don't fit the factory's signature."""
    try:
        inspect.signature(factory).bind(**args)
    except TypeError as exc:
        raise UserError(f"{source}: {field_name}: {exc}") from None
    except ValueError:
        return  # builtins without a signature: let the call decide


def load_pipeline(spec: str, args: Mapping[str, Any], *, device: str) -> Pipeline:
    """Build the pipeline named by ``spec`` with ``args`` (plus ``device``) and check it."""
    factory = resolve_factory(spec)
    call_args = dict(args)
    if "device" in inspect.signature(factory).parameters:
        call_args.setdefault("device", device)
    pipeline = factory(**call_args)
    if not isinstance(pipeline, Pipeline):
        raise UserError(f"suite: pipeline: {spec} returned {type(pipeline).__name__}, expected benchrunner.Pipeline")
    if not pipeline.stages:
        raise UserError(f"suite: pipeline: {spec} returned a pipeline with no stages")
    for module in pipeline.modules:
        module.eval()
    pipeline.device = device
    return pipeline
