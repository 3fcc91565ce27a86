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
    """Overlap-add the chunk outputs of every stream in ``streams`` back onto one time line
    (all pieces at once; the same arithmetic as :class:`StreamingMerge`)."""
    merger = StreamingMerge(streams, clip_s, overlap_s, [chunk for chunk, _ in pieces])
    for chunk, output in pieces:
        merger.add(chunk, output)
    return merger.result()


class StreamingMerge:
    """Overlap-add that merges each chunk's output as soon as the chunk ends.

    The output buffer is allocated in the output's dtype (on the output's device, or on
    ``device`` when given, e.g. "cpu" to keep it off the GPU) when the first chunk arrives.
    What no later chunk can touch any more (everything before the next chunk's context
    starts) is written into the buffer at once; only the overlap tail is kept, as a float64
    sum of weighted outputs and a sum of weights. Positions are summed in chunk order from
    zero and divided by the weight sum, as an all-at-once merge would, so the result is
    bit-identical; peak memory is one chunk's output plus the output buffer, not every
    chunk's output plus a float64 copy of the whole clip.
    """

    def __init__(self, streams: Mapping[str, Stream], clip_s: float, overlap_s: float,
                 table: list[ChunkRecord], device: str | torch.device | None = None):
        self.streams, self.clip_s, self.overlap_s, self.table = streams, clip_s, overlap_s, table
        self.device = device
        self._state: dict[str, _StreamState] = {}

    def add(self, chunk: ChunkRecord, output: dict) -> None:
        """Merge the output of ``chunk`` (chunks must arrive in order)."""
        for name, stream in self.streams.items():
            out = _stream_of(output, name)
            state = self._state.get(name)
            if state is None:
                state = self._state[name] = _StreamState.start(stream, out, self.table[0], self.clip_s,
                                                               self.overlap_s, self.device)
            _check_chunk_length(name, out.shape[state.axis], state.rate, chunk, chunk.index, len(self.table),
                                self.clip_s, self.overlap_s)
            state.add(out, chunk, self.table, self.clip_s, self.overlap_s)

    def result(self) -> dict[str, torch.Tensor]:
        missing = [name for name, state in self._state.items() if state.written < state.total]
        if missing or len(self._state) != len(self.streams):
            raise ValueError(f"merge: streams {missing or sorted(set(self.streams) - set(self._state))} "
                             "did not receive every chunk")
        return {name: state.buffer for name, state in self._state.items()}


class _StreamState:
    """One output stream of a streaming merge: the buffer, and the pending overlap tail
    ``[written, written + tail length)`` as float64 weighted sums and weight sums."""

    def __init__(self, axis: int, rate: float, total: int, buffer: torch.Tensor, dtype: torch.dtype):
        self.axis, self.rate, self.total, self.buffer, self.dtype = axis, rate, total, buffer, dtype
        self.written = 0
        self.acc: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None

    @classmethod
    def start(cls, stream: Stream, first_out: torch.Tensor, first_chunk: ChunkRecord, clip_s: float,
              overlap_s: float, device) -> "_StreamState":
        axis = stream.time_axis % first_out.dim()
        rate = stream.rate_hz or _inferred_rate(first_out, axis, *context_span(first_chunk, clip_s, overlap_s))
        total = round(clip_s * rate)
        shape = list(first_out.shape)
        shape[axis] = total
        buffer = torch.empty(shape, dtype=first_out.dtype, device=device if device is not None else first_out.device)
        return cls(axis, rate, total, buffer, first_out.dtype)

    def add(self, out: torch.Tensor, chunk: ChunkRecord, table: list[ChunkRecord], clip_s: float,
            overlap_s: float) -> None:
        axis = self.axis
        start = round(context_span(chunk, clip_s, overlap_s)[0] * self.rate)
        length = min(out.shape[axis], self.total - start)
        positions = torch.arange(start, start + length, device=out.device)
        last = chunk.index == len(table) - 1
        w = crossfade_weights(positions, self.rate, chunk, overlap_s, first=chunk.index == 0, last=last)
        view = [1] * out.dim()
        view[axis] = -1
        self._extend(self.total if last else start + length, out)
        lo = start - self.written
        time_slice(self.acc, axis, lo, lo + length).add_(time_slice(out, axis, 0, length).double() * w.view(view))
        self.weight[lo:lo + length] += w
        done_until = self.total if last else round(context_span(table[chunk.index + 1], clip_s, overlap_s)[0]
                                                       * self.rate)
        self._flush(min(done_until, self.written + self.weight.numel()), view)

    def _extend(self, end: int, out: torch.Tensor) -> None:
        """Grow the pending tail (zeros) to cover positions up to ``end``."""
        have = 0 if self.acc is None else self.weight.numel()
        need = end - self.written
        if need <= have:
            return
        shape = list(out.shape)
        shape[self.axis] = need - have
        more_acc = torch.zeros(shape, dtype=torch.float64, device=out.device)
        more_weight = torch.zeros(need - have, dtype=torch.float64, device=out.device)
        if self.acc is None:
            self.acc, self.weight = more_acc, more_weight
        else:
            self.acc = torch.cat([self.acc, more_acc], dim=self.axis)
            self.weight = torch.cat([self.weight, more_weight])

    def _flush(self, until: int, view: list[int]) -> None:
        """Write the finished positions ``[written, until)`` into the buffer; keep the rest."""
        count = until - self.written
        if count <= 0:
            return
        part = time_slice(self.acc, self.axis, 0, count) / self.weight[:count].clamp_min(1e-12).view(view)
        time_slice(self.buffer, self.axis, self.written, until).copy_(part.to(self.dtype))
        self.acc = time_slice(self.acc, self.axis, count, self.weight.numel()).clone()
        self.weight = self.weight[count:].clone()
        self.written = until


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
