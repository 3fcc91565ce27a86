"""How a report writes a number: one function per kind of figure, used by every format.

Each takes the value as summary.csv holds it (None or NaN when blank) and returns text, so
the PDF, HTML and Markdown show the same characters for the same cell.
"""

from __future__ import annotations

import math
from typing import Any

from ..analysis.stats import min_samples_for

UTIL_SOURCES = {
    "gpm_sm": ("SM activity", "SM 활성도"),
    "nvml_gpu": ("GPU busy (a kernel was running)", "GPU 사용 중(커널 실행)"),
    "nvml_gpu_case": ("GPU busy, case-level (repeats shorter than NVML's sample period)",
                      "GPU 사용 중, 케이스 단위(반복이 NVML 샘플 주기보다 짧음)"),
    "cpu": ("CPU share", "CPU 점유율"),
}
GIB = 2.0**30  # "GB" in suite files and budgets means GiB, as in budgets.py and tuning.py
MIB = 2.0**20


def number(value: Any) -> float | None:
    """A finite or infinite float, or None for blanks (None, NaN, '')."""
    if value is None or value == "":
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def ms(value: Any) -> str:
    """Milliseconds with three significant figures for small values (1.23, 12.3, 123)."""
    v = number(value)
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def percentile_ms(value: Any, q: float, n: Any) -> str:
    """A percentile cell; blank percentiles say why ("n/a (n<100)"), never a number."""
    v = number(value)
    if v is not None:
        return ms(v)
    if not number(n):
        return "n/a (0 ok)"
    if q == 0.5:
        return "n/a"
    return f"n/a (n<{min_samples_for(max(q, 1 - q))})"


def memory_unit(values: list[Any] = ()) -> tuple[str, float]:
    """Memory is always shown in GiB (binary, as budgets.py and tuning.py read "GB"), so a
    table, a chart and a budget never mix units."""
    return ("GiB", GIB)


def memory(value: Any, unit: tuple[str, float] = ("GiB", GIB)) -> str:
    """'38.2', '1.25', '0.312', '0.0041' (GiB): three significant figures below 10."""
    v = number(value)
    if v is None:
        return "n/a"
    scaled = v / unit[1]
    if scaled >= 10:
        return f"{scaled:.1f}"
    if scaled >= 1:
        return f"{scaled:.2f}"
    return f"{scaled:.3g}" if scaled else "0"


def util(value: Any, source: Any) -> str:
    """Utilisation always with its source: '72.1 % SM activity', 'n/a (CPU share)'."""
    label = util_source_label(source)
    v = number(value)
    if v is None:
        return f"n/a ({label})" if label else "n/a"
    return f"{v:.1f} % {label}".rstrip()


def util_source_label(source: Any, lang: str = "en") -> str:
    parts = [p for p in str(source or "").split("+") if p]
    index = 1 if lang == "ko" else 0
    return " + ".join(UTIL_SOURCES.get(p, (p, p))[index] for p in parts)


def snr(value: Any) -> str:
    v = number(value)
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "identical" if v > 0 else "-inf"
    return f"{v:.1f}"


def plain(value: Any, digits: int = 2) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:.{digits}f}"


def seconds(value: Any) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:g}"


def count_of(k: Any, n: Any) -> str:
    return f"{int(number(k) or 0)}/{int(number(n) or 0)}"


def duration_ms(value: Any) -> str:
    """The one rule for a duration in prose: '7 min 35 s' (>= 60 s), '12.3 s' (>= 1 s) or
    '123 ms' / '12.3 ms' / '1.23 ms' (three significant figures)."""
    v = number(value)
    if v is None:
        return "n/a"
    if v >= 60_000:
        minutes, secs = divmod(round(v / 1000), 60)
        return f"{minutes} min {secs:02d} s"
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{ms(v)} ms"


def mode_label(mode: Any, threshold_s: Any) -> str:
    t = number(threshold_s)
    return str(mode) if t is None else f"{mode}@{t:g}"


def relative(value: Any) -> str:
    """A relative change (0.102) as a signed percentage: '+10.2 %'."""
    v = number(value)
    return "n/a" if v is None else f"{100 * v:+.1f} %"


def p_value(value: Any) -> str:
    v = number(value)
    if v is None:
        return "n/a"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def calls(value: Any) -> str:
    """A count per repeat that may be fractional (1.5 calls a repeat): '3', '1.5'."""
    v = number(value)
    return "n/a" if v is None else f"{round(v, 2):g}"


def signed_ms(value: Any) -> str:
    """A difference in milliseconds with its sign: '+2.44', '-39.2'."""
    v = number(value)
    return "n/a" if v is None else ("+" if v > 0 else "") + ms(v)
