"""Results of compare, tune-threshold and check as Documents (no I/O, no printing)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict
from typing import Any

from . import Column, Document

GIB = 2.0**30
MIB = 2.0**20
_REGRESSION_TONE = {"faster": "good", "slower": "bad", "fewer failures": "good", "more failures": "bad",
                    "no significant change": "muted", "insufficient data": "warn"}


# --- number formatting ------------------------------------------------------------------

def number(value: float | None, digits: int = 4) -> str:
    """A figure for the eye: 4 significant digits, thousands grouped, blank for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def in_unit(value: float | None, unit: str) -> str:
    """A metric value shown in its display unit (bytes as MiB, rates as percent)."""
    if value is None:
        return ""
    if unit == "bytes":
        return number(value / MIB)
    if unit == "failures":
        return f"{value:.0%}"
    return number(value)


def display_unit(unit: str) -> str:
    return {"bytes": "MiB", "failures": "rate"}.get(unit, unit)


def ci_text(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def p_text(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --- compare ------------------------------------------------------------------------------

def compare_document(result) -> Document:
    """A CompareResult as a Document: one record per row, geometric mean as the closing line."""
    records = [_compare_record(result, row) for row in result.rows]
    return Document(
        title=f"B = {result.b_label} against A = {result.a_label} (baseline): {result.metric}, "
              f"{'failure counts' if result.metric == 'failure' else 'ratio B/A of medians'}",
        columns=_compare_columns(result),
        records=records,
        before=_compare_before(result),
        after=_compare_after(result),
        payload=compare_payload(result),
        extra_csv_records=_geomean_records(result),
        tone_key="verdict",
    )


def compare_payload(result) -> dict[str, Any]:
    payload = asdict(result)
    payload["geomean"] = _geomean_dict(result)
    payload["regressions"] = len(result.regressions())
    payload["env_diff"] = [{"field": f, "a": a, "b": b} for f, a, b in result.env_diff]
    return payload


def _compare_record(result, row) -> dict[str, Any]:
    tone = _REGRESSION_TONE.get(row.verdict, "muted")
    if row.verdict in ("lower", "higher"):
        good = "higher" if result.metric == "throughput" else "lower"  # more clips/s is the improvement
        tone = "neutral" if result.metric == "util" else ("good" if row.verdict == good else "bad")
    change = None if row.ratio is None else row.ratio - 1.0
    return {**asdict(row), "unit": result.unit, "change": change, "_tone": tone}


def _compare_columns(result) -> list[Column]:
    unit = display_unit(result.unit)
    show_case = len({r.case for r in result.rows}) > 1
    show_stage = len({r.stage for r in result.rows}) > 1
    columns = [
        Column("case", "case", table=show_case, align="left"),
        Column("clip_s", "clip s", lambda r: number(r["clip_s"])),
        Column("stage", "stage", table=show_stage, align="left"),
        Column("metric", "metric", table=False),
        Column("unit", "unit", table=False),
        Column("n_a", "n A/B", lambda r: f"{r['n_a']}/{r['n_b']}"),
        Column("n_b", "n B", table=False),
        Column("median_a", f"A {unit}", lambda r: in_unit(r["median_a"], result.unit)),
        Column("median_b", f"B {unit}", lambda r: in_unit(r["median_b"], result.unit)),
    ]
    if result.metric != "failure":
        columns += [
            Column("ratio", "B/A", lambda r: "" if r["ratio"] is None else f"{r['ratio']:.3f}"),
            Column("change", "change", lambda r: "" if r["change"] is None else f"{r['change']:+.1%}"),
            Column("ci_low", "95% CI", lambda r: ci_text(r["ci_low"], r["ci_high"])),
            Column("ci_high", "ci high", table=False),
        ]
    columns += [
        Column("p_value", "p", lambda r: p_text(r["p_value"])),
        Column("verdict", "B is", align="left"),
        Column("failures_a", "fail A"),
        Column("failures_b", "fail B"),
    ]
    return columns


def _compare_before(result) -> list[str]:
    lines = []
    if result.env_diff:
        fields = "; ".join(f"{f}: {a} -> {b}" for f, a, b in result.env_diff)
        lines.append(f"environments differ ({', '.join(f for f, _, _ in result.env_diff)}): {fields}")
        lines.append("  timings from different environments may differ for that reason alone")
    if result.only_in_a:
        lines.append(f"only in A ({len(result.only_in_a)}, not compared): {', '.join(result.only_in_a)}")
    if result.only_in_b:
        lines.append(f"only in B ({len(result.only_in_b)}, not compared): {', '.join(result.only_in_b)}")
    if not result.rows:
        lines.append("no case is in both A and B: nothing to compare")
    return lines


def _compare_after(result) -> list[str]:
    lines = []
    if result.geomean is not None:
        ratio, low, high = result.geomean
        used = [r for r in result.rows if r.ratio is not None and r.stage == result.rows[0].stage]
        over = f"{len(used)} clip length(s)" if len({r.case for r in used}) <= 1 else f"{len(used)} case x clip rows"
        lines.append(f"geometric mean of B/A over {over}: {ratio:.3f} {ci_text(low, high)} "
                     f"({ratio - 1:+.1%}): {result.geomean_verdict()}")
    regressions = result.regressions()
    if regressions:
        lines.append(f"{len(regressions)} row(s) where B is {regressions[0].verdict}")
    return lines + [f"note: {n}" for n in result.notes]


def _geomean_dict(result) -> dict[str, Any] | None:
    if result.geomean is None:
        return None
    ratio, low, high = result.geomean
    return {"ratio": ratio, "ci_low": low, "ci_high": high, "verdict": result.geomean_verdict()}


def _geomean_records(result) -> list[dict]:
    geo = _geomean_dict(result)
    if geo is None:
        return []
    return [{"case": "geometric mean", "metric": result.metric, "unit": result.unit,
             "stage": result.rows[0].stage if result.rows else "", **geo}]


# --- tune-threshold -----------------------------------------------------------------------

def tune_document(result) -> Document:
    """A TuneResult as a Document: one record per candidate, the reason and the memory model after."""
    peaks = [r.peak_mem_bytes for r in result.rows if r.peak_mem_bytes is not None]
    mem_unit, mem_scale = ("MiB", MIB) if peaks and max(peaks) < GIB else ("GiB", GIB)
    best = min((r.total_time_ms for r in result.rows if r.eligible), default=None)
    records = [_tune_record(result, row, best) for row in result.rows]
    columns = [
        Column("label", "threshold", align="left"),
        Column("threshold_s", "threshold_s", table=False),
        Column("paths", "what runs", align="left"),
        Column("total_time_ms", "total ms", lambda r: number(r["total_time_ms"])),
        Column("vs_best", "vs best", lambda r: "" if r["vs_best"] is None else f"{r['vs_best']:+.1%}"),
        Column("failures", "failed", lambda r: f"{r['failures']}/{r['runs']}"),
        Column("runs", "runs", table=False),
        Column("peak_mem_bytes", f"peak {mem_unit}",
               lambda r: "" if r["peak_mem_bytes"] is None else number(r["peak_mem_bytes"] / mem_scale)),
        Column("quality_snr_db", "worst SNR dB", lambda r: number(r["quality_snr_db"], 3)),
        Column("status", "choice", align="left"),
        Column("eligible", "eligible", table=False),
        Column("why_not", "why not", align="left"),
    ]
    return Document(
        title=f"hybrid threshold over clip lengths {', '.join(f'{c:g}' for c in result.clip_lengths_s)} s "
              f"(source: {result.source})",
        columns=columns, records=records, before=[_bounds_line(result)],
        after=_tune_after(result), payload=asdict(result), tone_key="status")


def _tune_record(result, row, best: float | None) -> dict[str, Any]:
    status, tone = ("eligible", "muted") if row.eligible else ("excluded", "bad")
    if row.threshold_s == result.recommended:
        status, tone = "recommended", "good"
    elif row.threshold_s == result.runner_up:
        status, tone = "runner-up", "neutral"
    vs_best = None if best is None or row.total_time_ms is None else row.total_time_ms / best - 1.0
    return {**asdict(row), "vs_best": vs_best, "status": status, "_tone": tone}


def _bounds_line(result) -> str:
    budget = "none" if result.memory_budget_bytes is None else f"{result.memory_budget_bytes / GIB:.3g} GiB"
    snr = "none" if result.min_snr_db is None else f">= {result.min_snr_db:g} dB"
    return f"rule: fastest with 0 failures, peak memory within budget ({budget}), worst SNR {snr}"


def _tune_after(result) -> list[str]:
    head = "recommended: none" if result.recommended is None else \
        f"recommended: {next(r.label for r in result.rows if r.threshold_s == result.recommended)}"
    lines = [head, *textwrap.wrap(f"why: {result.reason}", 110, subsequent_indent="  ")]
    lines += _memory_model_lines(result.memory_model)
    return lines + [f"note: {n}" for n in result.notes]


def _memory_model_lines(model: dict | None) -> list[str]:
    if not model:
        return []
    r2 = "" if model["r_squared"] is None else f", R^2 {model['r_squared']:.4f}"
    lines = [f"memory model (single passes, {model['mem_source'] or 'unknown source'}): peak = "
             f"{model['c_bytes'] / MIB:.4g} MiB + {model['a'] / MIB:.4g} MiB x clip_s^{model['p']:.3f}{r2}"]
    for point in model["points"]:
        lines.append(f"  {point['clip_s']:>6g} s: measured {point['peak_mem_bytes'] / MIB:10.2f} MiB, fitted "
                     f"{point['predicted_bytes'] / MIB:10.2f} MiB, residual {point['residual_bytes'] / MIB:+8.2f} MiB")
    if model["max_single_clip_s"] is not None:
        lines.append(f"longest single pass on {model['gpu_memory_bytes'] / GIB:.3g} GiB ({model['gpu_memory_from']}) "
                     f"with a {model['safety_margin']:.0%} margin: {model['max_single_clip_s']:.1f} s"
                     + (" (extrapolated)" if model["extrapolated"] else ""))
    return lines


# --- check ----------------------------------------------------------------------------------

def check_document(run_dir, results) -> Document:
    """BudgetResults as a Document: one record per budget, pass/fail coloured."""
    records = [{**asdict(r), "scope": _budget_scope(r), "result": "pass" if r.passed else "FAIL",
                "direction": ">=" if r.is_minimum else "<=", "_tone": "good" if r.passed else "bad"}
               for r in results]
    columns = [
        Column("metric", "budget", align="left"),
        Column("scope", "cases", align="left"),
        Column("direction", "", table=True),
        Column("limit", "limit", lambda r: number(r["limit"])),
        Column("measured", "measured", lambda r: number(r["measured"])),
        Column("result", "result", align="left"),
        Column("clip_s", "clip_s", table=False),
        Column("mode", "mode", table=False),
        Column("passed", "passed", table=False),
        Column("detail", "detail", align="left"),
    ]
    failed = [r for r in results if not r.passed]
    before = [] if results else ["the suite has no budgets (add e.g. budgets = { p50_latency_ms = 360, "
                                 "peak_memory_gb = 60, failure_rate = 0.0 })"]
    after = [f"{len(results) - len(failed)} of {len(results)} budget(s) pass"
             + (f"; breached: {', '.join(r.metric for r in failed)}" if failed else "")]
    payload = {"run": str(run_dir), "passed": not failed, "budgets": [{k: v for k, v in rec.items()
                                                                      if not k.startswith("_")} for rec in records]}
    return Document(title=f"budgets of {run_dir}", columns=columns, records=records, before=before, after=after,
                    payload=payload, tone_key="result")


def _budget_scope(result) -> str:
    clip = "all clips" if result.clip_s is None else f"{result.clip_s:g} s"
    scenario = "throughput: " if getattr(result, "scenario", "latency") == "throughput" else ""
    return scenario + clip + ("" if result.mode is None else f", {result.mode}")
