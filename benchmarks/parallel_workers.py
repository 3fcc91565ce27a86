"""Benchmark: one sweep on 1 worker vs 2 workers (local processes, or Ray actors).

    PYTHONPATH=$PWD python benchmarks/parallel_workers.py [--executor local|ray] [--repeats 5]

The suite's stages sleep (the GIL is released), so two workers run side by side even on a
2-core machine. Prints each run's wall time, the ratio (2 workers / 1 worker; the goal is
<= 0.6) and every case's median latency on both, with their ratio (the goal: equal within
noise, i.e. splitting the sweep does not change what is measured). Not a test: timings on a
shared machine vary; run it when the executors change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SUITE = """
name = "parallel-bench"
pipeline = "sleepy_pipeline:build"
pipeline_args = {{ stage_ms = {stage_ms} }}
device = "cpu"
clip_lengths_s = [2, 3, 4, 5, 6, 7]
modes = ["single", "chunked"]
chunk = {{ window_s = 2, overlap_s = 0.5 }}
repeats = {repeats}
warmup = 1
sampler = {{ enabled = false }}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--stage-ms", type=float, default=50.0, help="sleep per stage per second of clip")
    args = parser.parse_args()

    import os

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    from benchrunner.run.executors import executor_spec
    from benchrunner.run.runner import run_suite
    from benchrunner.store.results import read_manifest, read_samples
    from benchrunner.suite import load_suite

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.toml"
        path.write_text(SUITE.format(stage_ms=args.stage_ms, repeats=args.repeats))
        medians, walls = {}, {}
        for workers in (1, 2):
            spec = executor_spec(args.executor, workers=workers)
            started = time.monotonic()
            result = run_suite(load_suite(path), out_dir=Path(tmp) / f"w{workers}", executor=spec)
            walls[workers] = time.monotonic() - started
            totals = read_samples(result.run_dir).query("stage == 'total' and status == 'ok'")
            medians[workers] = totals.groupby("case_id")["latency_ms"].median().to_dict()
            busy = {w["worker"]: w["busy_s"] for w in read_manifest(result.run_dir)["worker_summary"]}
            print(f"{workers} worker(s), {args.executor}: wall {walls[workers]:.1f} s, {len(totals)} ok repeats, "
                  f"busy s per worker {busy}")
    ratio = walls[2] / walls[1]
    print(f"wall time ratio 2/1 workers: {ratio:.2f} (goal <= 0.60: {'met' if ratio <= 0.6 else 'NOT met'})")
    print(f"{'case':<26} {'1 worker ms':>12} {'2 workers ms':>13} {'ratio':>6}")
    ratios = []
    for case_id in medians[1]:
        a, b = medians[1][case_id], medians[2][case_id]
        ratios.append(b / a)
        print(f"{case_id:<26} {a:>12.1f} {b:>13.1f} {b / a:>6.3f}")
    print(f"per-case median latency ratio: median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
