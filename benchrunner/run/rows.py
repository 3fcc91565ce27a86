"""Building samples.csv rows for one repeat: every stage, then ``total``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store.results import HARNESS_STAGES, OK, QUALITY_STREAMS_KEY, SCHEMA_VERSION, TOTAL_STAGE, now_iso
from .cases import Case


@dataclass
class RepeatMeasurement:
    """What one measured repeat produced; ``None`` fields were not measured."""

    repeat: int
    status: str = OK
    error: str = ""
    total_ms: float | None = None
    stage_ms: dict[str, float] | None = None
    peak_mem_bytes: int | None = None
    peak_mem_growth_bytes: int | None = None
    peak_mem_reserved_bytes: int | None = None
    reserved_growth_bytes: int | None = None
    device_mem_bytes: int | None = None
    baseline_mem_bytes: int | None = None
    mem_source: str = ""
    util_mean_pct: float | None = None
    util_p95_pct: float | None = None
    util_samples: int | None = None
    util_source: str = ""
    io_wait_ms: float | None = None
    executed_as: str = ""
    chunks: int | None = None
    retries: int | None = None
    quality_snr_db: float | None = None
    quality_max_abs_err: float | None = None
    output_nonfinite: int | None = None
    quality_streams: list[dict] | None = None  # per output stream; written to quality.csv, not samples.csv
    accuracy: dict[str, Any] | None = None   # the accuracy_* columns (see quality.accuracy_columns)
    variant: dict[str, Any] | None = None    # the variant_* columns: the worker's build report
    input: str = ""
    timer_source: str = ""
    started_at: str = ""


def case_columns(case: Case) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "run_id": case.run_id, "case_id": case.case_id, "suite": case.suite,
        "pipeline": case.pipeline, "variant": case.variant, "mode": case.mode.kind,
        "threshold_s": case.mode.threshold_s, "clip_s": case.clip_s, "device": case.device,
    }


def repeat_rows(case: Case, stages: list[str], m: RepeatMeasurement) -> list[dict[str, Any]]:
    """One row per stage (its own latency when the repeat succeeded) and a ``total`` row that
    carries the end-to-end figures: memory, utilisation, input wait, chunks, quality."""
    base = {**case_columns(case), "repeat": m.repeat, "status": m.status, "error": m.error,
            "executed_as": m.executed_as, "input": m.input, "timer_source": m.timer_source,
            "started_at": m.started_at}
    ok = m.status == OK
    rows = [{**base, "stage": stage, "latency_ms": (m.stage_ms or {}).get(stage) if ok else None}
            for stage in stages + harness_stages(m.stage_ms)]
    rows.append({
        **base, "stage": TOTAL_STAGE, "latency_ms": m.total_ms if ok else None,
        "peak_mem_bytes": m.peak_mem_bytes, "peak_mem_growth_bytes": m.peak_mem_growth_bytes,
        "peak_mem_reserved_bytes": m.peak_mem_reserved_bytes, "reserved_growth_bytes": m.reserved_growth_bytes,
        "device_mem_bytes": m.device_mem_bytes, "baseline_mem_bytes": m.baseline_mem_bytes,
        "mem_source": m.mem_source, "util_mean_pct": m.util_mean_pct, "util_p95_pct": m.util_p95_pct,
        "util_samples": m.util_samples, "util_source": m.util_source, "io_wait_ms": m.io_wait_ms,
        "chunks": m.chunks, "retries": m.retries, "quality_snr_db": m.quality_snr_db,
        "quality_max_abs_err": m.quality_max_abs_err, "output_nonfinite": m.output_nonfinite,
        **({QUALITY_STREAMS_KEY: m.quality_streams} if m.quality_streams else {}),
        **(m.accuracy or {}), **(m.variant or {}),
    })
    return rows


UTIL_SOURCE_CASE_LEVEL = "nvml_gpu_case"  # a repeat shorter than NVML's sample period: the case's figure


def apply_case_level_util(rows: list[dict[str, Any]], figure: dict[str, Any] | None) -> None:
    """Fill the ``total`` rows labelled ``nvml_gpu_case`` with the case-level utilisation
    (mean, p95, samples over all the case's measured repeats); blank when there was none."""
    for row in rows:
        if row.get("stage") == TOTAL_STAGE and row.get("util_source") == UTIL_SOURCE_CASE_LEVEL and figure:
            row.update(util_mean_pct=figure["mean"], util_p95_pct=figure["p95"], util_samples=figure["samples"])


def harness_stages(stage_ms: dict[str, float] | None) -> list[str]:
    """The harness's own rows (``split``, ``merge``) that this repeat timed: chunked execution only."""
    return [stage for stage in HARNESS_STAGES if stage in (stage_ms or {})]


def failure_rows(case: Case, stages: list[str], repeat: int, status: str, error: str) -> list[dict[str, Any]]:
    """Rows for a repeat the worker could not report itself (timeout, crash)."""
    return repeat_rows(case, stages, RepeatMeasurement(repeat=repeat, status=status, error=error,
                                                       input=case.input_for(case.warmup + repeat).label,
                                                       started_at=now_iso()))
