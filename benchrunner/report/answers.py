"""Page 1: one sentence per question the team asks of a night's run, each with its evidence.

The questions, in this order: is hybrid faster than chunked (and by how much, and is it
significant), which threshold, are the budgets met, did anything fail, what changed since the
baseline night, can the numbers be trusted. Every figure comes from the analysis layer
(compare.py's verdicts, ratios and bootstrap CIs; tuning.py's ranking and paths; budgets.py),
never computed here; each answer is written in English and Korean from the same facts, so the
PDF, the HTML, the research log and the Slack digest carry the same sentences.
"""

from __future__ import annotations

import pandas as pd

from ..analysis.stats import INSUFFICIENT, NO_CHANGE
from . import analysis, fmt
from .analysis import Outcome
from .messages import failure_kind_ko, warning_title_ko
from .model import RunView, Verdict

FASTER_WORDS = {"faster", "lower", "fewer failures"}
SMALL_N = 10  # fewer successful repeats a side than this: the answer says only large differences can show
BUDGETS_KO = {"p50_latency_ms": "지연 시간 중앙값(ms)", "p90_latency_ms": "지연 시간 p90(ms)",
              "p99_latency_ms": "지연 시간 p99(ms)",
              "peak_memory_gb": "최대 메모리(GiB)", "failure_rate": "실패율", "throughput_clips_per_s": "처리량(클립/s)"}


def budget_ko(metric: str) -> str:
    return BUDGETS_KO.get(metric, metric)


def speedup(row) -> tuple[float, float, float, str] | None:
    """(factor, ci_low, ci_high, "faster"|"slower") of B against A, hyperfine-style: the factor
    is at least 1 (A/B when B is faster, B/A when slower), its CI turned the same way."""
    if row.ratio is None or row.ci_low is None:
        return None
    if row.ratio < 1.0:
        return 1.0 / row.ratio, 1.0 / row.ci_high, 1.0 / row.ci_low, "faster"
    return row.ratio, row.ci_low, row.ci_high, "slower"


def _clips(values) -> str:
    return ", ".join(f"{c:g}" for c in values)


def _clip_ranges(values: list[float], all_clips: list[float]) -> str:
    """Clip lengths as runs of consecutive swept lengths: '45-120' or '5, 20'."""
    index = {c: i for i, c in enumerate(all_clips)}
    runs: list[list[float]] = []
    for c in sorted(values):
        if runs and index.get(c, -9) == index.get(runs[-1][-1], -9) + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ", ".join(f"{r[0]:g}" if len(r) == 1 else f"{r[0]:g}-{r[-1]:g}" for r in runs)


def _sig_phrase(row, lang: str) -> str:
    f, lo, hi, word = speedup(row)
    if lang == "ko":
        return f"{row.clip_s:g} s에서 {f:.2f}배 {'빠름' if word == 'faster' else '느림'} (95% 신뢰구간 {lo:.2f}-{hi:.2f})"
    return f"{f:.2f}× {word} at {row.clip_s:g} s (95% CI {lo:.2f}-{hi:.2f})"


def _significant(rows) -> list:
    return [r for r in rows if r.verdict not in (NO_CHANGE, INSUFFICIENT) and speedup(r) is not None]


def pair_sentence(result, view: RunView | None = None) -> tuple[str, str, str]:
    """'B vs A: 1.09× faster at 10 s (95% CI ...); no significant difference at 5, 20 s; same
    path as A at 45-120 s' in English and Korean, and its tone."""
    a, b = result.a_label, result.b_label
    clips = sorted({r.clip_s for r in result.rows})
    same: list[float] = []
    if view is not None:
        pa, pb = analysis.executed_paths(view, a), analysis.executed_paths(view, b)
        same = [c for c in clips if pa.get(c) and pa.get(c) == pb.get(c)]
    sig = _significant([r for r in result.rows if r.clip_s not in same])
    rest = [r.clip_s for r in result.rows if r not in sig and r.clip_s not in same and r.verdict != INSUFFICIENT]
    few = [r.clip_s for r in result.rows if r.verdict == INSUFFICIENT and r.clip_s not in same]
    en, ko = [], []
    if sig:
        en.append("; ".join(_sig_phrase(r, "en") for r in sig))
        ko.append("; ".join(_sig_phrase(r, "ko") for r in sig))
    if rest:
        en.append(f"no significant difference at {_clip_ranges(rest, clips)} s")
        ko.append(f"{_clip_ranges(rest, clips)} s에서는 유의한 차이 없음")
    if few:
        en.append(f"too few successful repeats to tell at {_clip_ranges(few, clips)} s")
        ko.append(f"{_clip_ranges(few, clips)} s에서는 성공한 반복이 적어 판단 불가")
    if same:
        path = analysis.executed_paths(view, a)[same[0]]
        en.append(f"same path as {a} at {_clip_ranges(same, clips)} s ({path}), so equal by construction")
        ko.append(f"{_clip_ranges(same, clips)} s에서는 {a}와 같은 경로({path})라 차이가 없음")
    if not result.rows:
        en.append("no clip length measured by both")
        ko.append("두 모드가 함께 측정한 클립 길이가 없음")
    n_min = min((min(r.n_a, r.n_b) for r in result.rows), default=0)
    if 0 < n_min < SMALL_N:
        en.append(f"few repeats (n = {n_min} at the fewest), so only large differences can show")
        ko.append(f"반복이 적어(최소 {n_min}회) 큰 차이만 드러남")
    slower = any(speedup(r)[3] == "slower" for r in sig)
    faster = any(speedup(r)[3] == "faster" for r in sig)
    tone = "warn" if slower and faster else "bad" if slower else "good" if faster else ""
    return f"{b} vs {a}: " + "; ".join(en), f"{b} 대 {a}: " + "; ".join(ko), tone


def _hybrid_choice(view: RunView, sweep: Outcome | None) -> str | None:
    hybrids = [m for m in analysis.mode_labels(view) if m.startswith("hybrid@")]
    if sweep is not None and sweep.available and sweep.value.recommended is not None:
        chosen = f"hybrid@{fmt.number(sweep.value.recommended):g}"
        if chosen in hybrids:
            return chosen
    return hybrids[0] if hybrids else None


def hybrid_answer(view: RunView, modes: list[Outcome], sweep: Outcome | None) -> Verdict:
    topic, topic_ko = "Hybrid vs chunked", "하이브리드 대 청크"
    chosen = _hybrid_choice(view, sweep)
    outcome = next((o for o in modes if o.title.startswith(f"{chosen} vs chunked")), None) if chosen else None
    if outcome is None:
        return Verdict(topic, topic_ko, "not measured: this run has no hybrid and chunked modes to compare",
                       "muted", "측정 안 함: 이 실행에는 비교할 hybrid와 chunked 모드가 없음")
    if not outcome.available:
        return Verdict(topic, topic_ko, f"comparison {outcome.note}", "warn", "비교 불가: 비교 계층이 답하지 않음")
    en, ko, tone = pair_sentence(outcome.value, view)
    others = sum(1 for o in modes if o.title.startswith("hybrid@") and o.title.endswith(" vs chunked")) - 1
    if others > 0:
        en += f" (the {others} other threshold(s): see Mode comparisons)"
        ko += f" (다른 임계값 {others}개: 모드 비교 절 참조)"
    return Verdict(topic, topic_ko, en, tone, ko)


def _group_text(ts: list[float]) -> str:
    return ", ".join(f"{t:g}" for t in sorted(ts))


def threshold_answer(view: RunView, sweep: Outcome | None) -> Verdict:
    topic, topic_ko = "Best threshold", "최적 임계값"
    hybrids = [m for m in analysis.mode_labels(view) if m.startswith("hybrid@")]
    if sweep is None:
        if not hybrids:
            return Verdict(topic, topic_ko, "no hybrid mode in this run", "muted", "이 실행에는 hybrid 모드가 없음")
        return Verdict(topic, topic_ko, f"only {hybrids[0]} was measured: sweep two or more thresholds to choose one "
                       "(suites/threshold.toml)", "muted",
                       f"{hybrids[0]}만 측정함: 임계값을 고르려면 두 개 이상 측정해야 함")
    if not sweep.available:
        return Verdict(topic, topic_ko, f"threshold sweep {sweep.note}", "warn", "임계값 탐색 불가")
    result = sweep.value
    rows = {fmt.number(r.threshold_s): r for r in result.rows}
    if result.recommended is None:
        why = "; ".join(f"{r.threshold_s:g} s: {r.why_not}" for r in result.rows)
        return Verdict(topic, topic_ko, f"none is eligible ({why})", "bad",
                       f"조건을 만족하는 임계값 없음 (실패, 메모리 예산 또는 품질 기준 미달: "
                       f"{_group_text([r.threshold_s for r in result.rows])} s)")
    rec = rows[fmt.number(result.recommended)]
    same = [r.threshold_s for r in result.rows if r is not rec and r.paths == rec.paths]
    differ = [r for r in result.rows if r is not rec and r.paths != rec.paths and r.eligible]
    ineligible = [r for r in result.rows if not r.eligible]
    en = [f"{rec.threshold_s:g} s (fastest eligible: {fmt.duration_ms(rec.total_time_ms)} over the clip set, "
          f"0 failures)"]
    ko = [f"{rec.threshold_s:g} s (조건을 만족하는 것 중 가장 빠름: 클립 전체 {fmt.duration_ms(rec.total_time_ms)}, 실패 0회)"]
    if same:
        group = sorted([rec.threshold_s, *same])
        between = [c for c in result.clip_lengths_s if group[0] < c < group[-1]]
        gap = (f"no swept clip length lies between {group[0]:g} and {group[-1]:g} s" if not between else
               f"every swept clip length ran the same path under them")
        gap_ko = (f"{group[0]:g} s와 {group[-1]:g} s 사이에 측정한 클립 길이가 없음" if not between else
                  "모든 클립 길이에서 같은 경로로 실행됨")
        en.append(f"{_group_text(same)} s cannot be told apart from it: {gap}, so they ran the same path "
                  f"({rec.paths}) and their gap is noise")
        ko.append(f"{_group_text(same)} s와는 구별할 수 없음: {gap_ko}, 즉 같은 경로로 실행되어 차이는 잡음임")
    for other in differ:
        pa, pb = (analysis.executed_paths(view, f"hybrid@{t:g}") for t in (rec.threshold_s, other.threshold_s))
        clips = [c for c in result.clip_lengths_s if pa.get(c) != pb.get(c)]
        outcome = analysis.pair_outcome(view, f"hybrid@{rec.threshold_s:g}", f"hybrid@{other.threshold_s:g}", clips)
        if not outcome.available or not outcome.value.rows:
            continue
        sig = _significant(outcome.value.rows)
        if sig:
            en.append(f"{other.threshold_s:g} s: " + "; ".join(_sig_phrase(r, "en") for r in sig))
            ko.append(f"{other.threshold_s:g} s: " + "; ".join(_sig_phrase(r, "ko") for r in sig))
        else:
            en.append(f"{other.threshold_s:g} s: no significant difference where the paths differ "
                      f"({_clips(clips)} s)")
            ko.append(f"{other.threshold_s:g} s: 경로가 다른 {_clips(clips)} s에서 유의한 차이 없음")
    if ineligible:
        en.append("not eligible: " + "; ".join(f"{r.threshold_s:g} s ({r.why_not})" for r in ineligible))
        ko.append(f"제외: {_group_text([r.threshold_s for r in ineligible])} s (실패, 메모리 예산 또는 품질 기준 미달)")
    return Verdict(topic, topic_ko, "; ".join(en), "good", "; ".join(ko))


def budget_answer(outcome: Outcome) -> Verdict:
    topic, topic_ko = "Budgets", "예산"
    if not outcome.available:
        return Verdict(topic, topic_ko, f"budget check {outcome.note}", "warn", "예산 점검 불가")
    results = outcome.value
    if not results:
        return Verdict(topic, topic_ko, "the suite sets no budgets", "muted", "스위트에 예산이 없음")
    failed = [b for b in results if not b.passed]
    names = ", ".join(b.metric for b in results)
    if not failed:
        return Verdict(topic, topic_ko, f"all {len(results)} met ({names})", "good",
                       f"{len(results)}개 모두 충족 (" + ", ".join(budget_ko(b.metric) for b in results) + ")")

    def one(b, lang: str) -> str:
        where = "" if b.clip_s is None else (f" at {b.clip_s:g} s" if lang == "en" else f" ({b.clip_s:g} s)")
        value = fmt.number(b.measured)
        if lang == "ko":
            measured = "측정 안 됨" if value is None else f"측정값 {value:.4g}"
            return f"{budget_ko(b.metric)}{where} {measured}, 한도 {b.limit:g}"
        measured = "not measured" if value is None else f"{value:.4g}"
        return f"{b.metric}{where} {measured} against a limit of {b.limit:g}"
    return Verdict(topic, topic_ko, f"{len(failed)} of {len(results)} failed: " + "; ".join(one(b, "en") for b in failed),
                   "bad", f"{len(results)}개 중 {len(failed)}개 미달: " + "; ".join(one(b, "ko") for b in failed))


def failure_answer(view: RunView) -> Verdict:
    topic, topic_ko = "Failures", "실패"
    totals = view.totals
    count = pd.to_numeric(totals["failures"], errors="coerce").fillna(0)
    failures, runs = int(count.sum()), int(pd.to_numeric(totals["n_total"], errors="coerce").fillna(0).sum())
    if not failures:
        return Verdict(topic, topic_ko, f"none: 0/{runs} repeats failed", "good", f"없음: {runs}회 중 0회 실패")
    failing = totals[count > 0]
    where, where_ko = [], []
    for label in dict.fromkeys(failing["label"]):
        rows = failing[failing["label"] == label]
        clips = _clip_ranges([float(c) for c in rows["clip_s"]], view.clips)
        kinds = [(k, int(pd.to_numeric(rows[f"n_{k}"], errors="coerce").fillna(0).sum()))
                 for k in ("oom", "error", "timeout", "crash")]
        where.append(f"{label} at {clips} s (" + ", ".join(f"{k} {n}" for k, n in kinds if n) + ")")
        where_ko.append(f"{label} {clips} s (" + ", ".join(f"{failure_kind_ko(k)} {n}회" for k, n in kinds if n) + ")")
    return Verdict(topic, topic_ko, f"{failures}/{runs} repeats failed: " + "; ".join(where), "bad",
                   f"{runs}회 중 {failures}회 실패: " + "; ".join(where_ko))


def _run_rows(result) -> tuple[list, list]:
    regressions = result.regressions()
    better = [r for r in result.rows if r not in regressions and r.verdict in FASTER_WORDS]
    return regressions, better


def _case_clip(row) -> str:
    return f"{row.case} {row.clip_s:g} s".strip()


def _run_phrase(result, rows, lang: str) -> str:
    """'k of n cases, largest: <case clip> 1.16× slower (95% CI ...), ...' (the three largest)."""
    shown = sorted(rows, key=lambda r: -(speedup(r)[0] if speedup(r) else 0.0))[:3]
    out = []
    for r in shown:
        s = speedup(r)
        if result.metric == "failure":
            out.append(f"{_case_clip(r)} ({r.failures_a} → {r.failures_b})")
        elif s is not None:
            f, lo, hi, word = s
            word = {"latency": word, "memory": "higher" if word == "slower" else "lower"}[result.metric]
            if lang == "ko":
                word_ko = {"faster": "빠름", "slower": "느림", "higher": "높음", "lower": "낮음"}[word]
                out.append(f"{_case_clip(r)} {f:.2f}배 {word_ko} (95% 신뢰구간 {lo:.2f}-{hi:.2f})")
            else:
                out.append(f"{_case_clip(r)} {f:.2f}× {word} (95% CI {lo:.2f}-{hi:.2f})")
    total = len(result.rows)
    if lang == "ko":
        return f"케이스 {total}개 중 {len(rows)}개" + (f", 가장 큰 차이: " if len(rows) > 1 else ": ") + ", ".join(out)
    return f"{len(rows)} of {total} cases" + (", largest: " if len(rows) > 1 else ": ") + ", ".join(out)


def against_answer(runs: list[Outcome], base_id: str | None) -> Verdict:
    topic, topic_ko = "Against the baseline night", "기준 실행 대비"
    if base_id is None:
        return Verdict(topic, topic_ko, "no baseline run given: this report compares the modes of one run "
                       "(bench report --against RUN, or bench nightly, compares with the last good night)", "muted",
                       "기준 실행 없음: 이 보고서는 한 실행의 모드끼리 비교함")
    missing = [o for o in runs if not o.available]
    if missing:
        return Verdict(topic, topic_ko, f"{base_id}: comparison {missing[0].note}", "warn", f"{base_id}: 비교 불가")
    by_metric = {o.value.metric: o.value for o in runs}
    latency = by_metric.get("latency")
    worse, worse_ko, better, better_ko = [], [], [], []
    words = {"latency": ("slower at", "faster at", "느려짐", "빨라짐"),
             "memory": ("memory higher at", "memory lower at", "메모리 증가", "메모리 감소"),
             "failure": ("more failures at", "fewer failures at", "실패 증가", "실패 감소")}
    for metric, result in by_metric.items():
        bad, good = _run_rows(result)
        w = words[metric]
        if bad:
            worse.append(f"{w[0]} {_run_phrase(result, bad, 'en')}")
            worse_ko.append(f"{w[2]}: {_run_phrase(result, bad, 'ko')}")
        if good:
            better.append(f"{w[1]} {_run_phrase(result, good, 'en')}")
            better_ko.append(f"{w[3]}: {_run_phrase(result, good, 'ko')}")
    geo, geo_ko = "", ""
    if latency is not None and latency.geomean is not None:
        g, lo, hi = latency.geomean
        verdict = latency.geomean_verdict()
        geo = f"latency geometric mean ×{g:.3f} (95% CI {lo:.3f}-{hi:.3f}: {verdict})"
        geo_ko = f"지연 시간 기하평균 ×{g:.3f} (95% 신뢰구간 {lo:.3f}-{hi:.3f}: " + \
                 ("유의한 변화 없음" if verdict == NO_CHANGE else "느려짐" if verdict == "slower" else "빨라짐") + ")"
    if not worse and not better:
        return Verdict(topic, topic_ko, f"within noise against {base_id}: no case differs significantly in latency, "
                       f"memory or failures; {geo}", "good",
                       f"{base_id} 대비 잡음 범위 이내: 지연 시간, 메모리, 실패 모두 유의한 차이 없음; {geo_ko}")
    tone = "bad" if worse else "good"
    return Verdict(topic, topic_ko, f"against {base_id}: " + "; ".join(worse + better) + f"; {geo}", tone,
                   f"{base_id} 대비: " + "; ".join(worse_ko + better_ko) + f"; {geo_ko}")


def validity_answer(warnings: list[dict]) -> Verdict:
    topic, topic_ko = "Validity", "유효성"
    if not warnings:
        return Verdict(topic, topic_ko, "no validity warnings", "good", "유효성 경고 없음")
    codes = list(dict.fromkeys(str(w.get("code")) for w in warnings))
    return Verdict(topic, topic_ko, f"{len(warnings)} warning(s): " + "; ".join(
        str(w.get("message")) for w in warnings[:2]) + (" (all in the appendix)" if len(warnings) > 2 else ""),
        "warn", f"경고 {len(warnings)}건: " + "; ".join(warning_title_ko(c) for c in codes))


def page_one(view: RunView, *, modes: list[Outcome], runs: list[Outcome], sweep: Outcome | None,
             budgets: Outcome, warnings: list[dict], base_id: str | None) -> list[Verdict]:
    """The answers, in the order the team asks them."""
    return [hybrid_answer(view, modes, sweep), threshold_answer(view, sweep), budget_answer(budgets),
            failure_answer(view), against_answer(runs, base_id), validity_answer(warnings)]
