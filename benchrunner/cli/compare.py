"""``bench compare``, ``bench tune-threshold`` and ``bench check``: parse, call the core,
print, choose the exit code. Registered on the ``bench`` group by ``register(main)``.

Imports of the core are inside the commands: ``bench --help`` stays fast, and compare
never imports torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..formats import FORMATS

GIB = 2.0**30


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _emit(doc, fmt: str) -> None:
    from ..formats import render

    click.echo(render(doc, fmt, color=_color() and fmt == "table"))


def _emit_many(docs: list, sides: list[tuple[str, str]], fmt: str) -> None:
    """One document as usual; several (one per hybrid threshold) as consecutive tables, a JSON
    array, or one CSV with the sides A and B as leading columns."""
    if len(docs) == 1:
        _emit(docs[0], fmt)
        return
    from ..formats import render

    if fmt == "json":
        click.echo("[\n" + ",\n".join(render(doc, "json").rstrip() for doc in docs) + "\n]")
    elif fmt == "csv":
        click.echo(_csv_with_sides([render(doc, "csv") for doc in docs], sides), nl=False)
    else:
        click.echo("\n\n".join(render(doc, fmt, color=_color() and fmt == "table").rstrip() for doc in docs))


def _csv_with_sides(texts: list[str], sides: list[tuple[str, str]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for index, (text, (a, b)) in enumerate(zip(texts, sides)):
        rows = list(csv.reader(io.StringIO(text)))
        if index == 0:
            writer.writerow(["a", "b", *rows[0]])
        writer.writerows([a, b, *row] for row in rows[1:])
    return out.getvalue()


def _results_dir_option(fn):
    return click.option("--results-dir", type=click.Path(path_type=Path), default=Path("results"),
                        show_default=True, help="Folder of run folders (where `bench run` wrote them).")(fn)


def _format_option(fn):
    return click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="table", show_default=True,
                        help="Output format; csv and json carry the raw numbers.")(fn)


def register(main: click.Group) -> None:
    """Add compare, tune-threshold and check to the ``bench`` group."""
    from .common import fail_cleanly

    for command in (_compare_command(fail_cleanly), _tune_command(fail_cleanly), _check_command(fail_cleanly)):
        main.add_command(command)


def _compare_command(fail_cleanly) -> click.Command:
    @click.command("compare")
    @click.argument("a")
    @click.argument("b")
    @click.option("--run", "run_ref", help="Run id or folder holding A and B (default: the latest run).")
    @_results_dir_option
    @click.option("--metric", default="latency", show_default=True,
                  help="latency, memory, util or failure; throughput or load_latency compare the throughput "
                       "scenario's rows, level by level.")
    @click.option("--stage", default="total", show_default=True, help="Pipeline stage (total = end to end).")
    @click.option("--all-stages", is_flag=True, help="A row per stage as well as end to end.")
    @click.option("--min-effect", type=float, default=0.02, show_default=True,
                  help="Smallest relative change that counts as a change (0.02 = 2%).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
    @_format_option
    @click.option("--fail-on-regression", is_flag=True, help="Exit 1 when any row is a regression (B slower).")
    @fail_cleanly
    def compare_cmd(a, b, run_ref, results_dir, metric, stage, all_stages, min_effect, seed, fmt,
                    fail_on_regression):
        """Compare B against A (ratio B/A): two modes (hybrid@32 chunked), two variants (fp16 fp32,
        or fp16/hybrid@32), or two runs (ids or paths). A bare hybrid in a run with several
        thresholds compares each threshold, one table each."""
        from ..analysis.compare import THROUGHPUT_METRICS, compare, expand_sides
        from ..formats.documents import compare_document

        if metric in THROUGHPUT_METRICS:  # the throughput scenario's rows, level by level
            from ..analysis.throughput.compare import compare_throughput

            results = [compare_throughput(a, b, run=run_ref, results_dir=results_dir, metric=metric,
                                          min_effect=min_effect, seed=seed)]
        else:
            results = [compare(x, y, run=run_ref, results_dir=results_dir, metric=metric, stage=stage,
                               all_stages=all_stages, min_effect=min_effect, seed=seed)
                       for x, y in expand_sides(a, b, run=run_ref, results_dir=results_dir)]
        _emit_many([compare_document(r) for r in results], [(r.a_label, r.b_label) for r in results], fmt)
        if fail_on_regression and any(r.regressions() for r in results):
            sys.exit(1)

    return compare_cmd


def _tune_command(fail_cleanly) -> click.Command:
    @click.command("tune-threshold")
    @click.argument("run_ref", required=False)
    @_results_dir_option
    @click.option("--memory-budget-gb", type=float,
                  help="Peak memory bound (default: the suite's peak_memory_gb budget, if any).")
    @click.option("--min-snr-db", type=float, default=30.0, show_default=True,
                  help="Quality bound: worst SNR against the single pass.")
    @click.option("--no-quality-bound", is_flag=True, help="Do not bound quality.")
    @click.option("--gpu-memory-gb", type=float, help="GPU size for the memory model (default: the run's GPU).")
    @click.option("--safety-margin", type=float, default=0.1, show_default=True,
                  help="Share of GPU memory kept free in the memory model.")
    @click.option("--variant", help="Variant to tune (needed when the run has several).")
    @click.option("--source", type=click.Choice(["auto", "hybrid", "composition"]), default="auto",
                  show_default=True, help="hybrid@T cases, or single+chunked composed.")
    @_format_option
    @fail_cleanly
    def tune_cmd(run_ref, results_dir, memory_budget_gb, min_snr_db, no_quality_bound, gpu_memory_gb,
                 safety_margin, variant, source, fmt):
        """Recommend a hybrid threshold from RUN (default: the latest run): the fastest with zero
        failures, peak memory within budget and quality within the bound. Exit 1 when none is."""
        from ..formats.documents import tune_document
        from ..analysis.tuning import tune_run

        result = tune_run(run_ref, results_dir, memory_budget_gb=memory_budget_gb,
                          min_snr_db=None if no_quality_bound else min_snr_db, gpu_memory_gb=gpu_memory_gb,
                          safety_margin=safety_margin, variant=variant, source=source)
        _emit(tune_document(result), fmt)
        if result.recommended is None:
            sys.exit(1)

    return tune_cmd


def _check_command(fail_cleanly) -> click.Command:
    @click.command("check")
    @click.argument("run_ref", required=False)
    @_results_dir_option
    @_format_option
    @fail_cleanly
    def check_cmd(run_ref, results_dir, fmt):
        """Check RUN (default: the latest run) against its suite's budgets; exit 1 on a breach."""
        from ..analysis.budgets import check_run
        from ..formats.documents import check_document

        path, results = check_run(run_ref, results_dir)
        _emit(check_document(path, results), fmt)
        if any(not r.passed for r in results):
            sys.exit(1)

    return check_cmd
