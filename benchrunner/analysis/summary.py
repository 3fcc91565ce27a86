"""summary.csv: one row per case x stage, computed from samples.csv only."""

from __future__ import annotations

import math

import pandas as pd

from ..store.results import CASE_KEY, FAILURE_KINDS, INPUT_ERROR, OK, TOTAL_STAGE, pipeline_failed
from .stats import describe

SUMMARY_COLUMNS = [
    "run_id", "case_id", "suite", "pipeline", "variant", "mode", "threshold_s", "clip_s", "stage", "executed_as",
    "n", "n_total", "failures", "failure_rate", *[f"n_{kind}" for kind in FAILURE_KINDS], "n_input_error",
    "latency_p10_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms",
    "latency_min_ms", "latency_max_ms", "latency_cv", "throughput_clips_per_s", "rtf",
    "peak_mem_bytes", "peak_mem_growth_bytes", "peak_mem_reserved_bytes", "reserved_growth_bytes",
    "device_mem_bytes", "mem_source",
    "util_mean_pct", "util_p95_pct", "util_source", "io_wait_mean_ms", "chunks", "retries",
    "quality_snr_db", "quality_max_abs_err", "accuracy_reference", "accuracy_snr_db", "accuracy_max_abs_err",
    "accuracy_mean_abs_err", "accuracy_argmax_agree_pct", "variant_backend", "variant_param_bytes",
    "variant_file_bytes", "variant_setup_ms", "device", "output_nonfinite",
]


def summarise(samples: pd.DataFrame) -> pd.DataFrame:
    """Per case and stage: latency percentiles (blank where n cannot support them), failures
    by kind with counts, throughput (clips/s = 1000 / mean total latency), real-time factor
    (median latency / clip length), peak memory (max over repeats), utilisation (mean of the
    repeats' means, max of their p95s), chunks, retries, quality (median SNR, max error),
    accuracy against the reference variant (median SNR, max of the max errors, mean of the
    mean errors, lowest argmax agreement) and the variant's size and set-up cost."""
    if samples.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = [_summarise_group(group) for _, group in samples.groupby(["case_id", "stage"], sort=False)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _summarise_group(group: pd.DataFrame) -> dict:
    first = group.iloc[0]
    ok = group[group["status"] == OK]
    latency = describe(ok["latency_ms"].dropna().to_numpy())
    is_total = first["stage"] == TOTAL_STAGE
    row = {k: first[k] for k in ("run_id", "case_id", "suite", *CASE_KEY, "stage", "device")}
    row.update(
        executed_as=_join(ok["executed_as"]), n=latency.n, n_total=len(group),
        **_failure_figures(group["status"]),
        latency_p10_ms=latency.p10, latency_p50_ms=latency.p50, latency_p90_ms=latency.p90,
        latency_p99_ms=latency.p99, latency_mean_ms=latency.mean, latency_std_ms=latency.std,
        latency_min_ms=latency.minimum, latency_max_ms=latency.maximum, latency_cv=latency.cv,
    )
    if is_total:
        row.update(_total_figures(group, ok, latency.mean, latency.p50, float(first["clip_s"])))
    return row


def _failure_figures(status: pd.Series) -> dict:
    """The pipeline's failures by kind, and its failure rate over the repeats whose input
    loaded: a file that could not be read (input_error) is counted apart, not as the pipeline's."""
    failed = status.map(pipeline_failed)
    loaded = int((status != INPUT_ERROR).sum())
    return {"failures": int(failed.sum()), "failure_rate": float(failed.sum() / loaded) if loaded else None,
            **{f"n_{kind}": int((status == kind).sum()) for kind in FAILURE_KINDS},
            "n_input_error": int((status == INPUT_ERROR).sum())}


def _total_figures(group: pd.DataFrame, ok: pd.DataFrame, mean_ms: float | None, p50_ms: float | None,
                   clip_s: float) -> dict:
    return {
        "throughput_clips_per_s": 1000.0 / mean_ms if mean_ms else None,
        "rtf": (p50_ms / 1000.0) / clip_s if p50_ms is not None and clip_s > 0 else None,
        "peak_mem_bytes": _max(group["peak_mem_bytes"]),
        "peak_mem_growth_bytes": _max(group["peak_mem_growth_bytes"]),
        "peak_mem_reserved_bytes": _max(group["peak_mem_reserved_bytes"]),
        "reserved_growth_bytes": _max(group["reserved_growth_bytes"]),
        "device_mem_bytes": _max(group["device_mem_bytes"]),
        "mem_source": _join(group["mem_source"]),
        "util_mean_pct": _mean(ok["util_mean_pct"]),
        "util_p95_pct": _max(ok["util_p95_pct"]),
        "util_source": _join(group["util_source"]),
        "io_wait_mean_ms": _mean(ok["io_wait_ms"]),
        "chunks": _max(ok["chunks"]),
        "retries": int(group["retries"].fillna(0).sum()),
        "quality_snr_db": _median(ok["quality_snr_db"]),
        "quality_max_abs_err": _max(ok["quality_max_abs_err"]),
        "output_nonfinite": _nonfinite(group),
        "accuracy_reference": _join(ok["accuracy_reference"]),
        "accuracy_snr_db": _median(ok["accuracy_snr_db"]),
        "accuracy_max_abs_err": _max(ok["accuracy_max_abs_err"]),
        "accuracy_mean_abs_err": _mean(ok["accuracy_mean_abs_err"]),
        "accuracy_argmax_agree_pct": _min(ok["accuracy_argmax_agree_pct"]),
        "variant_backend": _join(group["variant_backend"]),
        "variant_param_bytes": _max(group["variant_param_bytes"]),
        "variant_file_bytes": _max(group["variant_file_bytes"]),
        "variant_setup_ms": _max(group["variant_setup_ms"]),
    }


def _nonfinite(group: pd.DataFrame) -> int | None:
    """NaN/inf elements in the outputs, summed over repeats (blank for runs that did not count)."""
    if "output_nonfinite" not in group:
        return None
    values = _values(group["output_nonfinite"])
    return int(values.sum()) if len(values) else None


def _values(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").dropna()


def _max(series: pd.Series) -> float | None:
    values = _values(series)
    return float(values.max()) if len(values) else None


def _min(series: pd.Series) -> float | None:
    values = _values(series)
    return float(values.min()) if len(values) else None


def _mean(series: pd.Series) -> float | None:
    values = _values(series)
    return float(values.mean()) if len(values) else None


def _median(series: pd.Series) -> float | None:
    values = _values(series)
    if not len(values):
        return None
    median = float(values.median())
    return median if not math.isnan(median) else None


def _join(series: pd.Series) -> str:
    values = sorted({str(v) for v in series.dropna() if str(v)})
    return "+".join(values)
