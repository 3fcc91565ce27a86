"""The report's throughput section (scenario = "throughput"): the latency-throughput curve per
mode, the per-stage utilisation under load (which stage is the bottleneck), and the levels as a
table, all read from throughput.csv. A run without throughput rows has no such section.

Its own section and chart functions (throughput_charts.py), so that it merges cleanly with
the rest of the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.throughput.curves import curves
from ..store.throughput import KIND_STAGE, KIND_TRANSFER, curve_label, has_throughput, read_throughput
from . import fmt
from .model import Chart, Section, Table

TITLE, TITLE_KO = "Throughput under load", "부하 시 처리량"


def _name(first: pd.Series, variants: int) -> str:
    return curve_label(first["variant"], first["mode"], first["threshold_s"], first["clip_s"], variants)


def _pick(frame: pd.DataFrame, first: pd.Series) -> pd.DataFrame:
    same = (frame["variant"] == first["variant"]) & (frame["mode"] == first["mode"]) & \
           (frame["clip_s"] == first["clip_s"])
    if pd.notna(first["threshold_s"]):
        same &= frame["threshold_s"] == first["threshold_s"]
    return frame[same]


def curve_chart(frame: pd.DataFrame) -> Chart:
    """Latency (p50, and p99 or p90 dashed) against clips/s, one line per curve, points labelled
    with their concurrency; the knee starred; the knee budget as a line."""
    variants = frame["variant"].nunique()
    series, budget = [], None
    for _, levels in curves(frame):
        usable = levels[levels["status"].isin(("ok", "unstable"))]
        tail = "latency_p99_ms" if usable["latency_p99_ms"].notna().all() and len(usable) else "latency_p90_ms"
        knee = usable[usable["knee"].astype(str) == "yes"]
        series.append({
            "label": _name(levels.iloc[0], variants),
            "clips_per_s": [fmt.number(v) for v in usable["throughput_clips_per_s"]],
            "p50": [fmt.number(v) for v in usable["latency_p50_ms"]],
            "tail": [fmt.number(v) for v in usable[tail]], "tail_name": tail.split("_")[1],
            "concurrency": [int(c) for c in usable["concurrency"]],
            "knee": None if knee.empty else int(knee.iloc[0]["concurrency"]),
            "lost": [f"c{int(r.concurrency)} {r.status}" for r in levels.itertuples()
                     if r.status not in ("ok", "unstable")],
        })
        if levels["knee_budget_ms"].notna().any():
            budget = float(levels["knee_budget_ms"].dropna().iloc[0])
    caption = ("Latency a clip sees against the throughput the pipeline delivers, one point per concurrency level "
               "(c = clips in flight): solid p50, dashed tail (p99, or p90 where levels had fewer than 100 clips); "
               "the star is the knee, the most clips/s whose tail stays within the budget line.")
    return Chart("throughput_curve", caption, {"series": series, "budget_ms": budget, "height_in": 4.6})


def stage_chart(frame: pd.DataFrame) -> Chart:
    """Per curve, each stage's utilisation (busy share of the measured time) against concurrency:
    the stage that reaches 100 % first is the bottleneck."""
    variants = frame["variant"].nunique()
    stages_all = frame[frame["kind"] == KIND_STAGE]
    panels = []
    for _, levels in curves(frame):
        first = levels.iloc[0]
        mine = _pick(stages_all, first)
        names = list(dict.fromkeys(mine["stage"]))
        panels.append({
            "title": _name(first, variants), "concurrency": [int(c) for c in levels["concurrency"]],
            "stages": {s: [fmt.number(mine[(mine["stage"] == s) & (mine["concurrency"] == c)]["utilisation_pct"]
                                      .max()) for c in levels["concurrency"]] for s in names},
            "bottleneck": str(levels.iloc[-1]["bottleneck"] or "") if pd.notna(levels.iloc[-1]["bottleneck"]) else "",
        })
    caption = ("Utilisation of each stage (its thread's busy share of the measured windows) against concurrency, "
               "per curve; the stage that saturates first limits the throughput. Shown next to the clips/s above, "
               "never instead of them.")
    rows = -(-len(panels) // 3)
    return Chart("throughput_stages", caption, {"panels": panels, "height_in": 0.9 + 2.6 * rows})


def level_table(frame: pd.DataFrame) -> Table:
    variants = frame["variant"].nunique()
    rows = []
    for _, levels in curves(frame):
        name = _name(levels.iloc[0], variants)
        for r in levels.itertuples():
            knee = "knee" if str(r.knee) == "yes" else ""
            rows.append([name, str(int(r.concurrency)), str(r.status), fmt.plain(r.throughput_clips_per_s, 2),
                         fmt.ms(r.latency_p50_ms), fmt.ms(r.latency_p90_ms), fmt.ms(r.latency_p99_ms),
                         fmt.ms(r.entry_wait_mean_ms), str(r.bottleneck) if pd.notna(r.bottleneck) else "-",
                         fmt.count_of(r.failures if pd.notna(r.failures) else 0,
                                      (r.failures if pd.notna(r.failures) else 0) + (r.clips if pd.notna(r.clips) else 0)),
                         knee])
    return Table("throughput-levels", ["Curve", "Clips in flight", "Status", "Clips/s", "p50 ms", "p90 ms", "p99 ms",
                                       "Entry wait ms", "Bottleneck", "Failed", "Knee"], rows,
                 caption="One row per concurrency level, from the last 3 measurement windows (status unstable: "
                         "they did not agree within the stability percentage; crash/timeout: the worker was lost "
                         "and the sweep went on). Entry wait: time a clip waited before its first stage.")


def stage_table(frame: pd.DataFrame) -> Table:
    """Every stage (and transfer) at the highest usable level of each curve."""
    variants = frame["variant"].nunique()
    parts = frame[frame["kind"].isin((KIND_STAGE, KIND_TRANSFER))]
    rows = []
    for _, levels in curves(frame):
        usable = levels[levels["status"].isin(("ok", "unstable"))]
        if usable.empty:
            continue
        top = usable.iloc[-1]
        mine = _pick(parts, top)
        mine = mine[mine["concurrency"] == top["concurrency"]]
        for r in mine.itertuples():
            rows.append([_name(top, variants), str(int(top["concurrency"])), str(r.stage), str(r.device),
                         fmt.plain(r.utilisation_pct, 1), fmt.ms(r.busy_mean_ms), fmt.ms(r.queue_wait_mean_ms),
                         fmt.ms(r.blocked_mean_ms)])
    return Table("throughput-stages", ["Curve", "Clips in flight", "Stage", "Device", "Utilisation %", "Busy ms/call",
                                       "Queue wait ms", "Blocked ms"], rows,
                 caption="Per stage at the highest measured level: queue wait is the time an item waited in front "
                         "of the stage after the previous stage finished (n/a for the first stage, whose queue is "
                         "the entry); blocked is the time the stage waited to hand its output on (a full queue). "
                         "Rows named a->b are transfers between devices, timed on their own.")


def throughput_paragraphs(frame: pd.DataFrame) -> list[str]:
    variants = frame["variant"].nunique()
    lines = []
    for _, levels in curves(frame):
        name = _name(levels.iloc[0], variants)
        usable = levels[levels["status"].isin(("ok", "unstable"))]
        if usable.empty:
            lines.append(f"{name}: no level was measured ({', '.join(levels['status'].astype(str))}).")
            continue
        best = usable.loc[pd.to_numeric(usable["throughput_clips_per_s"]).idxmax()]
        text = (f"{name}: {float(usable.iloc[0]['throughput_clips_per_s']):.3g} clips/s at concurrency "
                f"{int(usable.iloc[0]['concurrency'])}, at most {float(best['throughput_clips_per_s']):.3g} at "
                f"{int(best['concurrency'])}; bottleneck under load: {best['bottleneck'] or '-'}.")
        knee = levels[levels["knee"].astype(str) == "yes"]
        if not knee.empty:
            k = knee.iloc[0]
            text += (f" Knee: concurrency {int(k['concurrency'])}, {float(k['throughput_clips_per_s']):.3g} clips/s "
                     f"with {k['knee_quantile']} within {float(k['knee_budget_ms']):g} ms.")
        elif levels["knee_budget_ms"].notna().any():
            text += f" No level keeps its tail within {float(levels['knee_budget_ms'].dropna().iloc[0]):g} ms."
        lost = [f"{int(r.concurrency)} ({r.status})" for r in levels.itertuples() if r.status not in ("ok", "unstable")]
        if lost:
            text += f" Levels without a measurement: {', '.join(lost)}."
        lines.append(text)
    return lines


def throughput_section(run_dir: Path) -> Section | None:
    """The section, or None when the run has no throughput rows."""
    if not has_throughput(run_dir):
        return None
    frame = read_throughput(run_dir)
    intro = ("Clips in flight (concurrency) against what the pipeline delivers with its stages pipelined, one thread "
             "per stage: each level measured in windows until the last three agreed.")
    return Section("throughput", TITLE, TITLE_KO, [intro, *throughput_paragraphs(frame)],
                   [curve_chart(frame), stage_chart(frame), level_table(frame), stage_table(frame)])
