"""A pipeline whose stages sleep (the GIL is released), for benchmarks/parallel_workers.py.

Each stage sleeps ``stage_ms`` per second of clip, so the work is the same on any worker
and two workers can really run side by side on a 2-core machine.
"""

from __future__ import annotations

import time

import torch

from benchrunner import Pipeline, Stage, Stream

RATE = 1000


def _clip(clip_s: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(1, int(round(clip_s * RATE)), generator=g)}


def build(stage_ms: float = 20.0, stages: int = 3) -> Pipeline:
    def sleepy(value: dict) -> dict:
        time.sleep(stage_ms / 1000 * value["audio"].shape[-1] / RATE)
        return value

    return Pipeline(
        name="sleepy",
        stages=[Stage(f"sleep{i}", sleepy) for i in range(stages)],
        inputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        make_clip=_clip,
        sample_rate=RATE,
    )
