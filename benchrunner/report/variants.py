"""The variants section: backends and precisions side by side (latency and speed-up over the
reference variant with its CI, peak memory, size, accuracy, set-up time), per clip length
and mode, and the best variant within the suite's accuracy bound. Kept apart from the other
sections; it appears when a run has more than one variant."""

from __future__ import annotations

import math

from ..analysis.compare import best_variant, best_variant_line, suite_accuracy, variant_cases
from . import fmt
from .model import RunView, Section, Table


def _bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _speedup(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def _snr(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.1f}"


def variants_section(view: RunView) -> Section | None:
    if view.summary.empty or view.summary["variant"].nunique() < 2:
        return None
    reference, min_snr_db, max_abs_err = suite_accuracy(view.manifest)
    cases = variant_cases(view.summary, view.samples, reference)
    unit, _ = view.mem_unit
    columns = ["Variant", "Backend", "Mode", "Clip (s)", "p50 ms", "Speed-up (95% CI)", f"Peak mem {unit}",
               "Weights", "File", "Setup s", "SNR dB", "Max abs err", "Argmax %", "Failures"]
    rows, tones = [], []
    for c in cases:
        rows.append([c.variant, c.backend or "n/a", c.mode, fmt.seconds(c.clip_s), fmt.ms(c.latency_p50_ms),
                     _speedup(c.speedup, c.speedup_ci), fmt.memory(c.peak_mem_bytes, view.mem_unit),
                     _bytes(c.param_bytes), _bytes(c.file_bytes),
                     "n/a" if c.setup_ms is None else f"{c.setup_ms / 1000:.1f}", _snr(c.snr_db),
                     "n/a" if c.max_abs_err is None else f"{c.max_abs_err:.3g}",
                     "n/a" if c.argmax_agree_pct is None else f"{c.argmax_agree_pct:.1f}",
                     fmt.count_of(c.failures, c.n_total)])
        tone = [""] * len(columns)
        if c.failures:
            tone[-1] = "bad"
        if min_snr_db is not None and c.snr_db is not None and c.snr_db < min_snr_db:
            tone[10] = "bad"
        tones.append(tone)
    best = best_variant(cases, min_snr_db, max_abs_err)
    paragraphs = [best_variant_line(best, reference, min_snr_db, max_abs_err)]
    if best is not None and best.excluded:
        paragraphs.append("Not candidates: " + "; ".join(f"{k} ({v})" for k, v in best.excluded.items()) + ".")
    unsupported = [f"{name}: {problem}" for name, build in (view.manifest.get("variants") or {}).items()
                   for problem in build.get("unsupported") or []]
    if unsupported:
        paragraphs.append("Stages a variant's backend could not take: " + "; ".join(unsupported) + ".")
    caption = (f"Speed-up: median latency of {reference or 'the first variant'} over this variant's, same mode "
               "and clip length, with a 95% percentile-bootstrap interval. Accuracy: the worst output stream "
               "against the reference variant's output for the same input and mode. Weights: bytes of the "
               "weights as the backend holds them; File: the serialised model; Setup: load, export/quantise/"
               "compile and first call, never part of the latency.")
    return Section("variants", "Backends and precisions", "백엔드 및 정밀도", paragraphs,
                   [Table("variants", columns, rows, tones, caption=caption)])
