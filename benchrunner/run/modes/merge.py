"""Cutting a clip into chunks with context, and merging chunk outputs by overlap-add.

Chunk k owns the core ``[k*W, (k+1)*W)`` of the clip and carries ``O`` seconds of context
on each side. Neighbouring chunks both cover ``[c - O, c + O)`` around their shared
boundary ``c``. The outer half of each context (where a stage's padding distorts the
output) is dropped; over the inner ``[c - O/2, c + O/2)`` the two outputs are cross-faded
with linear weights that sum to one, so the merged output has exactly the single-pass
length and no seam.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ...pipeline import Stream
from .base import ChunkRecord


def plan_chunks(clip_s: float, window_s: float) -> list[ChunkRecord]:
    count = max(1, math.ceil(clip_s / window_s - 1e-9))
    return [ChunkRecord(index=k, start_s=k * window_s, end_s=min((k + 1) * window_s, clip_s)) for k in range(count)]


def context_span(chunk: ChunkRecord, clip_s: float, overlap_s: float) -> tuple[float, float]:
    return max(0.0, chunk.start_s - overlap_s), min(clip_s, chunk.end_s + overlap_s)


def time_slice(tensor: torch.Tensor, axis: int, start: int, stop: int) -> torch.Tensor:
    index = [slice(None)] * tensor.dim()
    index[axis] = slice(start, stop)
    return tensor[tuple(index)]


def cut(clip: Mapping[str, torch.Tensor], streams: Mapping[str, Stream], start_s: float, end_s: float) -> dict:
    """The part of every input stream between ``start_s`` and ``end_s`` (declared rates required)."""
    part = {}
    for name, tensor in clip.items():
        stream = streams.get(name)
        if stream is None or stream.rate_hz is None:
            raise ValueError(f"input stream {name!r} needs a Stream(time_axis, rate_hz) in Pipeline.inputs to be cut")
        part[name] = time_slice(tensor, stream.time_axis, round(start_s * stream.rate_hz), round(end_s * stream.rate_hz))
    return part


def crossfade_weights(positions: torch.Tensor, rate_hz: float, chunk: ChunkRecord, overlap_s: float,
                      first: bool, last: bool) -> torch.Tensor:
    """Weight of each output step of one chunk: 1 in its core, a linear ramp over the O
    seconds centred on each boundary it shares with a neighbour, 0 further out. Steps are
    placed at their centres."""
    t = (positions.to(torch.float64) + 0.5) / rate_hz
    if overlap_s == 0:
        return ((t >= chunk.start_s) & (t < chunk.end_s)).to(torch.float64)
    half = overlap_s / 2
    weight = torch.ones_like(t)
    if not first:
        weight = weight * ((t - (chunk.start_s - half)) / overlap_s).clamp(0, 1)
    if not last:
        weight = weight * (((chunk.end_s + half) - t) / overlap_s).clamp(0, 1)
    return weight


def merge(pieces: list[tuple[ChunkRecord, dict]], streams: Mapping[str, Stream], clip_s: float,
          overlap_s: float) -> dict[str, torch.Tensor]:
    """Overlap-add the chunk outputs of every stream in ``streams`` back onto one time line."""
    merged = {}
    for name, stream in streams.items():
        merged[name] = _merge_stream(name, stream, pieces, clip_s, overlap_s)
    return merged


def _merge_stream(name: str, stream: Stream, pieces: list[tuple[ChunkRecord, dict]], clip_s: float,
                  overlap_s: float) -> torch.Tensor:
    axis = stream.time_axis
    first_out = _stream_of(pieces[0][1], name)
    axis = axis % first_out.dim()
    rate = stream.rate_hz or _inferred_rate(first_out, axis, *context_span(pieces[0][0], clip_s, overlap_s))
    total = round(clip_s * rate)
    shape = list(first_out.shape)
    shape[axis] = total
    acc = torch.zeros(shape, dtype=torch.float64, device=first_out.device)
    weight_sum = torch.zeros(total, dtype=torch.float64, device=first_out.device)
    view = [1] * len(shape)
    view[axis] = -1
    for k, (chunk, output) in enumerate(pieces):
        out = _stream_of(output, name)
        _check_chunk_length(name, out.shape[axis], rate, chunk, k, len(pieces), clip_s, overlap_s)
        start = round(context_span(chunk, clip_s, overlap_s)[0] * rate)
        length = min(out.shape[axis], total - start)
        positions = torch.arange(start, start + length, device=out.device)
        w = crossfade_weights(positions, rate, chunk, overlap_s, first=k == 0, last=k == len(pieces) - 1)
        time_slice(acc, axis, start, start + length).add_(time_slice(out, axis, 0, length).double() * w.view(view))
        weight_sum[start:start + length] += w
    return (acc / weight_sum.clamp_min(1e-12).view(view)).to(first_out.dtype)


LENGTH_TOLERANCE_STEPS = 1  # a model that emits ceil(N / hop) steps is one step long, not wrong


class ChunkLengthError(ValueError):
    """A chunk's output does not cover its span: merging it would zero-fill or cut real output."""


def _check_chunk_length(name: str, steps: int, rate: float, chunk: ChunkRecord, k: int, count: int,
                        clip_s: float, overlap_s: float) -> None:
    span_start, span_end = context_span(chunk, clip_s, overlap_s)
    expected = round(span_end * rate) - round(span_start * rate)
    if abs(steps - expected) > LENGTH_TOLERANCE_STEPS:
        raise ChunkLengthError(
            f"chunk {k + 1}/{count} [{span_start:g}-{span_end:g} s with context]: output stream {name!r} has "
            f"{steps} steps, expected {expected} (+-{LENGTH_TOLERANCE_STEPS}) at {rate:g} Hz")


def _stream_of(output: dict, name: str) -> torch.Tensor:
    if not isinstance(output, dict) or name not in output:
        raise ValueError(f"output stream {name!r} is missing from the last stage's output "
                         "(Pipeline.outputs names the streams to merge)")
    tensor = output[name]
    if not torch.is_tensor(tensor) or not tensor.is_floating_point():
        raise ValueError(f"output stream {name!r} must be a floating-point tensor to be overlap-added")
    return tensor


def _inferred_rate(tensor: torch.Tensor, axis: int, start_s: float, end_s: float) -> float:
    return tensor.shape[axis] / (end_s - start_s)
