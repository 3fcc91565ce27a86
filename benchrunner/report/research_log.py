"""The research-log section in the team's shape, in Korean or English, as Markdown and as a
paste-ready HTML fragment (inline styles only, for the national R&D management system).

Figures come from the report model; the prose fields come from a small TOML file the user
fills (every field optional; defaults are written from the run):

    author = "홍길동"              approver = "김철수"          stage = "2차년도 1단계"
    keywords = ["hybrid", "chunked"]
    background = "..."            goal = "..."
    work_done = ["...", "..."]    problems = ["..."]          next_steps = ["..."]
    references = ["..."]          title = "..."               date = "2025-03-01"

A string or a list of strings is accepted for every text field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .messages import failure_kind_ko, warning_fix_ko, warning_title_ko
from .model import ReportModel, Table
from .templating import render

LANGS = ("ko", "en")
FIELDS = ("title", "date", "author", "approver", "stage", "keywords", "background", "goal", "work_done",
          "problems", "next_steps", "references")
LABELS = {
    "ko": {"title": "연구노트", "date": "일자", "author": "작성자", "approver": "승인자", "stage": "과제 단계",
           "keywords": "키워드", "background": "1. 배경 및 목표", "goal": "목표", "work_done": "2. 수행 내용",
           "results": "3. 결과 및 정량 지표", "problems": "4. 문제점 및 대응", "next_steps": "5. 향후 계획",
           "references": "참고 자료", "unset": "(미기재)", "verdicts": "판정", "pdf": "결과 보고서 (PDF)"},
    "en": {"title": "Research log", "date": "Date", "author": "Author", "approver": "Approver",
           "stage": "Project stage", "keywords": "Keywords", "background": "1. Background and goal", "goal": "Goal",
           "work_done": "2. Work done", "results": "3. Results and quantitative figures",
           "problems": "4. Problems and how they were handled", "next_steps": "5. Next steps",
           "references": "References", "unset": "(not set)", "verdicts": "Verdicts", "pdf": "Report (PDF)"},
}


@dataclass(frozen=True)
class ResearchLog:
    lang: str
    labels: dict[str, str]
    title: str
    date: str
    author: str
    approver: str
    stage: str
    keywords: list[str]
    background: list[str]
    goal: list[str]
    work_done: list[str]
    verdicts: list[tuple[str, str]]
    results: Table
    problems: list[str]
    next_steps: list[str]
    references: list[str]
    pdf_link: str | None = None


def _as_list(value, key: str, source: str) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    raise UserError(f"{source}: {key}: {value!r} is not valid (expected a string or a list of strings)")


def load_prose(path: Path | None) -> dict[str, list[str]]:
    """The prose TOML as field -> list of strings; {} when there is no file."""
    if path is None:
        return {}
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the research-log fields ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise UserError(f"{path}: {unknown[0]}: unknown field (expected one of {', '.join(FIELDS)})")
    return {key: _as_list(value, key, str(path)) for key, value in raw.items()}


def _inline(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items())
    return str(value)


def _defaults(model: ReportModel, lang: str) -> dict[str, list[str]]:
    c = model.config
    modes, clips = ", ".join(model.modes), ", ".join(f"{x:g}" for x in model.clips)
    if lang == "ko":
        device = {"cpu": "CPU", "cuda": "GPU", "auto": "자동 선택"}.get(str(c.get("device")), str(c.get("device")))
        return {
            "title": [f"{model.suite} 벤치마크 결과"],
            "keywords": [model.suite, *dict.fromkeys(m.split("@")[0] for m in model.modes), "벤치마크"],
            "background": [f"{c.get('pipeline') or '파이프라인'}의 지연 시간, 메모리, 실패를 클립 길이와 실행 모드별로 측정한다."],
            "goal": ["하이브리드와 청크 처리를 비교하고, 하이브리드 임계값을 고르고, 예산(지연 시간, 메모리, 실패율) "
                     "충족 여부를 확인한다."],
            "work_done": [f"스위트 {model.suite} 실행 (실행 ID {model.run_id}, {model.date})",
                          f"모드 {modes} × 클립 길이 {clips} s, 반복 {c.get('repeats', '?')}회 "
                          f"(워밍업 {c.get('warmup', '?')}회)",
                          f"파이프라인 인자: {_inline(c.get('pipeline_args') or {}) or '없음'}; 청크 설정: "
                          f"{_inline(c.get('chunk') or {}) or '기본값'}",
                          f"장치 {device}, GPU {c.get('gpu') or '없음'}, CPU {c.get('cpu') or '미상'}, "
                          f"torch {c.get('torch') or '미상'}, CUDA {c.get('cuda') or '없음'}",
                          f"파이프라인 커밋 {str(c.get('pipeline_commit') or '기록 없음')[:12]}, "
                          f"benchrunner 커밋 {str(c.get('benchrunner_commit') or '기록 없음')[:12]}"],
        }
    return {
        "title": [f"{model.suite} benchmark results"],
        "keywords": [model.suite, *dict.fromkeys(m.split("@")[0] for m in model.modes), "benchmark"],
        "background": [f"Measure latency, memory and failures of {c.get('pipeline') or 'the pipeline'} per clip "
                       "length and mode."],
        "goal": ["Compare hybrid with chunked, choose the hybrid threshold, and check the budgets "
                 "(latency, memory, failure rate)."],
        "work_done": [f"Ran suite {model.suite} (run {model.run_id}, {model.date})",
                      f"Modes {modes} × clip lengths {clips} s, {c.get('repeats', '?')} repeats "
                      f"({c.get('warmup', '?')} warm-up)",
                      f"pipeline_args: {_inline(c.get('pipeline_args') or {}) or 'none'}; chunk: "
                      f"{_inline(c.get('chunk') or {}) or 'defaults'}",
                      f"Device {c.get('device')}, GPU {c.get('gpu') or 'none'}, CPU {c.get('cpu') or 'unknown'}, "
                      f"torch {c.get('torch') or 'unknown'}, CUDA {c.get('cuda') or 'none'}",
                      f"Pipeline commit {str(c.get('pipeline_commit') or 'not recorded')[:12]}, "
                      f"benchrunner commit {str(c.get('benchrunner_commit') or 'not recorded')[:12]}"],
    }


def _next_steps(model: ReportModel, lang: str) -> list[str]:
    """From message ids, never copied English: each warning's fix in the log's language."""
    codes = list(dict.fromkeys(str(w.get("code")) for w in model.warnings))
    fixes = [warning_fix_ko(c) for c in codes] if lang == "ko" else \
        [str(w.get("fix")) for w in model.warnings if w.get("fix")]
    failing = [v for v in model.verdicts if v.topic == "Failures" and v.tone == "bad"]
    if failing:
        fixes.insert(0, "실패한 케이스의 원인 분석 후 재측정" if lang == "ko" else
                     "find the cause of the failed cases and measure them again")
    threshold = next((v for v in model.verdicts if v.topic == "Best threshold"), None)
    if threshold is not None and "cannot be told apart" in threshold.text:
        fixes.append("임계값 사이에 클립 길이를 추가하여 측정" if lang == "ko" else
                     "add clip lengths between the thresholds that cannot be told apart, and measure again")
    return list(dict.fromkeys(fixes))


def _problems(model: ReportModel, lang: str) -> list[str]:
    """Every failing case with its failure kinds, then every validity warning (by id in Korean)."""
    table = next((b for b in model.section("failures").blocks if isinstance(b, Table) and b.key == "failures"), None)
    rows = table.rows if table is not None else []
    kinds = table.columns[2:-1] if table is not None else []
    if lang == "ko":
        found = [f"{row[0]}: {row[1]}회 실패 (" + ", ".join(f"{failure_kind_ko(k)} {n}회" for k, n in zip(kinds, row[2:-1])
                                                         if n != "0") + ")" for row in rows]
        codes = dict.fromkeys(str(w.get("code")) for w in model.warnings)
        return found + [f"{warning_title_ko(c)} (조치: {warning_fix_ko(c)})" for c in codes]
    found = [f"{row[0]}: {row[1]} failed ({row[-1] or '-'})" for row in rows]
    return found + [f"{w.get('message')} (fix: {w.get('fix')})" for w in model.warnings]


def _results_table(model: ReportModel, lang: str) -> Table:
    table = model.headline_ko if lang == "ko" and model.headline_ko is not None else model.headline
    return Table(table.key, table.columns, table.rows, table.tones, caption="", empty=table.empty)


def build_log(model: ReportModel, lang: str = "ko", prose: dict[str, list[str]] | None = None,
              pdf_link: str | None = "report.pdf") -> ResearchLog:
    """``pdf_link``: the PDF's path relative to the log's folder (None when no PDF is written)."""
    if lang not in LANGS:
        raise UserError(f"--research-log: {lang!r} is not a language (expected ko or en)")
    prose = prose or {}
    fields = {**_defaults(model, lang), **{k: v for k, v in prose.items() if v}}
    labels = LABELS[lang]
    unset = labels["unset"]

    def one(key: str, default: str) -> str:
        return (fields.get(key) or [default])[0]

    return ResearchLog(
        lang=lang, labels=labels, title=one("title", model.suite), date=one("date", model.date[:10]),
        author=one("author", unset), approver=one("approver", unset), stage=one("stage", unset),
        keywords=fields["keywords"], background=fields["background"], goal=fields["goal"],
        work_done=fields["work_done"],
        verdicts=[(v.topic_ko, v.text_ko or v.text) if lang == "ko" else (v.topic, v.text) for v in model.verdicts],
        results=_results_table(model, lang),
        problems=[*prose.get("problems", []), *_problems(model, lang)],
        next_steps=prose.get("next_steps") or _next_steps(model, lang),
        references=[*prose.get("references", []),
                    (f"실행 폴더 {model.run_id}: summary.csv, samples.csv, manifest.json" if lang == "ko" else
                     f"run folder {model.run_id}: summary.csv, samples.csv, manifest.json")],
        pdf_link=pdf_link,
    )


def render_log_markdown(log: ResearchLog) -> str:
    return render("research_log.md.j2", log=log)


def render_log_html(log: ResearchLog) -> str:
    return render("research_log.html.j2", log=log)
