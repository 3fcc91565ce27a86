"""How far a chunked output is from the single-pass output of the same clip, per stream.

Each output stream is compared on its own (streams have different units: audio samples,
probabilities, frames). A stream's time axis (``Pipeline.outputs``) may differ by one step
between the two (a model that emits ``ceil(N / hop)`` frames); the common steps are
compared and the difference is reported. A non-finite element (NaN, inf) in the chunked
output that the reference does not have at the same place makes the stream's quality the
worst possible (SNR -inf, max error inf): it is never read as a match.

The case-level figures are the worst stream's: SNR = the lowest stream SNR, max error =
the largest stream max error (in the units of the stream it comes from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

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
