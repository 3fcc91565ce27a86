"""A pipeline whose costs are known in advance, and the check that benchrunner reports them.

Stages busy-wait a known time per second of audio they receive (``encode``, ``pitch``,
``decode``) and ``allocate`` allocates and touches a known number of bytes, so the right
answers are known before anything runs. The check runs three variants of one configuration,
interleaved: ``a`` and ``b`` identical, ``slow`` with its ``pitch`` stage 5% slower, over
clip lengths 10 and 40 s in single and chunked mode, then asks ``bench compare``:

* a vs b, end-to-end total: "no significant change" at every case;
* a vs slow, the pitch stage: "slower" at every case;
* peak memory of every case within 5% of the known allocation.

Run it (from the repository root; about a minute on 2 cores):

    python benchmarks/known_cost.py [--repeats 20] [--out DIR] [--lengths 10,40]

It prints one line per check and exits 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchrunner import Pipeline, Stage, Stream

RATE_HZ = 1000
MIB = 1 << 20
BUSY_MS_PER_S = {"encode": 2.0, "pitch": 2.0, "decode": 2.0}
ALLOC_BYTES = 64 * MIB
SLOWDOWN = 1.05


def make_clip(clip_s: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(1, int(round(clip_s * RATE_HZ)), generator=generator)}


def _busy_stage(name: str, ms_per_s: float) -> Stage:
    def busy(value: dict) -> dict:
        seconds = value["audio"].shape[-1] / RATE_HZ
        end = time.perf_counter_ns() + int(ms_per_s * seconds * 1e6)
        while time.perf_counter_ns() < end:
            pass
        return value

    return Stage(name, busy)


def _allocate_stage(n_bytes: int) -> Stage:
    def allocate(value: dict) -> dict:
        block = torch.empty(n_bytes, dtype=torch.uint8).fill_(1)  # every page touched
        del block
        return value

    return Stage("allocate", allocate)


def build(slowdown: float = 1.0, slow_stage: str = "pitch", alloc_bytes: int = ALLOC_BYTES,
          device: str = "cpu") -> Pipeline:
    """Busy-wait stages of BUSY_MS_PER_S ms per second of input (``slow_stage`` times
    ``slowdown``) and a stage that allocates ``alloc_bytes``."""
    stages = [_busy_stage(name, ms * (slowdown if name == slow_stage else 1.0)) for name, ms in BUSY_MS_PER_S.items()]
    stages.insert(1, _allocate_stage(alloc_bytes))
    return Pipeline(
        name="known-cost", stages=stages,
        inputs={"audio": Stream(time_axis=-1, rate_hz=RATE_HZ)},
        outputs={"audio": Stream(time_axis=-1, rate_hz=RATE_HZ)},
        make_clip=make_clip, sample_rate=RATE_HZ, device=device,
    )


def suite_text(*, repeats: int, lengths: list[float], results_dir: Path) -> str:
    return f"""
name = "known-cost"
pipeline = "known_cost:build"
variants = {{ a = {{}}, b = {{}}, slow = {{ slowdown = {SLOWDOWN} }} }}
device = "cpu"
clip_lengths_s = [{", ".join(f"{x:g}" for x in lengths)}]
modes = ["single", "chunked"]
chunk = {{ window_s = 10, overlap_s = 1 }}
repeats = {repeats}
warmup = 2
results_dir = "{results_dir}"
"""


def run_check(*, repeats: int = 20, lengths: list[float] = (10.0, 40.0), out: Path | None = None) -> dict:
    """Run the three variants and judge them. Returns {"run_dir", "checks": [(name, passed, detail)],
    "passed"}."""
    from benchrunner.analysis.compare import compare
    from benchrunner.run.runner import run_suite
    from benchrunner.suite import load_suite

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)  # workers are spawned with this sys.path, so they import known_cost too
    out = Path(out or tempfile.mkdtemp(prefix="known-cost-"))
    out.mkdir(parents=True, exist_ok=True)
    suite_path = out / "known_cost.toml"
    suite_path.write_text(suite_text(repeats=repeats, lengths=list(lengths), results_dir=out / "results"))
    result = run_suite(load_suite(suite_path), out_dir=out / "results", argv=["known_cost.py"])
    checks = []
    same = compare("a", "b", run=result.run_dir)
    for row in same.rows:
        checks.append((f"identical a vs b, total, {row.case} {row.clip_s:g} s",
                       row.verdict == "no significant change",
                       f"{row.verdict}: ratio {row.ratio:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}] ({same.design})"))
    slow = compare("a", "slow", run=result.run_dir, stage="pitch")
    for row in slow.rows:
        checks.append((f"5% slower pitch, a vs slow, {row.case} {row.clip_s:g} s", row.verdict == "slower",
                       f"{row.verdict}: ratio {row.ratio:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}] ({slow.design})"))
    import pandas as pd

    totals = pd.read_csv(result.run_dir / "samples.csv")
    totals = totals[(totals["stage"] == "total") & (totals["status"] == "ok")]
    for case_id, rows in totals.groupby("case_id", sort=False):
        peak = float(rows["peak_mem_growth_bytes"].median())  # what the case added over the worker's baseline
        error = peak / ALLOC_BYTES - 1.0
        checks.append((f"memory {case_id}", abs(error) <= 0.05,
                       f"median peak {peak / MIB:.2f} MiB vs known {ALLOC_BYTES / MIB:g} MiB ({error:+.2%})"))
    return {"run_dir": result.run_dir, "checks": checks, "passed": all(ok for _, ok, _ in checks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--lengths", default="10,40")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    outcome = run_check(repeats=args.repeats, lengths=[float(x) for x in args.lengths.split(",")], out=args.out)
    for name, ok, detail in outcome["checks"]:
        print(f"{'pass' if ok else 'FAIL'}  {name:<48} {detail}")
    failed = sum(1 for _, ok, _ in outcome["checks"] if not ok)
    print(f"{len(outcome['checks'])} checks, {failed} failed; run: {outcome['run_dir']}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
