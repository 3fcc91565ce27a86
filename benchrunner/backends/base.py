"""The one interface every backend implements, and what building a stage returns."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..pipeline import Stage
from ..suite import VariantSpec, missing_package

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class UnsupportedStage(Exception):
    """A backend cannot take a stage; the message says why, in one line."""


@dataclass
class BuildContext:
    """Where a backend may write files (one folder per variant) and the device it runs on."""

    device: str
    build_dir: Path


@dataclass
class StageBuild:
    """A stage as a backend runs it, and what building it cost.

    ``fn`` is the stage function (dict -> dict); ``build_ms`` the parts of the set-up
    (e.g. ``export``, ``quantize``, ``session``); ``param_bytes`` the bytes of the weights as
    the backend holds them; ``file_bytes`` the size of the serialised model (the exported
    file for exported backends, what ``torch.save`` writes for torch ones).
    """

    fn: Callable[[dict], dict]
    runs_as: str
    build_ms: dict[str, float] = field(default_factory=dict)
    param_bytes: int | None = None
    file_bytes: int | None = None
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Backend:
    """Runs a stage's module some other way. Subclasses set ``name`` and implement
    :meth:`build_stage`; :meth:`unavailable` names a missing package, with its fix."""

    name = "?"

    def unavailable(self) -> str | None:
        return missing_package(self.name)

    def build_stage(self, stage: Stage, example_args: tuple[Any, ...], spec: VariantSpec,
                    ctx: BuildContext) -> StageBuild:
        raise NotImplementedError


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's state (parameters, buffers, packed quantised weights)."""
    total = 0
    for value in module.state_dict().values():
        for tensor in (value if isinstance(value, (tuple, list)) else (value,)):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()
    return total


def saved_bytes(module: torch.nn.Module) -> int:
    """Size of the module's state as ``torch.save`` writes it (its size on disk)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell()


@contextlib.contextmanager
def quiet():
    """Silence what exporters and quantisers print (progress lines, deprecation warnings,
    log records): a worker's output is the harness's, not theirs. Errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch._inductor", "onnxscript",
                                                    "torch.export", "torch.fx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
