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
    duration (exact only when the stage keeps time proportional). ``categorical`` marks an
    output whose ``class_axis`` holds class scores (logits, probabilities): accuracy
    against a reference variant then also reports how often the argmax agrees.
    """

    time_axis: int
    rate_hz: float | None = None
    categorical: bool = False
    class_axis: int = -1


@dataclass(frozen=True)
class ModuleCall:
    """How a stage calls its ``torch.nn.Module``: the entries of the stage's input dict passed
    as the module's positional arguments (``args``), the names its returned tensors take
    (``returns``: one name for a tensor, several for a tuple), and which input entries pass
    through to the stage's output (``keep``; None: all of them, overwritten by the returns).

    Floating-point arguments are cast to the dtype the callee expects (``input_dtype``),
    so a pipeline built in bfloat16, or a backend that changes precision, is fed right.
    """

    args: tuple[str, ...]
    returns: tuple[str, ...]
    keep: tuple[str, ...] | None = None

    def bind(self, callee: Callable[..., Any], input_dtype: torch.dtype | None = None) -> Callable[[dict], dict]:
        """The stage function ``dict -> dict`` that calls ``callee`` (a module, or what a
        backend made of it) the way this call says."""
        def run(value: dict) -> dict:
            args = [_cast(value[name], input_dtype) for name in self.args]
            result = callee(*args)
            outputs = (result,) if torch.is_tensor(result) else tuple(result)
            if len(outputs) != len(self.returns):
                raise ValueError(f"the module returned {len(outputs)} values, ModuleCall.returns names "
                                 f"{len(self.returns)}")
            kept = value if self.keep is None else {k: value[k] for k in self.keep if k in value}
            return {**kept, **dict(zip(self.returns, outputs))}
        return run


def _cast(value: Any, dtype: torch.dtype | None) -> Any:
    if dtype is not None and torch.is_tensor(value) and value.is_floating_point() and value.dtype != dtype:
        return value.to(dtype)
    return value


def module_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of a module's first floating-point parameter (what its inputs must be)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: ``fn(value) -> value``, run under ``torch.inference_mode``.

    A stage that names its ``module`` and how it is ``call``ed (:class:`ModuleCall`) can be
    run by other backends and precisions (suite variants with ``backend``, ``precision``,
    ``quantize``); ``fn`` may then be left out and is built from the two. A stage with a
    plain ``fn`` only runs as written (eager).

    ``modules`` are the torch modules ``fn`` uses: declaring them lets the throughput
    scenario place the stage on a device of its own (``stage_devices``); a stage with a
    ``module`` has it as its one module unless ``modules`` says otherwise.
    """

    name: str
    fn: Callable[[Any], Any] | None = None
    module: torch.nn.Module | None = None
    call: ModuleCall | None = None
    modules: tuple = ()

    def __post_init__(self):
        if self.fn is None:
            if self.module is None or self.call is None:
                raise ValueError(f"stage {self.name!r}: give fn, or module and call")
            object.__setattr__(self, "fn", self.call.bind(self.module, module_dtype(self.module)))
        if self.module is not None and not self.modules:
            object.__setattr__(self, "modules", (self.module,))


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


@dataclass(frozen=True)
class LoadContext:
    """What a stage may ask in the throughput scenario (see :func:`current_load`): the level's
    concurrency (clips in flight) and which clip of the level this call works on (0-based)."""

    concurrency: int
    clip: int


_current_load: contextvars.ContextVar[LoadContext | None] = contextvars.ContextVar(
    "benchrunner_current_load", default=None
)


def current_load() -> LoadContext | None:
    """The load a stage runs under in the throughput scenario, or None in the latency scenario.
    For fault injection ("fail at concurrency 8") and logging."""
    return _current_load.get()


def set_current_load(load: LoadContext | None) -> contextvars.Token:
    return _current_load.set(load)


def reset_current_load(token: contextvars.Token) -> None:
    _current_load.reset(token)


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
    reserved = sorted({"total", "split", "merge"} & set(pipeline.stage_names()))
    if reserved:
        raise UserError(f"suite: pipeline: {spec}: stage name {reserved[0]!r} is reserved for the harness's own "
                        "rows (expected another name)")
    for module in [*pipeline.modules, *(s.module for s in pipeline.stages if s.module is not None)]:
        module.eval()
    pipeline.device = device
    return pipeline
