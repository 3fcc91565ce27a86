"""``bench selfcheck``: the harness measured against answers known in advance.

Each check is a small function returning a :class:`CheckResult` (the figure, its unit,
the bound it is held to, pass/fail and a line of detail). Every check measures through
the code a worker uses for a repeat (:func:`harness_repeat` makes the same calls as
``Worker._timed_call``: ``timer.begin_repeat``, ``execute_mode`` -> ``run_stages``,
``synchronize``, ``timer.end_repeat``; memory through ``CpuMemoryTracker`` /
``CudaMemoryTracker`` around it), so a fault in those paths shows here.

* accuracy: a stage that busy-waits d = 1, 10, 100 ms is reported with a median within
  2% + 50 us of d (on CUDA: a GPU spin, CUDA events against the synchronize-bracketed wall
  time of the same repeats); a stage that allocates and touches 256 MiB is reported within
  5% on CPU (peak RSS) and exactly on CUDA (allocator).
* agreement: the reference pipeline's acoustic stage, fed the voice_conversion output of a
  10 s clip: the harness's median and ``torch.utils.benchmark.Timer``'s median, measured in
  rounds that alternate the two measurers, differ by less than 3%.
* overhead: per stage call, the harness against a bare loop over the same no-op functions
  (<= 30 us); the background sampler at its default rate against no sampler, on the
  reference pipeline (median latency moves by <= 2%; ratio with a bootstrap CI).
* on CUDA also: GPM (SM activity) is the utilisation source on Hopper and newer.

Medians everywhere, warm-up calls first, interleaved blocks for every A-against-B figure,
so drift on a busy machine falls on both sides. Nothing here prints or exits.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..analysis.stats import paired_ratio_ci
from ..measure.environment import ValidityWarning
from ..measure.memory import CpuMemoryTracker, CudaMemoryTracker
from ..measure.sampler import CpuBackend, Sampler
from ..measure.timing import make_stage_timer, synchronize
from ..pipeline import Pipeline, Stage, Stream
from .modes import ChunkedMode, execute_mode, parse_mode

MIB = 1 << 20
BUSY_WAIT_MS = (1.0, 10.0, 100.0)
TIMER_REL_BOUND = 0.02
TIMER_ABS_BOUND_MS = 0.050
MEMORY_BYTES = 256 * MIB
MEMORY_REL_BOUND_CPU = 0.05
AGREEMENT_BOUND_PCT = 3.0
STAGE_OVERHEAD_BOUND_US = 30.0
SAMPLER_BOUND = 0.02
NOOP_STAGES = 4  # as many as the reference pipeline has
DEFAULT_SAMPLER_HZ = 10.0  # WorkerConfig.sampler_hz and the suite's sampler.hz default
REFERENCE = "benchrunner.pipelines.reference:build"
# The acoustic call should take a few ms: on CPU "small" does (about 7 ms for 10 s); on a
# GPU "small" is launch-bound (well under a ms), so the GPU variant uses "base".
AGREEMENT_SCALE = {"cpu": "small", "cuda": "base"}
AGREEMENT_CLIP_S = 10.0
TIMER_WARMUP_CALLS = 2  # torch.utils.benchmark.Timer.timeit(n) first runs max(n // 100, 2) untimed calls
SAMPLER_SCALE = "small"
SAMPLER_CLIP_S = 5.0

_SINGLE = parse_mode("single")
_NO_CHUNKING = ChunkedMode()


@dataclass(frozen=True)
class CheckResult:
    """One check: ``figure`` (in ``unit``) held to ``bound``; ``passed`` None = skipped."""

    name: str
    figure: float | str | None
    unit: str
    bound: str
    passed: bool | None
    detail: str = ""

    @property
    def status(self) -> str:
        return "skipped" if self.passed is None else ("pass" if self.passed else "FAIL")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


@dataclass(frozen=True)
class Effort:
    """How many measurements each check takes, and on what (None: the module's default)."""

    busy_wait_repeats: dict[float, int]
    memory_repeats: int
    agreement_rounds: int
    agreement_calls_per_round: int
    overhead_blocks: int
    overhead_repeats_per_block: int
    sampler_blocks: int
    sampler_repeats_per_block: int
    warmup: int = 3
    agreement_scale: str | None = None
    sampler_scale: str = SAMPLER_SCALE
    sampler_clip_s: float = SAMPLER_CLIP_S


FULL = Effort(busy_wait_repeats={1.0: 201, 10.0: 61, 100.0: 21}, memory_repeats=11,
              agreement_rounds=100, agreement_calls_per_round=3,
              overhead_blocks=40, overhead_repeats_per_block=500,
              sampler_blocks=24, sampler_repeats_per_block=20)
# For tests: the same code paths, few repeats, and the tiny pipeline (figures are rough).
QUICK = Effort(busy_wait_repeats={1.0: 21, 10.0: 11, 100.0: 3}, memory_repeats=3,
               agreement_rounds=6, agreement_calls_per_round=3,
               overhead_blocks=8, overhead_repeats_per_block=200,
               sampler_blocks=6, sampler_repeats_per_block=10,
               warmup=1, agreement_scale="tiny", sampler_scale="tiny", sampler_clip_s=2.0)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def run_selfcheck(*, quick: bool = False, device: str = "cpu") -> list[CheckResult]:
    """Every check for ``device`` ("cpu" or "cuda"), in order. Without CUDA the cuda checks
    come back skipped. A check that raises is reported as failed, and the others still run."""
    effort = QUICK if quick else FULL
    cuda = device.startswith("cuda")
    if cuda and cuda_available():
        from ..measure.gpu import resolve_device
        device = resolve_device(device)  # cuda -> cuda:N, as a run does
    checks: list[tuple[str, Callable[[], CheckResult]]] = []
    for d_ms in BUSY_WAIT_MS:
        checks.append((f"timer accuracy, {d_ms:g} ms busy-wait",
                       lambda d_ms=d_ms: check_timer_accuracy(d_ms, repeats=effort.busy_wait_repeats[d_ms],
                                                              device=device)))
    checks += [
        ("memory accuracy, 256 MiB", lambda: check_memory_accuracy(repeats=effort.memory_repeats, device=device)),
        ("agreement with torch.utils.benchmark", lambda: check_timer_agreement(
            rounds=effort.agreement_rounds, calls_per_round=effort.agreement_calls_per_round, device=device,
            scale=effort.agreement_scale, warmup=effort.warmup)),
        ("overhead per stage call", lambda: check_stage_overhead(
            blocks=effort.overhead_blocks, repeats_per_block=effort.overhead_repeats_per_block, device=device)),
        ("sampler overhead", lambda: check_sampler_overhead(
            blocks=effort.sampler_blocks, repeats_per_block=effort.sampler_repeats_per_block, device=device,
            scale=effort.sampler_scale, clip_s=effort.sampler_clip_s, warmup=effort.warmup)),
    ]
    if cuda:
        checks.append(("GPM utilisation source", lambda: check_gpm_presence_on(device)))
    if cuda and not cuda_available():
        return [CheckResult(name, None, "", "", None, "skipped: no CUDA") for name, _ in checks]
    return [_guarded(name, fn) for name, fn in checks]


def _guarded(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    try:
        return fn()
    except Exception as exc:  # a broken check is a failed check, reported with its error
        return CheckResult(name, None, "", "", False, f"check raised {type(exc).__name__}: {exc}")


BUSY_LOAD_PER_CORE = 0.5


def busy_machine_warning(load_1min: float, cores: int) -> ValidityWarning | None:
    """A warning when other work was running before the checks (1-minute load average over
    half the cores): then the latency medians measure contention as much as the harness."""
    if load_1min <= BUSY_LOAD_PER_CORE * cores:
        return None
    return ValidityWarning(
        "busy_machine",
        f"load average {load_1min:.2f} on {cores} cores before the checks: other work competes for the CPU, "
        "so the agreement and sampler figures (medians of real calls) are mostly that contention",
        "re-run bench selfcheck on an otherwise idle machine (stop other jobs; keep the GPU to yourself)")


# ---------------------------------------------------------------------------------------
# the harness's own path


def harness_repeat(pipeline: Pipeline, value: Any, timer, device: str) -> tuple[float, dict[str, float]]:
    """One repeat measured as ``Worker._timed_call`` does: (total_ms, {stage: ms})."""
    timer.begin_repeat()
    started = time.perf_counter_ns()
    with torch.inference_mode():
        execute_mode(_SINGLE, pipeline, value, 0.0, timer, _NO_CHUNKING)
        synchronize(device)
    total_ms = (time.perf_counter_ns() - started) / 1e6
    return total_ms, timer.end_repeat()


def _pipeline_of(stages: list[Stage], device: str) -> Pipeline:
    return Pipeline(name="selfcheck", stages=stages, inputs={"x": Stream(time_axis=-1)},
                    outputs={"x": Stream(time_axis=-1)}, make_clip=lambda clip_s, seed: {}, device=device)


def _reference(scale: str, device: str) -> Pipeline:
    from ..pipeline import load_pipeline

    return load_pipeline(REFERENCE, {"scale": scale}, device=device)


def _clip_on(pipeline: Pipeline, clip_s: float, device: str) -> dict:
    return {k: v.to(device) for k, v in pipeline.make_clip(clip_s, 0).items()}


def _bound_text(limit: float, unit: str) -> str:
    return f"<= {limit:.3g} {unit}"


# ---------------------------------------------------------------------------------------
# accuracy


def busy_wait_stage(d_ms: float, device: str = "cpu", cycles_per_ms: float | None = None) -> Stage:
    """A stage that keeps the device busy for ``d_ms``: a perf_counter spin on CPU, a
    ``torch.cuda._sleep`` spin of ``d_ms * cycles_per_ms`` GPU cycles on CUDA."""
    if device.startswith("cuda"):
        cycles = int(d_ms * (cycles_per_ms or _gpu_cycles_per_ms()))

        def gpu_busy(value):
            torch.cuda._sleep(cycles)
            return value

        return Stage("busy", gpu_busy)
    wait_ns = int(round(d_ms * 1e6))

    def cpu_busy(value):
        end = time.perf_counter_ns() + wait_ns
        while time.perf_counter_ns() < end:
            pass
        return value

    return Stage("busy", cpu_busy)


def _gpu_cycles_per_ms() -> float:
    """GPU spin cycles per ms, from synchronize-bracketed spins (after a warm-up spin)."""
    rates = []
    for cycles in (1_000_000, 20_000_000, 20_000_000, 20_000_000):
        torch.cuda.synchronize()
        start = time.perf_counter()
        torch.cuda._sleep(cycles)
        torch.cuda.synchronize()
        rates.append(cycles / ((time.perf_counter() - start) * 1e3))
    return float(np.median(rates[1:]))


def check_timer_accuracy(d_ms: float, *, repeats: int, device: str = "cpu", warmup: int = 2,
                         timer_factory: Callable[[str], Any] = make_stage_timer) -> CheckResult:
    """Median reported time of a ``d_ms`` busy-wait stage against d (CPU) or against the
    synchronize-bracketed wall time of the same repeats (CUDA: the spin is in GPU cycles).
    ``timer_factory`` is the harness's own by default; tests pass a broken one."""
    name = f"timer accuracy, {d_ms:g} ms busy-wait"
    cuda = device.startswith("cuda")
    pipeline = _pipeline_of([busy_wait_stage(d_ms, device)], device)
    timer = timer_factory(device)
    reported, wall = [], []
    for i in range(warmup + repeats):
        total_ms, stage_ms = harness_repeat(pipeline, {}, timer, device)
        if i >= warmup:
            reported.append(stage_ms["busy"])
            wall.append(total_ms)
    median = float(np.median(reported))
    reference = float(np.median(wall)) if cuda else d_ms
    limit_ms = TIMER_REL_BOUND * reference + TIMER_ABS_BOUND_MS
    error_ms = median - reference
    p10, p90 = np.percentile(reported, [10, 90])
    what = (f"CUDA events vs synchronize wall time {reference:.4f} ms" if cuda
            else f"{getattr(timer, 'source', 'timer')} vs d")
    return CheckResult(
        name, median, "ms", f"{reference:.4g} ms ± {limit_ms:.3f} ms", abs(error_ms) <= limit_ms,
        f"{what}; error {error_ms * 1e3:+.1f} us; median of {repeats} repeats (p10 {p10:.4f}, p90 {p90:.4f} ms)")


def allocating_stage(n_bytes: int, device: str) -> Stage:
    """A stage that allocates ``n_bytes`` and writes every byte (so every page is resident)."""

    def allocate(value):  # the output is a stream, as a pipeline's last stage must return
        return {"allocated": torch.empty(n_bytes, dtype=torch.uint8, device=device).fill_(1)}

    return Stage("allocate", allocate)


def check_memory_accuracy(*, repeats: int, device: str = "cpu", n_bytes: int = MEMORY_BYTES,
                          warmup: int = 1) -> CheckResult:
    """The absolute peak the harness reports (``peak_mem_bytes``, what budgets hold to) for a
    stage that allocates and touches ``n_bytes``, against where it must be: the memory held
    before the repeat plus ``n_bytes``. Within 5% of ``n_bytes`` on the CPU (peak RSS), exact
    on CUDA (``max_memory_allocated``). The reported growth must be the same figure."""
    name = f"memory accuracy, {n_bytes / MIB:g} MiB"
    cuda = device.startswith("cuda")
    pipeline = _pipeline_of([allocating_stage(n_bytes, device)], device)
    timer = make_stage_timer(device)
    sampler = None
    if cuda:
        tracker = CudaMemoryTracker(device)
    else:  # as the worker does: the sampler's RSS is the fallback where VmHWM cannot be reset
        sampler = Sampler(CpuBackend(), DEFAULT_SAMPLER_HZ)
        window = {"start": 0.0}
        tracker = CpuMemoryTracker(sampled_peak=lambda: sampler.peak(window["start"], sampler.now_ms(), "rss_bytes"))
        sampler.start()
    added, sources, inconsistent = [], set(), 0
    try:
        for i in range(warmup + repeats):
            tracker.begin()
            if sampler is not None:
                window["start"] = sampler.now_ms()
            harness_repeat(pipeline, {}, timer, device)
            reading = tracker.end()
            if i >= warmup:
                sources.add(reading.source)
                if reading.peak_bytes is not None:
                    added.append(reading.peak_bytes - reading.baseline_bytes)  # absolute peak over where it began
                    inconsistent += reading.growth_bytes != reading.peak_bytes - reading.baseline_bytes
    finally:
        if sampler is not None:
            sampler.stop()
    source = ",".join(sorted(sources))
    if not added:
        return CheckResult(name, None, "MiB", "", False, f"no peak reported (mem_source {source})")
    median = float(np.median(added))
    consistency = f"; growth disagrees with peak - baseline in {inconsistent} repeats" if inconsistent else ""
    if cuda:
        exact = all(a == n_bytes for a in added) and not inconsistent
        return CheckResult(name, median, "bytes", f"peak == baseline + {n_bytes} bytes", exact,
                           f"{source}: peak_mem_bytes (max_memory_allocated, absolute) - memory allocated before, "
                           f"over {repeats} repeats, min {min(added)}, max {max(added)}{consistency}")
    error = median / n_bytes - 1.0
    return CheckResult(name, median / MIB, "MiB",
                       f"peak = baseline + {n_bytes / MIB:g} MiB ± {MEMORY_REL_BOUND_CPU:.0%}",
                       abs(error) <= MEMORY_REL_BOUND_CPU and not inconsistent,
                       f"{source}: peak_mem_bytes (absolute peak RSS) - RSS before; error {error:+.2%}; median of "
                       f"{repeats} repeats (min {min(added) / MIB:.2f}, max {max(added) / MIB:.2f} MiB){consistency}")


# ---------------------------------------------------------------------------------------
# agreement with torch.utils.benchmark


def check_timer_agreement(*, rounds: int, calls_per_round: int, device: str = "cpu", scale: str | None = None,
                          clip_s: float = AGREEMENT_CLIP_S, warmup: int = 3) -> CheckResult:
    """The acoustic stage of the reference pipeline (fed the voice_conversion output of a
    ``clip_s`` clip), measured per call by the harness and by ``Timer.timeit(number=1)``
    (per call too, so both medians are of single calls), in rounds that alternate which
    measurer goes first. ``Timer.timeit`` runs 2 untimed calls before each timed one, so the
    harness side does too: both sides load the machine in the same rhythm and differ only
    in how they measure. Timer runs with the harness's thread count (its default is 1
    thread) and under inference_mode, like the worker."""
    from torch.utils.benchmark import Measurement, Timer

    scale = scale or AGREEMENT_SCALE["cuda" if device.startswith("cuda") else "cpu"]
    pipeline = _reference(scale, device)
    clip = _clip_on(pipeline, clip_s, device)
    with torch.inference_mode():
        features = pipeline.stages[0].fn(clip)
    acoustic = next(s for s in pipeline.stages if s.name == "acoustic")
    one_stage = dataclasses.replace(pipeline, stages=[acoustic])
    timer = make_stage_timer(device)
    bench = Timer(stmt="fn(x)", globals={"fn": acoustic.fn, "x": features}, num_threads=torch.get_num_threads(),
                  label="selfcheck", description=f"acoustic {scale} {clip_s:g} s")

    def harness_side(out: list) -> None:
        for _ in range(calls_per_round):
            with torch.inference_mode():
                for _ in range(TIMER_WARMUP_CALLS):  # the same rhythm as Timer.timeit(number=1)
                    acoustic.fn(features)
            out.append(harness_repeat(one_stage, features, timer, device)[1]["acoustic"])

    def timer_side(out: list) -> None:
        with torch.inference_mode():
            for _ in range(calls_per_round):
                out.append(bench.timeit(number=1))

    warm_h, warm_t = [], []
    for _ in range(warmup):
        harness_side(warm_h)
        timer_side(warm_t)
    harness_ms: list[float] = []
    measurements: list = []
    for r in range(rounds):
        sides = [(harness_side, harness_ms), (timer_side, measurements)]
        for side, out in (sides if r % 2 == 0 else sides[::-1]):
            side(out)
    merged = Measurement.merge(measurements)[0]
    harness_median = float(np.median(harness_ms))
    timer_median = merged.median * 1e3
    medians_pct = (harness_median / timer_median - 1.0) * 100.0
    # The verdict is paired, as the comparisons of interleaved cases are: a round's two sides
    # run close in time, so the median of per-round ratios cancels what the machine did
    # between rounds (another process, a frequency change), which the ratio of the two overall
    # medians does not (+8.9% once with equal minima on a 2-core machine at load 1.2).
    paired_pct = per_round_difference_pct(harness_ms, [m.times[0] * 1e3 for m in measurements], rounds)
    return CheckResult(
        "agreement with torch.utils.benchmark", paired_pct, "%", f"|diff| < {AGREEMENT_BOUND_PCT:g}%",
        abs(paired_pct) < AGREEMENT_BOUND_PCT,
        f"acoustic stage, reference {scale}, {clip_s:g} s clip: median per-round ratio harness/Timer; "
        f"harness median {harness_median:.3f} ms ({timer.source}), Timer median {timer_median:.3f} ms "
        f"(ratio of medians {medians_pct:+.2f}%; minima {min(harness_ms):.3f} and {min(merged.times) * 1e3:.3f} ms); "
        f"{len(harness_ms)} calls each in {rounds} alternating rounds, {torch.get_num_threads()} threads")


def per_round_difference_pct(a_ms: list[float], b_ms: list[float], rounds: int) -> float:
    """(median over rounds of median(a) / median(b) within the round) - 1, in percent; each
    side's calls are in round order, the same number per round."""
    per_round = np.divide(_block_medians(a_ms, rounds), _block_medians(b_ms, rounds))
    return (float(np.median(per_round)) - 1.0) * 100.0


# ---------------------------------------------------------------------------------------
# overhead


def _noop(value):
    return value


def _interleaved(blocks: int, a: Callable[[], list[float]], b: Callable[[], list[float]]
                 ) -> tuple[list[float], list[float]]:
    """Run ``blocks`` blocks of each side, alternating which goes first (ABBA...)."""
    out_a: list[float] = []
    out_b: list[float] = []
    for i in range(blocks):
        if i % 2 == 0:
            out_a += a()
            out_b += b()
        else:
            out_b += b()
            out_a += a()
    return out_a, out_b


def _block_medians(values: list[float], blocks: int) -> list[float]:
    """The median of each of ``blocks`` equal, consecutive blocks of ``values``."""
    return [float(m) for m in np.median(np.reshape(values, (blocks, -1)), axis=1)]


def check_stage_overhead(*, blocks: int, repeats_per_block: int, device: str = "cpu",
                         n_stages: int = NOOP_STAGES) -> CheckResult:
    """Per stage call: (median harness repeat - median bare repeat) / n_stages, over the
    same ``n_stages`` no-op functions. The harness repeat is :func:`harness_repeat` (timer
    begin/end, execute_mode, run_stages, synchronize); the bare one a loop calling the
    functions; both under inference_mode and timed from outside with perf_counter_ns."""
    fns = [_noop] * n_stages
    pipeline = _pipeline_of([Stage(f"noop{i}", fn) for i, fn in enumerate(fns)], device)
    timer = make_stage_timer(device)
    value = {"x": torch.zeros(1, device=device)}  # a pipeline's output is a dict of streams
    clock = time.perf_counter_ns

    def harness_block() -> list[float]:
        out = []
        for _ in range(repeats_per_block):
            start = clock()
            harness_repeat(pipeline, value, timer, device)
            out.append(clock() - start)
        return out

    def bare_block() -> list[float]:
        out = []
        for _ in range(repeats_per_block):
            start = clock()
            with torch.inference_mode():
                v = value
                for fn in fns:
                    v = fn(v)
                synchronize(device)
            out.append(clock() - start)
        return out

    _interleaved(2, harness_block, bare_block)  # warm-up
    harness_ns, bare_ns = _interleaved(blocks, harness_block, bare_block)
    h_us, b_us = float(np.median(harness_ns)) / 1e3, float(np.median(bare_ns)) / 1e3
    per_call_us = (h_us - b_us) / n_stages
    return CheckResult(
        "overhead per stage call", per_call_us, "us", _bound_text(STAGE_OVERHEAD_BOUND_US, "us"),
        per_call_us <= STAGE_OVERHEAD_BOUND_US,
        f"{timer.source} timer; repeat of {n_stages} no-op stages: harness median {h_us:.2f} us, "
        f"bare loop median {b_us:.2f} us, over {len(harness_ns)} repeats each in {blocks} alternating blocks")


def _sampler_backend(device: str):
    if device.startswith("cuda"):
        from ..measure.gpu import open_sampler_backend

        return open_sampler_backend(device)
    return CpuBackend()


def check_sampler_overhead(*, blocks: int, repeats_per_block: int, device: str = "cpu",
                           hz: float = DEFAULT_SAMPLER_HZ, scale: str = SAMPLER_SCALE,
                           clip_s: float = SAMPLER_CLIP_S, warmup: int = 3) -> CheckResult:
    """Total latency of the reference pipeline with the sampler running at ``hz`` over that
    with no sampler, in blocks that alternate on and off (a fresh Sampler thread per
    on-block, over one backend). Paired by block, as the comparisons of interleaved cases
    are: the ratio is the median over block pairs of median(on) / median(off), with its 95%
    bootstrap CI over the pairs, so what the machine does between pairs cancels."""
    pipeline = _reference(scale, device)
    clip = _clip_on(pipeline, clip_s, device)
    timer = make_stage_timer(device)
    backend = _sampler_backend(device)
    readings: list[int] = []
    on_s: list[float] = []
    errors: set[str] = set()

    def block() -> list[float]:
        return [harness_repeat(pipeline, clip, timer, device)[0] for _ in range(repeats_per_block)]

    def on_block() -> list[float]:
        sampler = Sampler(backend, hz)
        sampler.start()
        start = time.perf_counter()
        try:
            out = block()
        finally:
            on_s.append(time.perf_counter() - start)
            sampler.stop()
        readings.append(len({t for t, _, _ in sampler.take_timeline()}))
        errors.update(sampler.errors)
        return out

    try:
        for _ in range(warmup):
            harness_repeat(pipeline, clip, timer, device)
        on_ms, off_ms = _interleaved(blocks, on_block, block)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    ratio, low, high = paired_ratio_ci(_block_medians(off_ms, blocks), _block_medians(on_ms, blocks))
    conclusive = 1 - SAMPLER_BOUND <= low and high <= 1 + SAMPLER_BOUND
    source = getattr(backend, "util_source", "?")
    fallback = getattr(backend, "fallback_reason", None)
    return CheckResult(
        "sampler overhead", ratio, "x (on/off)", f"1 ± {SAMPLER_BOUND:g}", abs(ratio - 1) <= SAMPLER_BOUND,
        f"reference {scale}, {clip_s:g} s clip, total latency: sampler on ({source}, {hz:g} Hz) median "
        f"{np.median(on_ms):.3f} ms, off {np.median(off_ms):.3f} ms; 95% CI [{low:.4f}, {high:.4f}]"
        f"{'' if conclusive else ' (wider than the bound: more blocks would settle it)'}; "
        f"{len(on_ms)} repeats each in {blocks} alternating blocks, paired by block; the sampler took "
        f"{sum(readings)} readings in the {sum(on_s):.1f} s it ran" + (f"; {fallback}" if fallback else "")
        + (f"; backend errors: {'; '.join(sorted(errors))}" if errors else ""))


# ---------------------------------------------------------------------------------------
# GPU utilisation source

GPM_MIN_CAPABILITY = (9, 0)


def check_gpm_presence(backend, capability: tuple[int, int]) -> CheckResult:
    """GPM SM activity must be the utilisation source on Hopper (compute capability 9.0) and
    newer; older GPUs have no GPM and pass with utilization.gpu (named as such)."""
    source = getattr(backend, "util_source", None)
    bound = f"gpm_sm on compute capability >= {GPM_MIN_CAPABILITY[0]}.{GPM_MIN_CAPABILITY[1]}"
    cc = f"{capability[0]}.{capability[1]}"
    if source == "gpm_sm":
        return CheckResult("GPM utilisation source", source, "", bound, True, f"compute capability {cc}")
    reason = getattr(backend, "gpm_unsupported_reason", None) or getattr(backend, "fallback_reason", None)
    if tuple(capability) < GPM_MIN_CAPABILITY and source == "nvml_gpu":
        return CheckResult("GPM utilisation source", source, "", bound, True,
                           f"compute capability {cc} has no GPM; util_pct is utilization.gpu (kernel-busy time)")
    return CheckResult("GPM utilisation source", source, "", bound, False,
                       f"compute capability {cc}, util_source {source}: {reason or 'no reason given'}")


def check_gpm_presence_on(device: str) -> CheckResult:
    backend = _sampler_backend(device)
    try:
        capability = torch.cuda.get_device_capability(torch.device(device))
        return check_gpm_presence(backend, capability)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
