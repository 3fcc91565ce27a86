"""``bench selfcheck``: measure the harness itself and print each figure against its bound.

Exit 0 when no check failed (skipped ones do not fail), 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import click


def format_results(results, *, device: str, quick: bool, load: tuple[float, int] | None = None) -> str:
    """The checks as a table: status, name, figure with unit, bound; the detail below each.
    ``load``: (1-minute load average, cores) from before the checks."""
    failed = sum(r.passed is False for r in results)
    skipped = sum(r.passed is None for r in results)
    lines = [f"bench selfcheck ({device}{', quick' if quick else ''}): {len(results)} checks, "
             f"{failed} failed" + (f", {skipped} skipped" if skipped else "")
             + (f" (load average {load[0]:.2f} on {load[1]} cores before)" if load else "")]
    for r in results:
        if r.passed is None:
            lines.append(f"  {'skip':<5} {r.name:<38} {r.detail}")
            continue
        lines.append(f"  {r.status:<5} {r.name:<38} {_figure(r.figure, r.unit):>22}   bound {r.bound}")
        if r.detail:
            lines.append(f"        {r.detail}")
    return "\n".join(lines)


def _figure(value, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def _load() -> tuple[float, int] | None:
    try:
        return os.getloadavg()[0], os.cpu_count() or 1
    except OSError:
        return None


def register(main: click.Group) -> None:
    from .common import fail_cleanly

    @main.command()
    @click.option("--quick", is_flag=True, help="Fewer repeats and the tiny pipeline (rough figures, for tests).")
    @click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
    @click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                  help="Check the CPU path (perf_counter, RSS) or the CUDA path (events, allocator, NVML).")
    @fail_cleanly
    def selfcheck(quick, as_json, device):
        """Measure the harness itself: timer and memory accuracy, agreement with
        torch.utils.benchmark, and the overhead of the timer and the sampler."""
        from ..run.selfcheck import busy_machine_warning, run_selfcheck

        load = _load()
        results = run_selfcheck(quick=quick, device=device)
        ran = any(r.passed is not None for r in results)
        warning = busy_machine_warning(*load) if load and ran else None
        if as_json:
            click.echo(json.dumps({"load_average_1min": load[0] if load else None, "cores": load[1] if load else None,
                                   "warnings": [dataclasses.asdict(warning)] if warning else [],
                                   "checks": [r.to_dict() for r in results]}, indent=2))
        else:
            click.echo(format_results(results, device=device, quick=quick, load=load))
            if warning:
                click.echo(f"warning: {warning.message} (fix: {warning.fix})")
        if any(r.passed is False for r in results):
            sys.exit(1)
