"""bench compare: B against A, per case and clip length, with the statistics that say
whether a difference is real.

A and B are two modes of one run (``hybrid@32`` vs ``chunked``; a bare ``hybrid`` is
accepted only when the run has one threshold), two variants (``fp16`` vs ``fp32``, or
``fp16/hybrid@32``), or two runs (ids under the results folder, or paths). The numbers come
from stats.py: per row stats.compare_samples (median ratio B/A, percentile-bootstrap 95% CI,
Mann-Whitney U p-value, verdict), stats.compare_failures for failure counts (Fisher's exact
test) and stats.geometric_mean_ratio for the closing line. Nothing here prints.

This module must not import torch (compare should answer in well under 2 s): it reads CSV
files with pandas and never imports suite.py, summary.py or failures.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..modespec import MODE_TEXT
from ..store.results import CASE_KEY, INPUT_ERROR, OK, TOTAL_STAGE, hardware_of
from ..store.runs import RunData, done_runs_newest_first, is_run_ref, load_run, read_manifest, resolve_run
from . import stats

ENV_FIELDS = ("gpu", "driver", "cuda", "torch", "commit", "cpu_model", "python")
N_BOOT = 2000
CONF = 0.95


@dataclass(frozen=True)
class MetricSpec:
    """Which samples.csv column a metric reads and which verdict words it uses."""

    column: str | None
    unit: str
    words: tuple[str, str]        # (B lower than A, B higher than A) when significant
    regression: str | None        # the verdict that counts as a regression (None: never)
    per_stage: bool


METRICS = {
    "latency": MetricSpec("latency_ms", "ms", (stats.FASTER, stats.SLOWER), stats.SLOWER, True),
    "memory": MetricSpec("peak_mem_bytes", "bytes", ("lower", "higher"), "higher", False),
    # Utilisation is not a goal in itself: neutral words, never a regression.
    "util": MetricSpec("util_mean_pct", "%", ("lower", "higher"), None, False),
    "failure": MetricSpec(None, "failures", (stats.FEWER_FAILURES, stats.MORE_FAILURES), stats.MORE_FAILURES, False),
    # the throughput scenario's rows (benchrunner/analysis/throughput/compare.py), level by level
    "throughput": MetricSpec("throughput_clips_per_s", "clips/s", ("lower", "higher"), "lower", False),
    "load_latency": MetricSpec("latency_ms", "ms", (stats.FASTER, stats.SLOWER), stats.SLOWER, False),
}
THROUGHPUT_METRICS = ("throughput", "load_latency")


@dataclass(frozen=True)
class CompareRow:
    """One clip length (and stage) of one matched case. For metric "failure" the medians
    are the failure rates and ratio/CI are None. ``case`` names the matched case without
    its clip length (e.g. "default" or "default/single"); empty when there is one case."""

    clip_s: float
    stage: str
    metric: str
    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str
    failures_a: str  # "k/n" of the case's end-to-end repeats
    failures_b: str
    case: str = ""
    min_effect: float | None = None   # the minimum effect this row's verdict used
    noise_nights: int | None = None   # set when min_effect is the case's night-to-night noise over these nights

    def within_noise_text(self) -> str | None:
        """"within the usual night-to-night noise (+-x%)" when that is the truth: the minimum
        effect came from the history store, and the change, though maybe significant, is smaller."""
        if self.noise_nights is None or self.ratio is None or self.min_effect is None:
            return None
        if self.verdict != stats.NO_CHANGE or abs(self.ratio - 1.0) >= self.min_effect:
            return None
        return f"within the usual night-to-night noise (+-{self.min_effect:.1%}, {self.noise_nights} nights)"


@dataclass(frozen=True)
class CompareResult:
    a_label: str
    b_label: str
    metric: str
    unit: str
    rows: list[CompareRow]
    geomean: tuple[float, float, float] | None  # (ratio, ci_low, ci_high) over the primary stage's rows
    only_in_a: list[str]
    only_in_b: list[str]
    env_diff: list[tuple[str, str | None, str | None]]
    notes: list[str]
    min_effect: float = 0.02
    design: str = stats.UNPAIRED  # paired: per-round ratios of alternating rounds; unpaired: independent samples

    def regressions(self) -> list[CompareRow]:
        """Rows whose verdict is this metric's regression (slower, higher memory, more
        failures); utilisation never regresses."""
        word = METRICS[self.metric].regression
        return [row for row in self.rows if word is not None and row.verdict == word]

    def geomean_verdict(self) -> str | None:
        """The verdict rule of stats.compare_samples applied to the geometric mean."""
        if self.geomean is None:
            return None
        return ratio_verdict(*self.geomean, metric=self.metric, min_effect=self.min_effect)


def ratio_verdict(ratio: float, ci_low: float, ci_high: float, *, metric: str, min_effect: float) -> str:
    """Same rule as stats.compare_samples: significant only when the CI excludes 1 and
    |ratio - 1| >= min_effect; then the metric's word for lower or higher."""
    if not ((ci_low > 1.0 or ci_high < 1.0) and abs(ratio - 1.0) >= min_effect):
        return stats.NO_CHANGE
    lower, higher = METRICS[metric].words
    return higher if ratio > 1.0 else lower


# --- choosing A and B ------------------------------------------------------------------

_MODE_PATTERN = re.compile(rf"^(?:(?P<variant>[^/@]+)/)?{MODE_TEXT}$")


@dataclass(frozen=True)
class Selector:
    """One side of a within-run comparison: a mode, a variant, or both ("fp16/hybrid@32")."""

    text: str
    variant: str | None = None
    kind: str | None = None
    threshold_s: float | None = None


def parse_mode_selector(text: str) -> Selector | None:
    """A Selector when ``text`` names a mode (optionally "variant/mode"), else None."""
    match = _MODE_PATTERN.match(text.strip())
    if not match:
        return None
    threshold = match.group("threshold")
    if threshold is not None and match.group("kind") != "hybrid":
        raise UserError(f"{text}: mode: only hybrid takes a threshold (expected e.g. hybrid@32)")
    return Selector(text.strip(), match.group("variant"), match.group("kind"),
                    float(threshold) if threshold is not None else None)


def compare(a: str, b: str, *, run: str | Path | None = None, results_dir: Path = Path("results"),
            metric: str = "latency", stage: str = "total", all_stages: bool = False,
            min_effect: float = 0.02, seed: int = 0) -> CompareResult:
    """Compare B against A: two modes or variants of ``run`` (default: the latest run in
    ``results_dir``), or, when both name runs and ``run`` is None, run B against run A."""
    metric_spec(metric)
    if not 0.0 <= min_effect < 1.0:
        raise UserError(f"--min-effect: {min_effect:g} is not valid (expected a fraction in [0, 1), e.g. 0.02 for 2%)")
    if metric in THROUGHPUT_METRICS:  # throughput.csv rows: analysis/throughput/compare.py (bench compare calls it)
        raise UserError(f"--metric: {metric} compares throughput rows (expected "
                        "benchrunner.analysis.throughput.compare.compare_throughput)")
    sel_a, sel_b = parse_mode_selector(a), parse_mode_selector(b)
    if run is None and sel_a is None and sel_b is None and is_run_ref(a, results_dir) \
            and is_run_ref(b, results_dir):
        return compare_runs(a, b, results_dir=results_dir, metric=metric, stage=stage,
                            all_stages=all_stages, min_effect=min_effect, seed=seed)
    check_two_sides(a, b)
    data, run_note = pick_run(a, b, run=run, results_dir=results_dir)
    side_a, side_b = sel_a or _variant_selector(a, data, "A"), sel_b or _variant_selector(b, data, "B")
    frame_a, label_a = select(data, side_a)
    frame_b, label_b = select(data, side_b)
    result = compare_frames(frame_a, frame_b, a_label=label_a, b_label=label_b, metric=metric, stage=stage,
                            min_effect=min_effect, seed=seed, all_stages=all_stages,
                            paired=measured_in_alternating_rounds(data.manifest, frame_a, frame_b),
                            round_blocks=process_blocks(data.manifest))
    notes = [run_note, *_status_notes(data), *result.notes]
    return replace(result, notes=notes)


def check_two_sides(a: str, b: str) -> None:
    """A and B must differ: comparing a mode or variant with itself has nothing to compare."""
    if a.strip() == b.strip():
        raise UserError(f"{a}: A and B are the same, so there is nothing to compare (expected two different "
                        "modes, variants or runs, e.g. `bench compare hybrid chunked`)")


def pick_run(a: str, b: str, *, run: str | Path | None, results_dir: Path) -> tuple[RunData, str]:
    """The run that holds sides ``a`` and ``b``, and a note saying which it is: ``run`` when
    given, else the newest finished or interrupted run of ``results_dir`` that has both
    (newer runs without them are named in the note)."""
    if run is not None:
        data = load_run(run, results_dir)
        return data, f"run: {data.run_id} ({data.path})"
    passed: list[str] = []
    for folder in done_runs_newest_first(results_dir):
        try:
            data = load_run(folder, results_dir)
        except UserError:
            passed.append(f"{folder.name} (unreadable)")
            continue
        if _has_side(data, a) and _has_side(data, b):
            skipped = f"; newer runs without both: {', '.join(passed)}" if passed else ""
            return data, f"run: {data.run_id} ({data.path}), the newest run with both {a} and {b}{skipped}"
        passed.append(data.run_id)
    raise UserError(f"{results_dir}: run: no finished or interrupted run has both {a!r} and {b!r} "
                    f"(looked at {', '.join(passed[:5])}{', ...' if len(passed) > 5 else ''}; "
                    "expected a run with both sides, or pass --run RUN)")


def _has_side(data: RunData, text: str) -> bool:
    """Whether ``data`` has rows for side ``text`` (a mode, variant/mode or a variant)."""
    rows = data.samples
    sel = parse_mode_selector(text)
    if sel is None:
        return text in _distinct(rows["variant"])
    if sel.variant is not None:
        rows = rows[rows["variant"] == sel.variant]
    if sel.kind is not None:
        rows = rows[rows["mode"] == sel.kind]
        if sel.threshold_s is not None:
            rows = rows[np.isclose(pd.to_numeric(rows["threshold_s"], errors="coerce"), sel.threshold_s)]
    return not rows.empty


def compare_runs(a: str | Path, b: str | Path, *, results_dir: Path = Path("results"), metric: str = "latency",
                 stage: str = "total", all_stages: bool = False, min_effect: float = 0.02,
                 seed: int = 0, night_noise: dict[str, "NightNoise"] | None = None) -> CompareResult:
    """Run B against run A, cases matched by their full key (pipeline, variant, mode,
    threshold, clip length); environment differences listed. Unpaired statistics (two runs
    are never interleaved). ``night_noise`` (see :func:`night_to_night_noise`): the minimum
    effect of each case found there is its measured night-to-night noise, not ``min_effect``."""
    from ..measure.environment import diff_environments

    run_a, run_b = load_run(a, results_dir), load_run(b, results_dir)
    result = compare_frames(run_a.samples, run_b.samples, a_label=run_a.run_id, b_label=run_b.run_id,
                            metric=metric, stage=stage, min_effect=min_effect, seed=seed,
                            all_stages=all_stages, match_on=CASE_KEY, night_noise=night_noise)
    env_diff = diff_environments(run_a.manifest.get("environment") or {}, run_b.manifest.get("environment") or {},
                                 fields=ENV_FIELDS)
    notes = [*_status_notes(run_a), *_status_notes(run_b), *_suite_diff_notes(run_a, run_b), *result.notes]
    return replace(result, env_diff=env_diff, notes=notes)


def expand_sides(a: str, b: str, *, run: str | Path | None = None,
                 results_dir: Path = Path("results")) -> list[tuple[str, str]]:
    """The comparisons ``bench compare A B`` stands for: a bare ``hybrid`` (or ``variant/hybrid``)
    in a run with several thresholds means one comparison per threshold; anything else is the
    single pair (A, B), left for :func:`compare` to check."""
    sel_a, sel_b = parse_mode_selector(a), parse_mode_selector(b)
    if run is None and sel_a is None and sel_b is None:
        return [(a, b)]  # two runs, or variants: nothing to expand
    check_two_sides(a, b)
    data, _ = pick_run(a, b, run=run, results_dir=results_dir)
    sides_a, sides_b = _hybrid_sides(a, sel_a, data), _hybrid_sides(b, sel_b, data)
    pairs = [(x, y) for x in sides_a for y in sides_b if x != y]
    if not pairs:
        raise UserError(f"{a} {b}: the sides name the same case ({sides_a[0]}), so there is nothing to compare "
                        "(expected two different modes, variants or runs)")
    return pairs


def _hybrid_sides(text: str, sel: Selector | None, data: RunData) -> list[str]:
    if sel is None or sel.kind != "hybrid" or sel.threshold_s is not None:
        return [text]
    rows = data.samples[data.samples["mode"] == "hybrid"]
    if sel.variant is not None:
        rows = rows[rows["variant"] == sel.variant]
    thresholds = sorted(float(t) for t in rows["threshold_s"].dropna().unique())
    prefix = f"{sel.variant}/" if sel.variant is not None else ""
    return [f"{prefix}hybrid@{t:g}" for t in thresholds] or [text]


def select(data: RunData, sel: Selector) -> tuple[pd.DataFrame, str]:
    """The samples of ``data`` that ``sel`` names, and the side's label."""
    rows = data.samples
    if sel.variant is not None:
        variants = _distinct(rows["variant"])
        if sel.variant not in variants:
            raise UserError(f"{data.path}: variant: {sel.variant!r} is not in this run "
                            f"(expected one of {', '.join(variants)})")
        rows = rows[rows["variant"] == sel.variant]
    if sel.kind is None:
        return rows, sel.text
    rows, label = _select_mode(rows, sel, data)
    return rows, (f"{sel.variant}/{label}" if sel.variant is not None else label)


def _select_mode(rows: pd.DataFrame, sel: Selector, data: RunData) -> tuple[pd.DataFrame, str]:
    available = mode_labels(data.samples)
    picked = rows[rows["mode"] == sel.kind]
    label = sel.kind
    if sel.kind == "hybrid":
        thresholds = sorted(float(t) for t in picked["threshold_s"].dropna().unique())
        if sel.threshold_s is None and len(thresholds) > 1:
            labels = [f"hybrid@{t:g}" for t in thresholds]
            raise UserError(f"{data.path}: mode: 'hybrid' is ambiguous, this run has {', '.join(labels)} "
                            f"(expected one of them, e.g. {labels[0]})")
        wanted = sel.threshold_s if sel.threshold_s is not None else (thresholds[0] if thresholds else None)
        if wanted is not None:
            picked = picked[np.isclose(picked["threshold_s"].astype(float), wanted)]
            label = f"hybrid@{wanted:g}"
    if picked.empty:
        raise UserError(f"{data.path}: mode: {sel.text!r} is not in this run "
                        f"(expected one of {', '.join(available)})")
    return picked, label


def mode_labels(samples: pd.DataFrame) -> list[str]:
    """Mode labels present in ``samples`` (single, chunked, hybrid@T), in run order."""
    pairs = samples[["mode", "threshold_s"]].drop_duplicates()
    return [_mode_label(m, t) for m, t in pairs.itertuples(index=False)]


def _variant_selector(text: str, data: RunData, side: str) -> Selector:
    variants = _distinct(data.samples["variant"])
    if text in variants:
        return Selector(text, variant=text)
    raise UserError(f"{text}: {side}: not a mode or variant of run {data.run_id} "
                    f"(expected one of {', '.join(mode_labels(data.samples) + variants)}; "
                    "to compare two runs give both as run ids or paths, without --run)")


# --- comparing two sample frames (pure) ---------------------------------------------------

def metric_spec(metric: str) -> MetricSpec:
    if metric not in METRICS:
        raise UserError(f"--metric: {metric!r} is not a metric (expected one of {', '.join(METRICS)})")
    return METRICS[metric]


def measured_in_alternating_rounds(manifest: dict, samples_a: pd.DataFrame, samples_b: pd.DataFrame) -> bool:
    """Whether two sides of one run were measured in alternating rounds (repeat r of each in
    round r), so a paired comparison applies: two modes of one variant when the run
    interleaved modes; anything involving two variants only when it interleaved variants
    (manifest ``design``; a run from before it recorded one interleaved modes when its suite
    did, the default, and never variants)."""
    design = manifest.get("design") or {}
    as_loaded = (manifest.get("suite") or {}).get("as_loaded") or {}
    modes = design.get("modes", "interleaved" if as_loaded.get("interleave", True) else "sequential")
    variants_a, variants_b = _value_set(samples_a["variant"]), _value_set(samples_b["variant"])
    if variants_a == variants_b and len(variants_a) == 1:
        return modes == "interleaved"
    return design.get("variants") == "interleaved"


def process_blocks(manifest: dict) -> list[int] | None:
    """Which block (pair of worker processes) measured each round, when the run measured every
    variant in several processes (manifest design ``processes_per_variant`` > 1); else None."""
    design = manifest.get("design") or {}
    processes = int(design.get("processes_per_variant") or 1)
    repeats = int(((manifest.get("suite") or {}).get("repeats")) or 0)
    if processes <= 1 or repeats < 2 or design.get("variants") != "interleaved":
        return None
    return stats.contiguous_blocks(repeats, processes)


def compare_frames(samples_a: pd.DataFrame, samples_b: pd.DataFrame, *, a_label: str, b_label: str,
                   metric: str = "latency", stage: str = "total", min_effect: float = 0.02, seed: int = 0,
                   all_stages: bool = False, match_on: Sequence[str] | None = None, paired: bool = False,
                   night_noise: dict[str, "NightNoise"] | None = None,
                   round_blocks: list[int] | None = None) -> CompareResult:
    """B against A over two samples.csv frames (pure: no I/O).

    Cases are matched by ``match_on`` (default: the case key columns CASE_KEY, less those
    where each side has one value and the two differ, i.e. the dimension being compared,
    such as mode for "hybrid@32 vs chunked"). One row per matched case x clip length x stage
    (``stage``, or every stage with ``all_stages``; memory, util and failure are end to end
    only). Every row uses the same ``seed``, so the same data gives the same intervals.
    """
    spec = metric_spec(metric)
    if metric in THROUGHPUT_METRICS:
        raise UserError(f"--metric: {metric} compares throughput.csv rows (expected two runs or modes with "
                        "scenario = \"throughput\")")
    stages = _stages(samples_a, samples_b, spec, stage, all_stages)
    keys = list(match_on) if match_on is not None else auto_match_keys(samples_a, samples_b)
    cases_a, cases_b = _cases(samples_a, keys), _cases(samples_b, keys)
    labeller = _CaseLabeller(keys, samples_a, samples_b)
    common = [k for k in cases_a if k in cases_b]
    rows, pairs = [], []
    for key in sorted(common, key=labeller.order):
        for stage_name in stages:
            noise = (night_noise or {}).get(str(cases_b[key]["case_id"].iloc[0]))
            effect = noise.noise if noise is not None else min_effect
            row, values = _row(cases_a[key], cases_b[key], clip_s=_clip_of(key, keys), stage=stage_name,
                               metric=metric, spec=spec, min_effect=effect, seed=seed,
                               case=labeller.label(key), paired=paired, round_blocks=round_blocks)
            row = replace(row, min_effect=effect, noise_nights=noise.nights if noise is not None else None)
            rows.append(row)
            if values is not None and stage_name == stages[0]:
                pairs.append(values)
    geomean_of = stats.paired_geometric_mean_ratio if paired else stats.geometric_mean_ratio
    geomean = geomean_of(pairs, n_boot=N_BOOT, conf=CONF, seed=seed) if pairs else None
    design = stats.PAIRED if paired else stats.UNPAIRED
    notes = _notes(rows, spec, metric, min_effect, seed, stages, cases_a, cases_b, common, a_label, b_label, design)
    if night_noise:
        notes.append(f"minimum effect per case: its night-to-night noise from the history store (90th percentile "
                     f"of |change| between consecutive nights, cases with >= {NOISE_MIN_NIGHTS} nights), "
                     f"else {min_effect:.0%}")
    return CompareResult(a_label, b_label, metric, spec.unit, rows, geomean,
                         _case_ids(cases_a, cases_b), _case_ids(cases_b, cases_a), [], notes, min_effect, design)


def auto_match_keys(samples_a: pd.DataFrame, samples_b: pd.DataFrame) -> list[str]:
    """CASE_KEY less the columns where A has one value, B has one value and they differ."""
    keys = []
    for column in CASE_KEY:
        values_a, values_b = _value_set(samples_a[column]), _value_set(samples_b[column])
        compared = len(values_a) == 1 and len(values_b) == 1 and values_a != values_b
        if not compared:
            keys.append(column)
    if "clip_s" not in keys:
        keys.append("clip_s")
    return keys


def _stages(samples_a: pd.DataFrame, samples_b: pd.DataFrame, spec: MetricSpec, stage: str,
            all_stages: bool) -> list[str]:
    known = list(dict.fromkeys([TOTAL_STAGE, *samples_a["stage"].dropna(), *samples_b["stage"].dropna()]))
    if stage not in known:
        raise UserError(f"--stage: {stage!r} is not a stage of these samples (expected one of {', '.join(known)})")
    if not spec.per_stage:
        if stage != TOTAL_STAGE:
            raise UserError(f"--stage: {stage!r}: this metric is measured end to end only (expected --stage total)")
        return [TOTAL_STAGE]
    if all_stages:
        return [stage] + [s for s in known if s != stage]
    return [stage]


def _row(case_a: pd.DataFrame, case_b: pd.DataFrame, *, clip_s: float, stage: str, metric: str,
         spec: MetricSpec, min_effect: float, seed: int, case: str, paired: bool = False,
         round_blocks: list[int] | None = None):
    """(CompareRow, (values_a, values_b) when a ratio was computed else None); paired rows
    compare the values of each repeat (round) of A with the same repeat of B."""
    fail_a, fail_b = _failure_counts(case_a), _failure_counts(case_b)
    text_a, text_b = f"{fail_a[0]}/{fail_a[1]}", f"{fail_b[0]}/{fail_b[1]}"
    if spec.column is None:
        fc = stats.compare_failures(*fail_a, *fail_b)
        row = CompareRow(clip_s, TOTAL_STAGE, metric, fc.n_a, fc.n_b, fc.rate_a, fc.rate_b, None, None, None,
                         fc.p_value, fc.verdict, text_a, text_b, case)
        return row, None
    blocks = None
    if paired:
        values_a, values_b, repeats = _round_values(case_a, case_b, spec.column, stage)
        if round_blocks is not None and all(r < len(round_blocks) for r in repeats):
            blocks = [round_blocks[r] for r in repeats]
    else:
        values_a, values_b = _ok_values(case_a, spec.column, stage), _ok_values(case_b, spec.column, stage)
    if min(values_a.size, values_b.size) >= 2 and min(values_a.min(), values_b.min()) <= 0:
        # a ratio needs positive values (e.g. 0 % utilisation): medians and p only
        row = CompareRow(clip_s, stage, metric, values_a.size, values_b.size, float(np.median(values_a)),
                         float(np.median(values_b)), None, None, None, stats.mann_whitney_p(values_a, values_b),
                         stats.INSUFFICIENT, text_a, text_b, case)
        return row, None
    if paired:
        comparison = stats.compare_paired(values_a, values_b, min_effect=min_effect, conf=CONF, n_boot=N_BOOT,
                                          seed=seed, verdict_words=spec.words, blocks=blocks)
    else:
        comparison = stats.compare_samples(values_a, values_b, min_effect=min_effect, conf=CONF, n_boot=N_BOOT,
                                           seed=seed, verdict_words=spec.words)
    row = CompareRow(clip_s, stage, metric, comparison.n_a, comparison.n_b, comparison.median_a,
                     comparison.median_b, comparison.ratio, comparison.ci_low, comparison.ci_high,
                     comparison.p_value, comparison.verdict, text_a, text_b, case)
    return row, ((values_a, values_b) if comparison.ratio is not None else None)


def _round_values(case_a: pd.DataFrame, case_b: pd.DataFrame, column: str, stage: str
                  ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The values of the repeats (rounds) where both A and B succeeded, aligned by repeat, and
    those repeats."""
    def by_repeat(case: pd.DataFrame) -> pd.Series:
        picked = case[(case["stage"] == stage) & (case["status"] == OK)]
        values = pd.to_numeric(picked[column], errors="coerce")
        series = pd.Series(values.to_numpy(dtype=float), index=picked["repeat"].astype(int).to_numpy())
        return series[np.isfinite(series)]

    a, b = by_repeat(case_a), by_repeat(case_b)
    common = a.index.intersection(b.index).sort_values()
    return a.loc[common].to_numpy(dtype=float), b.loc[common].to_numpy(dtype=float), [int(r) for r in common]


def _ok_values(case: pd.DataFrame, column: str, stage: str) -> np.ndarray:
    picked = case[(case["stage"] == stage) & (case["status"] == OK)]
    values = pd.to_numeric(picked[column], errors="coerce").to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _failure_counts(case: pd.DataFrame) -> tuple[int, int]:
    totals = case[(case["stage"] == TOTAL_STAGE) & (case["status"] != INPUT_ERROR)]  # unreadable inputs apart
    return int((totals["status"] != OK).sum()), int(len(totals))


def _cases(samples: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    """Samples split by the match key; NaN in a key (threshold of non-hybrid) becomes None."""
    if samples.empty:
        return {}
    out: dict[tuple, pd.DataFrame] = {}
    for key, group in samples.groupby(keys, dropna=False, sort=False):
        out[tuple(_plain(v) for v in (key if isinstance(key, tuple) else (key,)))] = group
    return out


def _case_ids(mine: dict[tuple, pd.DataFrame], other: dict[tuple, pd.DataFrame]) -> list[str]:
    ids: list[str] = []
    for key, group in mine.items():
        if key not in other:
            ids.extend(str(c) for c in group["case_id"].drop_duplicates())
    return ids


def _clip_of(key: tuple, keys: list[str]) -> float:
    return float(key[keys.index("clip_s")])


class _CaseLabeller:
    """Names a matched case without its clip length, and orders cases as they ran."""

    def __init__(self, keys: list[str], samples_a: pd.DataFrame, samples_b: pd.DataFrame):
        self.keys = keys
        pipelines = _value_set(samples_a["pipeline"]) | _value_set(samples_b["pipeline"])
        self.show_pipeline = "pipeline" in keys and len(pipelines) > 1
        self.first_seen: dict[str, int] = {}

    def label(self, key: tuple) -> str:
        values = dict(zip(self.keys, key))
        parts = []
        if self.show_pipeline:
            parts.append(str(values["pipeline"]))
        if "variant" in values:
            parts.append(str(values["variant"]))
        if "mode" in values:
            parts.append(_mode_label(values["mode"], values.get("threshold_s")))
        return "/".join(parts)

    def order(self, key: tuple) -> tuple:
        label = self.label(key)
        self.first_seen.setdefault(label, len(self.first_seen))
        return (self.first_seen[label], _clip_of(key, self.keys))


# --- run against run: night-to-night noise -------------------------------------------------

NOISE_MIN_NIGHTS = 7   # nights of a case (6 night-to-night changes) before its noise replaces the fixed minimum
NOISE_LAST_NIGHTS = 30


@dataclass(frozen=True)
class NightNoise:
    """A case's usual night-to-night change (a fraction) and the nights it was measured over."""

    case_id: str
    noise: float
    nights: int


def night_to_night_noise(series: pd.DataFrame, *, min_nights: int = NOISE_MIN_NIGHTS) -> dict[str, NightNoise]:
    """Per case of a history series (History.series: run_id, started_at, case_id, value, oldest
    first), stats.noise_floor of the ratios of consecutive nights' values (90th percentile of
    |log ratio|), for cases with at least ``min_nights`` nights with a value."""
    found = {}
    for case_id, rows in series.groupby("case_id", sort=False):
        values = pd.to_numeric(rows["value"], errors="coerce").dropna().to_numpy(dtype=float)
        values = values[values > 0]
        if values.size < min_nights:
            continue
        noise = stats.noise_floor(values[1:] / values[:-1], q=0.9)
        if noise is not None:
            found[str(case_id)] = NightNoise(str(case_id), noise, int(values.size))
    return found


def night_noise_of(history, suite: str, metric: str, *, until: str | None = None) -> dict[str, NightNoise] | None:
    """Each case's measured night-to-night noise of ``metric`` (latency, memory) over the last
    NOISE_LAST_NIGHTS nights of ``suite`` in ``history`` (a store.history.History), up to the
    run that started at ``until`` when given; None for failures (counts, not a ratio) or when
    the store cannot say."""
    from ..errors import BenchError

    if history is None or metric == "failure":
        return None
    try:
        series = history.series(suite, metric)
    except BenchError:
        return None
    if until is not None and not series.empty:
        started = pd.to_datetime(series["started_at"], utc=True, errors="coerce")
        series = series[started <= pd.to_datetime(until, utc=True)]
    nights = list(dict.fromkeys(series["run_id"]))[-NOISE_LAST_NIGHTS:] if not series.empty else []
    return night_to_night_noise(series[series["run_id"].isin(nights)]) if nights else {}


def noise_summary(result: CompareResult) -> str | None:
    """One line for a digest or report: the rows whose difference is within the usual
    night-to-night noise, e.g. "latency: 4 cases within the usual night-to-night noise
    (+-1.2% to +-3.4%)"; None when there is none."""
    rows = [row for row in result.rows if row.within_noise_text()]
    if not rows:
        return None
    low, high = min(r.min_effect for r in rows), max(r.min_effect for r in rows)
    span = f"+-{low:.1%}" if abs(high - low) < 5e-4 else f"+-{low:.1%} to +-{high:.1%}"
    return (f"{result.metric} against {result.a_label}: {len(rows)} case(s) within the usual night-to-night "
            f"noise ({span})")


# --- A/A: the noise floor of this machine ---------------------------------------------------

@dataclass(frozen=True)
class AAResult:
    """Two identical variants compared: every verdict other than "no significant change" is
    false. ``floors`` maps each row's case and clip length to its noise floor: the larger
    distance of the 95% interval from 1, the smallest change a comparison of this design
    could have shown there."""

    comparison: CompareResult
    false_verdicts: int
    verdicts: int
    floors: list[tuple[str, float, str, float]]  # (case, clip_s, stage, floor as a fraction)

    @property
    def false_verdict_rate(self) -> float | None:
        return self.false_verdicts / self.verdicts if self.verdicts else None


def aa_floor(run: str | Path | None, *, results_dir: Path = Path("results"), seed: int = 0,
             min_effect: float = 0.02) -> AAResult:
    """The A/A verdicts of a run made from suite.aa_suite: aa2 against aa1 on every stage."""
    result = compare("aa1", "aa2", run=run, results_dir=results_dir, all_stages=True, seed=seed,
                     min_effect=min_effect)
    judged = [row for row in result.rows if row.verdict != stats.INSUFFICIENT]
    false = [row for row in judged if row.verdict != stats.NO_CHANGE]
    floors = [(row.case, row.clip_s, row.stage, max(row.ci_high - 1.0, 1.0 - row.ci_low))
              for row in judged if row.ci_low is not None]
    rate = f"{len(false)}/{len(judged)}" if judged else "n/a"
    worst = max((f for *_, f in floors), default=None)
    summary = [f"A/A: two identical variants ({result.design} design); false verdicts {rate} rows"
               + (f"; noise floor up to +-{worst:.1%} (the smallest change this machine shows here)"
                  if worst is not None else "")]
    summary += [line for line in [aa_fix(len(false), read_manifest(resolve_run(run, results_dir)))] if line]
    return AAResult(replace(result, notes=summary + result.notes), len(false), len(judged), floors)


AA_PROCESSES_FIX = 4


def aa_fix(false_verdicts: int, manifest: dict) -> str | None:
    """What to change after false A/A verdicts of a run that measured each variant in one
    worker process: identical processes run identical code at different speeds
    (benchmarks/process_effect.py), and with one process per variant that offset reads as an
    effect; measured in several processes, it widens the interval instead."""
    design = manifest.get("design") or {}
    if not false_verdicts or design.get("variants") != "interleaved" or \
            int(design.get("processes_per_variant") or 1) > 1:
        return None
    return (f"fix: set processes_per_variant = {AA_PROCESSES_FIX} in the suite: each variant is then measured in "
            f"{AA_PROCESSES_FIX} worker processes and a process's own speed widens the interval instead of reading "
            "as a difference (it costs a worker start and warm-up per process)")


# --- notes --------------------------------------------------------------------------------

def _notes(rows: list[CompareRow], spec: MetricSpec, metric: str, min_effect: float, seed: int,
           stages: list[str], cases_a: dict, cases_b: dict, common: list[tuple],
           a_label: str, b_label: str, design: str = stats.UNPAIRED) -> list[str]:
    notes = [_method_note(metric, min_effect, seed, design)]
    if len(stages) > 1 or stages[0] != TOTAL_STAGE:
        notes.append(f"geometric mean over the {stages[0]!r} rows")
    insufficient = sorted({f"{r.clip_s:g} s" for r in rows if r.verdict == stats.INSUFFICIENT})
    if insufficient:
        notes.append(f"insufficient data (< 2 usable values on a side) at {', '.join(insufficient)}: "
                     "fix: more repeats, or look at the failures (--metric failure)")
    if metric != "failure" and any(not r.failures_a.startswith("0/") or not r.failures_b.startswith("0/")
                                   for r in rows):
        notes.append(f"{metric} compares successful repeats only; failures are shown as k/n "
                     "(compare them with --metric failure)")
    if metric == "util":
        notes.append("utilisation is shown next to latency, never instead of it: higher is not better "
                     "in itself, and no utilisation row counts as a regression")
    notes.extend(_same_path_note(cases_a, cases_b, common, a_label, b_label))
    notes.extend(_hardware_notes(cases_a, cases_b, common, a_label, b_label))
    return notes


def _hardware_notes(cases_a: dict, cases_b: dict, common: list[tuple], a_label: str, b_label: str) -> list[str]:
    """A warning where the two sides of a matched case ran on different hardware (host or GPU
    model): their difference is then partly the machines'. Sides without placement columns
    (runs before schema 3) are not judged."""
    differing = []
    for key in common:
        hw_a, hw_b = hardware_of(cases_a[key]), hardware_of(cases_b[key])
        if hw_a and hw_b and hw_a != hw_b:
            differing.append((float(cases_a[key]["clip_s"].iloc[0]), _hardware_text(hw_a), _hardware_text(hw_b)))
    if not differing:
        return []
    clip_s, text_a, text_b = differing[0]
    clips = ", ".join(sorted({f"{c:g} s" for c, _, _ in differing}))
    return [f"warning: {a_label} and {b_label} ran on different hardware at {clips} "
            f"(e.g. {text_a} vs {text_b}): part of any difference is the machines'; "
            "fix: compare runs from the same host and GPU model (bench run --devices, or one Ray node type)"]


def _hardware_text(hardware: set[tuple[str, str]]) -> str:
    return " + ".join(f"{host}/{gpu or 'cpu'}" for host, gpu in sorted(hardware))


def _method_note(metric: str, min_effect: float, seed: int, design: str = stats.UNPAIRED) -> str:
    if metric == "failure":
        return "failures: k failed of n repeats; p: Fisher's exact test (two-sided); verdict at p < 0.05"
    if design == stats.PAIRED:
        return (f"design: paired (A and B measured in alternating rounds; drift over the run cancels); "
                f"ratio = median over rounds of B/A; {CONF:.0%} CI: percentile bootstrap over rounds "
                f"({N_BOOT} resamples, seed {seed}); p: Wilcoxon signed-rank (two-sided); verdict needs the CI "
                f"to exclude 1 and a change of at least {min_effect:.0%}")
    return ("design: unpaired (independent samples); "
            f"ratio = median(B) / median(A); {CONF:.0%} CI: percentile bootstrap ({N_BOOT} resamples, "
            f"seed {seed}); p: Mann-Whitney U (two-sided); verdict needs the CI to exclude 1 "
            f"and a change of at least {min_effect:.0%}")


def _same_path_note(cases_a: dict, cases_b: dict, common: list[tuple], a_label: str, b_label: str) -> list[str]:
    """Where both sides executed the same path (e.g. hybrid@32 ran single, like single)."""
    same = []
    for key in common:
        path_a, path_b = _executed(cases_a[key]), _executed(cases_b[key])
        modes_differ = _value_set(cases_a[key]["mode"]) != _value_set(cases_b[key]["mode"])
        if path_a and path_a == path_b and modes_differ:
            same.append((float(cases_a[key]["clip_s"].iloc[0]), path_a))
    if not same:
        return []
    clips = ", ".join(f"{c:g} s ({p})" for c, p in sorted(set(same)))
    return [f"{a_label} and {b_label} ran the same path at {clips}: differences there are run-to-run noise"]


def _executed(case: pd.DataFrame) -> str:
    paths = {str(v) for v in case.loc[case["status"] == OK, "executed_as"].dropna() if str(v)}
    return "+".join(sorted(paths))


def _status_notes(data: RunData) -> list[str]:
    status = data.manifest.get("status")
    if status == "finished":
        return []
    return [f"run {data.run_id} is {status}: its cases may be incomplete"]


def _suite_diff_notes(run_a: RunData, run_b: RunData) -> list[str]:
    """Suite settings (other than the sweep itself) that differ between two runs."""
    raw_a = ((run_a.manifest.get("suite") or {}).get("as_loaded")) or {}
    raw_b = ((run_b.manifest.get("suite") or {}).get("as_loaded")) or {}
    ignored = {"name", "description", "clip_lengths_s", "modes", "hybrid_thresholds_s", "budgets", "results_dir"}
    differing = sorted(k for k in set(raw_a) | set(raw_b) if k not in ignored and raw_a.get(k) != raw_b.get(k))
    if not differing:
        return []
    shown = "; ".join(f"{k}: {raw_a.get(k)!r} vs {raw_b.get(k)!r}" for k in differing)
    return [f"suite settings differ: {shown}"]


# --- small helpers ------------------------------------------------------------------------

def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return None if np.isnan(value) else float(value)
    return value


def _value_set(series: pd.Series) -> set:
    return {_plain(v) for v in series.drop_duplicates()}


def _distinct(series: pd.Series) -> list[str]:
    return [str(v) for v in series.dropna().drop_duplicates()]


def _mode_label(kind, threshold_s) -> str:
    threshold_s = _plain(threshold_s)
    return f"{kind}@{float(threshold_s):g}" if threshold_s is not None and kind == "hybrid" else str(kind)


# -- variants side by side: the report's variants table and the digest's best-variant line ---


@dataclass(frozen=True)
class VariantCase:
    """One variant in one mode at one clip length, against the reference variant's same case."""

    variant: str
    mode: str
    clip_s: float
    n: int
    failures: int
    n_total: int
    latency_p50_ms: float | None
    speedup: float | None          # reference median latency / this median latency
    speedup_ci: tuple[float, float] | None  # 95% percentile bootstrap of that ratio (stats.bootstrap_ratio_ci)
    peak_mem_bytes: float | None
    param_bytes: float | None
    file_bytes: float | None
    setup_ms: float | None
    snr_db: float | None
    max_abs_err: float | None
    argmax_agree_pct: float | None
    backend: str


@dataclass(frozen=True)
class Best:
    variant: str
    geomean_speedup: float
    worst_snr_db: float | None
    worst_max_abs_err: float | None
    excluded: dict[str, str]  # variant -> why it was not a candidate


def suite_accuracy(manifest: dict) -> tuple[str | None, float | None, float | None]:
    """(reference_variant, min_snr_db, max_abs_err) of the run's suite, as loaded."""
    raw = (manifest.get("suite") or {}).get("as_loaded") or {}
    bound = raw.get("accuracy") or {}
    return raw.get("reference_variant"), bound.get("min_snr_db"), bound.get("max_abs_err")


def _variant_number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _variant_mode_label(row: pd.Series) -> str:
    threshold = _variant_number(row.get("threshold_s"))
    return f"{row['mode']}@{threshold:g}" if row["mode"] == "hybrid" and threshold is not None else str(row["mode"])


def _ok_total_latencies(samples: pd.DataFrame, case_id: str) -> np.ndarray:
    rows = samples[(samples["case_id"] == case_id) & (samples["stage"] == TOTAL_STAGE) & (samples["status"] == "ok")]
    return pd.to_numeric(rows["latency_ms"], errors="coerce").dropna().to_numpy()


def variant_cases(summary: pd.DataFrame, samples: pd.DataFrame, reference: str | None) -> list[VariantCase]:
    """Every variant's total row, with its speed-up over the reference variant's same mode and
    clip length (the first variant of the run when the suite names no reference)."""
    totals = summary[summary["stage"] == TOTAL_STAGE]
    if totals.empty:
        return []
    reference = reference if reference in set(totals["variant"]) else str(totals.iloc[0]["variant"])
    ref_cases = {(_variant_mode_label(r), float(r["clip_s"])): r for _, r in totals[totals["variant"] == reference].iterrows()}
    found = []
    for _, row in totals.iterrows():
        key = (_variant_mode_label(row), float(row["clip_s"]))
        speedup, ci = None, None
        ref = ref_cases.get(key)
        if ref is not None:
            mine, theirs = _ok_total_latencies(samples, row["case_id"]), _ok_total_latencies(samples, ref["case_id"])
            if len(mine) >= 2 and len(theirs) >= 2:
                speedup, low, high = stats.bootstrap_ratio_ci(mine, theirs)
                ci = (low, high)
            elif _variant_number(row["latency_p50_ms"]) and _variant_number(ref["latency_p50_ms"]):
                speedup = _variant_number(ref["latency_p50_ms"]) / _variant_number(row["latency_p50_ms"])
        found.append(VariantCase(
            variant=str(row["variant"]), mode=key[0], clip_s=key[1], n=int(_variant_number(row["n"]) or 0),
            failures=int(_variant_number(row["failures"]) or 0), n_total=int(_variant_number(row["n_total"]) or 0),
            latency_p50_ms=_variant_number(row["latency_p50_ms"]), speedup=speedup, speedup_ci=ci,
            peak_mem_bytes=_variant_number(row.get("peak_mem_bytes")), param_bytes=_variant_number(row.get("variant_param_bytes")),
            file_bytes=_variant_number(row.get("variant_file_bytes")), setup_ms=_variant_number(row.get("variant_setup_ms")),
            snr_db=_variant_number(row.get("accuracy_snr_db")), max_abs_err=_variant_number(row.get("accuracy_max_abs_err")),
            argmax_agree_pct=_variant_number(row.get("accuracy_argmax_agree_pct")),
            backend=str(row.get("variant_backend") if isinstance(row.get("variant_backend"), str) else ""),
        ))
    return found


def best_variant(cases: list[VariantCase], min_snr_db: float | None, max_abs_err: float | None) -> Best | None:
    """The variant with the highest geometric-mean speed-up over its cases among those with no
    failed repeat and, in every case, accuracy within the bound (SNR >= min_snr_db, max abs
    error <= max_abs_err; a blank accuracy figure does not pass a bound it is needed for)."""
    by_variant: dict[str, list[VariantCase]] = {}
    for case in cases:
        by_variant.setdefault(case.variant, []).append(case)
    excluded: dict[str, str] = {}
    scored: list[tuple[float, str]] = []
    for variant, mine in by_variant.items():
        failed = sum(c.failures for c in mine)
        if failed:
            excluded[variant] = f"{failed} failed repeat(s)"
            continue
        if min_snr_db is not None:
            worst = min((c.snr_db if c.snr_db is not None else -math.inf) for c in mine)
            if worst < min_snr_db:
                excluded[variant] = f"SNR {worst:.1f} dB < {min_snr_db:g} dB"
                continue
        if max_abs_err is not None:
            worst = max((c.max_abs_err if c.max_abs_err is not None else math.inf) for c in mine)
            if worst > max_abs_err:
                excluded[variant] = f"max abs error {worst:.3g} > {max_abs_err:g}"
                continue
        speedups = [c.speedup for c in mine if c.speedup]
        if len(speedups) != len(mine):
            excluded[variant] = "no speed-up for every case"
            continue
        scored.append((float(np.exp(np.mean(np.log(speedups)))), variant))
    if not scored:
        return None
    geomean, variant = max(scored)
    mine = by_variant[variant]
    snrs = [c.snr_db for c in mine if c.snr_db is not None]
    errs = [c.max_abs_err for c in mine if c.max_abs_err is not None]
    return Best(variant, geomean, min(snrs) if snrs else None, max(errs) if errs else None, excluded)


def best_variant_line(best: Best | None, reference: str | None, min_snr_db: float | None,
                      max_abs_err: float | None) -> str:
    """One sentence for the report and the digest."""
    bound = " and ".join(b for b in (f"SNR >= {min_snr_db:g} dB" if min_snr_db is not None else "",
                                     f"max abs error <= {max_abs_err:g}" if max_abs_err is not None else "") if b)
    within = f"within {bound} of {reference}" if bound else "(no accuracy bound in the suite)"
    if best is None:
        return f"No variant ran without failures {within}."
    snr = "" if best.worst_snr_db is None else (
        ", worst SNR inf dB" if math.isinf(best.worst_snr_db) else f", worst SNR {best.worst_snr_db:.1f} dB")
    return (f"Best variant {within}: {best.variant}, {best.geomean_speedup:.2f}x the reference's speed "
            f"(geometric mean over its cases){snr}.")
