"""``backend = "onnxruntime"``: each stage's module exported to ONNX and run by ONNX Runtime.

Providers: on the CPU, ``CPUExecutionProvider`` with as many intra-op threads as torch
uses (so the two compare on the same cores). On a CUDA device, ``TensorrtExecutionProvider``
then ``CUDAExecutionProvider`` when the installed onnxruntime has them (the GPU build,
``onnxruntime-gpu``), with the stage's device tensors bound in place through IO binding
(no copy through the host). The GPU path is written against ONNX Runtime's documented API
and has not run here (no GPU). ``quantize = "int8-dynamic"`` quantises the exported model
with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantised per
call).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..pipeline import Stage
from .base import Backend, BuildContext, StageBuild, UnsupportedStage, quiet
from .onnx_export import export_onnx, files_bytes, initializer_bytes, input_names, output_names
from ..suite import VariantSpec

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def providers_for(device: str, available: list[str]) -> list[Any]:
    """The execution providers to ask for, best first; the CPU provider always closes the list."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.split(":")[1]) if ":" in device else 0
    chosen = [(name, {"device_id": index}) for name in GPU_PROVIDERS if name in available]
    if not chosen:
        raise UnsupportedStage("device is CUDA but this onnxruntime has no CUDA or TensorRT provider "
                               "(install onnxruntime-gpu)")
    return chosen + ["CPUExecutionProvider"]


def quantize_onnx(source: Path, target: Path, build_ms: dict[str, float], notes: list[str]) -> Path:
    if target.exists():
        notes.append(f"reused {target.name} quantised earlier in this run")
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    tmp = target.with_name(target.stem + ".tmp.onnx")
    try:
        with quiet():
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    except Exception as exc:
        raise UnsupportedStage(f"ONNX Runtime quantisation failed: {type(exc).__name__}: {exc}"[:300]) from None
    tmp.replace(target)
    build_ms["quantize"] = (time.perf_counter() - started) * 1000.0
    return target


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def build_stage(self, stage: Stage, example_args: tuple[Any, ...], spec: VariantSpec,
                    ctx: BuildContext) -> StageBuild:
        import onnxruntime as ort

        build_ms: dict[str, float] = {}
        notes: list[str] = []
        path = export_onnx(stage, example_args, ctx.build_dir / f"{stage.name}.onnx", build_ms, notes)
        if spec.quantize == "int8-dynamic":
            path = quantize_onnx(path, ctx.build_dir / f"{stage.name}.int8.onnx", build_ms, notes)
        started = time.perf_counter()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        providers = providers_for(ctx.device, ort.get_available_providers())
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        build_ms["session"] = (time.perf_counter() - started) * 1000.0
        used = session.get_providers()[0]
        runner = _device_runner(session, stage, ctx.device) if ctx.device.startswith("cuda") \
            else _cpu_runner(session, stage)
        return StageBuild(fn=stage.call.bind(runner, torch.float32), runs_as=f"{self.name} ({used})",
                          build_ms=build_ms, param_bytes=initializer_bytes(path), file_bytes=files_bytes(path),
                          files=[path.name], notes=notes)


def _cpu_runner(session, stage: Stage) -> Callable[..., tuple[torch.Tensor, ...]]:
    names = input_names(stage)

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feeds = {name: np.ascontiguousarray(arg.detach().numpy()) for name, arg in zip(names, args)}
        return tuple(torch.from_numpy(out) for out in session.run(None, feeds))
    return run


_NP_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32}


def _device_runner(session, stage: Stage, device: str) -> Callable[..., tuple[torch.Tensor, ...]]:
    """CUDA: bind the stage's device tensors as inputs and let ONNX Runtime allocate the outputs
    on the device; hand them back to torch through DLPack (no host copy)."""
    names, outputs = input_names(stage), output_names(stage)
    index = torch.device(device).index or 0

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        binding = session.io_binding()
        kept = [arg.contiguous() for arg in args]  # alive until the run ends
        for name, arg in zip(names, kept):
            binding.bind_input(name=name, device_type="cuda", device_id=index, element_type=_NP_TYPES[arg.dtype],
                               shape=tuple(arg.shape), buffer_ptr=arg.data_ptr())
        for name in outputs:
            binding.bind_output(name, "cuda", index)
        torch.cuda.current_stream(index).synchronize()
        session.run_with_iobinding(binding)
        return tuple(torch.from_dlpack(value) if hasattr(value, "__dlpack__")
                     else torch.from_numpy(value.numpy()).to(device) for value in binding.get_outputs())
    return run
