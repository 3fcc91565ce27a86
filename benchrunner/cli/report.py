"""``bench report``: parse, call report.writer.write_reports, print the files written (and,
when --db was given but the trend chart could not be drawn, why)."""

from __future__ import annotations

from pathlib import Path

import click


def register(main: click.Group) -> None:
    from .common import fail_cleanly

    @main.command()
    @click.argument("run")
    @click.option("--against", metavar="RUN2", help="Baseline run (id or folder) to compare RUN against.")
    @click.option("--pdf", is_flag=True, help="Write report.pdf.")
    @click.option("--html", is_flag=True, help="Write report.html (one self-contained page).")
    @click.option("--md", is_flag=True, help="Write report.md (for a pull request or a wiki).")
    @click.option("--research-log", type=click.Choice(["ko", "en"]),
                  help="Write research_log.<lang>.md and a paste-ready .html fragment.")
    @click.option("--prose", type=click.Path(path_type=Path),
                  help="TOML with the research log's prose fields (default: RUN/research_log.toml).")
    @click.option("--out", type=click.Path(path_type=Path), help="Output folder (default: reports/<run_id>/).")
    @click.option("--db", "db_url", help="History store for the trend chart, read only (default: BENCH_DB_URL, "
                                         "else sqlite:///results/history.db); without one the chart is left out.")
    @click.option("--trend-nights", type=int, default=14, show_default=True, metavar="N",
                  help="Nights of history the trend chart shows, up to RUN.")
    @fail_cleanly
    def report(run, against, pdf, html, md, research_log, prose, out, db_url, trend_nights):
        """Render RUN's results as PDF, HTML, Markdown and a research log (default: all of
        them, the log in Korean) from its summary.csv, samples.csv and manifest.json."""
        from ..report.writer import FORMATS, write_reports

        if db_url:  # a store named with --db that cannot be read is bad input, not a note
            _check_db(db_url)
        formats = tuple(name for name, wanted in (("pdf", pdf), ("html", html), ("md", md)) if wanted)
        everything = not formats and research_log is None
        result = write_reports(run, against=against, formats=FORMATS if everything else formats,
                               research_log="ko" if everything else research_log, out=out, prose=prose,
                               db_url=db_url, trend_nights=trend_nights)
        for path in result.paths:
            click.echo(f"{path.name + ':':<22} {path}")
        if result.location_note:
            click.echo(f"note: {result.location_note}", err=True)
        if db_url:
            for note in result.model.omitted:
                click.echo(f"note: {note}", err=True)


def _check_db(db_url: str) -> None:
    """Open the history store read-only once: a malformed URL, a missing driver, a server that
    cannot be reached or a SQLite file that does not exist raise UserError (exit 2)."""
    from ..store.history import open_history

    with open_history(db_url, create=False):
        pass
