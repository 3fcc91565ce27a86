"""The hybrid threshold search: which hybrid@T the data supports, and why.

For each candidate threshold T the expected total time over the suite's clip set is the
sum, over its clip lengths, of the median end-to-end latency (successful repeats) of the
case that T runs at that length. Two sources (``source``):

* "hybrid": the measured hybrid@T cases, one candidate per threshold in the run;
* "composition": single and chunked cases composed, single for clip_s <= T, chunked
  above; one candidate per clip length (any T between two swept lengths is the same plan).

Recommended = the fastest candidate with zero failures, peak memory within the budget and
a worst-clip quality SNR (against the single pass) at or above the bound. The reason says
whether the data separates it from the runner-up: at the clip lengths where the two take
different paths, stats.geometric_mean_ratio of runner-up / recommended with its bootstrap
CI; where they take the same path everywhere, they cannot be told apart.

The memory model (stats.fit_power_law) fits peak memory against clip length for single
passes and answers: the longest clip one single pass can take on a GPU of M GB with a
safety margin. Pure: no I/O, no printing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..store.results import INPUT_ERROR, OK, TOTAL_STAGE, pipeline_failed
from . import stats

GIB = 2.0**30
SOURCES = ("auto", "hybrid", "composition")


@dataclass(frozen=True)
class ThresholdRow:
    threshold_s: float
    total_time_ms: float | None       # sum over clip lengths of median latency; None when one is missing
    failures: int                     # failed end-to-end repeats over the clip set
    runs: int                         # end-to-end repeats over the clip set
    peak_mem_bytes: float | None      # max over the clip set (summary.csv peak_mem_bytes)
    quality_snr_db: float | None      # worst (lowest) over clips; None when not measured
    eligible: bool
    why_not: str
    paths: str = ""                   # what ran at each clip length, e.g. "single <= 30 s < chunked"
    label: str = ""                   # hybrid@30, or "single <= 30 s" for a composition


@dataclass(frozen=True)
class TuneResult:
    rows: list[ThresholdRow]
    recommended: float | None
    runner_up: float | None
    reason: str
    memory_model: dict | None         # fit parameters, residuals, max_single_clip_s for the GPU size
    source: str = "hybrid"
    clip_lengths_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    memory_budget_bytes: float | None = None
    min_snr_db: float | None = None


@dataclass(frozen=True)
class _Candidate:
    threshold_s: float
    label: str
    cases: dict[float, pd.DataFrame]  # clip_s -> end-to-end rows of the case run at that length
    keys: dict[float, tuple]          # clip_s -> (mode, threshold_s) of that case


def tune_threshold(samples: pd.DataFrame, summary: pd.DataFrame | None, *, memory_budget_bytes: float | None,
                   min_snr_db: float | None, gpu_memory_gb: float | None = None, safety_margin: float = 0.1,
                   variant: str | None = None, source: str = "auto", min_effect: float = 0.02,
                   seed: int = 0) -> TuneResult:
    """Rank the candidate thresholds of ``samples`` (one variant) and recommend one.

    ``summary`` gives each case's peak memory and quality (median SNR) as summary.csv has
    them; ``memory_budget_bytes`` / ``min_snr_db`` None mean no such bound.
    """
    totals = _totals(samples, variant)
    clips = sorted(float(c) for c in totals["clip_s"].unique())
    source = _pick_source(totals, source)
    candidates = _candidates(totals, clips, source)
    figures = _case_figures(summary, totals)
    rows = [_threshold_row(c, clips, figures, memory_budget_bytes, min_snr_db) for c in candidates]
    ranked = sorted((r for r in rows if r.eligible), key=lambda r: r.total_time_ms)
    recommended = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    by_t = {c.threshold_s: c for c in candidates}
    reason = _reason(rows, recommended, runner_up, by_t, clips, memory_budget_bytes, min_snr_db,
                     min_effect, seed)
    model, notes = memory_model(totals, gpu_memory_gb=gpu_memory_gb, safety_margin=safety_margin)
    notes = [_source_note(source, totals), *notes, *_model_vs_choice(model, recommended)]
    return TuneResult(rows, recommended.threshold_s if recommended else None,
                      runner_up.threshold_s if runner_up else None, reason, model, source, clips, notes,
                      memory_budget_bytes, min_snr_db)


def tune_run(ref: str | Path | None, results_dir: Path = Path("results"), *, memory_budget_gb: float | None = None,
             min_snr_db: float | None = 30.0, gpu_memory_gb: float | None = None, safety_margin: float = 0.1,
             variant: str | None = None, source: str = "auto") -> TuneResult:
    """tune_threshold on a run folder (default: the latest run). Without ``memory_budget_gb``
    the suite's peak_memory_gb budget (the strictest one for all clip lengths) is used."""
    from ..store.results import read_summary
    from ..store.runs import load_run

    check_tune_options(memory_budget_gb=memory_budget_gb, min_snr_db=min_snr_db, gpu_memory_gb=gpu_memory_gb,
                       safety_margin=safety_margin)
    data = load_run(ref, results_dir)
    summary = read_summary(data.path) if (data.path / "summary.csv").is_file() else None
    budget_gb, budget_from = (memory_budget_gb, "--memory-budget-gb") if memory_budget_gb is not None \
        else (_suite_memory_budget_gb(data.manifest), "the suite's peak_memory_gb budget")
    result = tune_threshold(data.samples, summary, memory_budget_bytes=None if budget_gb is None else budget_gb * GIB,
                            min_snr_db=min_snr_db, gpu_memory_gb=gpu_memory_gb, safety_margin=safety_margin,
                            variant=variant, source=source)
    budget_note = f"memory budget {budget_gb:g} GiB from {budget_from}" if budget_gb is not None else \
        "no memory budget (fix: --memory-budget-gb, or peak_memory_gb in the suite's budgets)"
    return replace(result, notes=[f"run: {data.run_id} ({data.path})", budget_note, *result.notes])


def check_tune_options(*, memory_budget_gb: float | None, min_snr_db: float | None, gpu_memory_gb: float | None,
                       safety_margin: float) -> None:
    """Bad option values are bad input before anything is read: sizes positive and finite,
    the SNR bound a finite number of dB, the safety margin a fraction in [0, 1)."""
    def finite(value) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    for option, value in (("--memory-budget-gb", memory_budget_gb), ("--gpu-memory-gb", gpu_memory_gb)):
        if value is not None and not (finite(value) and value > 0):
            raise UserError(f"{option}: {value:g} is not valid (expected a positive size in GiB, e.g. 80)")
    if min_snr_db is not None and not finite(min_snr_db):
        raise UserError(f"--min-snr-db: {min_snr_db:g} is not valid (expected a finite number of dB, e.g. 30; "
                        "--no-quality-bound drops the bound)")
    if not (finite(safety_margin) and 0.0 <= safety_margin < 1.0):
        raise UserError(f"--safety-margin: {safety_margin:g} is not valid (expected a fraction in [0, 1), e.g. 0.1)")


def _suite_memory_budget_gb(manifest: dict) -> float | None:
    from .budgets import budgets_from_manifest

    limits = [b.limit for b in budgets_from_manifest(manifest)
              if b.metric == "peak_memory_gb" and b.clip_s is None and (b.mode is None or b.mode.startswith("hybrid"))]
    return min(limits) if limits else None


# --- candidates ---------------------------------------------------------------------------

def _totals(samples: pd.DataFrame, variant: str | None) -> pd.DataFrame:
    totals = samples[samples["stage"] == TOTAL_STAGE]
    variants = [str(v) for v in totals["variant"].dropna().unique()]
    if variant is None and len(variants) > 1:
        raise UserError(f"--variant: the run has variants {', '.join(variants)}; the threshold is tuned for one "
                        f"(expected e.g. --variant {variants[0]})")
    if variant is not None:
        if variant not in variants:
            raise UserError(f"--variant: {variant!r} is not in the run (expected one of {', '.join(variants)})")
        totals = totals[totals["variant"] == variant]
    if totals.empty:
        raise UserError("samples: no end-to-end (stage total) rows to tune on (expected a run with cases)")
    return totals


def _pick_source(totals: pd.DataFrame, source: str) -> str:
    if source not in SOURCES:
        raise UserError(f"--source: {source!r} is not valid (expected one of {', '.join(SOURCES)})")
    modes = set(totals["mode"].dropna())
    has_hybrid, has_pair = "hybrid" in modes, {"single", "chunked"} <= modes
    if source == "auto":
        source = "hybrid" if has_hybrid else "composition"
    if source == "hybrid" and not has_hybrid:
        raise UserError("modes: the run has no hybrid@T case (expected a run of suites/threshold.toml, "
                        "or --source composition with single and chunked cases)")
    if source == "composition" and not has_pair:
        raise UserError(f"modes: tuning needs hybrid@T cases, or both single and chunked cases; the run has "
                        f"{', '.join(sorted(modes))} (expected e.g. modes = [\"single\", \"chunked\", \"hybrid\"])")
    return source


def _candidates(totals: pd.DataFrame, clips: list[float], source: str) -> list[_Candidate]:
    if source == "hybrid":
        hybrid = totals[totals["mode"] == "hybrid"]
        thresholds = sorted(float(t) for t in hybrid["threshold_s"].dropna().unique())
        return [_candidate(totals, clips, t, f"hybrid@{t:g}", {c: ("hybrid", t) for c in clips})
                for t in thresholds]
    plans = {t: {c: ("single", None) if c <= t else ("chunked", None) for c in clips} for t in clips}
    return [_candidate(totals, clips, t, f"single <= {t:g} s", plan) for t, plan in plans.items()]


def _candidate(totals: pd.DataFrame, clips: list[float], threshold_s: float, label: str,
               plan: dict[float, tuple]) -> _Candidate:
    cases = {}
    for clip_s, (mode, t) in plan.items():
        rows = totals[(totals["mode"] == mode) & np.isclose(totals["clip_s"].astype(float), clip_s)]
        if t is not None:
            rows = rows[np.isclose(rows["threshold_s"].astype(float), t)]
        cases[clip_s] = rows
    return _Candidate(threshold_s, label, cases, plan)


# --- one candidate's figures ----------------------------------------------------------------

def _case_figures(summary: pd.DataFrame | None, totals: pd.DataFrame) -> dict[str, tuple]:
    """case_id -> (peak_mem_bytes, quality_snr_db) from summary.csv's end-to-end rows."""
    if summary is None or summary.empty:
        return {}
    rows = summary[summary["stage"] == TOTAL_STAGE]
    rows = rows[rows["case_id"].isin(set(totals["case_id"]))]
    return {str(r.case_id): (_num(r.peak_mem_bytes), _num(r.quality_snr_db)) for r in rows.itertuples()}


def _threshold_row(c: _Candidate, clips: list[float], figures: dict[str, tuple],
                   budget_bytes: float | None, min_snr_db: float | None) -> ThresholdRow:
    medians, problems = {}, []
    failures = runs = 0
    for clip_s in clips:
        rows = c.cases[clip_s]
        ok = pd.to_numeric(rows.loc[rows["status"] == OK, "latency_ms"], errors="coerce").dropna()
        failures += int(rows["status"].map(pipeline_failed).sum())  # an unreadable input is not the mode's
        runs += int((rows["status"] != INPUT_ERROR).sum())
        if rows.empty:
            problems.append(f"not run at {clip_s:g} s")
        elif ok.empty:
            problems.append(f"no successful repeat at {clip_s:g} s")
        else:
            medians[clip_s] = float(ok.median())
    if failures:
        problems.insert(0, f"{failures} failure(s) ({_failure_kinds(c, clips)})")
    nonfinite = _nonfinite_repeats(c, clips)
    if nonfinite:
        problems.insert(0, f"{nonfinite} repeat(s) with NaN/inf outputs")
    peak, snr = _peak_and_quality(c, clips, figures)
    problems += _bound_problems(peak, snr, budget_bytes, min_snr_db)
    total = sum(medians.values()) if len(medians) == len(clips) else None
    return ThresholdRow(c.threshold_s, total, failures, runs, peak, snr, not problems, "; ".join(problems),
                        _paths(c, clips), c.label)


def _nonfinite_repeats(c: _Candidate, clips: list[float]) -> int:
    """Repeats whose output held a NaN or inf (never eligible, whatever their latency)."""
    counts = [pd.to_numeric(c.cases[clip_s].get("output_nonfinite"), errors="coerce") for clip_s in clips
              if "output_nonfinite" in c.cases[clip_s]]
    return int(sum((values.fillna(0) > 0).sum() for values in counts))


def _failure_kinds(c: _Candidate, clips: list[float]) -> str:
    found = []
    for clip_s in clips:
        rows = c.cases[clip_s]
        for status in sorted(set(rows.loc[rows["status"] != OK, "status"])):
            found.append(f"{status} at {clip_s:g} s")
    return ", ".join(found)


def _peak_and_quality(c: _Candidate, clips: list[float], figures: dict[str, tuple]):
    peaks, snrs = [], []
    for clip_s in clips:
        for case_id in set(c.cases[clip_s]["case_id"]):
            peak, snr = figures.get(str(case_id), (None, None))
            peaks += [peak] if peak is not None else []
            snrs += [snr] if snr is not None else []
    return (max(peaks) if peaks else None), (min(snrs) if snrs else None)


def _bound_problems(peak: float | None, snr: float | None, budget_bytes: float | None,
                    min_snr_db: float | None) -> list[str]:
    problems = []
    if budget_bytes is not None:
        if peak is None:
            problems.append("peak memory not measured")
        elif peak > budget_bytes:
            problems.append(f"peak {peak / GIB:.3g} GiB > budget {budget_bytes / GIB:.3g} GiB")
    if min_snr_db is not None and snr is not None and snr < min_snr_db:
        problems.append(f"SNR {snr:.1f} dB < {min_snr_db:g} dB")
    return problems


def _paths(c: _Candidate, clips: list[float]) -> str:
    """What ran at each clip length, compressed: "single 20-30 s, chunked 32-40 s"."""
    runs: list[list] = []
    for clip_s in clips:
        path = _path_at(c, clip_s)
        if runs and runs[-1][0] == path:
            runs[-1][2] = clip_s
        else:
            runs.append([path, clip_s, clip_s])
    return ", ".join(f"{p} {lo:g} s" if lo == hi else f"{p} {lo:g}-{hi:g} s" for p, lo, hi in runs)


# --- the reason -----------------------------------------------------------------------------

def _reason(rows: list[ThresholdRow], rec: ThresholdRow | None, up: ThresholdRow | None,
            by_t: dict[float, _Candidate], clips: list[float], budget_bytes: float | None,
            min_snr_db: float | None, min_effect: float, seed: int) -> str:
    excluded = [f"{r.label} ({r.why_not})" for r in rows if not r.eligible]
    if rec is None:
        return "no threshold is eligible: " + "; ".join(excluded)
    parts = [f"{rec.label}: the fastest of {sum(r.eligible for r in rows)} eligible candidate(s), "
             f"{rec.total_time_ms:.1f} ms over the clip set ({', '.join(f'{c:g}' for c in clips)} s), "
             f"0 failures in {rec.runs} repeats, {_bounds_text(rec, budget_bytes, min_snr_db)}."]
    if up is not None:
        gap = up.total_time_ms / rec.total_time_ms - 1.0
        parts.append(f"Runner-up {up.label}: {up.total_time_ms:.1f} ms ({gap:+.1%}). "
                     + _separation(by_t[rec.threshold_s], by_t[up.threshold_s], rec, up, clips, min_effect, seed))
    if len(rows) == 1:
        parts.append("It is the only candidate in the run (fix: sweep thresholds, e.g. suites/threshold.toml).")
    if excluded:
        parts.append("Not eligible: " + "; ".join(excluded) + ".")
    return " ".join(parts)


def _bounds_text(row: ThresholdRow, budget_bytes: float | None, min_snr_db: float | None) -> str:
    peak = "peak memory not measured" if row.peak_mem_bytes is None else f"peak {row.peak_mem_bytes / GIB:.3g} GiB"
    peak += f" <= budget {budget_bytes / GIB:.3g} GiB" if budget_bytes is not None else " (no memory budget)"
    if row.quality_snr_db is None:
        snr = "quality not measured (single passes only, or no single reference)"
    else:
        snr = f"worst SNR {row.quality_snr_db:.1f} dB" + (f" >= {min_snr_db:g} dB" if min_snr_db is not None
                                                          else " (no quality bound)")
    return f"{peak}, {snr}"


def _separation(rec_c: _Candidate, up_c: _Candidate, rec: ThresholdRow, up: ThresholdRow, clips: list[float],
                min_effect: float, seed: int) -> str:
    """Does the data separate recommended from runner-up? Only clips where their paths differ count."""
    differ = [c for c in clips if _path_at(rec_c, c) != _path_at(up_c, c)]
    if not differ:
        return (f"They take the same path at every swept clip length ({rec.paths}), so the data cannot separate "
                f"them: the gap is run-to-run noise. Fix: add clip lengths between "
                f"{min(rec.threshold_s, up.threshold_s):g} and {max(rec.threshold_s, up.threshold_s):g} s.")
    pairs = [(_ok_latency(rec_c.cases[c]), _ok_latency(up_c.cases[c])) for c in differ]
    where = ", ".join(f"{c:g}" for c in differ)
    if any(min(len(a), len(b)) < 2 for a, b in pairs):
        return f"Too few successful repeats at {where} s to test the difference (fix: more repeats)."
    ratio, low, high = stats.geometric_mean_ratio(pairs, seed=seed)
    significant = (low > 1.0 or high < 1.0) and abs(ratio - 1.0) >= min_effect
    verdict = ("the recommended one is significantly faster there" if significant and ratio > 1 else
               "the difference is not significant: the data supports either (fix: more repeats)")
    return (f"Where their paths differ ({where} s), runner-up / recommended = {ratio:.3f} "
            f"[{low:.3f}, {high:.3f}] (95% bootstrap CI): {verdict}.")


def _path_at(c: _Candidate, clip_s: float) -> str:
    rows = c.cases[clip_s]
    return "+".join(sorted({str(v) for v in rows.loc[rows["status"] == OK, "executed_as"].dropna()
                            if str(v)})) or "?"


def _ok_latency(rows: pd.DataFrame) -> np.ndarray:
    values = pd.to_numeric(rows.loc[rows["status"] == OK, "latency_ms"], errors="coerce")
    return values.dropna().to_numpy(dtype=float)


def _source_note(source: str, totals: pd.DataFrame) -> str:
    if source == "hybrid":
        return "expected total time: measured hybrid@T cases (median end-to-end latency per clip length, summed)"
    return ("expected total time: composed from single (clip_s <= T) and chunked (above) cases, median "
            "end-to-end latency per clip length, summed; T between two swept lengths gives the same plan")


# --- the memory model -------------------------------------------------------------------------

def memory_model(totals: pd.DataFrame, *, gpu_memory_gb: float | None,
                 safety_margin: float = 0.1) -> tuple[dict | None, list[str]]:
    """Fit peak memory against clip length for single passes (stats.fit_power_law on the
    largest peak of the successful single repeats at each length) and solve for the longest
    clip whose predicted peak stays under (1 - safety_margin) x the GPU's memory."""
    if not 0.0 <= safety_margin < 1.0:
        raise UserError(f"--safety-margin: {safety_margin:g} is not valid (expected a fraction in [0, 1), e.g. 0.1)")
    points = _single_peaks(totals)
    if len(points) < 3:
        return None, [f"memory model: needs single-pass peaks at >= 3 clip lengths, the run has {len(points)} "
                      "(fix: run single mode at more clip lengths)"]
    with warnings.catch_warnings():  # scipy warns that 3 points leave no covariance; a note says so
        warnings.simplefilter("ignore")
        fit = stats.fit_power_law(list(points), list(points.values()))
    gpu_bytes, gpu_from = _gpu_bytes(totals, gpu_memory_gb)
    model = _model_dict(fit, points, totals) | {"gpu_memory_bytes": gpu_bytes, "gpu_memory_from": gpu_from,
                                                "safety_margin": safety_margin}
    notes = [] if len(points) > 3 else [
        "memory model: 3 parameters fitted to 3 clip lengths, so the residuals are 0 by construction and say "
        "nothing (fix: single mode at >= 5 clip lengths)"]
    if gpu_bytes is None:
        return model, notes + ["memory model: no GPU size (fix: --gpu-memory-gb M) so no longest single clip"]
    longest = fit.solve_for_x((1.0 - safety_margin) * gpu_bytes)
    model["max_single_clip_s"] = None if longest is None or math.isinf(longest) else float(longest)
    model["extrapolated"] = bool(longest is not None and longest > max(points))
    return model, notes + _model_notes(model, longest, max(points))


def _model_dict(fit: stats.PowerFit, points: dict[float, float], totals: pd.DataFrame) -> dict:
    return {
        "formula": "peak_mem_bytes = c + a * clip_s ** p",
        "method": "stats.fit_power_law (bounded least squares) on the max peak of ok single repeats per clip length",
        "c_bytes": fit.c, "a": fit.a, "p": fit.p, "r_squared": fit.r_squared,
        "points": [{"clip_s": c, "peak_mem_bytes": y, "predicted_bytes": float(fit.predict(c)), "residual_bytes": r}
                   for (c, y), r in zip(points.items(), fit.residuals)],
        "mem_source": "+".join(sorted({str(v) for v in totals["mem_source"].dropna() if str(v)})),
        "max_single_clip_s": None, "extrapolated": False, "single_failed_at_s": _single_failures(totals),
    }


def _single_peaks(totals: pd.DataFrame) -> dict[float, float]:
    ok = totals[(totals["status"] == OK) & (totals["mode"] == "single")]
    if ok.empty:  # fall back to hybrid cases that ran a single pass
        ok = totals[(totals["status"] == OK) & (totals["executed_as"] == "single")]
    peaks = pd.to_numeric(ok["peak_mem_bytes"], errors="coerce")
    grouped = peaks.groupby(ok["clip_s"].astype(float)).max().dropna()
    return {float(c): float(v) for c, v in grouped.sort_index().items()}


def _single_failures(totals: pd.DataFrame) -> list[float]:
    failed = totals[(totals["status"] != OK) & (totals["mode"] == "single")]
    return sorted(float(c) for c in failed["clip_s"].unique())


def _gpu_bytes(totals: pd.DataFrame, gpu_memory_gb: float | None) -> tuple[float | None, str | None]:
    if gpu_memory_gb is not None:
        if gpu_memory_gb <= 0:
            raise UserError(f"--gpu-memory-gb: {gpu_memory_gb:g} is not valid (expected a positive size, e.g. 80)")
        return gpu_memory_gb * GIB, "given"
    device = pd.to_numeric(totals["device_mem_bytes"], errors="coerce").dropna()
    return (float(device.max()), "device_mem_bytes of the run") if len(device) else (None, None)


def _model_notes(model: dict, longest: float | None, max_clip_s: float) -> list[str]:
    gpu_gib, margin = model["gpu_memory_bytes"] / GIB, model["safety_margin"]
    if longest is None:
        return [f"memory model: even a 0 s clip is predicted over {1 - margin:.0%} of {gpu_gib:.3g} GiB"]
    if math.isinf(longest):
        return ["memory model: fitted peak does not grow with clip length; no single-pass limit found"]
    notes = [f"memory model: a single pass fits clips up to {longest:.1f} s on {gpu_gib:.3g} GiB with a "
             f"{margin:.0%} margin (adaptive threshold)"]
    if longest > max_clip_s:
        notes.append(f"memory model: {longest:.1f} s is extrapolated beyond the longest measured single pass "
                     f"({max_clip_s:g} s)")
    if "rss" in (model["mem_source"] or ""):
        notes.append("memory model: peaks are the worker's absolute RSS on CPU (peak_mem_bytes, schema 2: they "
                     "include the Python and torch baseline; peak_mem_growth_bytes is the growth alone)")
    failed = [c for c in model["single_failed_at_s"] if c <= longest]
    if failed:
        notes.append(f"memory model: single passes failed at {', '.join(f'{c:g}' for c in failed)} s although "
                     "the model says they fit: trust the failures")
    return notes


def _model_vs_choice(model: dict | None, rec: ThresholdRow | None) -> list[str]:
    if model is None or rec is None or model.get("max_single_clip_s") is None:
        return []
    if rec.threshold_s > model["max_single_clip_s"]:
        return [f"the recommended threshold {rec.threshold_s:g} s is above the {model['max_single_clip_s']:.1f} s "
                "the memory model allows a single pass on that GPU"]
    return []


def _num(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
