"""The run's own tables: cases, stages, failures, per-mode headline, warnings.

Every figure is a summary.csv cell formatted by fmt; only the failure messages come from
samples.csv (summary.csv keeps counts, not messages).
"""

from __future__ import annotations

import pandas as pd

from ..store.results import FAILURE_KINDS, OK, TOTAL_STAGE
from . import fmt
from .model import RunView, Table

FAIL_TONE = "bad"


def util_header(view: RunView) -> tuple[str, bool]:
    """The utilisation column's header, and whether each cell must name its own source
    (when cases were measured by different sources)."""
    sources = {str(s) for s in view.totals["util_source"].dropna() if str(s)}
    if len(sources) == 1:
        return f"Util % ({fmt.util_source_label(next(iter(sources)))})", False
    return "Util (source)", True


def _util_cell(row: pd.Series, per_cell: bool) -> str:
    if per_cell:
        return fmt.util(row["util_mean_pct"], row["util_source"])
    value = fmt.number(row["util_mean_pct"])
    return "n/a" if value is None else f"{value:.1f}"


def _failure_cell(row: pd.Series) -> tuple[str, str]:
    failures = int(fmt.number(row["failures"]) or 0)
    return fmt.count_of(failures, row["n_total"]), FAIL_TONE if failures else ""


def case_table(view: RunView) -> Table:
    unit, _ = view.mem_unit
    util_col, per_cell = util_header(view)
    columns = ["Mode", "Clip (s)", "n ok", "p10 ms", "p50 ms", "p90 ms", "p99 ms", "Mean ms", "Clips/s", "RTF",
               f"Peak mem {unit}", util_col, "SNR dB", "Failures"]
    rows, tones = [], []
    for _, r in view.totals.iterrows():
        failures, tone = _failure_cell(r)
        rows.append([
            r["label"], fmt.seconds(r["clip_s"]), str(int(fmt.number(r["n"]) or 0)),
            fmt.percentile_ms(r["latency_p10_ms"], 0.10, r["n"]), fmt.percentile_ms(r["latency_p50_ms"], 0.5, r["n"]),
            fmt.percentile_ms(r["latency_p90_ms"], 0.90, r["n"]), fmt.percentile_ms(r["latency_p99_ms"], 0.99, r["n"]),
            fmt.ms(r["latency_mean_ms"]), fmt.plain(r["throughput_clips_per_s"]), fmt.plain(r["rtf"], 3),
            fmt.memory(r["peak_mem_bytes"], view.mem_unit), _util_cell(r, per_cell), fmt.snr(r["quality_snr_db"]),
            failures,
        ])
        tones.append([""] * (len(columns) - 1) + [tone])
    return Table("cases", columns, rows, tones, caption="End-to-end figures per case (stage 'total' of summary.csv).")


def stage_names(view: RunView) -> list[str]:
    stages = view.summary["stage"].astype(str)
    return list(dict.fromkeys(s for s in stages if s != TOTAL_STAGE))


def _stage_p50(view: RunView) -> dict[tuple[str, float, str], float | None]:
    s = view.summary
    return {(cid, float(c), str(st)): fmt.number(v)
            for cid, c, st, v in zip(s["case_id"], s["clip_s"], s["stage"], s["latency_p50_ms"])}


def stage_table(view: RunView) -> Table:
    stages = stage_names(view)
    p50 = _stage_p50(view)
    columns = ["Mode", "Clip (s)", *[f"{st} p50 ms" for st in stages], "total p50 ms"]
    rows = []
    for _, r in view.totals.iterrows():
        key = (r["case_id"], float(r["clip_s"]))
        rows.append([r["label"], fmt.seconds(r["clip_s"]),
                     *[fmt.ms(p50.get((*key, st))) for st in [*stages, TOTAL_STAGE]]])
    return Table("stages", columns, rows, caption="Median latency of each stage (ms), from summary.csv.")


def failure_grid(view: RunView) -> Table:
    """k/n per mode (rows) and clip length (columns)."""
    columns = ["Mode", *[f"{c:g} s" for c in view.clips]]
    rows, tones = [], []
    for label in view.modes:
        cells, cell_tones = [label], [""]
        for clip in view.clips:
            r = view.case(label, clip)
            text, tone = _failure_cell(r) if r is not None else ("-", "muted")
            cells.append(text)
            cell_tones.append(tone)
        rows.append(cells)
        tones.append(cell_tones)
    return Table("failure_grid", columns, rows, tones, caption="Failed repeats k/n per mode and clip length.")


def _first_errors(samples: pd.DataFrame) -> dict[str, str]:
    failed = samples[(samples["stage"] == TOTAL_STAGE) & (samples["status"] != OK)]
    errors = {}
    for case_id, group in failed.groupby("case_id", sort=False):
        messages = [str(e) for e in group["error"].fillna("") if str(e)]
        common = pd.Series(messages).value_counts().index[0] if messages else ""
        errors[str(case_id)] = common if len(common) <= 120 else common[:117] + "..."
    return errors


def failure_table(view: RunView) -> Table:
    errors = _first_errors(view.samples)
    columns = ["Case", "Failures", *FAILURE_KINDS, "Most common error"]
    failing = view.totals[pd.to_numeric(view.totals["failures"], errors="coerce").fillna(0) > 0]
    rows, tones = [], []
    for _, r in failing.iterrows():
        failures, tone = _failure_cell(r)
        rows.append([str(r["case_id"]), failures, *[str(int(fmt.number(r[f"n_{k}"]) or 0)) for k in FAILURE_KINDS],
                     errors.get(str(r["case_id"]), "")])
        tones.append(["", tone, *[""] * (len(columns) - 2)])
    return Table("failures", columns, rows, tones, caption="Every case with a failed repeat.",
                 empty="No failures: every repeat of every case succeeded.")


def _sources(column: pd.Series) -> str:
    """The distinct sources of a column of "a+b" source names, joined again."""
    parts = {part for value in column.dropna() for part in str(value).split("+") if part}
    return "+".join(sorted(parts))


HEADLINE_KO = ["모드", "클립 길이 (s)", "최단 클립 p50", "최장 클립 p50", "최대 메모리 (GiB)", "평균 활용률 (%)", "실패 (k/n)"]


def headline_table(view: RunView, lang: str = "en") -> Table:
    """Per mode: shortest and longest clip's median, largest peak memory, failures. The Korean
    table names the utilisation source in its header and writes '-' for a blank figure."""
    unit, _ = view.mem_unit
    columns = ["Mode", "Clips (s)", "p50 at shortest", "p50 at longest", f"Max peak mem {unit}", "Util", "Failures"]
    if lang == "ko":
        source = _sources(view.totals["util_source"])
        columns = [*HEADLINE_KO[:5], f"평균 활용률 (%, {fmt.util_source_label(source, 'ko') or '측정 방식 미상'})",
                   HEADLINE_KO[6]]
    rows, tones = [], []
    for label in view.modes:
        cases = view.totals[view.totals["label"] == label]
        first, last = cases.iloc[0], cases.iloc[-1]
        failures = int(pd.to_numeric(cases["failures"], errors="coerce").fillna(0).sum())
        runs = int(pd.to_numeric(cases["n_total"], errors="coerce").fillna(0).sum())
        util = pd.to_numeric(cases["util_mean_pct"], errors="coerce").dropna()
        rows.append([
            label, f"{fmt.seconds(first['clip_s'])}-{fmt.seconds(last['clip_s'])}",
            f"{fmt.duration_ms(first['latency_p50_ms'])} ({fmt.seconds(first['clip_s'])} s)",
            f"{fmt.duration_ms(last['latency_p50_ms'])} ({fmt.seconds(last['clip_s'])} s)",
            fmt.memory(pd.to_numeric(cases["peak_mem_bytes"], errors="coerce").max(), view.mem_unit),
            fmt.util(util.mean() if len(util) else None, _sources(cases["util_source"])) if lang != "ko" else
            ("-" if not len(util) else f"{util.mean():.1f}"),
            fmt.count_of(failures, runs),
        ])
        if lang == "ko":
            rows[-1] = [c.replace("n/a", "-") for c in rows[-1]]
        tones.append([""] * 6 + [FAIL_TONE if failures else "good"])
    return Table("headline", columns, rows, tones, caption="Per mode, over all clip lengths.")


def warning_table(warnings: list[dict]) -> Table:
    rows = [[str(w.get("code", "")), str(w.get("message", "")), str(w.get("fix", ""))] for w in warnings]
    return Table("warnings", ["Code", "What", "Fix"], rows, [["warn", "", ""] for _ in rows],
                 caption="Validity warnings recorded in manifest.json.", empty="No validity warnings.")
