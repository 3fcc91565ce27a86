"""Two profiles of the same clip length side by side: busy %, idle time, top ops/kernels.

Pure: built from two :class:`Analysis` objects. ``change`` reads "first vs second"
(``--compare chunked single``: +3 ms means chunked spends 3 ms more per repeat).
"""

from __future__ import annotations

from .analysis import Analysis
from .store import device_op_kind


def compare_analyses(a_label: str, a: Analysis, b_label: str, b: Analysis, *, top: int = 10) -> dict:
    return {"a": a_label, "b": b_label, "activity": a.activity, "per": "repeat",
            "regions": _region_rows(a, b), "ops": _op_rows(a, b, top)}


def _region_rows(a: Analysis, b: Analysis) -> list[dict]:
    by_a = {r.region: r for r in a.regions}
    by_b = {r.region: r for r in b.regions}
    names = list(by_a) + [name for name in by_b if name not in by_a]
    rows = [_row(name, by_a.get(name), by_b.get(name)) for name in names]
    rows.append({"region": "total", "a_wall_ms": a.window_ms, "b_wall_ms": b.window_ms, "a_busy_pct": a.busy_pct,
                 "b_busy_pct": b.busy_pct, "a_idle_ms": a.idle_ms, "b_idle_ms": b.idle_ms})
    return rows


def _row(name: str, ra, rb) -> dict:
    def get(r, attr):
        return getattr(r, attr) if r is not None else 0.0

    return {"region": name, "a_wall_ms": get(ra, "wall_ms"), "b_wall_ms": get(rb, "wall_ms"),
            "a_busy_pct": get(ra, "busy_pct"), "b_busy_pct": get(rb, "busy_pct"),
            "a_idle_ms": get(ra, "idle_ms"), "b_idle_ms": get(rb, "idle_ms")}


def _op_rows(a: Analysis, b: Analysis, top: int) -> list[dict]:
    kind = device_op_kind(a.activity)
    a_ms = {(op.region, op.op): op.self_time_ms for op in a.ops if op.kind == kind}
    b_ms = {(op.region, op.op): op.self_time_ms for op in b.ops if op.kind == kind}
    keys = sorted(set(a_ms) | set(b_ms), key=lambda k: (-max(a_ms.get(k, 0.0), b_ms.get(k, 0.0)), k))[:top]
    rows = []
    for region, op in keys:
        x, y = a_ms.get((region, op), 0.0), b_ms.get((region, op), 0.0)
        rows.append({"stage": region, "op": op, "a_ms": x, "b_ms": y, "change_ms": x - y,
                     "change_pct": 100.0 * (x - y) / y if y > 0 else None})
    return rows
