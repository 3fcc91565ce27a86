"""How far an output is from a reference output: a chunked output from the single-pass
output of the same clip (quality), and a variant's output from the reference variant's
output for the same input and mode (accuracy)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..pipeline import Stream


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


@dataclass(frozen=True)
class StreamAccuracy:
    """One output stream of a variant against the reference variant's, for the same input and mode."""

    stream: str
    snr_db: float              # 10 log10(sum(ref^2) / sum((out - ref)^2)); inf when identical
    max_abs_err: float         # largest |out - ref|
    mean_abs_err: float        # mean |out - ref|
    argmax_agree_pct: float | None  # categorical streams: % of positions whose argmax over the class axis agrees


def stream_accuracy(reference: dict[str, torch.Tensor], output: dict[str, torch.Tensor],
                    streams: Mapping[str, Stream]) -> list[StreamAccuracy]:
    """Every tensor stream of ``reference`` compared with ``output`` in float64 (same shapes
    required); argmax agreement for the streams ``streams`` declares categorical."""
    found = []
    for name, ref in reference.items():
        out = output.get(name)
        if out is None or tuple(out.shape) != tuple(ref.shape):
            got = None if out is None else tuple(out.shape)
            raise ValueError(f"stream {name!r}: output shape {got} != reference variant's {tuple(ref.shape)}")
        ref64, out64 = ref.detach().cpu().double(), out.detach().cpu().double()
        diff = (out64 - ref64).abs()
        signal, noise = float((ref64 ** 2).sum()), float((diff ** 2).sum())
        snr = math.inf if noise == 0.0 else (-math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise))
        stream = streams.get(name)
        agree = None
        if stream is not None and stream.categorical and ref64.numel():
            same = ref64.argmax(dim=stream.class_axis) == out64.argmax(dim=stream.class_axis)
            agree = 100.0 * float(same.double().mean())
        found.append(StreamAccuracy(name, snr, float(diff.max()) if diff.numel() else 0.0,
                                    float(diff.mean()) if diff.numel() else 0.0, agree))
    return found


def accuracy_columns(found: list[StreamAccuracy], reference_variant: str) -> dict[str, Any]:
    """The samples.csv accuracy columns: the worst stream for each figure (lowest SNR, largest
    errors, lowest agreement) and every stream's figures as JSON in ``accuracy_streams``."""
    agreements = [s.argmax_agree_pct for s in found if s.argmax_agree_pct is not None]
    return {
        "accuracy_reference": reference_variant,
        "accuracy_snr_db": min((s.snr_db for s in found), default=None),
        "accuracy_max_abs_err": max((s.max_abs_err for s in found), default=None),
        "accuracy_mean_abs_err": max((s.mean_abs_err for s in found), default=None),
        "accuracy_argmax_agree_pct": min(agreements) if agreements else None,
        "accuracy_streams": json.dumps({s.stream: {"snr_db": _json_number(s.snr_db),
                                                   "max_abs_err": s.max_abs_err, "mean_abs_err": s.mean_abs_err,
                                                   "argmax_agree_pct": s.argmax_agree_pct} for s in found},
                                       sort_keys=True, separators=(",", ":")),
    }


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
