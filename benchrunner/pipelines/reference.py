"""The built-in reference pipeline: four torch stages shaped like a dubbing pipeline.

Random weights from a fixed seed; it exists so that the harness runs anywhere out of
the box. Streams (batch first):

* clip: ``audio`` (B, N) at ``sample_rate``; ``frames`` (B, F, 3, S, S) face crops at 25 fps.
* ``voice_conversion``: 1-D conv encoder/decoder on the waveform (local, like RVC).
* ``acoustic``: transformer self-attention over 100 frames/s of features (like the
  TTS acoustic model). The attention matrix is materialised, so memory grows with the
  square of the clip length: this is what makes long single passes fail.
* ``pitch``: pitch/energy predictor, 1-D convs over the acoustic frames.
* ``lipsync``: 2-D convs on the face crops, conditioned on the acoustic frames pooled
  to 25 fps. Output: ``audio`` (B, N) and ``frames`` (B, F, 3, S, S).

Every output stays proportional to the input length, so chunked outputs merge back
to exactly the single-pass length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..pipeline import ModuleCall, Pipeline, Stage, Stream

FEATURE_RATE_HZ = 100
FRAME_RATE_HZ = 25
VISEMES = 8  # mouth-shape classes the lip-sync stage scores per video frame


@dataclass(frozen=True)
class Scale:
    sample_rate: int
    channels: int
    model_dim: int
    heads: int
    layers: int
    face_px: int
    face_channels: int


SCALES = {
    "tiny": Scale(sample_rate=8000, channels=32, model_dim=32, heads=2, layers=1, face_px=16, face_channels=8),
    "small": Scale(sample_rate=16000, channels=64, model_dim=64, heads=4, layers=2, face_px=32, face_channels=16),
    "base": Scale(sample_rate=16000, channels=192, model_dim=256, heads=4, layers=4, face_px=96, face_channels=64),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class VoiceConversion(nn.Module):
    """Strided conv encoder to 100 frames/s, a residual conv body, transposed-conv decoder."""

    def __init__(self, scale: Scale):
        super().__init__()
        self.hop = scale.sample_rate // FEATURE_RATE_HZ
        c = scale.channels
        self.encode = nn.Conv1d(1, c, kernel_size=2 * self.hop, stride=self.hop, padding=self.hop // 2)
        self.body = nn.Sequential(nn.Conv1d(c, c, 5, padding=2), nn.GELU(), nn.Conv1d(c, c, 5, padding=2))
        self.decode = nn.ConvTranspose1d(c, 1, kernel_size=self.hop, stride=self.hop)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = audio.shape[-1]
        padded = F.pad(audio, (0, (-n) % self.hop)).unsqueeze(1)
        features = self.encode(padded)
        features = features + self.body(features)
        converted = torch.tanh(self.decode(features)).squeeze(1)[..., :n]
        return converted, features


class NaiveSelfAttention(nn.Module):
    """Multi-head self-attention that materialises the (T x T) score matrix on purpose."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(attended)
        return x + self.ff(self.norm2(x))


class AcousticModel(nn.Module):
    def __init__(self, scale: Scale):
        super().__init__()
        self.proj = nn.Conv1d(scale.channels, scale.model_dim, 1)
        self.layers = nn.ModuleList(NaiveSelfAttention(scale.model_dim, scale.heads) for _ in range(scale.layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.proj(features).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)


class PitchPredictor(nn.Module):
    def __init__(self, scale: Scale):
        super().__init__()
        d = scale.model_dim
        self.net = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, 2, 3, padding=1))

    def forward(self, acoustic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pitch_energy = self.net(acoustic)
        return pitch_energy[:, :1], pitch_energy[:, 1:]


class LipSync(nn.Module):
    def __init__(self, scale: Scale, hop: int):
        super().__init__()
        c = scale.face_channels
        self.hop = hop
        self.audio_to_face = nn.Linear(scale.model_dim + 2, c)
        self.to_viseme = nn.Linear(scale.model_dim + 2, VISEMES)
        self.encode = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.decode = nn.Sequential(nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, audio: torch.Tensor, frames: torch.Tensor, acoustic: torch.Tensor, pitch: torch.Tensor,
                energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, f, ch, h, w = frames.shape
        conditioning = torch.cat([acoustic, pitch, energy], dim=1)
        # the acoustic frames of each video frame averaged (100 -> 25 fps): a fixed-ratio pool, so
        # an exported graph keeps the frame count symbolic (adaptive pooling would freeze it)
        ratio = FEATURE_RATE_HZ // FRAME_RATE_HZ
        aligned = F.pad(conditioning, (0, 2 * ratio), mode="replicate")[..., : ratio * f]
        per_frame = F.avg_pool1d(aligned, ratio).transpose(1, 2)  # (B, F, C)
        bias = self.audio_to_face(per_frame).reshape(b * f, -1, 1, 1)
        hidden = self.encode(frames.reshape(b * f, ch, h, w)) + bias
        synced = torch.sigmoid(self.decode(hidden)).reshape(b, f, ch, h, w)
        pitch_per_sample = pitch.repeat_interleave(self.hop, dim=-1)[:, 0, : audio.shape[-1]]
        return audio * (1.0 + 0.1 * torch.tanh(pitch_per_sample)), synced, self.to_viseme(per_frame)


def make_synthetic_clip(clip_s: float, seed: int, *, sample_rate: int, face_px: int) -> dict[str, torch.Tensor]:
    """A deterministic clip: a few voiced tones plus noise, and smoothly moving face crops."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(round(clip_s * 1000)))
    n = int(round(clip_s * sample_rate))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    freqs = 100.0 + 200.0 * torch.rand(3, generator=generator)
    audio = sum(torch.sin(2 * math.pi * f * t) for f in freqs) / 3.0
    audio = 0.5 * audio + 0.05 * torch.randn(n, generator=generator)
    n_frames = int(round(clip_s * FRAME_RATE_HZ))
    base = torch.rand(1, 3, face_px, face_px, generator=generator)
    drift = torch.linspace(0, 1, n_frames).view(n_frames, 1, 1, 1)
    frames = (base + 0.1 * torch.sin(2 * math.pi * drift)).clamp(0, 1)
    return {"audio": audio.unsqueeze(0), "frames": frames.unsqueeze(0)}


def build(scale: str = "tiny", dtype: str = "float32", device: str = "cpu", seed: int = 0) -> Pipeline:
    """Factory for ``pipeline = "benchrunner.pipelines.reference:build"``."""
    if scale not in SCALES:
        raise UserError(f"pipeline_args.scale: {scale!r} is not one of {', '.join(SCALES)}")
    if dtype not in DTYPES:
        raise UserError(f"pipeline_args.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    cfg, torch_dtype = SCALES[scale], DTYPES[dtype]
    torch.manual_seed(seed)
    vc = VoiceConversion(cfg)
    modules = [vc, AcousticModel(cfg), PitchPredictor(cfg), LipSync(cfg, vc.hop)]
    for module in modules:
        module.to(device=device, dtype=torch_dtype).eval()

    # how each stage calls its module: stage input entries -> arguments, returns -> entries
    calls = {
        "voice_conversion": ModuleCall(args=("audio",), returns=("audio", "features")),
        "acoustic": ModuleCall(args=("features",), returns=("acoustic",)),
        "pitch": ModuleCall(args=("acoustic",), returns=("pitch", "energy")),
        "lipsync": ModuleCall(args=("audio", "frames", "acoustic", "pitch", "energy"),
                              returns=("audio", "frames", "visemes"), keep=()),
    }
    return Pipeline(
        name=f"reference-{scale}-{dtype}",
        stages=[Stage(name, module=module, call=calls[name]) for name, module in zip(calls, modules)],
        inputs={"audio": Stream(time_axis=-1, rate_hz=cfg.sample_rate),
                "frames": Stream(time_axis=1, rate_hz=FRAME_RATE_HZ)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=cfg.sample_rate),
                 "frames": Stream(time_axis=1, rate_hz=FRAME_RATE_HZ),
                 "visemes": Stream(time_axis=1, rate_hz=FRAME_RATE_HZ, categorical=True, class_axis=-1)},
        make_clip=lambda clip_s, seed: make_synthetic_clip(clip_s, seed, sample_rate=cfg.sample_rate,
                                                           face_px=cfg.face_px),
        sample_rate=cfg.sample_rate,
        frame_rate=FRAME_RATE_HZ,
        batchable=True,
        device=device,
        modules=modules,
    )
