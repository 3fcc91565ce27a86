"""The one report data model every format renders (PDF, HTML, Markdown, research log).

Built from a run folder only (summary.csv for every figure in a table, samples.csv for
failure messages and comparisons, timeline.csv for the utilisation chart, manifest.json
for the suite, environment and warnings). Cells are formatted here, once, so the formats
cannot disagree; charts carry the plain numbers they plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import re

import pandas as pd

from ..errors import UserError
from ..store.results import TOTAL_STAGE, read_manifest, read_samples, read_summary, read_timeline
from . import fmt

TONES = ("", "good", "bad", "warn", "muted")
DEFAULT_TREND_NIGHTS = 14  # nights of history the trend chart shows
NUMERIC = re.compile(r"^(n/a.*|-|[<×]?[-+]?[\d.,]+( ?[%a-zA-Z/]*)?( \(.*\))?|\d+/\d+)$")


@dataclass(frozen=True)
class Table:
    key: str
    columns: list[str]
    rows: list[list[str]]
    tones: list[list[str]] = field(default_factory=list)  # same shape as rows; "" = plain
    caption: str = ""
    empty: str = "None."

    def tone(self, r: int, c: int) -> str:
        return self.tones[r][c] if self.tones else ""

    def numeric(self) -> list[bool]:
        """Per column: every cell is a figure (right-aligned); the first column never is."""
        return [c > 0 and all(NUMERIC.match(row[c]) for row in self.rows) for c in range(len(self.columns))]


@dataclass(frozen=True)
class Chart:
    key: str  # the name of the drawing function in charts.py
    caption: str
    data: dict[str, Any]
    fallback: Table | None = None  # what text-only formats show instead


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    title_ko: str
    paragraphs: list[str] = field(default_factory=list)
    blocks: list[Table | Chart] = field(default_factory=list)
    preformatted: str = ""


@dataclass(frozen=True)
class Verdict:
    topic: str
    topic_ko: str
    text: str
    tone: str
    text_ko: str = ""  # the same verdict in Korean, for the Korean research log


@dataclass(frozen=True)
class ReportModel:
    suite: str
    run_id: str
    date: str
    status: str
    modes: list[str]
    clips: list[float]
    facts: list[tuple[str, str]]
    verdicts: list[Verdict]
    sections: list[Section]
    headline: Table  # one row per mode: the figures a research log quotes
    warnings: list[dict]
    against: str | None = None
    omitted: list[str] = field(default_factory=list)  # optional sections left out, and why (also in the appendix)
    config: dict[str, Any] = field(default_factory=dict)  # the raw settings page 1 shows (None: not recorded)
    headline_ko: Table | None = None  # the headline table with Korean headers and cells, for the research log

    @property
    def title(self) -> str:
        return f"Benchmark report: {self.suite}"

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


@dataclass(frozen=True)
class RunView:
    """One run's files, read once, with the order every table and chart follows."""

    run_dir: Path
    manifest: dict
    samples: pd.DataFrame
    summary: pd.DataFrame
    timeline: pd.DataFrame
    totals: pd.DataFrame  # summary rows of stage "total", sorted, with a "label" column
    modes: list[str]
    clips: list[float]
    mem_unit: tuple[str, float]

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.run_dir.name)

    @property
    def suite(self) -> str:
        return str((self.manifest.get("suite") or {}).get("name") or "")

    def case(self, label: str, clip_s: float) -> pd.Series | None:
        found = self.totals[(self.totals["label"] == label) & (self.totals["clip_s"] == clip_s)]
        return found.iloc[0] if len(found) else None


def resolve_run_dir(run: str | Path, results_dir: Path = Path("results")) -> Path:
    """A run folder given as a path or as a run id under results/."""
    from ..store.runs import is_run_id

    path = Path(run)
    for candidate in [path] + ([results_dir / path] if is_run_id(str(run)) else []):
        if (candidate / "summary.csv").is_file():
            return candidate
    if path.is_dir():
        raise UserError(f"{run}: no summary.csv in this folder (expected a run folder written by bench run)")
    raise UserError(f"{run}: no such run folder (expected a path or a run id under {results_dir}/)")


def load_run(run: str | Path) -> RunView:
    run_dir = resolve_run_dir(run)
    manifest = read_manifest(run_dir)  # a missing or corrupt one is a UserError naming the file
    samples = read_samples(run_dir)
    if samples.empty and not _has_throughput(run_dir):  # a throughput-only run has no samples.csv rows
        raise UserError(f"{run_dir / 'samples.csv'}: samples: missing or no rows (the summary has nothing "
                        "measured behind it; expected the samples.csv bench run writes)")
    summary = read_summary(run_dir)
    if (summary.empty or TOTAL_STAGE not in set(summary["stage"].astype(str))) and not _has_throughput(run_dir):
        raise UserError(f"{run_dir}: summary.csv has no finished case, so there is nothing to report "
                        "(expected a run with at least one case measured)")
    totals = _sorted_totals(summary, manifest)
    return RunView(
        run_dir=run_dir, manifest=manifest, samples=samples, summary=summary,
        timeline=read_timeline(run_dir), totals=totals, modes=list(dict.fromkeys(totals["label"])),
        clips=sorted({float(c) for c in totals["clip_s"]}),
        mem_unit=fmt.memory_unit(list(totals["peak_mem_bytes"])),
    )


def _has_throughput(run_dir: Path) -> bool:
    """A run of the throughput scenario alone has no latency cases but is reportable."""
    from ..store.throughput import has_throughput

    return has_throughput(run_dir)


def series_label(variant: Any, mode: Any, threshold_s: Any, variants: int) -> str:
    label = fmt.mode_label(mode, threshold_s)
    return label if variants <= 1 else f"{variant} · {label}"


def _sorted_totals(summary: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    totals = summary[summary["stage"] == TOTAL_STAGE].copy()
    variants = list(dict.fromkeys(totals["variant"].astype(str)))
    totals["label"] = [series_label(v, m, t, len(variants))
                       for v, m, t in zip(totals["variant"], totals["mode"], totals["threshold_s"])]
    order = {m: i for i, m in enumerate((manifest.get("suite") or {}).get("modes") or [])}
    totals["_v"] = [variants.index(str(v)) for v in totals["variant"]]
    totals["_m"] = [order.get(fmt.mode_label(m, t), len(order)) for m, t in zip(totals["mode"], totals["threshold_s"])]
    totals["_t"] = pd.to_numeric(totals["threshold_s"], errors="coerce").fillna(-1.0)
    totals = totals.sort_values(["_v", "_m", "mode", "_t", "clip_s"], kind="stable")
    return totals.drop(columns=["_v", "_m", "_t"]).reset_index(drop=True)


def run_date(manifest: dict) -> str:
    text = str(manifest.get("started_at") or "")
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return text or "unknown"
