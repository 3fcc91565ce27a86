"""Where each stage runs: its device, its CUDA stream, and the timed move of its input.

``stage_devices = { voice_conversion = "cuda:0", lipsync = "cuda:1" }`` places stages; the
others stay on the suite's device. A placed stage's modules (``Stage.modules``) are moved to
its device once, when the level starts. On a CUDA device each stage thread runs its calls on
its own stream (``torch.cuda.Stream``) and waits for that stream before handing the output
on, so the next stage (another thread, another stream) reads finished tensors and the
caching allocator cannot reuse their memory early; a stage's busy time is therefore host wall
time including its GPU work. When consecutive stages sit on different devices, the output is
copied to the next stage's device on the next stage's stream (non-blocking, then that stream
is synchronised) and timed as a transfer of its own.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ...errors import UserError

TIMER_SOURCE_HOST = "perf_counter"
TIMER_SOURCE_STREAM = "perf_counter+stream_sync"


@dataclass
class StagePlace:
    """One stage's device and, on CUDA, its stream (created in the stage's own thread)."""

    device: str
    stream: Any = None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def open(self) -> None:
        """Called in the stage's thread: make its device current and give it its own stream."""
        if self.is_cuda:
            torch.cuda.set_device(torch.device(self.device))
            self.stream = torch.cuda.Stream(device=torch.device(self.device))

    def context(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def finish(self) -> None:
        """Wait for this stage's queued GPU work (nothing to wait for on the CPU)."""
        if self.stream is not None:
            self.stream.synchronize()


def _prefix(source: str | None) -> str:
    return f"{source}: " if source else ""


def plan_devices(stage_names: list[str], default_device: str, stage_devices: Mapping[str, str],
                 source: str | None = None) -> list[str]:
    """The device of every stage, in order; a name that is no stage is bad input."""
    unknown = [name for name in stage_devices if name not in stage_names]
    if unknown:
        raise UserError(f"{_prefix(source)}stage_devices.{unknown[0]}: no such stage "
                        f"(expected one of {', '.join(stage_names)})")
    return [_indexed(stage_devices.get(name, default_device)) for name in stage_names]


def _indexed(device: str) -> str:
    """``cuda`` as ``cuda:N`` (the current device), so that "cuda" and "cuda:0" are one device."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return device


def place_modules(stages: list, devices: list[str], default_device: str, source: str | None = None) -> None:
    """Move each placed stage's modules to its device; a placed stage that declares none
    cannot be moved, which is bad input rather than a silent run on the wrong device."""
    for stage, device in zip(stages, devices):
        if device == default_device:
            continue
        modules = list(getattr(stage, "modules", ()) or ())
        if not modules:
            raise UserError(f"{_prefix(source)}stage_devices.{stage.name}: the stage declares no modules, so it cannot "
                            f"be moved to {device} (expected Stage(..., modules=[...]) in the pipeline)")
        for module in modules:
            module.to(torch.device(device))


def same_device(a: str, b: str) -> bool:
    return torch.device(a) == torch.device(b)


def move(value: Any, device: str, non_blocking: bool) -> tuple[Any, int]:
    """``value`` (a tensor, or dicts/lists/tuples of them) on ``device``, and the bytes moved."""
    if torch.is_tensor(value):
        return value.to(torch.device(device), non_blocking=non_blocking), value.numel() * value.element_size()
    if isinstance(value, dict):
        moved, total = {}, 0
        for key, item in value.items():
            moved[key], n = move(item, device, non_blocking)
            total += n
        return moved, total
    if isinstance(value, (list, tuple)):
        pairs = [move(item, device, non_blocking) for item in value]
        return type(value)(p[0] for p in pairs), sum(p[1] for p in pairs)
    return value, 0


def timed_transfer(value: Any, place: StagePlace) -> tuple[Any, int, int, int]:
    """Copy ``value`` to ``place``'s device on its stream: (value, bytes, start_ns, end_ns)."""
    start = time.perf_counter_ns()
    with place.context():
        moved, nbytes = move(value, place.device, non_blocking=place.is_cuda)
    place.finish()
    return moved, nbytes, start, time.perf_counter_ns()
