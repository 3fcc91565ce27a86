"""``backend = "eager"``: the stage's module in PyTorch, in the variant's precision
(weights cast, or autocast for mixed precision), optionally with dynamic INT8 quantisation."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..pipeline import Stage
from .base import PRECISION_DTYPES, Backend, BuildContext, StageBuild, UnsupportedStage, quiet, saved_bytes, \
    weight_bytes
from ..suite import VariantSpec

# the layer types torch's dynamic quantisation replaces (weights int8, activations quantised per call)
DYNAMIC_QUANT_TYPES = (torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU)


def prepare_module(module: torch.nn.Module, spec: VariantSpec, ctx: BuildContext,
                   build_ms: dict[str, float], notes: list[str]) -> tuple[torch.nn.Module, torch.dtype | None]:
    """The module in the variant's precision and quantisation; returns it and the dtype its
    floating inputs must have. Weights cast in place (the worker owns its pipeline)."""
    if spec.quantize == "int8-dynamic":
        if ctx.device.startswith("cuda"):
            raise UnsupportedStage("torch dynamic INT8 quantisation runs on the CPU only")
        if not any(isinstance(m, DYNAMIC_QUANT_TYPES) for m in module.modules()):
            notes.append("no Linear/LSTM/GRU layer: dynamic quantisation leaves it in fp32")
        started = time.perf_counter()
        with quiet():  # torch.ao.quantization is deprecated in favour of torchao; it still works in 2.13
            from torch.ao.quantization import quantize_dynamic

            module = quantize_dynamic(module.float(), set(DYNAMIC_QUANT_TYPES), dtype=torch.qint8)
        build_ms["quantize"] = (time.perf_counter() - started) * 1000.0
        return module.eval(), torch.float32
    dtype = PRECISION_DTYPES[spec.precision]
    if spec.autocast:
        return module.float(), torch.float32
    started = time.perf_counter()
    module = module.to(dtype)
    if spec.precision != "fp32":
        build_ms["cast"] = (time.perf_counter() - started) * 1000.0
    return module, dtype


def with_autocast(fn: Callable[[dict], dict], spec: VariantSpec, device: str) -> Callable[[dict], dict]:
    """Run ``fn`` under ``torch.autocast`` in the variant's precision (mixed precision)."""
    if not spec.autocast:
        return fn
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    dtype = PRECISION_DTYPES[spec.precision]

    def run(value: dict) -> dict:
        with torch.autocast(device_type=device_type, dtype=dtype):
            return fn(value)
    return run


class EagerBackend(Backend):
    name = "eager"

    def build_stage(self, stage: Stage, example_args: tuple[Any, ...], spec: VariantSpec,
                    ctx: BuildContext) -> StageBuild:
        build_ms: dict[str, float] = {}
        notes: list[str] = []
        module, input_dtype = prepare_module(stage.module, spec, ctx, build_ms, notes)
        fn = with_autocast(stage.call.bind(module, input_dtype), spec, ctx.device)
        return StageBuild(fn=fn, runs_as=self.name, build_ms=build_ms, param_bytes=weight_bytes(module),
                          file_bytes=saved_bytes(module), notes=notes)

