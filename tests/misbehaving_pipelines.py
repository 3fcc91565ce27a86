"""Pipelines that misbehave the way real plugins do (issue 12): NaN outputs, a VAD stream of
ceil(N / hop) frames, chunk outputs of the wrong length, an input stream not named "audio",
a stage returning a non-dict or raising SystemExit/KeyboardInterrupt, an import-time
torch.set_num_threads(1). Workers import them by name (``misbehaving_pipelines:FACTORY``)."""

from __future__ import annotations

import math

import torch

from benchrunner import Pipeline, Stage, Stream, current_chunk

RATE = 1000
HOP = 32  # 1000 / 32 = 31.25 frames per second, like a 16 kHz VAD with a 512-sample hop


def _clip(clip_s: float, seed: int, name: str = "audio") -> dict:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, int(round(clip_s * RATE)), generator=g)}


def _smooth(value: dict, name: str = "audio") -> dict:
    kernel = torch.ones(1, 1, 9) / 9
    return {name: torch.nn.functional.conv1d(value[name].unsqueeze(1), kernel, padding=4).squeeze(1)}


def _pipeline(name: str, stages: list[Stage], outputs: dict | None = None, **extra) -> Pipeline:
    return Pipeline(name=name, stages=stages, inputs={"audio": Stream(time_axis=-1, rate_hz=RATE)},
                    outputs=outputs or {"audio": Stream(time_axis=-1, rate_hz=RATE)}, make_clip=_clip,
                    sample_rate=RATE, **extra)


def nan_in_chunks() -> Pipeline:
    """Single passes are fine; every chunk after the first comes out as NaN."""
    def stage(value: dict) -> dict:
        chunk = current_chunk()
        if chunk is not None and chunk.index >= 1:
            return {"audio": torch.full_like(value["audio"], math.nan)}
        return value
    return _pipeline("nan-in-chunks", [Stage("smooth", _smooth), Stage("model", stage)])


def with_vad() -> Pipeline:
    """Audio plus a VAD probability stream of ceil(N / HOP) frames at a declared 31.25 Hz."""
    def vad(value: dict) -> dict:
        audio = value["audio"]
        frames = math.ceil(audio.shape[-1] / HOP)
        padded = torch.nn.functional.pad(audio, (0, frames * HOP - audio.shape[-1]))
        prob = torch.sigmoid(padded.reshape(1, frames, HOP).mean(-1) * 10)
        return {"audio": audio, "vad": prob}
    return _pipeline("with-vad", [Stage("smooth", _smooth), Stage("vad", vad)],
                     outputs={"audio": Stream(time_axis=-1, rate_hz=RATE), "vad": Stream(time_axis=-1, rate_hz=RATE / HOP)})


def short_chunks() -> Pipeline:
    """Chunk outputs are half as long as their span (a model that silently drops samples)."""
    def stage(value: dict) -> dict:
        audio = value["audio"]
        return {"audio": audio[..., : audio.shape[-1] // 2]} if current_chunk() is not None else value
    return _pipeline("short-chunks", [Stage("smooth", _smooth), Stage("halve", stage)])


def named_input(file_input: str | None = None) -> Pipeline:
    """Its input stream is "wave", not "audio"."""
    extra = {"file_input": file_input} if file_input else {}
    return Pipeline(name="named-input", stages=[Stage("smooth", lambda v: _smooth(v, "wave"))],
                    inputs={"wave": Stream(time_axis=-1, rate_hz=RATE)},
                    outputs={"wave": Stream(time_axis=-1, rate_hz=RATE)},
                    make_clip=lambda clip_s, seed: _clip(clip_s, seed, "wave"), sample_rate=RATE, **extra)


def returns(what: str = "int") -> Pipeline:
    """The last stage returns a non-dict, or raises SystemExit / KeyboardInterrupt."""
    def stage(value: dict):
        if what == "int":
            return 42
        if what == "tensor":
            return value["audio"]
        if what == "exit":
            raise SystemExit(3)
        raise KeyboardInterrupt
    return _pipeline(f"returns-{what}", [Stage("smooth", _smooth), Stage("post", stage)])


def one_thread() -> Pipeline:
    """A plugin whose import (here: its factory) pins torch to one thread."""
    torch.set_num_threads(1)
    return _pipeline("one-thread", [Stage("smooth", _smooth)])
