"""The numbers each chart plots, taken from the same summary rows as the tables."""

from __future__ import annotations

import pandas as pd

from . import fmt
from .model import Chart, RunView
from .tables import failure_grid, stage_names

UTIL_METRIC = "util_pct"


def _values(frame: pd.DataFrame, column: str, scale: float = 1.0) -> list[float | None]:
    out = []
    for v in frame[column]:
        x = fmt.number(v)
        out.append(None if x is None else x / scale)
    return out


def latency_chart(view: RunView) -> Chart:
    series = []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        series.append({"label": label, "clip_s": _values(cases, "clip_s"), "p50": _values(cases, "latency_p50_ms"),
                       "p10": _values(cases, "latency_p10_ms"), "p90": _values(cases, "latency_p90_ms")})
    has_band = any(v is not None for s in series for v in s["p10"])
    caption = "Median end-to-end latency against clip length, per mode"
    caption += "; the band spans p10 to p90." if has_band else \
        "; no p10-p90 band: these percentiles need at least 10 successful repeats per case."
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


def memory_chart(view: RunView, budget_bytes: float | None) -> Chart:
    unit, scale = view.mem_unit
    series = []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        series.append({"label": label, "clip_s": _values(cases, "clip_s"),
                       "peak": _values(cases, "peak_mem_bytes", scale),
                       "failed": [bool(fmt.number(f)) for f in cases["failures"]]})
    sources = sorted({str(x) for x in view.totals["mem_source"].dropna() if str(x)})
    caption = f"Peak memory against clip length ({', '.join(sources) or 'source unknown'}); x marks a case " \
              "with failed repeats"
    caption += f"; dashed line: the budget of {budget_bytes / scale:g} {unit}." if budget_bytes else \
        "; the suite sets no memory budget."
    return Chart("memory", caption, {"series": series, "unit": unit,
                                     "budget": None if budget_bytes is None else budget_bytes / scale})


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
        series.append({"label": label, "t_s": [float(t) / 1000 for t in points["t_ms"]],
                       "value": [float(v) for v in points["value"]]})
    source = view.case(cases[0][0], clip)["util_source"]
    label = fmt.util_source_label(source) or "source unknown"
    return Chart("util", f"Utilisation over time for the {clip:g} s clip ({' vs '.join(l for l, _ in cases)}), "
                 f"measured as {label}: the sampler's readings during each case's own calls, on the time line "
                 "of their clip length (interleaved cases alternate on it).",
                 {"series": series, "ylabel": f"{label} (%)"})


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
