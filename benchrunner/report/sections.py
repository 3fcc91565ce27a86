"""Assemble the report model: facts, verdicts and sections in reading order. The one place
that imports both the model and the modules that build its sections (model.py imports none of them)."""

from __future__ import annotations

from pathlib import Path

from ..measure.environment import environment_summary, format_environment
from . import analysis, chartdata, profiles, tables, trend, verdicts
from .model import DEFAULT_TREND_NIGHTS, ReportModel, RunView, Section, load_run, run_date


def _facts(view: RunView, base: RunView | None) -> list[tuple[str, str]]:
    suite = view.manifest.get("suite") or {}
    env = environment_summary(view.manifest.get("environment") or {})
    facts = [
        ("Suite", view.suite), ("Run id", view.run_id), ("Date", run_date(view.manifest)),
        ("Status", str(view.manifest.get("status") or "unknown")), ("Pipeline", str(suite.get("pipeline") or "")),
        ("Device", str(suite.get("device") or "")), ("Modes", ", ".join(view.modes)),
        ("Clip lengths (s)", ", ".join(f"{c:g}" for c in view.clips)),
        ("Repeats (warm-up)", f"{suite.get('repeats', '?')} ({suite.get('warmup', '?')})"),
        ("GPU", env["gpu"] or "none"), ("CPU", env["cpu_model"] or "unknown"),
        ("torch / CUDA", f"{env['torch'] or 'n/a'} / {env['cuda'] or 'n/a'}"),
        ("Commit", (env["commit"] or "unknown")[:12]), ("Host", env["host"] or "unknown"),
    ]
    if base is not None:
        facts.append(("Compared against", base.run_id))
    return facts


def _section(key: str, title: str, title_ko: str, *blocks, paragraphs=None, preformatted: str = "") -> Section:
    return Section(key, title, title_ko, list(paragraphs or []), [b for b in blocks if b is not None], preformatted)


def _measure_sections(view: RunView, memory_budget: float | None) -> list[Section]:
    util = chartdata.util_chart(view)
    return [
        _section("cases", "Results per case", "케이스별 결과", tables.case_table(view)),
        _section("latency", "Latency against clip length", "클립 길이별 지연 시간", chartdata.latency_chart(view)),
        _section("stages", "Per-stage breakdown", "단계별 소요 시간", chartdata.stage_chart(view),
                 tables.stage_table(view)),
        _section("memory", "Peak memory", "최대 메모리 사용량",
                 chartdata.memory_chart(view, memory_budget)),
        _section("util", "Utilisation timeline", "활용률 타임라인", util,
                 paragraphs=[] if util else ["No utilisation timeline was recorded for this run "
                                             "(timeline.csv has no util_pct readings)."]),
        _section("failures", "Failures", "실패 현황", chartdata.failure_chart(view), tables.failure_table(view)),
    ]


def _budget_section(outcome: analysis.Outcome) -> Section:
    if not outcome.available:
        return _section("budgets", "Budgets", "예산 점검", paragraphs=[f"Budget check {outcome.note}."])
    return _section("budgets", "Budgets", "예산 점검", verdicts.budget_table(outcome))


def _sweep_section(outcome: analysis.Outcome | None, view: RunView) -> Section | None:
    if outcome is None:
        return None
    if not outcome.available:
        return _section("sweep", "Threshold sweep", "임계값 탐색", paragraphs=[f"Threshold sweep {outcome.note}."])
    lead, *details = verdicts.sweep_paragraphs(outcome)
    return _section("sweep", "Threshold sweep", "임계값 탐색", chartdata.sweep_chart(outcome.value),
                    verdicts.sweep_table(outcome, view), *details, paragraphs=[lead])


def _compare_section(outcomes: list[analysis.Outcome], base: RunView | None) -> Section | None:
    if not outcomes:
        return None
    blocks: list = []
    seen: set[str] = set()
    for o in outcomes:
        if not o.available:
            blocks.append(f"{o.title}: comparison {o.note}.")
            continue
        lines = [line for line in verdicts.compare_paragraphs(o.value) if line not in seen]
        seen.update(lines)
        blocks += [*lines, verdicts.compare_table(o)]
    intro = (f"This run (B) against {base.run_id} (A), cases matched by their full key." if base is not None
             else "Each mode (B) against the reference mode (A) of this run, matched by clip length.")
    return _section("compare", "Comparisons", "비교 결과", *blocks, paragraphs=[intro])


def _trend_section(outcome: analysis.Outcome, view: RunView) -> Section | None:
    """Only when the history store has nights of this suite; otherwise the appendix says why."""
    if not outcome.available:
        return None
    data = outcome.value
    return _section("trend", f"Trend of the last {len(data.nights)} nights", "야간 실행 추이",
                    trend.trend_chart(data, view.modes), trend.change_table(data),
                    paragraphs=trend.trend_paragraphs(data))


def _profile_section(outcome: analysis.Outcome | None) -> Section | None:
    if outcome is None:
        return None
    if not outcome.available:
        return _section("profile", "Profile summary", "프로파일 요약", paragraphs=[f"Profiles {outcome.note}."])
    return _section("profile", "Profile summary", "프로파일 요약", *profiles.profile_blocks(outcome.value),
                    paragraphs=profiles.profile_paragraphs(outcome.value["profiles"]))


def _appendix(view: RunView, warnings: list[dict], omitted: list[str] = ()) -> Section:
    notes = [str(n) for n in view.manifest.get("notes") or []] + list(omitted)
    env = format_environment(view.manifest.get("environment") or {})
    return _section("appendix", "Appendix: environment and validity", "부록: 환경 및 유효성",
                    tables.warning_table(warnings), paragraphs=notes, preformatted=env)


def assemble(view: RunView, base: RunView | None, *, db_url: str | None = None,
             trend_nights: int = DEFAULT_TREND_NIGHTS) -> ReportModel:
    warnings = [dict(w) for w in view.manifest.get("warnings") or []]
    budgets = analysis.budget_outcome(view)
    memory_budget = analysis.memory_budget_bytes(budgets)
    comparisons = analysis.comparison_outcomes(view, base)
    sweep = analysis.sweep_outcome(view, memory_budget)
    history = trend.trend_outcome(view, db_url, trend_nights)
    omitted = [] if history.available else [f"Trend of the last {trend_nights} nights {history.note}."]
    headline = tables.headline_table(view)
    sections = [
        _section("overview", "Summary", "요약", headline),
        *_measure_sections(view, memory_budget), _budget_section(budgets), _sweep_section(sweep, view),
        _compare_section(comparisons, base), _trend_section(history, view),
        _profile_section(profiles.profile_outcome(view.run_dir)), _appendix(view, warnings, omitted),
    ]
    verdict_list = [verdicts.budget_verdict(budgets),
                    verdicts.comparison_verdict(comparisons, between_runs=base is not None),
                    verdicts.failure_verdict(view), verdicts.warning_verdict(warnings)]
    return ReportModel(
        suite=view.suite, run_id=view.run_id, date=run_date(view.manifest),
        status=str(view.manifest.get("status") or "unknown"), modes=view.modes, clips=view.clips,
        facts=_facts(view, base), verdicts=verdict_list, sections=[s for s in sections if s is not None],
        headline=headline, warnings=warnings,
        against=base.run_id if base is not None else None, omitted=omitted,
    )


def build_model(run: str | Path, *, against: str | Path | None = None, db_url: str | None = None,
                trend_nights: int = DEFAULT_TREND_NIGHTS) -> ReportModel:
    """Read the run (and the baseline run to compare against) and build the report model; the
    trend comes from the history store at ``db_url`` (default: BENCH_DB_URL, else
    sqlite:///results/history.db), read only, when it has nights of the run's suite."""
    trend.check_nights(trend_nights)
    view = load_run(run)
    base = load_run(against) if against is not None else None
    return assemble(view, base, db_url=db_url, trend_nights=trend_nights)
