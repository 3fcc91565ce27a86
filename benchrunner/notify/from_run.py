"""The digest's figures, read from a run folder's summary (reports never re-measure)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..measure.environment import environment_summary
from ..store.results import TOTAL_STAGE, read_manifest, read_summary
from ..errors import NotifyError
from .digest import DigestInput, ModeFigures


def _mode_label(row) -> str:
    threshold = row["threshold_s"]
    return f"{row['mode']}@{float(threshold):g}" if pd.notna(threshold) else str(row["mode"])


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def mode_figures(summary: pd.DataFrame) -> list[ModeFigures]:
    """One entry per variant and mode: latency and utilisation at the longest clip length
    (named in the label), peak memory over all lengths, failures k/n over all repeats."""
    totals = summary[summary["stage"] == TOTAL_STAGE].copy()
    if totals.empty:
        return []
    totals["label"] = totals.apply(_mode_label, axis=1)
    several_variants = totals["variant"].nunique() > 1
    figures = []
    for (variant, label), rows in totals.groupby(["variant", "label"], sort=False):
        longest = rows.loc[rows["clip_s"].idxmax()]
        name = f"{variant}/{label}" if several_variants else label
        figures.append(ModeFigures(
            mode=f"{name} at {float(longest['clip_s']):g} s", p50_ms=_number(longest["latency_p50_ms"]),
            p99_ms=_number(longest["latency_p99_ms"]),
            peak_mem_bytes=_number(pd.to_numeric(rows["peak_mem_bytes"], errors="coerce").max()),
            util_pct=_number(longest["util_mean_pct"]), util_source=str(longest["util_source"] or "cpu"),
            failures=int(rows["failures"].sum()), runs=int(rows["n_total"].sum())))
    return figures


ANSWERS_FILE = "answers.json"  # written by bench report beside report.pdf


def read_answers(report_dir: Path | None) -> list[tuple[str, str]]:
    """Page 1's (topic, sentence) pairs as bench report wrote them; [] when there is no such file."""
    import json

    path = None if report_dir is None else Path(report_dir) / ANSWERS_FILE
    if path is None or not path.is_file():
        return []
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return [(str(a["topic"]), str(a["text"])) for a in payload["answers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotifyError(f"{path}: not a report's answers file ({exc.__class__.__name__}); "
                          "write the report again with bench report") from None


def digest_input(run_dir: Path, alerts: list[str], report_name: str | None = None,
                 answers: list[tuple[str, str]] = ()) -> DigestInput:
    manifest = read_manifest(run_dir)
    env = environment_summary(manifest.get("environment") or {})
    summary = read_summary(run_dir)
    sources = (manifest.get("environment") or {}).get("sources") or {}
    commit = (sources.get("pipeline") or {}).get("commit") or env.get("commit")
    return DigestInput(suite=manifest["suite"]["name"], run_id=manifest["run_id"], commit=commit,
                       gpu=env.get("gpu"), modes=mode_figures(summary), alerts=alerts,
                       report_name=report_name, answers=list(answers),
                       variants_line=variants_line(run_dir, manifest, summary))


def variants_line(run_dir: Path, manifest: dict, summary: pd.DataFrame) -> str | None:
    """The best variant within the suite's accuracy bound, when the run has several variants."""
    if summary.empty or "variant" not in summary or summary["variant"].nunique() < 2:
        return None
    from ..analysis.compare import best_variant, best_variant_line, suite_accuracy, variant_cases
    from ..store.results import read_samples

    reference, min_snr_db, max_abs_err = suite_accuracy(manifest)
    best = best_variant(variant_cases(summary, read_samples(run_dir), reference), min_snr_db, max_abs_err)
    return best_variant_line(best, reference, min_snr_db, max_abs_err)
