"""Tables and one-line verdicts from budgets, comparisons and the threshold sweep."""

from __future__ import annotations

import pandas as pd

from ..analysis.stats import INSUFFICIENT, NO_CHANGE
from . import fmt
from .analysis import Outcome
from .model import RunView, Table, Verdict


def _ratio(value) -> str:
    v = fmt.number(value)
    return "n/a" if v is None else f"×{v:.3f}"


def _p(value) -> str:
    return fmt.p_value(value)


def _median(value, unit: str) -> str:
    if unit == "ms":
        return fmt.ms(value)
    if unit == "bytes":
        return fmt.memory(value, fmt.memory_unit([value]))
    return fmt.plain(value)


def _verdict_tone(row, regressions: set[int]) -> str:
    if id(row) in regressions:
        return "bad"
    if row.verdict == INSUFFICIENT:
        return "muted"
    return "" if row.verdict == NO_CHANGE else "good"


def compare_table(outcome: Outcome) -> Table:
    result = outcome.value
    show_case = len({r.case for r in result.rows}) > 1
    a, b = result.a_label, result.b_label
    columns = [*(["Case"] if show_case else []), "Clip (s)", "n A", "n B", f"median A {result.unit}",
               f"median B {result.unit}", "B/A", "95% CI", "p", "Verdict", "Failures A", "Failures B"]
    regressions = {id(r) for r in result.regressions()}
    rows, tones = [], []
    for r in result.rows:
        rows.append([*([r.case] if show_case else []), fmt.seconds(r.clip_s), str(r.n_a), str(r.n_b),
                     _median(r.median_a, result.unit), _median(r.median_b, result.unit), _ratio(r.ratio),
                     "n/a" if r.ci_low is None else f"{r.ci_low:.3f}-{r.ci_high:.3f}", _p(r.p_value), r.verdict,
                     r.failures_a, r.failures_b])
        tone = _verdict_tone(r, regressions)
        tones.append([*[""] * (len(columns) - 3), tone, "bad" if not r.failures_a.startswith("0/") else "",
                      "bad" if not r.failures_b.startswith("0/") else ""])
    return Table(f"compare:{b}:{a}", columns, rows, tones, caption=f"A = {a}, B = {b}: {result.metric}.",
                 empty="No case is in both A and B.")


def geomean_text(result) -> str:
    if result.geomean is None:
        return "geometric mean: n/a (no row with a ratio)"
    ratio, lo, hi = result.geomean
    return f"geometric mean B/A ×{ratio:.3f} (95% CI {lo:.3f}-{hi:.3f}): {result.geomean_verdict()}"


def compare_paragraphs(result) -> list[str]:
    lines = [f"{result.b_label} against {result.a_label}: {geomean_text(result)}."]
    if result.env_diff:
        lines.append("Environment differs: " + "; ".join(f"{f}: {a} vs {b}" for f, a, b in result.env_diff) + ".")
    if result.only_in_a or result.only_in_b:
        lines.append(f"Only in A: {', '.join(result.only_in_a) or 'none'}; only in B: "
                     f"{', '.join(result.only_in_b) or 'none'}.")
    return lines + list(result.notes)


def _ratio_cell(row) -> str:
    if row.metric == "failure":
        return f"{row.failures_a} → {row.failures_b}"
    if row.ratio is None:
        return "n/a" if row.verdict != INSUFFICIENT else "too few"
    return f"×{row.ratio:.2f} [{row.ci_low:.2f}-{row.ci_high:.2f}]"


def _matrix_tone(row, regressions: set[int]) -> str:
    if id(row) in regressions:
        return "bad"
    if row.verdict == INSUFFICIENT:
        return "muted"
    if row.verdict == NO_CHANGE:
        return ""
    return "good" if row.verdict in ("faster", "lower", "fewer failures") else "bad" if row.verdict == "slower" else "warn"


METRIC_CAPTIONS = {"latency": "median latency B/A [95% CI]", "memory": "peak memory B/A [95% CI]",
                   "failure": "failed repeats k/n, A → B", "modes": "median latency B/A [95% CI]"}


def ratio_matrix(outcomes: list[Outcome], key: str, *, by_case: bool = False) -> Table:
    """One row per comparison (or per matched case of a run-against-run comparison), one column
    per clip length; each cell is compare.py's ratio and CI, coloured by its verdict."""
    clips = sorted({r.clip_s for o in outcomes if o.available for r in o.value.rows})
    rows, tones = [], []
    for o in outcomes:
        if not o.available:
            continue
        result = o.value
        regressions = {id(r) for r in result.regressions()}
        groups = dict.fromkeys(r.case for r in result.rows) if by_case else {None: None}
        for case in groups:
            cells, cell_tones = {}, {}
            for r in result.rows:
                if by_case and r.case != case:
                    continue
                cells[r.clip_s], cell_tones[r.clip_s] = _ratio_cell(r), _matrix_tone(r, regressions)
            name = (case or "all") if by_case else f"{result.b_label} vs {result.a_label}"
            rows.append([name, *[cells.get(c, "-") for c in clips]])
            tones.append(["", *[cell_tones.get(c, "muted") for c in clips]])
    first = "Case" if by_case else "B vs A"
    return Table(f"matrix:{key}", [first, *[f"{c:g} s" for c in clips]], rows, tones,
                 caption=f"{METRIC_CAPTIONS.get(key, key)}; green: significantly better, red: significantly worse, "
                         "plain: no significant difference, grey: too few successful repeats (compare.py's verdict).",
                 empty="No case is in both A and B.")


def budget_table(outcome: Outcome) -> Table:
    columns = ["Budget", "Scope", "Limit", "Measured", "Result", "Detail"]
    rows, tones = [], []
    for b in outcome.value or []:
        scope = " ".join(x for x in (b.mode or "", f"{b.clip_s:g} s" if b.clip_s is not None else "") if x)
        if getattr(b, "scenario", "latency") == "throughput":
            scope = f"throughput: {scope or 'each curve'}"
        rows.append([b.metric, scope or "all cases", f"{b.limit:g}", _measured(b.measured),
                     "pass" if b.passed else "FAIL", b.detail])
        tones.append(["", "", "", "", "good" if b.passed else "bad", ""])
    return Table("budgets", columns, rows, tones, caption="Budgets from the suite file, checked against summary.csv (and, on lines marked "
                                                 "throughput, at the knee of each curve in throughput.csv).",
                 empty="The suite sets no budgets.")


def _measured(value) -> str:
    v = fmt.number(value)
    return "n/a" if v is None else f"{v:.4g}"


def budget_verdict(outcome: Outcome) -> Verdict:
    if not outcome.available:
        return Verdict("Budgets", "예산", f"budget check {outcome.note}", "warn", f"예산 점검 불가: {outcome.note}")
    results = outcome.value
    if not results:
        return Verdict("Budgets", "예산", "the suite sets no budgets", "muted", "스위트에 예산이 없음")
    failed = [b for b in results if not b.passed]
    if not failed:
        return Verdict("Budgets", "예산", f"all {len(results)} budgets met", "good", f"예산 {len(results)}개 모두 충족")
    names = ", ".join(b.metric + (f" at {b.clip_s:g} s" if b.clip_s is not None else "") for b in failed[:4])
    return Verdict("Budgets", "예산", f"{len(failed)} of {len(results)} budgets failed: {names}", "bad",
                   f"예산 {len(results)}개 중 {len(failed)}개 미달: {names}")


def failure_verdict(view: RunView) -> Verdict:
    totals = view.totals
    failures = int(pd.to_numeric(totals["failures"], errors="coerce").fillna(0).sum())
    runs = int(pd.to_numeric(totals["n_total"], errors="coerce").fillna(0).sum())
    if not failures:
        return Verdict("Failures", "실패", f"none: 0/{runs} repeats failed", "good", f"실패 없음: 0/{runs}회")
    cases = int((pd.to_numeric(totals["failures"], errors="coerce").fillna(0) > 0).sum())
    kinds = [(k, int(pd.to_numeric(totals[f"n_{k}"], errors="coerce").fillna(0).sum()))
             for k in ("oom", "error", "timeout", "crash")]
    detail = ", ".join(f"{k} {n}" for k, n in kinds if n)
    return Verdict("Failures", "실패", f"{failures}/{runs} repeats failed in {cases} case(s) ({detail})", "bad",
                   f"{runs}회 중 {failures}회 실패, 케이스 {cases}개 ({detail})")


def warning_verdict(warnings: list[dict]) -> Verdict:
    if not warnings:
        return Verdict("Validity", "유효성", "no validity warnings", "good", "유효성 경고 없음")
    codes = ", ".join(dict.fromkeys(str(w.get("code")) for w in warnings))
    return Verdict("Validity", "유효성", f"{len(warnings)} warning(s): {codes} (see the appendix)", "warn",
                   f"경고 {len(warnings)}건: {codes} (보고서 부록 참조)")


def sweep_table(outcome: Outcome, view: RunView) -> Table:
    result = outcome.value
    columns = ["Threshold (s)", "Total time", "Failures", f"Peak mem {view.mem_unit[0]}", "SNR dB", "Eligible",
               "Why not"]
    rows, tones = [], []
    for r in sorted(result.rows, key=lambda x: x.threshold_s):
        chosen = fmt.number(r.threshold_s) == fmt.number(result.recommended)
        rows.append([fmt.seconds(r.threshold_s) + (" (recommended)" if chosen else ""),
                     fmt.duration_ms(r.total_time_ms), fmt.count_of(r.failures, r.runs),
                     fmt.memory(r.peak_mem_bytes, view.mem_unit), fmt.snr(r.quality_snr_db),
                     "yes" if r.eligible else "no", r.why_not or ""])
        tones.append(["good" if chosen else "", "", "bad" if r.failures else "", "", "",
                      "" if r.eligible else "muted", ""])
    return Table("sweep", columns, rows, tones, caption="Hybrid thresholds measured in this run.")


def sweep_paragraphs(outcome: Outcome) -> list[str]:
    result, crit = outcome.value, outcome.extra
    budget = crit.get("memory_budget_bytes")
    bound = f"peak memory within {budget / fmt.GIB:g} GiB" if budget else "no memory budget"
    rec = fmt.number(result.recommended)
    head = f"Recommended threshold: {rec:g} s" if rec is not None else "No threshold is recommended"
    criteria = f"no failures, {bound}, worst-clip quality at least {crit.get('min_snr_db'):g} dB SNR"
    return [f"{head} (criteria: {criteria}).", str(result.reason), *[str(n) for n in result.notes]]
