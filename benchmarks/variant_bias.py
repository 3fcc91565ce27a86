"""Probe: is the bias between identical variants one of time (drift) or of process?

Runs the same configuration as two identical variants, each in its own worker process,
``--sessions`` times (fresh processes each time), once interleaved (rounds alternate the two
workers) and once sequentially (every repeat of a, then every repeat of b), and prints per
session the paired ratio b/a (median of per-round ratios) with its 95% interval, and the
unpaired ratio of medians.

Reading it: if the interleaved paired ratios sit at 1 within their intervals while the
sequential ones do not, the bias was time (drift, which alternation cancels). If the
interleaved ratios differ from 1 beyond their intervals, by different amounts and signs in
different sessions, it is per process (address-space layout, allocator state): then each
variant must be measured in several processes and the process treated as a block.

    python benchmarks/variant_bias.py [--sessions 4] [--repeats 12] [--scale tiny] [--clip 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _session(out: Path, *, interleave: bool, repeats: int, scale: str, clip_s: float, index: int) -> dict:
    from benchrunner.analysis import stats
    from benchrunner.store.results import read_samples
    from benchrunner.run.runner import run_suite
    from benchrunner.suite import load_suite

    path = out / f"s{index}-{'i' if interleave else 's'}.toml"
    path.write_text(f"""
name = "bias"
pipeline = "benchrunner.pipelines.reference:build"
pipeline_args = {{ scale = "{scale}" }}
variants = {{ a = {{}}, b = {{}} }}
device = "cpu"
clip_lengths_s = [{clip_s:g}]
modes = ["single"]
repeats = {repeats}
warmup = 2
interleave = {"true" if interleave else "false"}
sampler = {{ enabled = false }}
""")
    result = run_suite(load_suite(path), out_dir=out / "results", argv=["variant_bias.py"])
    totals = read_samples(result.run_dir).query("stage == 'total' and status == 'ok'")
    a = totals[totals["variant"] == "a"].set_index("repeat")["latency_ms"]
    b = totals[totals["variant"] == "b"].set_index("repeat")["latency_ms"]
    common = a.index.intersection(b.index)
    ratio, low, high = stats.paired_ratio_ci(a.loc[common].to_numpy(), b.loc[common].to_numpy())
    return {"paired": (ratio, low, high), "unpaired": float(np.median(b) / np.median(a)),
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--clip", type=float, default=5.0)
    args = parser.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="variant-bias-"))
    print(f"{'session':>7} {'design':<12} {'paired b/a [95% CI]':<28} {'unpaired b/a':>12} {'load':>6}")
    for index in range(args.sessions):
        for interleave in (True, False):
            found = _session(out, interleave=interleave, repeats=args.repeats, scale=args.scale, clip_s=args.clip,
                             index=index)
            ratio, low, high = found["paired"]
            flag = "" if low <= 1.0 <= high else "  excludes 1"
            print(f"{index:>7} {'interleaved' if interleave else 'sequential':<12} "
                  f"{ratio:.4f} [{low:.4f}, {high:.4f}]{flag:<12} {found['unpaired']:>12.4f} {found['load']:>6.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
