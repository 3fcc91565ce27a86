"""Input clips: deterministic synthetic ones, or real WAV files grouped into clip-length
buckets, prepared ahead of time by a prefetch thread.

A real input is ``NAME.wav`` (any rate and channel count soundfile reads; mixed to mono
and resampled to the pipeline's sample rate), with optional face frames ``NAME.npy``
shaped (F, H, W, 3) uint8 or (F, 3, H, W) float at the pipeline's frame rate. Without
frames, the pipeline's synthetic frames for that duration are used.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..suite import AUDIO_SUFFIXES

if TYPE_CHECKING:
    import torch

    from ..pipeline import Pipeline


@dataclass(frozen=True)
class InputRef:
    """Where a repeat's clip comes from: a synthetic clip of ``clip_s`` or a file."""

    clip_s: float
    seed: int = 0
    path: str | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name if self.path else f"synthetic:{self.clip_s:g}s:seed{self.seed}"


def audio_duration_s(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def bucket_inputs(folder: Path, lengths_s: list[float], *, tolerance: float = 0.25) -> dict[float, list[InputRef]]:
    """Each audio file goes to the nearest clip length within ``tolerance`` (relative);
    files fitting no bucket are left out. Files are sorted by name, so buckets are stable."""
    return bucket_inputs_noted(folder, lengths_s, tolerance=tolerance)[0]


def bucket_inputs_noted(folder: Path, lengths_s: list[float], *,
                        tolerance: float = 0.25) -> tuple[dict[float, list[InputRef]], list[str]]:
    """:func:`bucket_inputs`, and a note naming the files left out (too short, too long, no
    frames). A file whose header cannot be read (corrupt, empty, not audio) is bad input,
    found here, before any case runs."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"inputs: folder {str(folder)!r} has no .wav or .flac files")
    buckets: dict[float, list[InputRef]] = {length: [] for length in lengths_s}
    left_out = []
    for path in files:
        duration = _readable_duration_s(path)
        nearest = min(lengths_s, key=lambda length: abs(length - duration))
        if duration > 0 and abs(nearest - duration) <= tolerance * nearest:
            buckets[nearest].append(InputRef(clip_s=nearest, path=str(path)))
        else:
            left_out.append(f"{path.name} ({duration:.3g} s)")
    notes = [f"{len(left_out)} input file(s) in {folder} fit no clip length within {tolerance:.0%} and are left "
             f"out: {', '.join(left_out)}"] if left_out else []
    return buckets, notes


def _readable_duration_s(path: Path) -> float:
    try:
        return audio_duration_s(path)
    except Exception as exc:  # soundfile's errors, OSError: the file is unusable
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: inputs: cannot read it as audio ({message}; expected a WAV or FLAC file "
                        "soundfile opens)") from None


def load_clip(ref: InputRef, pipeline: Pipeline) -> dict[str, torch.Tensor]:
    if ref.path is None:
        return pipeline.make_clip(ref.clip_s, ref.seed)
    return _load_file_clip(Path(ref.path), pipeline, ref.seed)


def _load_file_clip(path: Path, pipeline: Pipeline, seed: int) -> dict[str, torch.Tensor]:
    import soundfile
    from scipy.signal import resample_poly

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != pipeline.sample_rate:
        ratio = Fraction(pipeline.sample_rate, rate).limit_denominator(1000)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    duration_s = len(mono) / pipeline.sample_rate
    import torch

    clip = pipeline.make_clip(duration_s, seed)
    clip[pipeline.file_input] = torch.from_numpy(np.ascontiguousarray(mono)).unsqueeze(0)
    frames_path = path.with_suffix(".npy")
    if frames_path.exists():
        clip["frames"] = _load_frames(frames_path)
    return clip


def _load_frames(path: Path) -> torch.Tensor:
    import torch

    frames = np.load(path)
    if frames.ndim != 4:
        raise UserError(f"{path}: frames: shape {frames.shape} (expected (F, H, W, 3) or (F, 3, H, W))")
    tensor = torch.from_numpy(frames)
    if frames.shape[-1] == 3 and frames.shape[1] != 3:
        tensor = tensor.permute(0, 3, 1, 2)
    if not tensor.is_floating_point():
        tensor = tensor.float() / 255.0
    return tensor.contiguous().unsqueeze(0)


INPUT_LOADING = ("before", "overlap")


class Prefetcher:
    """Loads clips in the order they will be needed.

    ``schedule`` queues refs; ``get`` returns the next clip and how long the caller was
    blocked waiting for it (``io_wait_ms``). Each clip is a fresh tensor, so a stage that
    writes into its input cannot leak into the next repeat.

    ``overlap=False`` (input_loading = "before", the default): the clip is loaded in ``get``,
    before the measured call starts; nothing runs beside the call (decoding and resampling on
    another thread would compete for the GIL and the cores and slow the call down).
    ``overlap=True`` (input_loading = "overlap", a scenario users choose): a background thread
    prepares the next clips while the current call runs, as a production prefetcher would.
    """

    def __init__(self, pipeline: Pipeline, depth: int = 2, *, overlap: bool = True) -> None:
        self._pipeline = pipeline
        self.overlap = overlap
        from .hoststore import HostStore

        self._cache = HostStore()  # the latest clip, outside the worker's measured RSS
        if not overlap:
            self._todo_refs: list[InputRef] = []
            return
        self._todo: queue.Queue = queue.Queue()
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name="benchrunner-prefetch", daemon=True)
        self._thread.start()

    def schedule(self, refs: list[InputRef]) -> None:
        for ref in refs:
            if self.overlap:
                self._todo.put(ref)
            else:
                self._todo_refs.append(ref)

    def get(self) -> tuple[InputRef, dict[str, torch.Tensor] | BaseException, float]:
        start = time.perf_counter()
        if self.overlap:
            ref, clip = self._ready.get()
        else:
            ref = self._todo_refs.pop(0)
            clip = self._prepare(ref)
        return ref, clip, (time.perf_counter() - start) * 1000.0

    def close(self) -> None:
        """Stop the thread after the clips already queued (drained, so it cannot block)."""
        if not self.overlap:
            return
        self._todo.put(None)
        while self._thread.is_alive():
            try:
                self._ready.get(timeout=0.1)
            except queue.Empty:
                pass

    def _loop(self) -> None:
        while (ref := self._todo.get()) is not None:
            self._ready.put((ref, self._prepare(ref)))

    def _prepare(self, ref: InputRef) -> dict[str, torch.Tensor] | BaseException:
        try:
            if ref not in self._cache:
                self._cache.clear()  # keep only the latest
                self._cache.put(ref, load_clip(ref, self._pipeline))
            return self._cache.get(ref)  # fresh tensors: a stage writing into its input changes no later repeat
        except BaseException as exc:  # handed to the consumer, who records it
            return exc
