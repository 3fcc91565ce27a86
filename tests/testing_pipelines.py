"""Small pipelines for tests: fast, deterministic, with failures injected on purpose.

Workers import them by name (``testing_pipelines:build``); tests/ is on their path.
"""

from __future__ import annotations

import os
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
          device_assert_clip_s: float | None = None, chatter: bool = False,
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
