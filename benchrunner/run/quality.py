"""How far an output is from a reference output: a chunked output from the single-pass
output of the same clip (quality), and a variant's output from the reference variant's
output for the same input and mode (accuracy).

Quality: each output stream is compared on its own (streams have different units: audio
samples, probabilities, frames). A stream's time axis (``Pipeline.outputs``) may differ by
one step between the two (a model that emits ``ceil(N / hop)`` frames); the common steps
are compared and the difference is reported. A non-finite element (NaN, inf) in the
chunked output that the reference does not have at the same place makes the stream's
quality the worst possible (SNR -inf, max error inf): it is never read as a match.
The case-level figures are the worst stream's: SNR = the lowest stream SNR, max error =
the largest stream max error (in the units of the stream it comes from).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..pipeline import Stream

LENGTH_TOLERANCE_STEPS = 1


@dataclass(frozen=True)
class StreamDeviation:
    stream: str
    snr_db: float          # 10 log10(sum(ref^2) / sum((ref - out)^2)); inf when identical
    max_abs_err: float     # largest absolute difference, in the stream's units
    nonfinite: int         # non-finite elements of the chunked output not matched by the reference
    length_diff: int       # output steps - reference steps on the time axis (|d| <= 1 tolerated)


@dataclass(frozen=True)
class Deviation:
    snr_db: float          # the worst (lowest) stream SNR
    max_abs_err: float     # the largest stream max error
    streams: list[StreamDeviation] = field(default_factory=list)


def count_nonfinite(output) -> int:
    """NaN and inf elements over the floating-point tensors of an output dict."""
    if not isinstance(output, Mapping):
        return 0
    return sum(int((~torch.isfinite(v)).sum()) for v in output.values()
               if torch.is_tensor(v) and (v.is_floating_point() or v.is_complex()))


def output_deviation(reference: Mapping[str, torch.Tensor], output: Mapping[str, torch.Tensor],
                     time_axes: Mapping[str, int] | None = None) -> Deviation:
    """Compare every stream of ``reference`` with ``output`` in float64. Shapes must match,
    except the stream's time axis (``time_axes``, default the last) by at most one step."""
    streams = [_stream_deviation(name, ref, output.get(name), (time_axes or {}).get(name, -1))
               for name, ref in reference.items()]
    if not streams:
        return Deviation(math.inf, 0.0, [])
    return Deviation(min(s.snr_db for s in streams), max(s.max_abs_err for s in streams), streams)


def _stream_deviation(name: str, ref: torch.Tensor, out: torch.Tensor | None, axis: int) -> StreamDeviation:
    if out is None or out.dim() != ref.dim():
        got = None if out is None else tuple(out.shape)
        raise ValueError(f"stream {name!r}: chunked output shape {got} != single-pass shape {tuple(ref.shape)}")
    axis = axis % ref.dim()
    others_match = all(a == b for i, (a, b) in enumerate(zip(out.shape, ref.shape)) if i != axis)
    length_diff = int(out.shape[axis]) - int(ref.shape[axis])
    if not others_match or abs(length_diff) > LENGTH_TOLERANCE_STEPS:
        raise ValueError(f"stream {name!r}: chunked output shape {tuple(out.shape)} != single-pass shape "
                         f"{tuple(ref.shape)} (time axis {axis} may differ by {LENGTH_TOLERANCE_STEPS} step)")
    steps = min(out.shape[axis], ref.shape[axis])
    ref64 = ref.detach().cpu().double().narrow(axis, 0, steps)
    out64 = out.detach().cpu().double().narrow(axis, 0, steps)
    same = (out64 == ref64) | (torch.isnan(out64) & torch.isnan(ref64))
    bad = ~torch.isfinite(out64) & ~same
    finite = torch.isfinite(out64) & torch.isfinite(ref64)
    nonfinite = int(bad.sum())
    if nonfinite:
        return StreamDeviation(name, -math.inf, math.inf, nonfinite, length_diff)
    diff = torch.where(finite, out64 - ref64, torch.zeros_like(out64))
    signal = float((torch.where(finite, ref64, torch.zeros_like(ref64)) ** 2).sum())
    noise = float((diff ** 2).sum())
    max_abs = float(diff.abs().max()) if diff.numel() else 0.0
    if noise == 0.0:
        snr = math.inf
    elif signal == 0.0:
        snr = -math.inf
    else:
        snr = 10.0 * math.log10(signal / noise)
    return StreamDeviation(name, snr, max_abs, 0, length_diff)


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
