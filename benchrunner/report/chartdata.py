"""The numbers each chart plots, taken from the same summary rows as the tables."""

from __future__ import annotations

import pandas as pd

from . import fmt
from .model import Chart, RunView
from ..store.results import TOTAL_STAGE
from .tables import failure_grid, stage_names

UTIL_METRIC = "util_pct"


def _values(frame: pd.DataFrame, column: str, scale: float = 1.0) -> list[float | None]:
    out = []
    for v in frame[column]:
        x = fmt.number(v)
        out.append(None if x is None else x / scale)
    return out


STRIP_BELOW_N = 10  # fewer successful repeats than this: every repeat is drawn as a point


def _ok_latencies(view: RunView, case_id: str) -> list[float]:
    s = view.samples
    rows = s[(s["case_id"] == case_id) & (s["stage"] == TOTAL_STAGE) & (s["status"] == "ok")]
    return [float(v) for v in pd.to_numeric(rows["latency_ms"], errors="coerce").dropna()]


def latency_chart(view: RunView) -> Chart:
    series = []
    n = pd.to_numeric(view.totals["n"], errors="coerce").fillna(0)
    n_min = int(n[n > 0].min()) if (n > 0).any() else 0  # cases with no successful repeat have no dots
    strip = n_min < STRIP_BELOW_N
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        series.append({"label": label, "clip_s": _values(cases, "clip_s"), "p50": _values(cases, "latency_p50_ms"),
                       "p10": _values(cases, "latency_p10_ms"), "p90": _values(cases, "latency_p90_ms"),
                       "points": [_ok_latencies(view, str(c)) for c in cases["case_id"]] if strip else []})
    has_band = any(v is not None for s in series for v in s["p10"])
    caption = "Median end-to-end latency against clip length, per mode (log scale when the lengths span over 10x)"
    caption += "; the band spans p10 to p90" if has_band else \
        "; no p10-p90 band: these percentiles need at least 10 successful repeats per case"
    caption += f"; every repeat is drawn as a dot, as the smallest case has n = {n_min}." if strip else "."
    return Chart("latency", caption, {"series": series})


def stage_chart(view: RunView) -> Chart:
    stages = stage_names(view)
    s = view.summary
    p50 = {(str(c), str(st)): fmt.number(v) for c, st, v in zip(s["case_id"], s["stage"], s["latency_p50_ms"])}
    panels = []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        panels.append({
            "label": label, "clips": _values(cases, "clip_s"),
            "values": {st: [p50.get((str(cid), st)) for cid in cases["case_id"]] for st in stages},
            "failed": [fmt.count_of(f, n) if (fmt.number(f) or 0) else "" for f, n in
                       zip(cases["failures"], cases["n_total"])],
        })
    return Chart("stages", "Median latency of each stage, stacked, per mode and clip length "
                 "(a red k/n marks failed repeats; a case with no bar had no successful repeat).",
                 {"stages": stages, "panels": panels})


BUDGET_ON_SCALE = 3.0  # a budget more than this many times the largest peak is drawn off scale
LOG_SPAN = 20.0        # peaks spanning more than this factor get a log axis


def memory_axis(peaks: list[float | None], budget: float | None) -> dict:
    """How to draw peak memory (all in GiB): linear from zero, or logarithmic when the peaks
    span more than LOG_SPAN; the budget as a line when it lies within BUDGET_ON_SCALE of the
    largest peak, else as an off-scale marker at the top edge with its value, so a 60 GiB
    budget never flattens 0.3 GiB of measured lines onto zero."""
    values = [v for v in peaks if v is not None and v > 0]
    top = max(values, default=0.0)
    log = bool(values) and top / min(values) > LOG_SPAN
    on_scale = budget is not None and (top == 0 or budget <= BUDGET_ON_SCALE * top)
    upper = max(top, budget if on_scale else 0.0) * 1.15 or 1.0
    lower = min(values) / 1.5 if log else 0.0
    return {"scale": "log" if log else "linear", "budget_on_scale": on_scale, "ylim": [lower, upper]}


def memory_chart(view: RunView, budget_bytes: float | None) -> Chart:
    unit, scale = fmt.memory_unit()
    series = []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        series.append({"label": label, "clip_s": _values(cases, "clip_s"),
                       "peak": _values(cases, "peak_mem_bytes", scale),
                       "failed": [bool(fmt.number(f)) for f in cases["failures"]]})
    budget = None if budget_bytes is None else budget_bytes / scale
    axis = memory_axis([v for s in series for v in s["peak"]], budget)
    sources = sorted({str(x) for x in view.totals["mem_source"].dropna() if str(x)})
    caption = f"Peak memory against clip length ({', '.join(sources) or 'source unknown'}); x marks a case " \
              "with failed repeats"
    if budget is None:
        caption += "; the suite sets no memory budget."
    elif axis["budget_on_scale"]:
        caption += f"; dashed line: the budget of {budget:g} {unit}."
    else:
        caption += f"; the budget of {budget:g} {unit} is far above every peak, so it is marked at the top " \
                   "edge (off scale) and the axis fits the measured lines."
    if axis["scale"] == "log":
        caption = caption.rstrip(".") + "; log scale: the peaks span more than 20x."
    return Chart("memory", caption, {"series": series, "unit": unit, "budget": budget, "axis": axis})


def _timeline_modes(view: RunView) -> tuple[str, str] | None:
    kinds = dict(zip(view.totals["label"], view.totals["mode"]))
    single = next((m for m in view.modes if kinds[m] == "single"), None)
    chunked = next((m for m in view.modes if kinds[m] == "chunked"), None)
    return (single, chunked) if single and chunked else None


def _util_points(view: RunView, case_id: str) -> pd.DataFrame:
    t = view.timeline
    return t[(t["case_id"] == case_id) & (t["metric"] == UTIL_METRIC)]


def representative_case(view: RunView) -> tuple[float, list[tuple[str, str]]] | None:
    """The longest clip length at which both single and chunked have a successful repeat and a
    utilisation timeline (chunked against single); without both modes, the first mode's."""
    pair = _timeline_modes(view)
    labels = list(pair) if pair else view.modes[:1]
    for clip in reversed(view.clips):
        cases = [(label, view.case(label, clip)) for label in labels]
        found = [(label, str(r["case_id"])) for label, r in cases
                 if r is not None and (fmt.number(r["n"]) or 0) > 0 and len(_util_points(view, str(r["case_id"]))) >= 2]
        if len(found) == len(labels):
            return clip, found
    return None


def util_chart(view: RunView) -> Chart | None:
    chosen = representative_case(view)
    if chosen is None:
        return None
    clip, cases = chosen
    series = []
    for label, case_id in cases:
        points = _util_points(view, case_id).sort_values("t_ms", kind="stable")
        t_s, values = with_gaps([float(t) / 1000 for t in points["t_ms"]], [float(v) for v in points["value"]])
        series.append({"label": label, "t_s": t_s, "value": values})
    source = view.case(cases[0][0], clip)["util_source"]
    label = fmt.util_source_label(source) or "source unknown"
    return Chart("util", f"Utilisation over time for the {clip:g} s clip ({' vs '.join(l for l, _ in cases)}), "
                 f"measured as {label}: the sampler's readings during each case's own calls, on the time line "
                 "of their clip length; interleaved cases alternate on it, and the line breaks where a case "
                 "was not running.",
                 {"series": series, "ylabel": f"{label} (%)"})


GAP_FACTOR = 3.0  # a step this many times the usual sampling step is a gap, not a reading


def with_gaps(t_s: list[float], values: list[float]) -> tuple[list[float | None], list[float | None]]:
    """The readings with a None inserted wherever the time step exceeds GAP_FACTOR x the median
    step, so a line is not drawn across the time another case was running."""
    if len(t_s) < 3:
        return list(t_s), list(values)
    steps = sorted(b - a for a, b in zip(t_s, t_s[1:]) if b > a)
    usual = steps[len(steps) // 2] if steps else 0.0
    out_t, out_v = [t_s[0]], [values[0]]
    for prev, t, v in zip(t_s, t_s[1:], values[1:]):
        if usual and t - prev > GAP_FACTOR * usual:
            out_t.append(None)
            out_v.append(None)
        out_t.append(t)
        out_v.append(v)
    return out_t, out_v


def util_clip_chart(view: RunView) -> Chart | None:
    """Mean utilisation against clip length per mode, next to the real-time factor (latency per
    second of clip), so utilisation is never read instead of speed."""
    if pd.to_numeric(view.totals["util_mean_pct"], errors="coerce").dropna().empty:
        return None
    series = []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        series.append({"label": label, "clip_s": _values(cases, "clip_s"), "util": _values(cases, "util_mean_pct"),
                       "rtf": _values(cases, "rtf")})
    sources = sorted({str(x) for x in view.totals["util_source"].dropna() if str(x)})
    label = " + ".join(fmt.util_source_label(s) for s in sources) or "source unknown"
    return Chart("util_clip", f"Mean utilisation ({label}) against clip length per mode, left; the real-time "
                 "factor (median latency / clip length, lower is faster) of the same cases, right: higher "
                 "utilisation is not faster in itself.", {"series": series, "ylabel": f"{label} (%)"})


def failure_chart(view: RunView) -> Chart:
    grid = failure_grid(view)
    return Chart("failures", "Failed repeats per mode and clip length (k/n); darker is a larger share.",
                 {"modes": view.modes, "clips": view.clips, "cells": [row[1:] for row in grid.rows]}, fallback=grid)


def sweep_chart(result) -> Chart:
    rows = sorted(result.rows, key=lambda r: r.threshold_s)
    data = {"threshold_s": [float(r.threshold_s) for r in rows],
            "total_ms": [fmt.number(r.total_time_ms) for r in rows],
            "eligible": [bool(r.eligible) for r in rows], "failures": [fmt.count_of(r.failures, r.runs) for r in rows],
            "recommended": fmt.number(result.recommended)}
    return Chart("sweep", "Total time over the run's clips per hybrid threshold; the recommended threshold "
                 "is marked, ineligible thresholds are grey.", data)
