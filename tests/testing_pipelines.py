"""Small pipelines for tests: fast, deterministic, with failures injected on purpose.

Workers import them by name (``testing_pipelines:build``); tests/ is on their path.
"""

from __future__ import annotations

import os
import threading
import time

import torch

from benchrunner import Pipeline, Stage, Stream, current_chunk

RATE = 1000

# What torch (>= 2.8) raises after an illegal address in a kernel, word for word.
ILLEGAL_ADDRESS = ("CUDA error: an illegal memory access was encountered\n"
                   "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
                   "below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1")
_CONTEXT = {"broken": False}  # this process's (pretend) CUDA context


def _clip(clip_s: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = int(round(clip_s * RATE))
    return {"audio": torch.randn(1, n, generator=g)}


def _smooth(value: dict) -> dict:
    """A stage whose output depends on neighbours, so chunk seams would show."""
    kernel = torch.ones(1, 1, 9, device=value["audio"].device) / 9
    return {"audio": torch.nn.functional.conv1d(value["audio"].unsqueeze(1), kernel, padding=4).squeeze(1)}


def build(fail_chunk: int | None = None, permanent: bool = False, fail_clip_s: float | None = None,
          abort_clip_s: float | None = None, hang_clip_s: float | None = None, busy_ms: float = 0.0,
          trim_last: bool = False, cuda_error_clip_s: float | None = None,
          device_assert_clip_s: float | None = None, fail_if_loading: bool = False, chatter: bool = False,
          pause_file: str | None = None) -> Pipeline:
    if chatter:  # a pipeline that prints, as real ones do (no flush: the worker must not lose it)
        print("CHATTER: pipeline built")

    def flaky(value: dict) -> dict:
        if chatter:
            print(f"CHATTER: stage on {value['audio'].shape[-1] / RATE:g} s")
            print("CHATTER-ERR: a warning on stderr", file=__import__("sys").stderr)
        seconds = value["audio"].shape[-1] / RATE
        if device_assert_clip_s is not None and abs(seconds - device_assert_clip_s) < 1e-6:
            # a real device-side assert (GPU only): an index out of bounds inside a CUDA kernel
            torch.zeros(3, device="cuda")[torch.tensor([5], device="cuda")]
            torch.cuda.synchronize()
        if cuda_error_clip_s is not None and (_CONTEXT["broken"] or abs(seconds - cuda_error_clip_s) < 1e-6):
            _CONTEXT["broken"] = True  # sticky, as a real CUDA context is: every later call fails
            raise torch.AcceleratorError(ILLEGAL_ADDRESS)
        chunk = current_chunk()
        if fail_chunk is not None and chunk is not None and chunk.index == fail_chunk:
            if permanent or chunk.attempt == 1:
                raise RuntimeError(f"injected failure in chunk {chunk.index} attempt {chunk.attempt}")
        seconds = value["audio"].shape[-1] / RATE
        if fail_clip_s is not None and abs(seconds - fail_clip_s) < 1e-6:
            raise ValueError(f"injected stage error on the {fail_clip_s:g} s clip")
        if abort_clip_s is not None and abs(seconds - abort_clip_s) < 1e-6:
            if chatter:
                print(f"CHATTER: about to abort on the {abort_clip_s:g} s clip")
            os.abort()
        if hang_clip_s is not None and abs(seconds - hang_clip_s) < 1e-6:
            time.sleep(3600)
        return value

    def busy(value: dict) -> dict:
        if fail_if_loading and any(t.name == "benchrunner-prefetch" for t in threading.enumerate()):
            raise RuntimeError("an input-loading thread is alive during the measured call")
        while pause_file is not None and os.path.exists(pause_file):  # a test holds the run here
            time.sleep(0.05)
        end = time.perf_counter() + busy_ms / 1000
        while time.perf_counter() < end:
            pass
        return {"audio": value["audio"][..., :-1]} if trim_last else value  # trim: not length-proportional

    return Pipeline(
        name="testing",
        stages=[Stage("smooth", _smooth), Stage("flaky", flaky), Stage("busy", busy)],
        inputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        make_clip=_clip,
        sample_rate=RATE,
    )


# -- a pipeline for backend/precision variants ------------------------------------------------

VARIANT_RATE = 4000
SCORE_HOP = 40          # one class-score frame per 40 samples: 100 frames/s
SCORE_CLASSES = 4


class Scorer(torch.nn.Module):
    """audio (B, N) -> filtered audio (B, N) and class scores (B, T, 4) at 100 frames/s."""

    def __init__(self):
        super().__init__()
        self.filter = torch.nn.Conv1d(1, 1, 9, padding=4)
        self.head = torch.nn.Linear(2, SCORE_CLASSES)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filtered = self.filter(audio.unsqueeze(1))
        pooled = torch.nn.functional.avg_pool1d(torch.cat([filtered, filtered.abs()], dim=1), SCORE_HOP)
        return filtered.squeeze(1), self.head(pooled.transpose(1, 2))


def _variant_clip(clip_s: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(1, int(round(clip_s * VARIANT_RATE)), generator=g)}


def variants(offset: float = 0.0, module_stage: bool = True) -> Pipeline:
    """Two stages: ``score`` names its module (any backend can take it; with
    ``module_stage=False`` it gives only a function), ``offset`` is a plain function that adds
    ``offset`` to every output: a deliberate, exactly known perturbation."""
    from benchrunner import ModuleCall

    torch.manual_seed(0)
    scorer = Scorer().eval()
    call = ModuleCall(args=("audio",), returns=("audio", "scores"))
    score = Stage("score", module=scorer, call=call) if module_stage else Stage("score", call.bind(scorer))

    def add_offset(value: dict) -> dict:
        return {k: v + offset for k, v in value.items()}

    return Pipeline(
        name="variants", stages=[score, Stage("offset", add_offset)],
        inputs={"audio": Stream(time_axis=-1, rate_hz=VARIANT_RATE)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=VARIANT_RATE),
                 "scores": Stream(time_axis=1, rate_hz=VARIANT_RATE / SCORE_HOP, categorical=True)},
        make_clip=_variant_clip, sample_rate=VARIANT_RATE, batchable=True, modules=[scorer],
    )


def build_sleepy(stage_ms: list | tuple = (10, 10, 10), abort_at_concurrency: int | None = None,
                 hold_mb: float = 0.0) -> Pipeline:
    """Stages that each sleep ``stage_ms[i]`` ms (time.sleep releases the GIL): the throughput
    scenario's truth test. ``abort_at_concurrency``: the first stage aborts the worker at that
    load (current_load), and only at that one. ``hold_mb``: the first stage allocates that much, carried to
    the last stage (memory that grows with the clips in flight)."""
    from benchrunner import current_load

    def make(i: int, ms: float):
        def stage(value: dict) -> dict:
            load = current_load()
            if i == 0 and abort_at_concurrency is not None and load and load.concurrency == abort_at_concurrency:
                os.abort()
            if i == 0 and hold_mb:
                value = {**value, "held": torch.ones(int(hold_mb * 2**20) // 4)}
            time.sleep(ms / 1000.0)
            if i == len(stage_ms) - 1:
                value = {"audio": value["audio"]}
            return value
        return stage

    return Pipeline(
        name="sleepy",
        stages=[Stage(f"s{i}_{ms:g}ms", make(i, ms)) for i, ms in enumerate(stage_ms)],
        inputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
        make_clip=_clip,
        sample_rate=RATE,
    )
