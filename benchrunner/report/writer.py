"""``bench report``'s core: build the model once, write each requested format from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .model import DEFAULT_TREND_NIGHTS, ReportModel
from .sections import build_model

FORMATS = ("pdf", "html", "md")
PROSE_FILE = "research_log.toml"
ANSWERS_FILE = "answers.json"  # page 1's sentences, for the Slack digest (bench post, bench nightly)


def answers_payload(model: ReportModel) -> dict:
    return {"suite": model.suite, "run_id": model.run_id, "against": model.against,
            "answers": [{"topic": v.topic, "topic_ko": v.topic_ko, "text": v.text, "text_ko": v.text_ko,
                         "tone": v.tone} for v in model.verdicts]}


def write_answers(model: ReportModel, path: Path) -> Path:
    """Page 1's answers as JSON beside the report, so the digest posts the same sentences."""
    import json

    path.write_text(json.dumps(answers_payload(model), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class ReportFiles:
    model: ReportModel
    out_dir: Path
    paths: list[Path]
    location_note: str | None = None  # why the run folder does not record out_dir (report.json)


def _out_dir(out: Path | None, run_id: str, run_dir: Path) -> Path:
    """``out``, or reports/<run_id>/ with the manifest's run id checked: a crafted manifest
    cannot send the report outside reports/."""
    from ..store.runs import run_dir_for

    folder = Path(out) if out is not None else \
        run_dir_for(Path("reports"), run_id, f"{run_dir / 'manifest.json'}: run_id")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out: {folder}: cannot create the folder ({exc.strerror})") from None
    return folder


def _prose_path(run_dir: Path, prose: Path | None) -> Path | None:
    if prose is not None:
        return prose
    default = run_dir / PROSE_FILE
    return default if default.is_file() else None


def write_reports(run: str | Path, *, against: str | Path | None = None, formats: tuple[str, ...] = FORMATS,
                  research_log: str | None = "ko", out: Path | None = None,
                  prose: Path | None = None, db_url: str | None = None,
                  trend_nights: int = DEFAULT_TREND_NIGHTS) -> ReportFiles:
    """Write report.pdf / report.html / report.md and research_log.<lang>.md / .html into
    ``out`` (default reports/<run_id>/). ``prose`` is the research log's TOML (default:
    research_log.toml in the run folder, when there is one). The trend chart shows the last
    ``trend_nights`` nights of the suite in the history store at ``db_url`` (default:
    BENCH_DB_URL, else sqlite:///results/history.db), which is only read, never created."""
    from .model import resolve_run_dir
    from .research_log import LANGS, build_log, load_prose

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"format: {unknown[0]!r} is not a report format (expected one of {', '.join(FORMATS)})")
    if research_log is not None and research_log not in LANGS:
        raise UserError(f"--research-log: {research_log!r} is not a language (expected ko or en)")
    run_dir = resolve_run_dir(run)
    prose_fields = load_prose(_prose_path(run_dir, prose)) if research_log else {}
    model = build_model(run, against=against, db_url=db_url, trend_nights=trend_nights)
    folder = _out_dir(out, model.run_id, run_dir)
    paths = [_write_format(model, fmt, folder) for fmt in FORMATS if fmt in formats]
    if "pdf" in formats:  # the digest posts the PDF with these sentences
        paths.append(write_answers(model, folder / ANSWERS_FILE))
    if research_log:
        pdf_link = "report.pdf" if (folder / "report.pdf").is_file() else None  # beside the log, for any --out
        paths += _write_log(build_log(model, research_log, prose_fields, pdf_link=pdf_link), folder)
    return ReportFiles(model, folder, paths, _record_location(run_dir, folder, paths))


def _record_location(run_dir: Path, folder: Path, paths: list[Path]) -> str | None:
    """Record in the run folder where the reports went (report.json), so ``bench post RUN``
    finds them wherever --out put them. A run folder that cannot be written is said, not fatal."""
    from ..store.results import REPORT_LOCATION, write_report_location

    try:
        write_report_location(run_dir, folder, paths)
    except OSError as exc:
        return (f"{run_dir / REPORT_LOCATION}: could not record where the reports went ({exc.strerror or exc}); "
                f"bench post needs --reports {folder.parent}")
    return None


def _write_format(model: ReportModel, fmt: str, folder: Path) -> Path:
    if fmt == "pdf":
        from .pdf import render_pdf

        return render_pdf(model, folder / "report.pdf")
    if fmt == "html":
        from .html import write_html

        return write_html(model, folder / "report.html")
    from .markdown import write_markdown

    return write_markdown(model, folder / "report.md")


def _write_log(log, folder: Path) -> list[Path]:
    from .research_log import render_log_html, render_log_markdown

    md_path = folder / f"research_log.{log.lang}.md"
    html_path = folder / f"research_log.{log.lang}.html"
    md_path.write_text(render_log_markdown(log), encoding="utf-8")
    html_path.write_text(render_log_html(log), encoding="utf-8")
    return [md_path, html_path]
