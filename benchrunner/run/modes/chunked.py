"""chunked: fixed windows with context, a chunk table with retries, optional batching."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...pipeline import ChunkContext, Pipeline, reset_current_chunk, set_current_chunk
from ...suite import ChunkConfig
from ...measure.memory import release_free_heap
from ..failures import classify_exception, describe_exception, free_memory
from .base import ChunkFailed, ChunkRecord, ModeResult, StageTimer, run_stages
from ...store.results import MERGE_STAGE, SPLIT_STAGE
from .merge import StreamingMerge, context_span, cut, plan_chunks


@dataclass(frozen=True)
class ChunkedMode(ChunkConfig):
    """The suite's chunk settings (window_s, overlap_s, max_retries, batch), able to run."""

    def run(self, pipeline: Pipeline, clip: dict, clip_s: float, timer: StageTimer, *,
            label: str = "chunked") -> ModeResult:
        """Cut (timed as the ``split`` row), run chunk by chunk, and merge each chunk's output
        as soon as it ends (timed as the ``merge`` row), so only the overlap tail is kept."""
        table = plan_chunks(clip_s, self.window_s)
        with timer.measure(SPLIT_STAGE, f"{label}/{SPLIT_STAGE}"):
            inputs = [cut(clip, pipeline.inputs, *context_span(c, clip_s, self.overlap_s)) for c in table]
        merger = StreamingMerge(pipeline.outputs, clip_s, self.overlap_s, table,
                                device="cpu" if self.merge_on_cpu else None)
        retries = 0
        for group in self._groups(table, inputs, pipeline.batchable):
            records = [table[i] for i in group]
            outputs, used = self._run_group(pipeline, records, _stack([inputs[i] for i in group]), timer,
                                            label, len(table))
            retries += used
            with timer.measure(MERGE_STAGE, f"{label}/{MERGE_STAGE}/chunk{records[0].index}"):
                _merge_and_release(merger, records, outputs)
            del outputs
        with timer.measure(MERGE_STAGE, f"{label}/{MERGE_STAGE}"):
            merged = merger.result()
        return ModeResult(output=merged, executed_as="chunked", chunks=len(table), retries=retries,
                          chunk_table=table)

    def _groups(self, table: list[ChunkRecord], inputs: list[dict], batchable: bool) -> list[list[int]]:
        """Consecutive chunks of identical input shapes, at most ``batch`` per group."""
        if self.batch == 1 or not batchable:
            return [[c.index] for c in table]
        groups: list[list[int]] = []
        for c in table:
            last = groups[-1] if groups else None
            if last and len(last) < self.batch and _shapes(inputs[last[0]]) == _shapes(inputs[c.index]):
                last.append(c.index)
            else:
                groups.append([c.index])
        return groups

    def _run_group(self, pipeline: Pipeline, records: list[ChunkRecord], batch_input: dict, timer: StageTimer,
                   label: str, count: int) -> tuple[list[dict], int]:
        """Run one chunk (or a batch of chunks), retrying after a failure; returns outputs and retries used."""
        retries = 0
        while True:
            output, failure = _attempt(pipeline, records, batch_input, timer, label, count)
            if failure is None:
                return _unstack(output, len(records)), retries
            kind, message = failure
            free_memory()  # outside the except block: the traceback no longer holds the tensors
            if records[0].attempts > self.max_retries:
                raise ChunkFailed(f"{_name(records, count)} failed after {records[0].attempts} attempt(s): {message}",
                                  kind)
            retries += 1


def _merge_and_release(merger: StreamingMerge, records: list[ChunkRecord], outputs: list[dict]) -> None:
    """Merge the group's outputs, drop them, and on the host give the freed heap back.

    The worker trims the heap before every repeat (``CpuMemoryTracker.begin``), so the first
    chunk starts from a compact heap; trimming after every chunk gives each later chunk the
    same start. Without it, glibc's per-thread arenas keep the freed pages of earlier chunks
    in fragments the next chunk cannot reuse, and host peak RSS grows with the number of
    chunks (clip length), which is the allocator's history, not the pipeline's need. The
    trim runs inside the ``merge`` row, so its cost is the harness's, not a stage's.
    """
    on_host = all(t.device.type == "cpu" for output in outputs for t in output.values() if torch.is_tensor(t))
    for record, output in zip(records, outputs):
        merger.add(record, output)
    outputs.clear()  # the caller's list: the chunk outputs are freed before the trim
    if on_host:
        release_free_heap()


def _attempt(pipeline: Pipeline, records: list[ChunkRecord], batch_input: dict, timer: StageTimer, label: str,
             count: int) -> tuple[dict | None, tuple[str, str] | None]:
    first = records[0]
    for record in records:
        record.state, record.attempts = "running", record.attempts + 1
    token = set_current_chunk(ChunkContext(first.index, count, first.attempts, first.start_s, records[-1].end_s))
    try:
        output = run_stages(pipeline, batch_input, timer, label, suffix=f"/chunk{first.index}")
    except Exception as exc:  # a chunk failure is data: classified, recorded, maybe retried
        failure = (classify_exception(exc), describe_exception(exc))
        for record in records:
            record.state, record.error = "failed", failure[1]
        return None, failure
    finally:
        reset_current_chunk(token)
    for record in records:
        record.state, record.error = "done", ""
    return output, None


def _name(records: list[ChunkRecord], count: int) -> str:
    first, last = records[0], records[-1]
    which = f"chunk {first.index + 1}/{count}" if len(records) == 1 else \
        f"chunks {first.index + 1}-{last.index + 1}/{count}"
    return f"{which} [{first.start_s:g}-{last.end_s:g} s]"


def _shapes(value: dict) -> tuple:
    return tuple((k, tuple(v.shape)) for k, v in sorted(value.items()) if torch.is_tensor(v))


def _stack(values: list[dict]) -> dict:
    if len(values) == 1:
        return values[0]
    return {k: torch.cat([v[k] for v in values], dim=0) for k in values[0]}


def _unstack(output: dict, count: int) -> list[dict]:
    if count == 1:
        return [output]
    return [{k: v[i:i + 1] for k, v in output.items()} for i in range(count)]
