"""Plain-text tables of a profile and of a comparison, for the terminal. Pure."""

from __future__ import annotations

from typing import Any, Sequence

from .analysis import BUSY_MEANING
from .store import OVERHEAD_NOTE


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text, right-aligned numbers, two spaces between columns."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in cells])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def format_profile(summary: dict, top_ops: dict[str, list[dict]], *, stage: str | None = None) -> str:
    """The region table, the top ops per stage and the largest gaps of one profile."""
    regions = [r for r in summary["regions"] if stage is None or r["region"] == stage]
    parts = [
        f"profile: {summary['case_id']} on {summary['device']} ({summary['repeats_profiled']} profiled repeats "
        f"after {summary['schedule']['wait']} unprofiled + {summary['schedule']['warmup']} warm-up; "
        "times per repeat)",
        f"busy/idle: {BUSY_MEANING[summary['activity']]}",
        table(["region", "calls", "wall_ms", "busy_ms", "idle_ms", "busy_%", "largest_gap_ms"],
              [[r["region"], r["calls"], r["wall_ms"], r["busy_ms"], r["idle_ms"], r["busy_pct"],
                r["largest_gap_ms"]] for r in regions]
              + ([["total", None, summary["window_ms"], summary["busy_ms"], summary["idle_ms"], summary["busy_pct"],
                   None]] if stage is None else [])),
    ]
    kind = "kernels" if summary["activity"] == "cuda" else "operators"
    for name, ops in top_ops.items():
        if (stage is None or name == stage) and ops:
            parts.append(f"top {kind} by self time: {name}")
            parts.append(table(["op", "self_ms", "calls", "share_%"],
                               [[o["op"], o["self_time_ms"], o["calls"], 100 * o["share"]] for o in ops]))
    parts.append(_gaps([g for g in summary["largest_gaps"] if stage is None or g["region"] == stage]))
    parts.append(f"note: {OVERHEAD_NOTE}")
    return "\n\n".join(p for p in parts if p)


def _gaps(gaps: list[dict]) -> str:
    if not gaps:
        return "largest idle gaps: none"
    rows = [[g["duration_ms"], g["region"], g["repeat"], g["offset_ms"]] for g in gaps[:5]]
    return "largest idle gaps:\n" + table(["gap_ms", "during", "repeat", "at_ms"], rows)


def format_comparison(comparison: dict, *, stage: str | None = None) -> str:
    """Both modes in columns: busy %, idle and wall time per region, then the top ops."""
    a, b = comparison["a"], comparison["b"]
    keep = (lambda name: name == stage) if stage else (lambda name: True)
    regions = table(
        ["region", f"{a} busy_%", f"{b} busy_%", f"{a} idle_ms", f"{b} idle_ms", f"{a} wall_ms", f"{b} wall_ms"],
        [[r["region"], r["a_busy_pct"], r["b_busy_pct"], r["a_idle_ms"], r["b_idle_ms"], r["a_wall_ms"],
          r["b_wall_ms"]] for r in comparison["regions"] if keep(r["region"])])
    kind = "kernels" if comparison["activity"] == "cuda" else "operators"
    ops = table(["stage", "op", f"{a} ms", f"{b} ms", "change_ms", "change_%"],
                [[o["stage"], o["op"], o["a_ms"], o["b_ms"], o["change_ms"], o["change_pct"]]
                 for o in comparison["ops"] if keep(o["stage"])])
    return "\n\n".join([f"compare: {a} vs {b} (per repeat; change = {a} - {b})", regions,
                        f"top {kind} by self time ({a} vs {b})", ops])
