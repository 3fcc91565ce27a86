"""``bench history`` and ``bench prune``: parse, call the core, print, choose the exit code.
Registered on the ``bench`` group by ``register(main)``; core imports stay inside the commands.
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from pathlib import Path

import click

from ..formats import FORMATS, Column, Document

SPARK = "▁▂▃▄▅▆▇█"
GAP = "·"
_TONE = {"regression": "bad", "improvement": "good", "changed": "neutral", "recovered": "neutral",
         "stable": "muted", "too few nights": "warn"}


def register(main: click.Group) -> None:
    """Add history and prune to the ``bench`` group."""
    from .common import fail_cleanly

    main.add_command(_history_command(fail_cleanly))
    main.add_command(_prune_command(fail_cleanly))


# --- bench history ------------------------------------------------------------------------------

def _history_command(fail_cleanly) -> click.Command:
    @click.command("history")
    @click.argument("suite")
    @click.option("--metric", default="latency", show_default=True,
                  help="latency, memory, util, failure, throughput or quality.")
    @click.option("--last", "last_n", type=int, default=30, show_default=True, help="Nights (runs) to show.")
    @click.option("--stage", default="total", show_default=True, help="Pipeline stage (total = end to end).")
    @click.option("--db", "db_url",
                  help="History database URL [default: $BENCH_DB_URL, else sqlite:///results/history.db].")
    @click.option("--min-effect", type=float, default=0.05, show_default=True,
                  help="Smallest level change that counts (0.05 = 5%).")
    @click.option("--record", "record_paths", multiple=True, type=click.Path(path_type=Path),
                  help="First record run folders of SUITE: a run folder or a folder of them (repeatable).")
    @click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="table", show_default=True,
                  help="Output format; csv and json carry the raw numbers.")
    @click.option("--fail-on-regression", is_flag=True, help="Exit 1 when a case's trend is a regression.")
    @fail_cleanly
    def history_cmd(suite, metric, last_n, stage, db_url, min_effect, record_paths, fmt, fail_on_regression):
        """Trend of SUITE (a suite name or .toml file) over its last nights: one row per case,
        with the nights' values, the last value and the change points (night and change %).
        A level change that lasts is flagged; a one-night spike is not."""
        from ..analysis.history_trend import history_trend
        from ..store.history import default_db_url, open_history, record_folders

        name = _suite_name(suite)
        url = db_url or default_db_url()
        with open_history(url, create=bool(record_paths)) as history:
            if record_paths:
                recorded = record_folders(history, name, record_paths)
                click.echo(f"recorded {recorded} run(s) of suite {name!r} into {history.url}", err=True)
            trend = history_trend(history, name, metric=metric, stage=stage, last_n=last_n, min_effect=min_effect)
        color = fmt == "table" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        from ..formats import render

        click.echo(render(history_document(trend), fmt, color=color))
        if fail_on_regression and trend.regressions():
            sys.exit(1)

    return history_cmd


def _suite_name(suite: str) -> str:
    """A suite name, or the ``name`` of a suite .toml file."""
    path = Path(suite)
    if path.suffix != ".toml" or not path.is_file():
        return suite
    from ..errors import UserError

    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: suite: cannot read its name ({exc})") from None
    return str(name) if name else path.stem


def history_document(trend) -> Document:
    """A HistoryTrend as a Document: one record per case."""
    spec = trend.spec
    records = [_history_record(trend, case) for case in trend.cases]
    first, last = (trend.nights[0], trend.nights[-1]) if trend.nights else ({}, {})
    before = [f"nights 1..{len(trend.nights)}: {first.get('started_at', '')[:10]} ({first.get('run_id', '')}) .. "
              f"{last.get('started_at', '')[:10]} ({last.get('run_id', '')}); stage {trend.stage}; "
              f"db {trend.db}"]
    columns = [
        Column("case_id", "case", align="left"),
        Column("nights", "nights"),
        Column("series", "trend (oldest..newest)", align="left", csv=False),
        Column("values", "values", table=False),
        Column("first", f"first {spec.unit}", lambda r: _num(r["first"])),
        Column("last", f"last {spec.unit}", lambda r: _num(r["last"])),
        Column("net_change", "net", lambda r: _pct(r["net_change"])),
        Column("changes", "change points", align="left"),
        Column("verdict", "verdict", align="left"),
    ]
    return Document(f"history of suite {trend.suite!r}: {spec.label} ({spec.unit}), last {len(trend.nights)} nights",
                    columns, records, before=before, after=_history_after(trend),
                    payload=_history_payload(trend), tone_key="verdict")


def _history_record(trend, case) -> dict:
    scaled = [None if v is None else v * trend.spec.scale for v in case.values]
    present = [v for v in scaled if v is not None]
    return {"case_id": case.case_id, "nights": len(present), "series": sparkline(scaled),
            "values": " ".join("" if v is None else repr(v) for v in scaled),
            "first": present[0] if present else None, "last": present[-1] if present else None,
            "net_change": case.net_change, "changes": "; ".join(_change_text(c) for c in case.changes),
            "verdict": case.verdict, "_tone": _TONE.get(case.verdict, "")}


def _change_text(change: dict) -> str:
    tag = " regression" if change["regression"] else ""
    return (f"night {change['night']} ({change['started_at'][:10]}) {_pct(change['relative_change'])} "
            f"p={_p(change['p_value'])}{tag}")


def _history_after(trend) -> list[str]:
    bad = {"up": f"a rise in {trend.metric} is a regression", "down": f"a fall in {trend.metric} is a regression",
           None: f"{trend.metric} is shown, never judged"}[trend.spec.bad]
    lines = [f"change points: PELT segmentation, each level change tested (Mann-Whitney U or median z, "
             f"alpha {trend.alpha}) and at least {trend.min_effect:.0%}; a one-night spike is not a change; "
             f"{bad}; 'night k' counts the nights shown, oldest = 1"]
    if any(c.verdict == "too few nights" for c in trend.cases):
        lines.append("some cases have fewer than 4 nights: no change points yet (fix: more nights, or a larger --last)")
    return lines


def _history_payload(trend) -> dict:
    return {"suite": trend.suite, "metric": trend.metric, "stage": trend.stage, "unit": trend.spec.unit,
            "stored_unit_scale": trend.spec.scale, "db": trend.db, "min_effect": trend.min_effect,
            "alpha": trend.alpha, "nights": trend.nights,
            "cases": [{"case_id": c.case_id, "values": c.values, "changes": c.changes, "verdict": c.verdict,
                       "net_change": c.net_change} for c in trend.cases]}


def sparkline(values: list[float | None]) -> str:
    """One character per night; the scale spans at least 5% of the median, so noise stays flat."""
    present = [v for v in values if v is not None]
    if not present:
        return GAP * len(values)
    low, high = min(present), max(present)
    median = sorted(present)[len(present) // 2]
    span = max(high - low, 0.05 * abs(median), 1e-12)
    base = low - (span - (high - low)) / 2
    return "".join(GAP if v is None else SPARK[min(len(SPARK) - 1, int((v - base) / span * len(SPARK)))]
                   for v in values)


def _num(value: float | None) -> str:
    from ..formats.documents import number

    return number(value)


def _pct(value: float | None) -> str:
    if value is None:
        return ""
    return ("+inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:+.1%}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --- bench prune --------------------------------------------------------------------------------

def _prune_command(fail_cleanly) -> click.Command:
    @click.command("prune")
    @click.option("--keep", type=int, required=True, help="Run folders to keep per suite (the newest).")
    @click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"),
                  show_default=True, help="Folder of run folders.")
    @click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
    @fail_cleanly
    def prune_cmd(keep, results_dir, dry_run):
        """Delete all but the newest KEEP run folders of each suite (by manifest started_at).
        Locked or running runs are never deleted; history database rows stay."""
        from ..store.prune import prune_runs

        result = prune_runs(results_dir, keep=keep, dry_run=dry_run)
        for line in prune_lines(result):
            click.echo(line)

    return prune_cmd


def prune_lines(result) -> list[str]:
    verb = "would delete" if result.dry_run else "deleted"
    lines = [f"{verb} {r.path} (suite {r.suite}, started {r.started_at.isoformat()})" for r in result.deleted]
    lines += [f"skipped {path}: {reason}" for path, reason in result.skipped]
    lines.append(f"{verb} {len(result.deleted)} run folder(s), {result.freed_bytes / 2**20:.1f} MiB; "
                 f"kept {len(result.kept)} (newest {result.keep} per suite); skipped {len(result.skipped)}")
    return lines
