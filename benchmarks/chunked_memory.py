"""Does chunked peak memory stay flat as the clip grows?

Runs the reference pipeline on the CPU in single and chunked mode (10 s windows, 1 s
context) at 30, 60 and 90 s through ``bench run``, and prints, per mode and clip length, the
median absolute peak (``peak_mem_bytes``: the worker's peak RSS) and the growth over what the
worker held before the repeat (``peak_mem_growth_bytes``), then the chunked ratio 90 s / 30 s
of both. A chunked run needs one chunk's working set plus the merged output, so its peak may
grow only by the output's size; single grows with the whole clip.

    python benchmarks/chunked_memory.py [--scale small] [--repeats 3] [--max-ratio 1.2] [--out DIR]

Exits 1 when the chunked absolute-peak ratio is above ``--max-ratio``. About 1-2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

MIB = 1 << 20
LENGTHS = (30, 60, 90)


def suite_text(scale: str, repeats: int) -> str:
    return f"""
name = "chunked-memory"
pipeline = "benchrunner.pipelines.reference:build"
pipeline_args = {{ scale = "{scale}", dtype = "float32" }}
device = "cpu"
clip_lengths_s = [{", ".join(str(x) for x in LENGTHS)}]
modes = ["single", "chunked"]
chunk = {{ window_s = 10, overlap_s = 1, max_retries = 0 }}
repeats = {repeats}
warmup = 1
timeout_s = 900
seed = 0
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-ratio", type=float, default=1.2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="chunked-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    suite = out / "chunked-memory.toml"
    suite.write_text(suite_text(args.scale, args.repeats), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "benchrunner", "run", str(suite), "--out", str(out / "results")],
                   check=True, stdout=subprocess.DEVNULL)
    samples = pd.read_csv(next((out / "results").glob("*/samples.csv")))
    totals = samples[(samples["stage"] == "total") & (samples["status"] == "ok")]
    table = totals.groupby(["mode", "clip_s"])[["peak_mem_bytes", "peak_mem_growth_bytes"]].median() / MIB
    print(table.round(1).rename(columns=lambda c: c.replace("_bytes", "_mib")).to_string())
    chunked = table.loc["chunked"]
    ratios = {col: chunked[col].loc[float(LENGTHS[-1])] / chunked[col].loc[float(LENGTHS[0])] for col in chunked}
    for col, ratio in ratios.items():
        print(f"chunked {col} {LENGTHS[-1]} s / {LENGTHS[0]} s = {ratio:.3f}")
    passed = ratios["peak_mem_bytes"] <= args.max_ratio
    print(f"{'pass' if passed else 'FAIL'}  chunked absolute peak ratio <= {args.max_ratio:g}; run: {out / 'results'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
