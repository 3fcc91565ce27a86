"""``backend = "openvino"`` (optional: ``pip install 'benchrunner[openvino]'``): each stage's
module exported to ONNX (as for onnxruntime) and compiled by OpenVINO for its CPU device.
``quantize = "int8-dynamic"`` is not offered here (OpenVINO's INT8 path is NNCF's
post-training quantisation, which needs a calibration set): the stage is unsupported."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..pipeline import Stage
from .base import Backend, BuildContext, StageBuild, UnsupportedStage
from .onnx_export import export_onnx, files_bytes, initializer_bytes, input_names
from ..suite import VariantSpec


class OpenVinoBackend(Backend):
    name = "openvino"

    def build_stage(self, stage: Stage, example_args: tuple[Any, ...], spec: VariantSpec,
                    ctx: BuildContext) -> StageBuild:
        if spec.quantize != "none":
            raise UnsupportedStage("openvino backend: quantize needs NNCF calibration, not offered "
                                   "(expected quantize = \"none\")")
        if ctx.device.startswith("cuda"):
            raise UnsupportedStage("openvino backend runs on the CPU here (expected device = \"cpu\")")
        import openvino as ov

        build_ms: dict[str, float] = {}
        notes: list[str] = []
        path = export_onnx(stage, example_args, ctx.build_dir / f"{stage.name}.onnx", build_ms, notes)
        started = time.perf_counter()
        core = ov.Core()
        # OpenVINO's CPU plugin computes in bf16 by default on CPUs with bf16 units; the variant
        # says fp32, so ask for it (measured here: 1e-2 errors otherwise)
        compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                      {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                       "INFERENCE_PRECISION_HINT": "f32"})
        build_ms["compile"] = (time.perf_counter() - started) * 1000.0
        names = input_names(stage)
        outputs = list(compiled.outputs)

        def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            request = compiled.create_infer_request()
            result = request.infer({name: np.ascontiguousarray(arg.detach().numpy()) for name, arg in zip(names, args)})
            return tuple(torch.from_numpy(np.array(result[port])) for port in outputs)

        return StageBuild(fn=stage.call.bind(run, torch.float32), runs_as=self.name, build_ms=build_ms,
                          param_bytes=initializer_bytes(path), file_bytes=files_bytes(path), files=[path.name],
                          notes=notes)
