"""Validity warnings about a run's numbers, each with its fix."""

from __future__ import annotations

import pandas as pd

from ..measure.environment import ValidityWarning
from ..measure.nvml_backend import BENIGN_THROTTLE_MASK, is_harmful_throttle, throttle_reason_names
from ..store.results import TOTAL_STAGE
from .stats import min_samples_for

CV_LIMIT = 0.10


def run_warnings(summary: pd.DataFrame) -> list[ValidityWarning]:
    """Noisy cases (coefficient of variation over 10%) and percentiles the sample size cannot support."""
    if summary.empty:
        return []
    totals = summary[summary["stage"] == TOTAL_STAGE]
    found = []
    noisy = totals[pd.to_numeric(totals["latency_cv"], errors="coerce") > CV_LIMIT]
    if len(noisy):
        worst = noisy.sort_values("latency_cv", ascending=False).iloc[0]
        found.append(ValidityWarning(
            "high_cv",
            f"{len(noisy)} case(s) vary by more than {CV_LIMIT:.0%} between repeats "
            f"(worst: {worst['case_id']}, CV {float(worst['latency_cv']):.0%})",
            "add repeats (repeats = 20) or warm-up (warmup = 3), and keep other work off the machine"))
    n_min = int(pd.to_numeric(totals["n"], errors="coerce").min()) if len(totals) else 0
    if n_min < min_samples_for(0.99):
        found.append(ValidityWarning(
            "too_few_samples",
            f"p99 needs at least {min_samples_for(0.99)} samples per case and the smallest case has {n_min}; "
            "p99 is left blank" + (" and so is p90" if n_min < min_samples_for(0.90) else ""),
            f"set repeats >= {min_samples_for(0.99)} where tail latency matters"))
    return found + nonfinite_warnings(totals)


def nonfinite_warnings(totals: pd.DataFrame) -> list[ValidityWarning]:
    """Cases whose outputs held NaN or inf: their quality is the worst possible, whatever else reads ok."""
    if "output_nonfinite" not in totals:
        return []
    bad = totals[pd.to_numeric(totals["output_nonfinite"], errors="coerce").fillna(0) > 0]
    if bad.empty:
        return []
    first = bad.iloc[0]
    return [ValidityWarning(
        "nonfinite_output",
        f"{len(bad)} case(s) produced NaN or inf outputs (first: {first['case_id']}, "
        f"{int(float(first['output_nonfinite']))} non-finite elements); their quality is failed "
        "(quality_snr_db -inf) and tune-threshold never recommends them",
        "find the stage that produces them (e.g. a division by a zero-length chunk, or a dtype that overflows)")]


# --- the utilisation sampler and the GPU during a run ----------------------------------

CLOCK_SPREAD_LIMIT = 0.10
THROTTLE_METRIC = "throttle_reasons"
SM_CLOCK_METRIC = "sm_clock_mhz"


def sampler_warnings(backend_errors: list[str], source_changes: list, util_source: str,
                     fallback_reason: str | None) -> list[ValidityWarning]:
    """What the sampler's backend reported: the GPU utilisation source changing meaning
    mid-run (``source_changes``: (read index, new source, reason) from GpuBackend), NVML
    queries that failed (``backend_errors``: GpuBackend.errors plus Sampler.errors), and
    utilisation measured on the CPU because NVML was unavailable (``util_source`` "cpu"
    with a ``fallback_reason``; a CPU run without one is not a fallback)."""
    found = []
    if source_changes:
        index, source, reason = source_changes[0]
        found.append(ValidityWarning(
            "util_source_change",
            f"the GPU utilisation source changed mid-run: from sample {index} on, util_pct is {source} "
            f"({reason}), so util figures before and after it measure different things",
            "compare utilisation only between cases with the same util_source; re-run to get one source "
            "throughout, and check the driver if GPM keeps failing"))
    # Device-matching notes ("device: ...") are about CUDA_DEVICE_ORDER, which
    # environment_warnings already reports; a GPM failure is the source change above.
    failures = [e for e in dict.fromkeys(backend_errors)
                if not e.startswith("device:") and not (source_changes and e.startswith("gpm:"))]
    if failures:
        shown = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
        found.append(ValidityWarning(
            "nvml_query_failed",
            f"{len(failures)} kind(s) of NVML query failed during the run ({shown}); "
            "the metrics they feed are blank, not zero",
            "check that nvidia-smi -q works for this user (NoPermission needs a user allowed to query the GPU) "
            "and that nvidia-ml-py matches the driver"))
    if util_source == "cpu" and fallback_reason:
        found.append(ValidityWarning(
            "util_on_cpu",
            f"utilisation was measured on the CPU, not the GPU: {fallback_reason}",
            "pip install nvidia-ml-py and make sure the worker sees the GPU (nvidia-smi works, the NVIDIA "
            "driver is loaded); until then read util_pct as CPU use"))
    return found


def gpu_run_warnings(timeline: pd.DataFrame) -> list[ValidityWarning]:
    """From the sampler's timeline (columns case_id, repeat, t_ms, metric, value, as
    timeline.csv has them): harmful clock-event ("throttle") reasons in ``throttle_reasons``
    (decoded with nvml_backend; idle and application-clock settings are benign), and a case
    whose SM clock (``sm_clock_mhz``) spread (max - min) exceeds 10% of its median. Only
    readings inside measured repeats count when the timeline says which repeat a reading
    belongs to: between repeats and during warm-up an idle GPU lowers its clock on purpose."""
    if timeline is None or timeline.empty or "metric" not in timeline:
        return []
    frame = timeline
    if "repeat" in frame:
        frame = frame[pd.to_numeric(frame["repeat"], errors="coerce").notna()]
    values = pd.to_numeric(frame["value"], errors="coerce")
    found = []

    throttle = frame[(frame["metric"] == THROTTLE_METRIC) & values.notna()]
    masks = values[throttle.index].astype("int64")
    harmful = throttle[masks.map(is_harmful_throttle)]
    if len(harmful):
        reasons = sorted({name for mask in masks[harmful.index]
                          for name in throttle_reason_names(mask & ~BENIGN_THROTTLE_MASK)})
        cases = harmful["case_id"].nunique() if "case_id" in harmful else 1
        found.append(ValidityWarning(
            "gpu_throttle",
            f"the GPU slowed its clocks for {', '.join(reasons)} in {len(harmful)} of {len(throttle)} "
            f"samples inside repeats ({cases} case(s)), so those timings are of a slowed GPU",
            "cool the GPU and check its power limit (nvidia-smi -q -d PERFORMANCE,POWER,TEMPERATURE); "
            "lock clocks below the throttle point (sudo nvidia-smi -lgc <min>,<max>) and re-run"))

    clocks = frame[(frame["metric"] == SM_CLOCK_METRIC) & values.notna()].assign(value=values)
    if len(clocks):
        by_case = clocks.groupby("case_id")["value"] if "case_id" in clocks else [("run", clocks["value"])]
        spreads = []
        for case_id, series in by_case:
            median = float(series.median())
            if median > 0:
                spreads.append(((float(series.max()) - float(series.min())) / median, case_id,
                                float(series.min()), float(series.max())))
        varying = [s for s in spreads if s[0] > CLOCK_SPREAD_LIMIT]
        if varying:
            spread, case_id, low, high = max(varying)
            found.append(ValidityWarning(
                "clock_change",
                f"the SM clock varied by more than {CLOCK_SPREAD_LIMIT:.0%} during {len(varying)} case(s) "
                f"(worst: {case_id}, {low:.0f}-{high:.0f} MHz, {spread:.0%} of its median), so repeats "
                "ran at different speeds",
                "lock the GPU clocks for benchmarking (sudo nvidia-smi -lgc <mhz>,<mhz>; reset with "
                "nvidia-smi -rgc) and add warm-up (warmup = 3)"))
    return found



def other_process_warnings(other_gpu_pids: list[int]) -> list[ValidityWarning]:
    """Other compute processes seen on the benchmarked GPU during the run."""
    if not other_gpu_pids:
        return []
    shown = ", ".join(str(pid) for pid in other_gpu_pids[:5])
    return [ValidityWarning(
        "gpu_other_process",
        f"{len(other_gpu_pids)} other process(es) used the GPU during the run (pid {shown}), "
        "so they shared its SMs and memory bandwidth with the benchmark",
        "run benchmarks on an idle GPU (check nvidia-smi before starting, or reserve the GPU "
        "with CUDA_VISIBLE_DEVICES and your scheduler)")]


def device_memory_warnings(notes: list[str]) -> list[ValidityWarning]:
    """Why ``device_mem_bytes`` (NVML's figure for the worker) is blank, e.g. a container with
    its own PID namespace, where NVML's host PIDs do not include the worker's own."""
    if not notes:
        return []
    return [ValidityWarning(
        "device_mem_blank",
        f"device_mem_bytes is blank: {notes[0]}" + (f" (and {len(notes) - 1} more note(s))" if len(notes) > 1 else ""),
        "run the container with the host's PID namespace (docker run --pid=host) so NVML's PIDs are the "
        "worker's; peak_mem_bytes (torch's allocator) is measured either way")]


def quality_warnings(problems: list[str]) -> list[ValidityWarning]:
    """Chunked outputs that could not be compared with the single pass (quality left blank)."""
    if not problems:
        return []
    return [ValidityWarning(
        "quality_unavailable",
        f"the quality of {len(problems)} case(s) could not be measured, so quality_snr_db is blank there "
        f"(first: {problems[0]})",
        "make every output stream's length proportional to the input (declare Stream rate_hz in "
        "Pipeline.outputs) so the merged output has the single pass's shape")]


def placement_warnings(samples: pd.DataFrame) -> list[ValidityWarning]:
    """The cases of one variant and clip length are compared with each other (modes side by
    side), so they should have run on one device. The runner keeps each group on one worker;
    this says so when they did not (a worker lost mid-group, its Ray node gone, a resume on
    other workers)."""
    if samples.empty or "worker" not in samples.columns:
        return []
    placed = samples[samples["host"].fillna("").astype(str) != ""]
    devices = placed.assign(where=placed["host"].astype(str) + "/" + placed["gpu"].fillna("").astype(str)
                            + "/" + placed["worker"].fillna("").astype(str))
    mixed = devices.groupby(["variant", "clip_s"])["where"].nunique()
    mixed = mixed[mixed > 1]
    if mixed.empty:
        return []
    shown = ", ".join(f"{variant} {clip_s:g} s" for variant, clip_s in mixed.index[:5])
    return [ValidityWarning(
        "mixed_devices",
        f"the modes of {len(mixed)} clip length(s) ran on more than one worker or device ({shown}), "
        "so comparing them there mixes devices",
        "re-run those clip lengths (bench run --lengths ...) so each runs on one worker, or compare "
        "runs made on one device (--devices cuda:0)")]
