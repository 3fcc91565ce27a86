"""How far a chunked output is from the single-pass output of the same clip."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Deviation:
    snr_db: float        # 10 log10(sum(ref^2) / sum((ref - out)^2)) over all streams; inf when identical
    max_abs_err: float   # largest absolute difference of any element of any stream


def output_deviation(reference: dict[str, torch.Tensor], output: dict[str, torch.Tensor]) -> Deviation:
    """Compare every stream of ``reference`` with ``output`` (same shapes required), in float64."""
    signal = noise = 0.0
    max_abs = 0.0
    for name, ref in reference.items():
        out = output.get(name)
        if out is None or tuple(out.shape) != tuple(ref.shape):
            got = None if out is None else tuple(out.shape)
            raise ValueError(f"stream {name!r}: chunked output shape {got} != single-pass shape {tuple(ref.shape)}")
        ref64, diff = ref.double().cpu(), (out.double().cpu() - ref.double().cpu())
        signal += float((ref64 ** 2).sum())
        noise += float((diff ** 2).sum())
        max_abs = max(max_abs, float(diff.abs().max())) if diff.numel() else max_abs
    if noise == 0.0:
        return Deviation(math.inf, max_abs)
    if signal == 0.0:
        return Deviation(-math.inf, max_abs)
    return Deviation(10.0 * math.log10(signal / noise), max_abs)
