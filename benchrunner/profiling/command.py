"""What ``bench profile`` does, as one callable: plan, profile, compare, store.

The CLI parses and prints; this returns everything it prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .compare import compare_analyses
from .runner import ProfileResult, plan_cases, profile_cases
from .store import resolve_base_dir, write_comparison


@dataclass
class ProfileOutcome:
    base_dir: Path
    results: list[ProfileResult]
    comparison: dict | None = None
    comparison_path: Path | None = None


def choose_modes(mode: str | None, compare: tuple[str, str] | None) -> list[str]:
    """``--mode M`` or ``--compare A B``, exactly one."""
    if mode and compare:
        raise UserError("--mode and --compare: give one (--compare chunked single profiles both)")
    if compare:
        if compare[0].strip() == compare[1].strip():
            raise UserError(f"--compare: {compare[0]!r} twice (expected two different modes, e.g. chunked single)")
        return list(compare)
    if not mode:
        raise UserError("--mode: missing (expected e.g. --mode chunked, or --compare chunked single)")
    return [mode]


def profile_suite(suite_file: Path, modes: list[str], clip_s: float | None, *, stage: str | None = None,
                  variant: str | None = None, repeats: int | None = None, run_dir: Path | None = None,
                  out_dir: Path | None = None, overrides: dict | None = None, top: int = 10) -> ProfileOutcome:
    cases = plan(suite_file, modes, clip_s, variant=variant, repeats=repeats, overrides=overrides)
    base = resolve_base_dir(run_dir, out_dir)
    results = profile_cases(cases, base, stage=stage)
    outcome = ProfileOutcome(base, results)
    if len(results) == 2:
        a, b = results
        outcome.comparison = compare_analyses(a.case.mode.label, a.analysis, b.case.mode.label, b.analysis, top=top)
        outcome.comparison_path = write_comparison(base, outcome.comparison)
    return outcome


def plan(suite_file: Path, modes: list[str], clip_s: float | None, **kwargs):
    if clip_s is None:
        raise UserError("--length: missing (expected the clip length in seconds, e.g. --length 30)")
    return plan_cases(suite_file, modes, clip_s, **kwargs)
