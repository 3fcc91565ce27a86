"""bench profile: traces with every stage, top ops per stage, busy/idle, compare, nsys.

The CLI tests run the real ``bench`` in a subprocess on the quick suite; the analysis
tests feed hand-written traces (CPU and CUDA-shaped) to the pure analysis, since this
machine has no GPU.
"""

from __future__ import annotations

import csv
import tomllib
import gzip
import hashlib
import json
import stat
import sys
import time
from pathlib import Path

import pytest

from benchrunner.profiling import load_profile_summary
from benchrunner.profiling.analysis import IO_WAIT, OTHER, analyse

REPO = Path(__file__).parent.parent
QUICK = REPO / "suites" / "quick.toml"
STAGES = ["voice_conversion", "acoustic", "pitch", "lipsync"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_files(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): _digest(p) for p in sorted(run_dir.rglob("*")) if p.is_file()}


# -- the real command on the quick suite ---------------------------------------------------

def test_profile_chunked_writes_trace_and_top_ops_and_leaves_samples_alone(bench, tmp_path):
    done = bench("run", str(QUICK), "--lengths", "5", "--modes", "single", "--repeats", "1", "--warmup", "0",
                 "--out", "results")
    assert done.returncode == 0, done.stderr
    run_dir = next((tmp_path / "results").iterdir())
    before = _run_files(run_dir)
    assert load_profile_summary(run_dir) is None

    done = bench("profile", str(QUICK), "--mode", "chunked", "--length", "30", "--run", str(run_dir))
    assert done.returncode == 0, done.stderr

    profile_dir = run_dir / "profiles" / "chunked-30s"
    with gzip.open(profile_dir / "trace.json.gz", "rt") as f:
        names = {e.get("name") for e in json.load(f)["traceEvents"]}
    for stage in STAGES:
        assert f"chunked/{stage}/chunk0" in names and f"chunked/{stage}/chunk2" in names
    assert IO_WAIT in names
    with open(profile_dir / "top_ops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["stage"] for r in rows} >= set(STAGES)
    assert all(r["op"].startswith("aten::") for r in rows if r["stage"] == "acoustic")
    for stage in STAGES:
        assert f"top operators by self time: {stage}" in done.stdout
    assert "busy_%" in done.stdout and "largest idle gaps" in done.stdout
    after = _run_files(run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("profiles/")} == before  # samples.csv included
    assert "samples.csv" in before and "summary.csv" in before
    summary = load_profile_summary(run_dir)
    assert [p["case_id"] for p in summary["profiles"]] == ["default/chunked/30s"]
    quick_repeats = tomllib.loads((REPO / "suites" / "quick.toml").read_text())["repeats"]
    assert summary["profiles"][0]["repeats_profiled"] == quick_repeats  # warm-up excluded


def test_compare_prints_both_columns_with_a_row_per_stage(bench, tmp_path):
    done = bench("profile", str(QUICK), "--compare", "chunked", "single", "--length", "30", "--repeats", "2",
                 "--out", "prof")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("region"))
    assert "chunked busy_%" in header and "single busy_%" in header
    assert "chunked idle_ms" in header and "single idle_ms" in header
    for region in [*STAGES, IO_WAIT, OTHER, "total"]:
        row = next(line for line in lines if line.split()[:1] == [region])
        assert len(row.split()) == 7, row  # region + 3 pairs of columns
    assert "change_ms" in done.stdout
    compare = json.loads((tmp_path / "prof" / "compare.json").read_text())
    assert (compare["a"], compare["b"]) == ("chunked", "single")
    assert (tmp_path / "prof" / "single-30s" / "trace.json.gz").is_file()


def test_bad_input_is_a_user_error_before_anything_runs(tmp_path):
    from benchrunner.errors import UserError
    from benchrunner.profiling.command import choose_modes, profile_suite

    with pytest.raises(UserError, match=r"^--stage: 'vocoder' is not a stage of .*\(expected one of "
                                        r"voice_conversion, acoustic, pitch, lipsync\)$"):
        profile_suite(QUICK, ["single"], 5.0, stage="vocoder", out_dir=tmp_path / "p")
    with pytest.raises(UserError, match="^--length: missing"):
        profile_suite(QUICK, ["single"], None, out_dir=tmp_path / "p")
    with pytest.raises(UserError, match="^--mode: 'fast' is not a mode"):
        profile_suite(QUICK, ["fast"], 5.0, out_dir=tmp_path / "p")
    with pytest.raises(UserError, match="^--compare: 'single' twice"):
        choose_modes(None, ("single", "single"))
    with pytest.raises(UserError, match="^--run: .* is not a run folder"):
        profile_suite(QUICK, ["single"], 5.0, run_dir=tmp_path)
    assert not (tmp_path / "p").exists()


# -- --nsys ---------------------------------------------------------------------------------

def test_nsys_missing_says_what_and_how_exit_2(bench, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = subprocess_bench(bench, tmp_path, empty_bin, "profile", str(QUICK), "--mode", "chunked", "--length",
                            "30", "--nsys")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: --nsys: nsys")
    assert "Nsight Systems" in lines[0] and "nsight-systems-cli" in lines[0]
    assert not (tmp_path / "reports").exists()


FAKE_NSYS = """\
#!{python}
# A stand-in for NVIDIA's nsys (not installable here): records its arguments, writes the
# report file where -o says, and runs the profiled command like nsys does.
import json, subprocess, sys
args = sys.argv[1:]
out = args[args.index("-o") + 1]
command = args[args.index("true") + 1:]
open(out + ".nsys-rep", "w").write("fake report")
open(out + ".args.json", "w").write(json.dumps(args))
sys.exit(subprocess.call(command))
"""


def test_nsys_present_reruns_the_profile_under_it_and_says_where_the_report_is(bench, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nsys = bin_dir / "nsys"
    nsys.write_text(FAKE_NSYS.format(python=sys.executable))
    nsys.chmod(nsys.stat().st_mode | stat.S_IEXEC)
    done = subprocess_bench(bench, tmp_path, bin_dir, "profile", str(QUICK), "--mode", "chunked", "--length", "5",
                            "--repeats", "1", "--nsys", "--out", "nsys_out")
    assert done.returncode == 0, done.stderr
    report = tmp_path / "nsys_out" / "nsys_report.nsys-rep"
    assert f"nsys report: {Path('nsys_out') / 'nsys_report.nsys-rep'}" in done.stdout
    assert report.is_file()
    args = json.loads((tmp_path / "nsys_out" / "nsys_report.args.json").read_text())
    assert args[:3] == ["profile", "-t", "cuda,nvtx,osrt"]
    assert "--nsys" not in args and "--nvtx-only" in args
    assert "nvtx run: default/chunked/5s" in done.stdout


def subprocess_bench(bench, tmp_path, path_dir: Path, *args: str):
    """The real CLI with PATH set to ``path_dir`` only (python is started by absolute path)."""
    import subprocess

    from conftest import bench_env

    env = {**bench_env(), "PATH": str(path_dir)}
    return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)


# -- starvation shows as idle time in io_wait ------------------------------------------------

def slow_input_build(load_ms: float = 150.0):
    """The testing pipeline with inputs that take ``load_ms`` to prepare (like slow disk I/O)."""
    from testing_pipelines import build

    pipeline = build()
    make_clip = pipeline.make_clip

    def slow_make_clip(clip_s, seed):
        time.sleep(load_ms / 1000)
        return make_clip(clip_s, seed)

    pipeline.make_clip = slow_make_clip
    return pipeline


@pytest.mark.alone
def test_input_starvation_shows_as_io_wait_gaps(write_suite, tmp_path):
    import numpy as np
    import soundfile

    from benchrunner.profiling.command import profile_suite

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a", "b"):  # two files, so the prefetch thread loads one for every call
        soundfile.write(str(inputs / f"{name}.wav"), np.zeros(8000, dtype=np.float32), 8000)
    suite = write_suite("""
        name = "starve"
        pipeline = "test_profile:slow_input_build"
        device = "cpu"
        clip_lengths_s = [1]
        modes = ["single"]
        repeats = 6
        warmup = 1
        inputs = "inputs"
    """)
    outcome = profile_suite(suite, ["single"], 1.0, out_dir=tmp_path / "prof")
    analysis = outcome.results[0].analysis
    io_wait = next(r for r in analysis.regions if r.region == IO_WAIT)
    # 8 loads of 150 ms, one after the other; the prefetch queue hides a few of them behind
    # the slow first calls, then every call waits for its input
    assert io_wait.idle_ms > 20 and io_wait.busy_ms < 1
    assert analysis.gaps[0].region == IO_WAIT and analysis.gaps[0].duration_ms > 50
    assert analysis.busy_pct < 50


# -- the analysis on hand-written traces -----------------------------------------------------

def _x(name, cat, ts, dur, tid=1, **args):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": 1, "tid": tid, "args": args}


def _cpu_trace():
    return {"traceEvents": [
        _x("ProfilerStep#2", "user_annotation", 0, 100),
        _x(IO_WAIT, "user_annotation", 0, 30),
        _x("single/a", "user_annotation", 30, 40),
        _x("aten::linear", "cpu_op", 32, 30),
        _x("aten::addmm", "cpu_op", 35, 20),  # nested: linear's self time is 10
        _x("single/b", "user_annotation", 70, 30),
        _x("aten::relu", "cpu_op", 75, 10),
        _x("aten::clone", "cpu_op", 5, 20, tid=2),  # the prefetch thread: not main-thread activity
        _x("aten::relu", "cpu_op", 500, 10),  # outside the profiled step
        {"ph": "i", "name": "[memory]", "ts": 40, "pid": 1, "tid": 1},
    ]}


def test_cpu_analysis_attributes_ops_by_containment_and_finds_gaps():
    a = analyse(_cpu_trace(), {"single/a": "a", "single/b": "b"}, ["a", "b"], "cpu", min_gap_ms=0.001)
    assert (a.repeats, a.window_ms, a.busy_ms) == (1, pytest.approx(0.1), pytest.approx(0.04))
    regions = {r.region: r for r in a.regions}
    assert list(regions) == ["a", "b", IO_WAIT, OTHER]
    assert (regions["a"].wall_ms, regions["a"].busy_ms, regions["a"].idle_ms) == pytest.approx((0.04, 0.03, 0.01))
    assert regions[IO_WAIT].idle_ms == pytest.approx(0.03) and regions[IO_WAIT].busy_ms == 0
    assert regions[OTHER].wall_ms == 0
    ops = {(o.region, o.op): o for o in a.ops}
    assert ops[("a", "aten::linear")].self_time_ms == pytest.approx(0.01)
    assert ops[("a", "aten::addmm")].self_time_ms == pytest.approx(0.02)
    assert ops[("a", "aten::addmm")].share == pytest.approx(2 / 3)
    assert ("b", "aten::relu") in ops and not any(o.op == "aten::clone" for o in a.ops)
    assert (a.gaps[0].region, a.gaps[0].duration_ms, a.gaps[0].offset_ms) == (IO_WAIT, pytest.approx(0.032), 0)


def test_cuda_analysis_uses_kernels_on_the_gpu_and_their_launching_stage():
    trace = {"traceEvents": [
        _x("ProfilerStep#2", "user_annotation", 0, 200),
        _x(IO_WAIT, "user_annotation", 0, 50),
        _x("chunked/a/chunk0", "user_annotation", 50, 20),
        _x("cudaLaunchKernel", "cuda_runtime", 55, 5, correlation=7),
        _x("chunked/b/chunk0", "user_annotation", 70, 20),
        _x("cudaLaunchKernel", "cuda_runtime", 75, 5, correlation=8),
        _x("chunked/a/chunk0", "gpu_user_annotation", 60, 40, tid=7),
        _x("gemm_kernel", "kernel", 60, 40, tid=7, correlation=7),  # runs while the host is in b
        _x("relu_kernel", "kernel", 100, 10, tid=7, correlation=8),
    ]}
    a = analyse(trace, {"chunked/a/chunk0": "a", "chunked/b/chunk0": "b"}, ["a", "b"], "cuda")
    assert a.busy_ms == pytest.approx(0.05) and a.busy_pct == pytest.approx(25)
    kernels = {(o.region, o.op): o.self_time_ms for o in a.ops if o.kind == "kernel"}
    assert kernels == {("a", "gemm_kernel"): pytest.approx(0.04), ("b", "relu_kernel"): pytest.approx(0.01)}
    regions = {r.region: r for r in a.regions}
    assert regions["b"].busy_ms == pytest.approx(0.02)  # host-side region, GPU busy meanwhile
    assert a.gaps[0].region == OTHER and a.gaps[0].duration_ms == pytest.approx(0.09)


def test_load_profile_summary_is_none_without_profiles(tmp_path):
    assert load_profile_summary(tmp_path) is None
