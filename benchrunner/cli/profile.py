"""``bench profile``: parse, call :mod:`benchrunner.profiling`, print, choose the exit code."""

from __future__ import annotations

from pathlib import Path

import click

_PARAMS = [
    click.argument("suite_file", type=click.Path(path_type=Path)),
    click.option("--mode", help="The mode to profile, e.g. chunked, single, hybrid@32."),
    click.option("--compare", nargs=2, metavar="MODE MODE", help="Profile two modes and show them side by side."),
    click.option("--length", "length_s", type=float, help="Clip length in seconds, e.g. 30."),
    click.option("--stage", help="Show only this stage's rows (the trace still covers the whole case)."),
    click.option("--variant", help="The suite variant to profile (default: the first)."),
    click.option("--repeats", type=int, help="Profiled repeats (default: the suite's repeats)."),
    click.option("--top", type=int, default=10, show_default=True, help="Operators/kernels shown per stage."),
    click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False),
                 help="Store the profile in RUN_DIR/profiles/ (for its report); samples.csv is never touched."),
    click.option("--out", "out_dir", type=click.Path(path_type=Path),
                 help="Folder for the profile (default: reports/profiles/<timestamp>)."),
    click.option("--set", "set_items", multiple=True, metavar="KEY=VALUE", help="Override a suite field (repeatable)."),
    click.option("--nsys", is_flag=True, help="Run the case under NVIDIA Nsight Systems (needs nsys on PATH)."),
    click.option("--nvtx-only", is_flag=True, hidden=True, help="Internal: the run --nsys starts (no torch.profiler)."),
]


def register(main: click.Group) -> None:
    from .common import fail_cleanly

    command = fail_cleanly(profile)
    for param in reversed(_PARAMS):
        command = param(command)
    main.command("profile")(command)


def profile(suite_file, mode, compare, length_s, stage, variant, repeats, top, run_dir, out_dir, set_items, nsys,
            nvtx_only):
    """Profile one case of SUITE_FILE under torch.profiler: a Chrome/Perfetto trace, the top
    operators/kernels per stage and the busy time and idle gaps of the device.

    \b
    bench profile suites/quick.toml --mode chunked --length 30
    bench profile suites/quick.toml --compare chunked single --length 30
    bench profile suites/quick.toml --mode chunked --length 30 --nsys
    """
    from .common import parse_set
    from ..profiling.command import choose_modes, plan, profile_suite

    modes = choose_modes(mode, compare)
    overrides = parse_set(set_items)
    if nsys:
        return _under_nsys(suite_file, modes, length_s, stage, variant, repeats, top, run_dir, out_dir, set_items)
    if nvtx_only:
        from ..profiling.nsys import run_nvtx_only

        cases = plan(suite_file, modes, length_s, variant=variant, repeats=repeats, overrides=overrides)
        for line in run_nvtx_only(cases, stage=stage):
            click.echo(f"nvtx run: {line}")
        return
    outcome = profile_suite(suite_file, modes, length_s, stage=stage, variant=variant, repeats=repeats,
                            run_dir=run_dir, out_dir=out_dir, overrides=overrides, top=top)
    _print_outcome(outcome, stage, top)


def _print_outcome(outcome, stage, top) -> None:
    from ..profiling.format import format_comparison, format_profile
    from ..profiling.store import top_ops_by_region

    for result in outcome.results:
        if outcome.comparison is None:
            click.echo(format_profile(result.summary, top_ops_by_region(result.analysis, top), stage=stage))
            click.echo("")
        click.echo(f"trace:   {result.dir / result.summary['files']['trace']}  (open in ui.perfetto.dev)")
        click.echo(f"top ops: {result.dir / result.summary['files']['top_ops']}")
        click.echo(f"summary: {result.dir / 'summary.json'}")
    if outcome.comparison is not None:
        click.echo("")
        click.echo(format_comparison(outcome.comparison, stage=stage))
        click.echo(f"\ncompare: {outcome.comparison_path}")


def _under_nsys(suite_file, modes, length_s, stage, variant, repeats, top, run_dir, out_dir, set_items) -> None:
    from ..profiling.nsys import find_nsys, run_under_nsys
    from ..profiling.store import resolve_base_dir

    from .common import parse_set
    from ..profiling.command import plan

    nsys_path = find_nsys()
    plan(suite_file, modes, length_s, variant=variant, repeats=repeats, overrides=parse_set(set_items))
    base = resolve_base_dir(run_dir, out_dir)
    args = [str(suite_file), "--out", str(base), "--nvtx-only", "--top", str(top)]
    args += ["--mode", modes[0]] if len(modes) == 1 else ["--compare", *modes]
    for flag, value in (("--length", length_s), ("--stage", stage), ("--variant", variant), ("--repeats", repeats)):
        if value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for item in set_items:
        args += ["--set", item]
    report = run_under_nsys(nsys_path, base, args)
    click.echo(f"nsys report: {report}")
