"""Suite files (TOML): load, apply command-line overrides, validate into plain dataclasses.

Every validation error is one line, ``FILE: field: what is wrong (expected ...)``, raised
as :class:`UserError` before anything runs.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UserError
from .modespec import ModeSpec, parse_mode

DEFAULT_PIPELINE = "benchrunner.pipelines.reference:build"
DEVICES = ("auto", "cpu", "cuda")
AUDIO_SUFFIXES = (".wav", ".flac")  # the input files a suite's inputs folder may hold
TIMERS = ("auto", "sync")  # measure.timing.TIMER_KINDS (a test keeps them equal; suite stays torch-free)
BUDGET_METRICS = ("p50_latency_ms", "p90_latency_ms", "p99_latency_ms", "peak_memory_gb",
                  "throughput_clips_per_s", "failure_rate")


# -- backends and precisions: what a variant asks of the harness beyond its pipeline_args ------
# (the suite owns their definition; benchrunner/backends/ applies them in the worker)

PRECISIONS = ("fp32", "fp16", "bf16")
BACKEND_NAMES = ("eager", "compile", "onnxruntime", "openvino")
QUANTIZE = ("none", "int8-dynamic")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
ON_UNSUPPORTED = ("eager", "fail")
# the keys of a variant table that configure the harness; every other key is a pipeline argument
VARIANT_FIELDS = ("precision", "autocast", "backend", "compile_mode", "quantize", "on_unsupported")
# the Python packages each optional backend needs, and the extra of benchrunner that installs them
BACKEND_PACKAGES = {"onnxruntime": (("onnxruntime", "onnx", "onnxscript"), "onnx"),
                    "openvino": (("openvino", "onnx", "onnxscript"), "openvino")}


@dataclass(frozen=True)
class VariantSpec:
    """How a variant runs the pipeline's modules. The default is the pipeline as written."""

    precision: str = "fp32"
    autocast: bool = False
    backend: str = "eager"
    compile_mode: str = "default"
    quantize: str = "none"
    on_unsupported: str = "eager"

    def is_plain(self) -> bool:
        """The pipeline runs exactly as its factory built it: no module is touched."""
        return self.precision == "fp32" and self.backend == "eager" and self.quantize == "none"

    def label(self) -> str:
        """Short description, e.g. ``onnxruntime int8-dynamic`` or ``eager bf16 autocast``."""
        parts = [self.backend + (f"({self.compile_mode})" if self.backend == "compile" and
                                 self.compile_mode != "default" else "")]
        if self.precision != "fp32":
            parts.append(self.precision + (" autocast" if self.autocast else ""))
        if self.quantize != "none":
            parts.append(self.quantize)
        return " ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def incompatibility(spec: VariantSpec) -> tuple[str, str] | None:
    """(field, problem) when the fields of a variant do not go together, else None."""
    if spec.autocast and spec.precision == "fp32":
        return "autocast", "true needs precision fp16 or bf16 (expected precision = \"bf16\" with autocast)"
    if spec.backend in ("onnxruntime", "openvino") and spec.precision != "fp32":
        return "precision", (f"{spec.precision!r} with backend {spec.backend!r} is not supported "
                             "(expected fp32; use quantize = \"int8-dynamic\" for a smaller model)")
    if spec.quantize != "none" and spec.precision != "fp32":
        return "quantize", f"{spec.quantize!r} needs precision fp32 (expected precision = \"fp32\")"
    if spec.compile_mode != "default" and spec.backend != "compile":
        return "compile_mode", "is set but backend is not \"compile\" (expected backend = \"compile\")"
    return None


def missing_package(backend: str) -> str | None:
    """Why ``backend`` cannot run here (a package is not installed, with the fix), or None."""

    packages, extra = BACKEND_PACKAGES.get(backend, ((), ""))
    for package in packages:
        if importlib.util.find_spec(package) is None:
            return (f"backend {backend!r} needs the Python package {package!r}, which is not installed "
                    f"(pip install 'benchrunner[{extra}]')")
    return None


@dataclass(frozen=True)
class ChunkConfig:
    window_s: float = 10.0
    overlap_s: float = 1.0
    max_retries: int = 2
    batch: int = 1


@dataclass(frozen=True)
class SamplerConfig:
    enabled: bool = True
    hz: float = 10.0


SCENARIOS = ("latency", "throughput")


@dataclass(frozen=True)
class ThroughputConfig:
    """How the throughput scenario measures (see benchrunner/run/throughput/).

    ``concurrency``: clips in flight per level. A level is measured in windows of
    ``window_s`` seconds, or of ``window_clips`` completed clips, until the last 3 agree within
    ``stability_pct`` % (at most ``max_windows``). ``queue_depth`` bounds each queue between
    stages. ``stage_devices`` places stages (pairs of stage name and device). The knee is the
    highest throughput whose p99 (or p90) latency is within ``knee_latency_ms`` (default: the
    ``p99_latency_ms`` budget).
    """

    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    window_s: float | None = 2.0
    window_clips: int | None = None
    stability_pct: float = 10.0
    max_windows: int = 10
    queue_depth: int = 1
    stage_devices: tuple[tuple[str, str], ...] = ()
    knee_latency_ms: float | None = None


@dataclass(frozen=True)
class Budget:
    """A limit on one summary metric, optionally for one clip length and/or one mode.

    The direction comes from the metric: throughput is a minimum, everything else a maximum.
    """

    metric: str
    limit: float
    clip_s: float | None = None
    mode: str | None = None


@dataclass(frozen=True)
class AccuracyBound:
    """How far a variant's output may be from the reference variant's and still count as
    accurate: SNR at least ``min_snr_db`` and/or max abs error at most ``max_abs_err``."""

    min_snr_db: float | None = None
    max_abs_err: float | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    pipeline: str
    pipeline_args: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    device: str
    clip_lengths_s: list[float]
    modes: list[ModeSpec]
    chunk: ChunkConfig
    repeats: int
    warmup: int
    timeout_s: float
    memory_limit_gb: float | None
    inputs: Path | None
    seed: int
    sampler: SamplerConfig
    budgets: list[Budget]
    results_dir: Path
    interleave: bool = True
    timer: str = "auto"   # "auto" (CUDA events on CUDA) or "sync" (synchronize all devices per stage)
    variant_specs: dict[str, VariantSpec] = field(default_factory=dict)
    reference_variant: str | None = None
    accuracy: AccuracyBound = AccuracyBound()
    scenarios: tuple[str, ...] = ("latency",)
    throughput: ThroughputConfig = ThroughputConfig()
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def variant_args(self, variant: str) -> dict[str, Any]:
        return {**self.pipeline_args, **self.variants[variant]}

    def variant_spec(self, variant: str) -> VariantSpec:
        """The variant's backend, precision and quantisation (the pipeline as written by default)."""
        return self.variant_specs.get(variant, VariantSpec())


# -- small typed readers: each returns the value or raises the one-line error ------------

class _Reader:
    def __init__(self, source: str, data: Mapping[str, Any], prefix: str = ""):
        self.source, self.data, self.prefix = source, data, prefix

    def fail(self, key: str, message: str) -> UserError:
        return UserError(f"{self.source}: {self.prefix}{key}: {message}")

    def get(self, key: str, check: Callable[[Any], bool], expected: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, f"missing (expected {expected})")
            return default
        value = self.data[key]
        if not check(value):
            raise self.fail(key, f"{value!r} is not valid (expected {expected})")
        return value

    def table(self, key: str, allowed: tuple[str, ...] | None) -> "_Reader":
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"{value!r} is not a table (expected {{ ... }})")
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    raise self.fail(f"{key}.{name}", f"unknown key (expected one of {', '.join(allowed)})")
        return _Reader(self.source, value, f"{self.prefix}{key}.")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _positive_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_positive(x) for x in v)


TOP_LEVEL_KEYS = ("name", "description", "pipeline", "pipeline_args", "variants", "device", "clip_lengths_s",
                  "modes", "hybrid_thresholds_s", "chunk", "repeats", "warmup", "timeout_s", "memory_limit_gb",
                  "inputs", "seed", "sampler", "budgets", "results_dir", "interleave", "timer",
                  "reference_variant", "accuracy", "scenario", "concurrency", "stage_devices", "throughput")


def load_suite(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Suite:
    """Read a suite file, apply ``overrides`` (dotted keys, e.g. ``chunk.window_s``) and validate."""
    path = Path(path)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{source}: file not found") from None
    except OSError as exc:  # a folder, no permission, ...
        raise UserError(f"{source}: cannot read it: {exc.strerror or exc} (expected a suite .toml file)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: not valid TOML: {exc}") from None
    raw = apply_overrides(raw, overrides or {})
    return validate_suite(raw, path)


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        target = merged
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UserError(f"--set: {dotted}: {part!r} is not a table (expected e.g. chunk.window_s=5)")
        target[leaf] = value
    return merged


def validate_suite(raw: dict[str, Any], path: Path) -> Suite:
    r = _Reader(str(path), raw)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise r.fail(key, f"unknown key (expected one of {', '.join(TOP_LEVEL_KEYS)})")
    lengths = [float(x) for x in r.get("clip_lengths_s", _positive_list, "a non-empty list of positive seconds")]
    repeated = [x for i, x in enumerate(lengths) if x in lengths[:i]]
    if repeated:
        raise r.fail("clip_lengths_s", f"{repeated[0]:g} is listed twice (expected distinct lengths)")
    chunk = _chunk_config(r)
    variants, specs = _variants(r)
    scenarios = _scenarios(r)
    budgets = _budgets(r)
    return Suite(
        name=r.get("name", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
        path=path,
        pipeline=r.get("pipeline", lambda v: isinstance(v, str) and ":" in v, "'module:function'",
                       DEFAULT_PIPELINE),
        pipeline_args=dict(r.get("pipeline_args", lambda v: isinstance(v, dict), "a table", {})),
        variants=variants,
        device=r.get("device", _valid_device, "auto, cpu, cuda or cuda:N", "auto"),
        clip_lengths_s=lengths,
        modes=_modes(r, lengths),
        chunk=chunk,
        repeats=r.get("repeats", _int_at_least(1), "an integer >= 1", 5),
        warmup=r.get("warmup", _int_at_least(0), "an integer >= 0", 1),
        timeout_s=float(r.get("timeout_s", _positive, "positive seconds", 600.0)),
        memory_limit_gb=_optional_float(r.get("memory_limit_gb", _positive, "positive GB", None)),
        inputs=_inputs(r, path),
        seed=r.get("seed", _int_at_least(0), "an integer >= 0", 0),
        sampler=_sampler(r),
        budgets=budgets,
        results_dir=Path(r.get("results_dir", lambda v: isinstance(v, str) and v != "", "a folder path",
                               "results")),
        interleave=r.get("interleave", lambda v: isinstance(v, bool), "true or false", True),
        timer=r.get("timer", lambda v: v in TIMERS, " or ".join(f'"{k}"' for k in TIMERS), "auto"),
        variant_specs=specs,
        reference_variant=_reference_variant(r, variants),
        accuracy=_accuracy(r),
        scenarios=scenarios,
        throughput=_throughput_config(r, scenarios, budgets),
        raw=raw,
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _valid_device(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    return v in DEVICES or (v.startswith("cuda:") and v[5:].isdigit())


def _variants(r: _Reader) -> tuple[dict[str, dict[str, Any]], dict[str, VariantSpec]]:
    """Each variant's pipeline_args, and its harness fields (precision, backend, ...), apart."""
    table = r.table("variants", None)
    if not table.data:
        return {"default": {}}, {}
    variants, specs = {}, {}
    for name, args in table.data.items():
        if not isinstance(args, dict):
            raise table.fail(name, f"{args!r} is not a table of pipeline_args (expected {{ dtype = \"bfloat16\" }})")
        variants[name] = {k: v for k, v in args.items() if k not in VARIANT_FIELDS}
        specs[name] = _variant_spec(_Reader(table.source, args, f"{table.prefix}{name}."))
    return variants, specs


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in choices


def _variant_spec(v: _Reader) -> VariantSpec:
    spec = VariantSpec(
        precision=v.get("precision", _one_of(PRECISIONS), " | ".join(PRECISIONS), "fp32"),
        autocast=v.get("autocast", lambda x: isinstance(x, bool), "true or false", False),
        backend=v.get("backend", _one_of(BACKEND_NAMES), " | ".join(BACKEND_NAMES), "eager"),
        compile_mode=v.get("compile_mode", _one_of(COMPILE_MODES), " | ".join(COMPILE_MODES), "default"),
        quantize=v.get("quantize", _one_of(QUANTIZE), " | ".join(QUANTIZE), "none"),
        on_unsupported=v.get("on_unsupported", _one_of(ON_UNSUPPORTED), "eager | fail", "eager"),
    )
    problem = incompatibility(spec)
    if problem:
        raise v.fail(*problem)
    return spec


def _reference_variant(r: _Reader, variants: dict[str, dict[str, Any]]) -> str | None:
    name = r.get("reference_variant", lambda v: isinstance(v, str), "a variant name", None)
    if name is not None and name not in variants:
        raise r.fail("reference_variant", f"{name!r} is not a variant of this suite "
                                          f"(expected one of {', '.join(variants)})")
    return name


def _accuracy(r: _Reader) -> AccuracyBound:
    a = r.table("accuracy", ("min_snr_db", "max_abs_err"))
    bound = AccuracyBound(
        min_snr_db=_optional_float(a.get("min_snr_db", _is_number, "a number of dB", None)),
        max_abs_err=_optional_float(a.get("max_abs_err", lambda v: _is_number(v) and v >= 0, "a number >= 0",
                                          None)),
    )
    if (bound.min_snr_db is not None or bound.max_abs_err is not None) and "reference_variant" not in r.data:
        raise a.fail("min_snr_db" if bound.min_snr_db is not None else "max_abs_err",
                     "an accuracy bound needs a reference_variant (expected reference_variant = \"fp32\")")
    return bound


def _chunk_config(r: _Reader) -> ChunkConfig:
    c = r.table("chunk", ("window_s", "overlap_s", "max_retries", "batch"))
    config = ChunkConfig(
        window_s=float(c.get("window_s", _positive, "positive seconds", 10.0)),
        overlap_s=float(c.get("overlap_s", lambda v: _is_number(v) and v >= 0, "seconds >= 0", 1.0)),
        max_retries=c.get("max_retries", _int_at_least(0), "an integer >= 0", 2),
        batch=c.get("batch", _int_at_least(1), "an integer >= 1", 1),
    )
    if config.overlap_s >= config.window_s:
        raise c.fail("overlap_s", f"{config.overlap_s:g} is not smaller than window_s = {config.window_s:g} "
                                  "(expected 0 <= overlap_s < window_s)")
    return config


def _modes(r: _Reader, lengths: list[float]) -> list[ModeSpec]:
    names = r.get("modes", lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
                  "a non-empty list like [\"single\", \"chunked\", \"hybrid@32\"]", ["single", "chunked"])
    thresholds = r.get("hybrid_thresholds_s", _positive_list, "a non-empty list of positive seconds", None)
    specs: list[tuple[ModeSpec, str]] = []  # (spec, the field it came from)
    for name in names:
        try:
            spec = parse_mode(name)
        except ValueError as exc:
            raise r.fail("modes", str(exc)) from None
        if spec.kind == "hybrid" and spec.threshold_s is None:
            if thresholds is None:
                raise r.fail("hybrid_thresholds_s", "missing: 'hybrid' in modes needs thresholds "
                                                    "(expected e.g. [28, 30, 32] or write 'hybrid@32')")
            specs.extend((parse_mode(f"hybrid@{t:g}"), "hybrid_thresholds_s") for t in thresholds)
        else:
            specs.append((spec, "modes"))
    low, high = min(lengths), max(lengths)
    for spec, origin in specs:
        if spec.threshold_s is not None and not low <= spec.threshold_s <= high:
            raise r.fail(origin, f"threshold {spec.threshold_s:g} s is outside the swept lengths "
                                 f"(expected {low:g}..{high:g} s)")
    return list(dict.fromkeys(spec for spec, _ in specs))


def _inputs(r: _Reader, path: Path) -> Path | None:
    value = r.get("inputs", lambda v: isinstance(v, str) and v != "", "a folder of WAV files", None)
    if value is None:
        return None
    folder = Path(value)
    if not folder.is_absolute():
        folder = path.parent / folder
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise r.fail("inputs", f"folder {str(folder)!r} {problem} (expected a folder of .wav files, "
                               "relative to the suite file)")
    if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in folder.iterdir()):
        raise r.fail("inputs", f"folder {str(folder)!r} has no audio files "
                               f"(expected {' or '.join(AUDIO_SUFFIXES)} files in it)")
    return folder


def _sampler(r: _Reader) -> SamplerConfig:
    s = r.table("sampler", ("enabled", "hz"))
    return SamplerConfig(
        enabled=s.get("enabled", lambda v: isinstance(v, bool), "true or false", True),
        hz=float(s.get("hz", lambda v: _positive(v) and v <= 100, "a rate in Hz, 0 < hz <= 100", 10.0)),
    )


def _is_mode(v: Any) -> bool:
    try:
        return isinstance(v, str) and parse_mode(v) is not None
    except ValueError:
        return False


def parse_budgets(raw: dict[str, Any], source: str) -> list[Budget]:
    """The ``budgets`` of a suite's raw TOML dict (as a manifest keeps it), by the suite's rules."""
    return _budgets(_Reader(source, raw))


def _budgets(r: _Reader) -> list[Budget]:
    table = r.table("budgets", BUDGET_METRICS)
    budgets = []
    for metric, value in table.data.items():
        if _is_number(value):
            if value < 0:
                raise table.fail(metric, f"{value!r} is negative (expected a limit >= 0)")
            budgets.append(Budget(metric, float(value)))
            continue
        if not isinstance(value, dict) or not _is_number(value.get("limit")):
            raise table.fail(metric, f"{value!r} is not valid (expected a number or {{ limit = N, clip_s = S }})")
        extra = set(value) - {"limit", "clip_s", "mode"}
        if extra:
            raise table.fail(f"{metric}.{sorted(extra)[0]}", "unknown key (expected limit, clip_s or mode)")
        b = _Reader(table.source, value, f"{table.prefix}{metric}.")
        if value["limit"] < 0:
            raise b.fail("limit", f"{value['limit']!r} is negative (expected a limit >= 0)")
        clip_s = b.get("clip_s", _positive, "positive seconds", None)
        mode = b.get("mode", _is_mode, "a mode like \"single\" or \"hybrid@32\"", None)
        budgets.append(Budget(metric, float(value["limit"]), None if clip_s is None else float(clip_s), mode))
    return budgets


# -- the throughput scenario's fields -------------------------------------------------------

def _scenarios(r: _Reader) -> tuple[str, ...]:
    """``scenario = "latency"`` (the default), ``"throughput"``, or a list of both."""
    expected = 'latency, throughput, or a list of them (e.g. ["latency", "throughput"])'
    value = r.get("scenario", lambda v: v in SCENARIOS or (isinstance(v, list) and v != [] and
                                                            all(x in SCENARIOS for x in v)), expected, "latency")
    names = [value] if isinstance(value, str) else value
    if len(set(names)) != len(names):
        raise r.fail("scenario", f"{value!r} lists a scenario twice (expected {expected})")
    return tuple(names)


def _throughput_config(r: _Reader, scenarios: tuple[str, ...], budgets: list[Budget]) -> ThroughputConfig:
    if "throughput" not in scenarios:
        for key in ("concurrency", "stage_devices", "throughput"):
            if key in r.data:
                raise r.fail(key, 'only used by the throughput scenario (expected scenario = "throughput")')
        return ThroughputConfig()
    levels = r.get("concurrency", lambda v: isinstance(v, list) and v != [] and all(_int_at_least(1)(x) for x in v),
                   "a non-empty list of integers >= 1, e.g. [1, 2, 4, 8]", [1, 2, 4, 8])
    if len(set(levels)) != len(levels):
        raise r.fail("concurrency", f"{levels!r} lists a level twice (expected distinct levels)")
    devices = r.table("stage_devices", None)
    for stage, device in devices.data.items():
        if not _valid_device(device) or device == "auto":
            raise devices.fail(stage, f"{device!r} is not valid (expected cpu, cuda or cuda:N)")
    t = r.table("throughput", ("window_s", "window_clips", "stability_pct", "max_windows", "queue_depth",
                               "knee_latency_ms"))
    if "window_s" in t.data and "window_clips" in t.data:
        raise t.fail("window_clips", "given with window_s (expected one of them: a window of seconds or of clips)")
    window_clips = t.get("window_clips", _int_at_least(1), "an integer >= 1 (clips per window)", None)
    window_s = None if window_clips else float(t.get("window_s", _positive, "positive seconds", 2.0))
    p99 = next((b.limit for b in budgets if b.metric == "p99_latency_ms"), None)
    knee = t.get("knee_latency_ms", _positive, "positive milliseconds", p99)
    return ThroughputConfig(
        concurrency=tuple(sorted(levels)), window_s=window_s, window_clips=window_clips,
        stability_pct=float(t.get("stability_pct", lambda v: _positive(v) and v < 100, "a percentage, 0 < x < 100",
                                  10.0)),
        max_windows=t.get("max_windows", _int_at_least(3), "an integer >= 3 (the rule compares the last 3)", 10),
        queue_depth=t.get("queue_depth", _int_at_least(1), "an integer >= 1", 1),
        stage_devices=tuple(devices.data.items()),
        knee_latency_ms=None if knee is None else float(knee),
    )
