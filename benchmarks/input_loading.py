"""Probe: does loading input files perturb the measured call?

WAV files at 44.1 kHz stereo (so every load decodes, mixes and resamples to the pipeline's
16 kHz) feed the reference pipeline. In alternating blocks, the stage latency (sum of the
pipeline's stages, as the worker times them) is measured with a fresh file loaded for every
repeat, and with no loading at all (one file loaded once; each call gets the harness's fresh
copy of it, as a run does). Both for
input_loading = "before" (the default: the clip is loaded before the call starts) and
"overlap" (a prefetch thread loads the next clip during the call, the opt-in scenario).

    python benchmarks/input_loading.py [--blocks 8] [--per-block 6] [--clip 10] [--scale small]

Prints, per loading mode, the median per-block ratio (loading / no loading) of the stage
latency with its 95% interval (paired over blocks), and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def _write_wavs(folder: Path, count: int, clip_s: float, rate: int = 44100) -> list[Path]:
    import soundfile

    paths = []
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"clip{i}.wav"
        soundfile.write(str(path), (0.1 * rng.standard_normal((int(clip_s * rate), 2))).astype(np.float32), rate)
        paths.append(path)
    return paths


def _stage_ms(pipeline, clip, timer) -> float:
    from benchrunner.run.selfcheck import harness_repeat

    _, stage_ms = harness_repeat(pipeline, clip, timer, "cpu")
    return sum(stage_ms.values())


def measure(*, overlap: bool, blocks: int, per_block: int, clip_s: float, scale: str) -> tuple[float, float, float]:
    from benchrunner.analysis import stats
    from benchrunner.run.inputs import InputRef, Prefetcher
    from benchrunner.measure.timing import CpuStageTimer
    from benchrunner.pipeline import load_pipeline

    pipeline = load_pipeline("benchrunner.pipelines.reference:build", {"scale": scale}, device="cpu")
    folder = Path(tempfile.mkdtemp(prefix="input-loading-"))
    refs = [InputRef(clip_s=clip_s, path=str(p)) for p in _write_wavs(folder, 4, clip_s)]
    timer = CpuStageTimer()
    still = Prefetcher(pipeline, overlap=False)  # one file, loaded once: each get is the harness's fresh copy

    def loading_block() -> list[float]:
        loader = Prefetcher(pipeline, overlap=overlap)
        loader.schedule([refs[i % len(refs)] for i in range(per_block)])
        values = []
        for _ in range(per_block):
            _, clip, _ = loader.get()
            values.append(_stage_ms(pipeline, clip, timer))
        loader.close()
        return values

    def still_block() -> list[float]:
        still.schedule([refs[0]] * per_block)
        return [_stage_ms(pipeline, still.get()[1], timer) for _ in range(per_block)]

    loading_block(), still_block()  # warm-up
    with_loading, without = [], []
    for b in range(blocks):
        first, second = (loading_block, still_block) if b % 2 == 0 else (still_block, loading_block)
        x, y = first(), second()
        lo, st = (x, y) if first is loading_block else (y, x)
        with_loading.append(float(np.median(lo)))
        without.append(float(np.median(st)))
    return stats.paired_ratio_ci(without, with_loading)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--per-block", type=int, default=6)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--modes", default="before,overlap")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    for mode in args.modes.split(","):
        load = os.getloadavg()[0]
        ratio, low, high = measure(overlap=mode == "overlap", blocks=args.blocks, per_block=args.per_block,
                                   clip_s=args.clip, scale=args.scale)
        print(f"input_loading={mode:<8} stage latency with file loading / without: {ratio:.4f} "
              f"[{low:.4f}, {high:.4f}] ({(ratio - 1) * 100:+.1f}%); load average {load:.2f} -> "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
