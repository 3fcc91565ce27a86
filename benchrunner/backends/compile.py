"""``backend = "compile"``: the (cast or quantised) module under ``torch.compile`` with the
variant's ``compile_mode``. Compilation is lazy: it happens at the first call of each new
shape, which the variant's set-up call (and each case's warm-up) absorbs."""

from __future__ import annotations

from typing import Any

import torch

from ..pipeline import Stage
from .base import Backend, BuildContext, StageBuild, saved_bytes, weight_bytes
from .eager import prepare_module, with_autocast
from ..suite import VariantSpec


class CompileBackend(Backend):
    name = "compile"

    def build_stage(self, stage: Stage, example_args: tuple[Any, ...], spec: VariantSpec,
                    ctx: BuildContext) -> StageBuild:
        build_ms: dict[str, float] = {}
        notes: list[str] = []
        module, input_dtype = prepare_module(stage.module, spec, ctx, build_ms, notes)
        mode = None if spec.compile_mode == "default" else spec.compile_mode
        compiled = torch.compile(module, mode=mode, dynamic=True)
        fn = with_autocast(stage.call.bind(compiled, input_dtype), spec, ctx.device)
        notes.append("compiled lazily at the first call of each input shape (set-up call and warm-ups)")
        return StageBuild(fn=fn, runs_as=self.name, build_ms=build_ms, param_bytes=weight_bytes(module),
                          file_bytes=saved_bytes(module), notes=notes)
