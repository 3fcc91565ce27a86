"""Assemble the report model: facts, verdicts and sections in reading order. The one place
that imports both the model and the modules that build its sections (model.py imports none of them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..measure.environment import environment_summary, format_environment
from . import analysis, chartdata, fmt, profiles, tables, trend, verdicts
from .answers import page_one
from .model import DEFAULT_TREND_NIGHTS, ReportModel, RunView, Section, load_run, run_date
from .throughput import throughput_section
from .variants import variants_section


def _commit(git: dict | None) -> str:
    git = git or {}
    if git.get("commit"):
        return str(git["commit"])[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    return f"not recorded ({git['error']})" if git.get("error") else "not recorded"


def _distinct(view: RunView, column: str) -> str:
    values = view.samples[column] if column in view.samples else []
    found = sorted({p for v in values if isinstance(v, str) for p in v.split("+") if p})
    return ", ".join(found) or "not recorded"


def _inline(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) or "none"
    return str(value)


def config_values(view: RunView) -> dict:
    """The settings in raw form (None where the run did not record one), for the research log."""
    suite = view.manifest.get("suite") or {}
    raw = suite.get("as_loaded") or {}
    env = view.manifest.get("environment") or {}
    summary = environment_summary(env)
    sources = env.get("sources") or {}
    return {"pipeline": suite.get("pipeline"), "pipeline_args": raw.get("pipeline_args") or {},
            "chunk": raw.get("chunk") or {}, "device": suite.get("device"), "gpu": summary["gpu"],
            "cpu": summary["cpu_model"], "torch": summary["torch"], "cuda": summary["cuda"],
            "repeats": suite.get("repeats"), "warmup": suite.get("warmup"),
            "pipeline_commit": (sources.get("pipeline") or {}).get("commit"),
            "benchrunner_commit": (sources.get("benchrunner") or env.get("git") or {}).get("commit")}


def config_facts(view: RunView, base: RunView | None) -> list[tuple[str, str]]:
    """How the run was configured: what a reader needs to tell a regression from a changed setting."""
    suite = view.manifest.get("suite") or {}
    raw = suite.get("as_loaded") or {}
    env = view.manifest.get("environment") or {}
    summary = environment_summary(env)
    sources = env.get("sources") or {}
    chunk = raw.get("chunk") or {}
    util = sorted({str(v) for v in view.totals["util_source"].dropna() if str(v)})
    facts = [
        ("Suite", f"{view.suite} ({suite.get('path') or 'path not recorded'})"),
        ("Run", f"{view.run_id}, {run_date(view.manifest)}, {view.manifest.get('status') or 'unknown'}"),
        ("Pipeline", str(suite.get("pipeline") or "")),
        ("pipeline_args", _inline(raw.get("pipeline_args") or {})),
        ("Modes", ", ".join(view.modes)),
        ("Clip lengths", ", ".join(f"{c:g}" for c in view.clips) + " s"),
        ("Chunk", _inline(chunk) if chunk else "suite defaults (not recorded)"),
        ("Repeats (warm-up)", f"{suite.get('repeats', '?')} ({suite.get('warmup', '?')})"),
        ("Device", f"{suite.get('device') or '?'}; GPU {summary['gpu'] or 'none'}; CPU {summary['cpu_model'] or 'unknown'}"),
        ("torch / CUDA", f"{summary['torch'] or 'n/a'} / {summary['cuda'] or 'n/a'}"),
        ("Timer", _distinct(view, "timer_source")),
        ("Memory source", _distinct(view, "mem_source")),
        ("Util source", ", ".join(fmt.util_source_label(u) or u for u in util) or "not recorded"),
        ("Pipeline commit", _commit(sources.get("pipeline")) if sources else "not recorded (older run)"),
        ("benchrunner commit", _commit(sources.get("benchrunner")) if sources else
         f"{_commit(env.get('git'))} (working directory)"),
        ("Command line", " ".join(str(a) for a in view.manifest.get("argv") or []) or "not recorded"),
    ]
    if base is not None:
        facts.append(("Compared against", base.run_id))
    return facts


def _section(key: str, title: str, title_ko: str, *blocks, paragraphs=None, preformatted: str = "") -> Section:
    return Section(key, title, title_ko, list(paragraphs or []), [b for b in blocks if b is not None], preformatted)


def _measure_sections(view: RunView, memory_budget: float | None) -> list[Section]:
    util = chartdata.util_chart(view)
    util_clip = chartdata.util_clip_chart(view)
    failures = int(pd.to_numeric(view.totals["failures"], errors="coerce").fillna(0).sum())
    failure_blocks = [chartdata.failure_chart(view), tables.failure_table(view)] if failures else []
    return [
        _section("latency", "Latency against clip length", "클립 길이별 지연 시간", chartdata.latency_chart(view)),
        _section("memory", "Peak memory", "최대 메모리 사용량", chartdata.memory_chart(view, memory_budget)),
        _section("util", "Utilisation", "활용률", util_clip, util,
                 paragraphs=[] if util else ["No utilisation timeline was recorded for this run "
                                             "(timeline.csv has no util_pct readings)."]),
        _section("stages", "Per-stage breakdown", "단계별 소요 시간", chartdata.stage_chart(view)),
        _section("failures", "Failures", "실패 현황", *failure_blocks,
                 paragraphs=[] if failures else ["No failures: every repeat of every case succeeded."]),
    ]


def _detail_sections(view: RunView, comparisons: list[analysis.Outcome]) -> list[Section]:
    """The appendix's detail tables: per case, per stage, every comparison row with its CI and p."""
    blocks: list = []
    for o in comparisons:
        if o.available:
            blocks += [*verdicts.compare_paragraphs(o.value)[:1], verdicts.compare_table(o)]
    notes = list(dict.fromkeys(n for o in comparisons if o.available for n in o.value.notes))
    return [
        _section("cases", "Results per case", "케이스별 결과", tables.case_table(view)),
        _section("stage_table", "Per-stage medians", "단계별 중앙값", tables.stage_table(view)),
        *([_section("compare_detail", "Comparisons in detail", "비교 상세", *blocks, paragraphs=notes)] if blocks else []),
    ]


def _failures_only(view: RunView) -> Section:
    """The failures section of a run without latency cases (its throughput section counts the
    failed clips per level)."""
    return _section("failures", "Failures", "실패 현황", tables.failure_table(view),
                    paragraphs=["This run has no latency cases; failed clips under load are counted per level in "
                                "the throughput section."])


def _budget_section(outcome: analysis.Outcome) -> Section:
    if not outcome.available:
        return _section("budgets", "Budgets", "예산 점검", paragraphs=[f"Budget check {outcome.note}."])
    return _section("budgets", "Budgets", "예산 점검", verdicts.budget_table(outcome))


def _sweep_section(outcome: analysis.Outcome | None, view: RunView) -> Section | None:
    if outcome is None:
        return None
    if not outcome.available:
        return _section("sweep", "Threshold sweep", "임계값 탐색", paragraphs=[f"Threshold sweep {outcome.note}."])
    lead, _reason, *details = verdicts.sweep_paragraphs(outcome)  # the reason's figures: page 1 and the appendix
    return _section("sweep", "Threshold sweep", "임계값 탐색", chartdata.sweep_chart(outcome.value),
                    verdicts.sweep_table(outcome, view), *details, paragraphs=[lead])


def _compare_section(modes: list[analysis.Outcome], runs: list[analysis.Outcome],
                     base: RunView | None) -> list[Section]:
    out = []
    if modes:
        out.append(_section("compare", "Mode comparisons", "모드 비교", verdicts.ratio_matrix(modes, "modes"),
                            paragraphs=["Each row is mode B against mode A of this run, per clip length: the ratio "
                                        "of median latencies B/A and its 95% bootstrap CI, with compare.py's "
                                        "verdict as the colour (green: B significantly faster, red: slower, "
                                        "plain: no significant difference)."]))
    if base is not None and runs:
        blocks = [verdicts.ratio_matrix([o], o.value.metric if o.available else o.title, by_case=True)
                  if o.available else f"{o.title}: comparison {o.note}." for o in runs]
        out.append(_section("runs", "Against the baseline run", "기준 실행 대비", *blocks,
                            paragraphs=[f"This run (B) against {base.run_id} (A), cases matched by their full key: "
                                        "latency and peak memory as B/A with a 95% bootstrap CI, failures as k/n "
                                        "(Fisher's exact test); colour is compare.py's verdict."]))
    return out


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


def _appendix(view: RunView, warnings: list[dict], omitted: list[str] = (), sweep=None) -> Section:
    notes = [str(n) for n in view.manifest.get("notes") or []] + list(omitted)
    if sweep is not None and sweep.available:
        notes.append(f"Threshold search, in tuning.py's words: {sweep.value.reason}")
    env = format_environment(view.manifest.get("environment") or {})
    return _section("appendix", "Appendix: environment and validity", "부록: 환경 및 유효성",
                    tables.warning_table(warnings), paragraphs=notes, preformatted=env)


def assemble(view: RunView, base: RunView | None, *, db_url: str | None = None,
             trend_nights: int = DEFAULT_TREND_NIGHTS) -> ReportModel:
    warnings = [dict(w) for w in view.manifest.get("warnings") or []]
    budgets = analysis.budget_outcome(view)
    memory_budget = analysis.memory_budget_bytes(budgets)
    latency = not view.totals.empty  # a run of the throughput scenario alone has no latency cases
    modes = analysis.mode_outcomes(view) if latency else []
    noise = trend.night_noise(view, db_url, analysis.RUN_METRICS) if latency and base is not None else {}
    runs = analysis.run_outcomes(view, base, noise) if latency else []
    sweep = analysis.sweep_outcome(view, memory_budget) if latency else None
    history = trend.trend_outcome(view, db_url, trend_nights)
    omitted = [] if history.available else [f"Trend of the last {trend_nights} nights {history.note}."]
    headline = tables.headline_table(view)
    sections = [
        _section("overview", "Summary per mode", "모드별 요약", headline),
        *_compare_section(modes, runs, base),
        *(_measure_sections(view, memory_budget) if latency else [_failures_only(view)]), variants_section(view),
        _budget_section(budgets),
        _sweep_section(sweep, view), _trend_section(history, view),
        _profile_section(profiles.profile_outcome(view.run_dir)), throughput_section(view.run_dir),
        *_detail_sections(view, [*modes, *runs]), _appendix(view, warnings, omitted, sweep),
    ]
    answers = page_one(view, modes=modes, runs=runs, sweep=sweep, budgets=budgets, warnings=warnings,
                       base_id=base.run_id if base is not None else None)
    return ReportModel(
        suite=view.suite, run_id=view.run_id, date=run_date(view.manifest),
        status=str(view.manifest.get("status") or "unknown"), modes=view.modes, clips=view.clips,
        facts=config_facts(view, base), verdicts=answers, sections=[s for s in sections if s is not None],
        headline=headline, warnings=warnings,
        against=base.run_id if base is not None else None, omitted=omitted,
        config=config_values(view), headline_ko=tables.headline_table(view, lang="ko"),
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
