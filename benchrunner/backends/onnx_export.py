"""Exporting a stage's module to ONNX (shared by the onnxruntime and openvino backends).

torch 2.13's ``torch.onnx.export`` uses the dynamo exporter (``dynamo=True``, the default;
it needs ``onnxscript``). Every axis of every argument is exported as ``Dim.AUTO``: dynamic
where the graph allows it, fixed where it does not. So any clip length and any chunk runs,
and a pipeline that declares itself ``batchable`` is exported from a batch of two so the
batch axis stays free too. Files are cached per variant in its build folder: a worker
restarted later in the run reuses them (its set-up then records no export time).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..pipeline import Stage
from .base import UnsupportedStage, quiet

INPUT_PREFIX, OUTPUT_PREFIX = "in_", "out_"  # ONNX names must differ between inputs and outputs


def input_names(stage: Stage) -> list[str]:
    return [INPUT_PREFIX + name for name in stage.call.args]


def output_names(stage: Stage) -> list[str]:
    return [OUTPUT_PREFIX + name for name in stage.call.returns]


def model_files(path: Path) -> list[Path]:
    """The model file and its external-data file(s), if any."""
    return [p for p in sorted(path.parent.glob(path.name + "*")) if p.is_file()]


def files_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in model_files(path))


def export_onnx(stage: Stage, example_args: tuple[Any, ...], path: Path, build_ms: dict[str, float],
                notes: list[str]) -> Path:
    """Export ``stage.module`` to ``path`` (unless a previous worker of this variant did)."""
    if path.exists():
        notes.append(f"reused {path.name} exported earlier in this run")
        return path
    tensors = [a for a in example_args if torch.is_tensor(a)]
    if len(tensors) != len(example_args):
        raise UnsupportedStage("ONNX export takes tensor arguments only")
    dynamic = tuple({axis: torch.export.Dim.AUTO for axis in range(a.dim())} for a in tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.onnx")
    started = time.perf_counter()
    try:
        with quiet(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(stage.module.float().eval(), tuple(a.float() if a.is_floating_point() else a
                                                                           for a in tensors), dynamo=True,
                                        dynamic_shapes=dynamic, input_names=input_names(stage),
                                        output_names=output_names(stage), external_data=False)
            program.save(str(tmp))
    except Exception as exc:  # the exporter's errors are long: one line, its type and first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnsupportedStage(f"ONNX export failed: {type(exc).__name__}: {first[:300]}") from None
    tmp.replace(path)
    build_ms["export"] = (time.perf_counter() - started) * 1000.0
    return path


def initializer_bytes(path: Path) -> int:
    """Bytes of the weights (initializers) stored in an ONNX file."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for tensor in model.graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        total += count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return total
