"""Statistics for benchmark samples: pure functions, no I/O, no printing.

Every function names the method it uses so a reviewer can check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def min_samples_for(q: float) -> int:
    """Smallest n for which the q-quantile (0 < q < 1) is supported by the data.

    Rule: a q-quantile needs at least ceil(1 / (1 - q)) samples, so that at least
    one sample lies at or above it (p50: 2, p90: 10, p99: 100). With fewer samples
    the "p99" would just be the maximum, and we say so by returning nothing.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    return math.ceil(round(1.0 / (1.0 - q), 9))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (numpy's default, Hyndman-Fan type 7).

    Returns None when len(values) < min_samples_for(q), for q > 0.5; the median
    is returned for any non-empty sample.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if q > 0.5 and data.size < min_samples_for(q):
        return None
    return float(np.quantile(data, q))


@dataclass(frozen=True)
class Description:
    """Summary of one sample; percentiles are None where n cannot support them."""

    n: int
    mean: float | None
    std: float | None
    minimum: float | None
    maximum: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    cv: float | None


def describe(values: Sequence[float]) -> Description:
    """Mean, sample standard deviation (ddof=1), min, max, percentiles, and the
    coefficient of variation (std / mean) of a sample. NaNs are dropped."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        return Description(0, None, None, None, None, None, None, None, None, None)
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if n > 1 else None
    cv = std / mean if (std is not None and mean > 0) else None
    return Description(
        n=n,
        mean=mean,
        std=std,
        minimum=float(data.min()),
        maximum=float(data.max()),
        p10=percentile(data, 0.10) if n >= min_samples_for(0.90) else None,
        p50=percentile(data, 0.50),
        p90=percentile(data, 0.90),
        p99=percentile(data, 0.99),
        cv=cv,
    )
