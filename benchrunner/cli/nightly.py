"""``bench post`` and ``bench nightly``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def register(main: click.Group) -> None:
    from .common import executor_from_options, executor_options, fail_cleanly, signals_raise_interrupted

    @main.command()
    @click.argument("run")
    @click.option("--channel", required=True, help="Slack channel (name or ID).")
    @click.option("--thread-ts", help="Post into this thread.")
    @click.option("--dry-run", is_flag=True, help="Print the message JSON and the file; send nothing (no token needed).")
    @click.option("--token-env", default="SLACK_BOT_TOKEN", show_default=True,
                  help="Name of the environment variable holding the Slack bot token.")
    @click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"),
                  show_default=True, help="Where run folders are.")
    @click.option("--reports", "reports_dir", type=click.Path(path_type=Path),
                  help="Where reports are, as REPORTS/<run_id>/report.pdf (default: where `bench report` "
                       "last wrote RUN's reports, as recorded in RUN/report.json, else reports/).")
    @fail_cleanly
    def post(run, channel, thread_ts, dry_run, token_env, results_dir, reports_dir):
        """Post RUN's digest to Slack, then its PDF report into the digest's thread.
        The token comes from SLACK_BOT_TOKEN; BENCH_SLACK_API_URL points at another API base."""
        from ..errors import NotifyError
        from ..notify.digest import build_digest
        from ..notify.from_run import digest_input, read_answers
        from ..notify.slack import dry_run_payload, post_report
        from ..store.runs import resolve_run

        run_dir = resolve_run(run, results_dir)
        pdf = _report_pdf(run_dir, reports_dir)
        if not pdf.is_file():
            raise NotifyError(f"{pdf}: no PDF report for {run_dir.name} (write it first: bench report {run_dir})")
        answers = read_answers(pdf.parent)
        if not answers:  # a report written before answers.json existed: the same model, built again
            from ..report.sections import build_model

            answers = [(v.topic, v.text) for v in build_model(run_dir).verdicts]
        digest = build_digest(digest_input(run_dir, [], report_name=pdf.name, answers=answers))
        if dry_run:
            click.echo(json.dumps(dry_run_payload(digest, channel=channel, pdf_path=pdf, thread_ts=thread_ts),
                                  indent=2, ensure_ascii=False))
            return
        posted = post_report(digest, channel=channel, pdf_path=pdf, thread_ts=thread_ts, token_env=token_env)
        click.echo(f"posted to {posted.channel} (ts {posted.ts}); report uploaded as {posted.file_id}")

    @main.command()
    @click.argument("suite_file", type=click.Path(path_type=Path))
    @click.option("--baseline", default="last-good", show_default=True,
                  help="last-good (from the history store) or a run id/path.")
    @click.option("--slack-channel", help="Post the digest and the PDF here.")
    @click.option("--thread-ts", help="Post into this Slack thread.")
    @click.option("--db", "db_url", help="History store URL (default: BENCH_DB_URL or sqlite:///results/history.db).")
    @click.option("--out", "results_dir", type=click.Path(path_type=Path), help="Folder for run folders.")
    @click.option("--reports", "reports_dir", type=click.Path(path_type=Path), default=Path("reports"),
                  show_default=True)
    @click.option("--dry-run", is_flag=True, help="Print the Slack message instead of posting it.")
    @click.option("--token-env", default="SLACK_BOT_TOKEN", show_default=True,
                  help="Name of the environment variable holding the Slack bot token.")
    @click.option("--wait", is_flag=True, help="Wait for a running nightly of this suite instead of exiting 3.")
    @executor_options
    @fail_cleanly
    def nightly(suite_file, baseline, slack_channel, thread_ts, db_url, results_dir, reports_dir, dry_run, token_env,
                wait, executor_kind, devices, workers, ray_address):
        """What cron runs: run SUITE_FILE (resuming today's interrupted nightly), compare with the
        baseline, check budgets and the nightly trend, write the reports, post, record the run.
        Exit 0 all well, 1 regression/breach/change point, 2 bad input, 3 locked, 4 Slack failed,
        5 the run did not finish, 6 report failed, 7 history store failed, 130/143 interrupted."""
        from ..errors import scrub
        from ..nightly.orchestrate import run_nightly
        from ..run.progress import ProgressPrinter
        from ..suite import load_suite

        suite = load_suite(suite_file)
        if slack_channel and not dry_run:  # before the run, not after a night of it
            from ..notify.slack import check_settings

            check_settings(token_env=token_env)
        executor = executor_from_options(executor_kind, devices, workers, ray_address)
        with ProgressPrinter() as progress, signals_raise_interrupted():
            def on_event(kind, **event):
                if kind == "dry_run":
                    click.echo(json.dumps(event["payload"], indent=2, ensure_ascii=False))
                else:
                    progress.handle(kind, **event)

            result = run_nightly(suite, baseline=baseline, channel=slack_channel, db_url=db_url,
                                 results_dir=results_dir, reports_dir=reports_dir, thread_ts=thread_ts,
                                 dry_run=dry_run, wait=wait, on_event=on_event, argv=sys.argv, token_env=token_env,
                                 executor=executor)
        for line in _summary_lines(result):
            click.echo(scrub(line), err=result.exit_code != 0)
        sys.exit(result.exit_code)


def _report_pdf(run_dir: Path, reports_dir: Path | None) -> Path:
    """RUN's PDF: under --reports when given, else where `bench report` recorded it went
    (report.json in the run folder), else reports/<run_id>/."""
    from ..store.results import read_report_location
    from ..store.runs import run_dir_for

    if reports_dir is None:
        recorded = read_report_location(run_dir)
        if recorded is not None:
            return recorded / "report.pdf"
        reports_dir = Path("reports")
    return run_dir_for(reports_dir, run_dir.name, "RUN") / "report.pdf"


def _summary_lines(result) -> list[str]:
    from ..nightly.orchestrate import EXIT_CODES

    head = f"nightly: {EXIT_CODES.get(result.exit_code, result.exit_code)} (exit {result.exit_code})"
    if result.alerts and result.exit_code != 1:
        head += f"; also {len(result.alerts)} regression alert(s), recorded as a regression (see alert lines)"
    lines = [head]
    lines += [f"  run: {result.run_dir}", f"  baseline: {result.baseline or 'none'}",
              f"  report: {result.report_dir or 'not written'}"]
    lines += [f"  problem: {p}" for p in result.problems]
    lines += [f"  alert: {a}" for a in result.alerts]
    lines += [f"  note: {n}" for n in result.notes]
    if result.posted is not None:
        lines.append(f"  posted: {result.posted.channel} ts {result.posted.ts}")
    return lines
