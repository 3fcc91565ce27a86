"""``bench run`` and ``bench env``: parse, call the core, print, choose the exit code.
Registered on the ``bench`` group by ``register(main)``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import UserError
from .common import executor_from_options, executor_options, fail_cleanly, signals_raise_interrupted, suite_overrides


def register(main: click.Group) -> None:
    main.add_command(run)
    main.add_command(env)


@click.command()
@click.argument("suite_file", type=click.Path(path_type=Path), required=False)
@click.option("--lengths", help="Clip lengths in seconds, e.g. 5,30,60.")
@click.option("--modes", help="Modes, e.g. single,chunked,hybrid@32.")
@click.option("--repeats", type=int, help="Measured repeats per case.")
@click.option("--warmup", type=int, help="Warm-up calls per case (not recorded).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the pipeline runs.")
@click.option("--timeout", type=float, help="Per-case timeout in seconds.")
@click.option("--memory-limit-gb", type=float, help="Per-case memory limit of the worker.")
@click.option("--variants", help="Only these variants, e.g. fp32,bf16.")
@click.option("--set", "set_items", multiple=True, metavar="KEY=VALUE",
              help="Override any suite field, e.g. --set chunk.window_s=5 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for run folders (default: the suite's results_dir).")
@click.option("--run-id", help="Name the run folder (default: UTC time and suite name).")
@click.option("--resume", "resume", metavar="RUN", help="Finish an interrupted run (id or path) under its run id.")
@click.option("--force", is_flag=True, help="With --resume: go on although the suite or environment changed.")
@click.option("--wait", is_flag=True, help="Wait for a lock held by another run instead of exiting 3.")
@click.option("--tune", is_flag=True, help="After the run, recommend a hybrid threshold (as bench tune-threshold).")
@executor_options
@fail_cleanly
def run(suite_file, lengths, modes, repeats, warmup, device, timeout, memory_limit_gb, variants, set_items, out,
        run_id, resume, force, wait, tune, executor_kind, devices, workers, ray_address):
    """Sweep clip lengths x modes x variants of SUITE_FILE and write samples.csv, summary.csv
    and manifest.json into a run folder. Interrupted (SIGINT/SIGTERM): summaries of what
    finished are written, the run is marked interrupted, exit 130/143; --resume finishes it."""
    from ..run.progress import ProgressPrinter
    from ..run.runner import resume_run, run_suite
    from ..suite import load_suite

    overrides = suite_overrides(lengths, modes, repeats, warmup, device, timeout, memory_limit_gb, set_items)
    if suite_file is None and not resume:
        raise UserError("run: SUITE_FILE is missing (expected a suite .toml, or --resume RUN)")
    suite = load_suite(suite_file, overrides) if suite_file else None
    if suite is not None and variants:
        suite = _only_variants(suite, variants)
    executor = executor_from_options(executor_kind, devices, workers, ray_address)
    with ProgressPrinter() as progress, signals_raise_interrupted():
        if resume:
            result = resume_run(resume, out_dir=out, suite=suite, argv=sys.argv, on_event=progress.handle,
                                force=force, wait=wait, executor=executor)
        else:
            result = run_suite(suite, out_dir=out, argv=sys.argv, on_event=progress.handle, run_id=run_id,
                               wait=wait, executor=executor)
    click.echo(f"samples:  {result.run_dir / 'samples.csv'}")
    click.echo(f"summary:  {result.run_dir / 'summary.csv'}")
    click.echo(f"manifest: {result.run_dir / 'manifest.json'}")
    if tune:
        _print_tuning(result.run_dir)


def _print_tuning(run_dir: Path) -> None:
    """The threshold recommendation for a finished run, as ``bench tune-threshold RUN`` prints it."""
    from ..formats import render
    from ..formats.documents import tune_document
    from ..analysis.tuning import tune_run

    click.echo(render(tune_document(tune_run(run_dir)), "table"))


def _only_variants(suite, names: str):
    from dataclasses import replace

    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in suite.variants]
    if unknown:
        raise UserError(f"--variants: {unknown[0]!r} is not a variant of {suite.path} "
                        f"(expected one of {', '.join(suite.variants)})")
    # without its reference variant a run has nothing to compare outputs with: accuracy stays blank
    reference = suite.reference_variant if suite.reference_variant in wanted else None
    return replace(suite, variants={n: suite.variants[n] for n in wanted}, reference_variant=reference)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the environment as JSON.")
@fail_cleanly
def env(as_json):
    """Print the captured environment (what every run's manifest records)."""
    from ..measure.environment import capture_environment, environment_warnings, format_environment

    captured = capture_environment(cwd=Path.cwd())
    if as_json:
        click.echo(json.dumps(captured, indent=2, sort_keys=True, default=str))
        return
    click.echo(format_environment(captured))
    for warning in environment_warnings(captured):
        click.echo(f"warning: {warning.message} (fix: {warning.fix})")
