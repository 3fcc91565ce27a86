"""The throughput scenario: stability rule, knee, per-level figures, the pipelined executor's
truth tests (sleeping stages, whose true throughput is known), failures per level, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchrunner.run.runner import run_suite
from benchrunner.suite import load_suite
from benchrunner.analysis.throughput.knee import LevelPoint, find_knee
from benchrunner.analysis.throughput.levelstats import LevelMeta, bottleneck_of, level_rows
from benchrunner.run.throughput.pipelined import ClipRecord, StageEvent, TransferEvent
from benchrunner.store.throughput import read_throughput, read_throughput_samples
from benchrunner.analysis.throughput.windows import Window, is_stable, should_stop

MS = 1_000_000  # ns


# -- pure parts --------------------------------------------------------------------------

def _window(i: int, ok: int, p50: float | None, failed: int = 0) -> Window:
    return Window(i * 1000 * MS, (i + 1) * 1000 * MS, ok, failed, p50)


def test_stable_needs_three_windows_within_the_percentage():
    steady = [_window(0, 50, 30.0), _window(1, 100, 30.0), _window(2, 102, 30.5), _window(3, 98, 29.8)]
    assert is_stable(steady, 5.0)
    assert not is_stable(steady[:3], 5.0)                      # 50 vs ~100: the warm-up window disagrees
    drifting = steady[:3] + [_window(3, 100, 40.0)]             # latency moved by a third
    assert not is_stable(drifting, 5.0)
    assert should_stop(steady, 5.0, max_windows=10) == (True, True)
    assert should_stop(drifting, 5.0, max_windows=4) == (True, False)   # gave up: unstable
    all_failed = [_window(i, 0, None, failed=3) for i in range(3)]
    assert should_stop(all_failed, 5.0, max_windows=10) == (True, False)


def test_knee_is_the_highest_throughput_within_the_tail_budget():
    points = [LevelPoint(1, 30.0, 35.0, 36.0), LevelPoint(2, 60.0, 40.0, 45.0), LevelPoint(4, 90.0, 60.0, 80.0),
              LevelPoint(8, 95.0, 120.0, 150.0)]
    knee = find_knee(points, budget_ms=100.0)
    assert (knee.concurrency, knee.quantile, knee.latency_ms) == (4, "p99", 80.0)
    assert find_knee(points, budget_ms=200.0).concurrency == 8
    assert find_knee(points, budget_ms=10.0).concurrency is None
    # no p99 on one level: p90 on every level
    assert find_knee(points[:3] + [LevelPoint(8, 95.0, 90.0, None)], 100.0).quantile == "p90"
    assert find_knee(points[:3] + [LevelPoint(8, 95.0, 90.0, None)], 100.0).concurrency == 8
    # a level with failures is never the knee; a lost level is skipped
    assert find_knee(points[:3] + [LevelPoint(8, 99.0, 50.0, 60.0, failures=2)], 100.0).concurrency == 4
    assert find_knee(points[:3] + [LevelPoint(8, None, None, None, usable=False)], 100.0).concurrency == 4
    # the same clips/s (within 2%) at more concurrency only adds latency: the lower level is the knee
    assert find_knee([LevelPoint(3, 92.0, 35, 39), LevelPoint(8, 92.5, 90, 101)], 200.0).concurrency == 3


def _meta(concurrency: int = 2) -> LevelMeta:
    return LevelMeta("r", "s", "p:b", "default", "single", None, 1.0, concurrency, "cpu", 10.0, 1.0, None, 1,
                     "perf_counter", "t")


def test_level_rows_figures_from_events():
    """Two stages over a 1 s span: the figures are the arithmetic of the events."""
    windows = [Window(0, 1000 * MS, 10, 0, 50.0)]
    clips = [ClipRecord(k, "x", k * 100 * MS, k * 100 * MS + 5 * MS, k * 100 * MS + 50 * MS, "ok", "", "single", 1, 0)
             for k in range(10)]
    clips.append(ClipRecord(10, "x", 950 * MS, None, 990 * MS, "oom", "a: RuntimeError: out of memory", "single", 1,
                            0))
    events = []
    for k in range(10):
        t = k * 100 * MS + 5 * MS
        events.append(StageEvent(0, k, t, t + 20 * MS, None, 1 * MS, True))
        events.append(StageEvent(1, k, t + 24 * MS, t + 45 * MS, 4 * MS, 0, True))
    transfers = [TransferEvent(1, k * 100 * MS + 25 * MS, k * 100 * MS + 28 * MS, 4096) for k in range(10)]
    rows = level_rows(_meta(), ["a", "b"], ["cpu", "cuda:1"], windows, True, clips, events, transfers,
                      peak_mem_bytes=123.0, mem_source="rss_hwm", cpu_util_pct=None)
    total, a, b, move = rows
    assert total["status"] == "ok" and total["clips"] == 10 and total["failures"] == 1 and total["n_oom"] == 1
    assert total["throughput_clips_per_s"] == pytest.approx(10.0)
    assert total["latency_p50_ms"] == pytest.approx(50.0) and total["latency_p90_ms"] == pytest.approx(50.0)
    assert total["latency_p99_ms"] is None                      # 10 clips cannot support a p99
    assert total["entry_wait_mean_ms"] == pytest.approx(5.0)
    assert total["error"].startswith("a: RuntimeError")
    assert a["utilisation_pct"] == pytest.approx(20.0) and b["utilisation_pct"] == pytest.approx(21.0)
    assert a["queue_wait_mean_ms"] is None                      # the first stage's queue is the entry
    assert b["queue_wait_mean_ms"] == pytest.approx(4.0) and a["blocked_mean_ms"] == pytest.approx(1.0)
    assert total["bottleneck"] == "a+b"                         # 20% and 21%: within 5% of each other
    assert move["kind"] == "transfer" and move["stage"] == "a->b" and move["device"] == "cpu->cuda:1"
    assert move["busy_mean_ms"] == pytest.approx(3.0) and move["transfer_bytes_mean"] == 4096


def test_bottleneck_is_the_clearly_busiest_stage():
    assert bottleneck_of([{"stage": "a", "utilisation_pct": 33.0}, {"stage": "b", "utilisation_pct": 99.0}]) == "b"
    assert bottleneck_of([{"stage": "a", "utilisation_pct": None}]) == ""


# -- through the real worker process -------------------------------------------------------

SLEEPY = """
name = "sleepy"
pipeline = "testing_pipelines:build_sleepy"
pipeline_args = {{ stage_ms = {stage_ms}{args} }}
device = "cpu"
clip_lengths_s = [1]
modes = ["single"]
scenario = "throughput"
concurrency = {levels}
throughput = {{ window_s = 0.5, stability_pct = 15, max_windows = 6 }}
sampler = {{ enabled = false }}
timeout_s = 120
{extra}
"""


def _sweep(write_suite, tmp_path, stage_ms, levels, extra="", args=""):
    path = write_suite(SLEEPY.format(stage_ms=stage_ms, levels=levels, extra=extra, args=args))
    result = run_suite(load_suite(path), out_dir=tmp_path / "results")
    return read_throughput(result.run_dir), result


def _level(frame: pd.DataFrame, concurrency: int, stage: str = "total") -> pd.Series:
    return frame[(frame["concurrency"] == concurrency) & (frame["stage"] == stage)].iloc[0]


@pytest.mark.alone
def test_truth_three_10ms_stages_pipeline_to_three_times_the_throughput(write_suite, tmp_path):
    """Three stages sleeping 10 ms: one clip at a time gives ~33 clips/s; with 3 or more clips in
    flight the stages overlap and give ~100 clips/s (>= 85). At 3 in flight (one per stage)
    no clip waits in front of any stage."""
    frame, result = _sweep(write_suite, tmp_path, [10, 10, 10], [1, 3, 8], extra="budgets = { p99_latency_ms = 60 }")
    one, three, eight = (_level(frame, c) for c in (1, 3, 8))
    # On a loaded machine a 10 ms sleep overshoots (the scheduler): beyond 11 ms per call the
    # bounds scale with the measured call time; on a quiet machine they are the figures.
    slack = min(1.0, 11.0 / frame[(frame["concurrency"] == 3) & (frame["kind"] == "stage")]["busy_mean_ms"].max())
    assert 25.0 * slack <= one["throughput_clips_per_s"] <= 36.0
    assert three["throughput_clips_per_s"] >= 85.0 * slack and eight["throughput_clips_per_s"] >= 85.0 * slack
    assert three["throughput_clips_per_s"] / one["throughput_clips_per_s"] >= 2.5
    stages = frame[(frame["concurrency"] == 3) & (frame["kind"] == "stage")]
    assert len(stages) == 3 and (stages["queue_wait_mean_ms"].fillna(0.0) < 2.5).all()   # < a quarter of a stage
    assert (stages["utilisation_pct"] > 80).all()
    # one clip at a time: each stage busy a third of the time, latency ~ the sum of the stages
    assert (frame[(frame["concurrency"] == 1) & (frame["kind"] == "stage")]["utilisation_pct"] < 45).all()
    assert 29.0 <= one["latency_p50_ms"] <= 45.0
    # 8 in flight: the same throughput, the extra clips wait (the latency grows, Little's law)
    assert eight["latency_p50_ms"] > 2 * three["latency_p50_ms"]
    assert {one["status"], three["status"], eight["status"]} <= {"ok", "unstable"}
    knee = frame[frame["knee"] == "yes"]
    assert list(knee["concurrency"]) == [3]                       # 8: as many clips/s, its tail over 60 ms
    raw = read_throughput_samples(result.run_dir)
    assert set(raw["concurrency"]) == {1, 3, 8} and (raw["status"] == "ok").all()
    measured = raw[(raw["concurrency"] == 3) & (raw["window"] >= three["windows"] - 3)]
    assert len(measured) == three["clips"]                        # the raw rows behind the figure


@pytest.mark.alone
def test_truth_a_30ms_stage_among_10ms_stages_is_the_bottleneck(write_suite, tmp_path):
    frame, _result = _sweep(write_suite, tmp_path, [10, 30, 10], [1, 4])
    loaded = _level(frame, 4)
    assert loaded["bottleneck"] == "s1_30ms"
    slow_ms = _level(frame, 4, "s1_30ms")["busy_mean_ms"]          # 30 ms plus the sleep's overshoot
    assert 27.0 * min(1.0, 31.0 / slow_ms) <= loaded["throughput_clips_per_s"] <= 36.0   # ~33 clips/s: 1 / 30 ms
    assert loaded["throughput_clips_per_s"] == pytest.approx(1000.0 / slow_ms, rel=0.12)
    assert _level(frame, 4, "s1_30ms")["utilisation_pct"] > 85
    assert _level(frame, 4, "s0_10ms")["utilisation_pct"] < 50
    # the queue builds in front of the bottleneck, not behind it
    assert _level(frame, 4, "s1_30ms")["queue_wait_mean_ms"] > 10 > _level(frame, 4, "s2_10ms")["queue_wait_mean_ms"]
    one_ms = frame[(frame["concurrency"] == 1) & (frame["kind"] == "stage")]["busy_mean_ms"].sum()
    assert _level(frame, 1)["throughput_clips_per_s"] == pytest.approx(1000.0 / one_ms, rel=0.15)  # ~1 / 50 ms
    assert _level(frame, 1)["throughput_clips_per_s"] <= 21.0


def test_failures_under_load_are_recorded_per_level_and_the_sweep_goes_on(write_suite, tmp_path):
    """A crash at concurrency 4 (the worker aborts) and out-of-memory at concurrency 8 (each clip
    holds 100 MiB while in flight, under a real 0.35 GB address-space limit)."""
    frame, result = _sweep(write_suite, tmp_path, [10, 10, 10], [1, 4, 8],
                           extra="memory_limit_gb = 0.35", args=", abort_at_concurrency = 4, hold_mb = 100")
    assert _level(frame, 1)["status"] in ("ok", "unstable") and _level(frame, 1)["failures"] == 0
    crashed = _level(frame, 4)
    assert crashed["status"] == "crash" and "SIGABRT" in crashed["error"]
    loaded = _level(frame, 8)
    assert loaded["n_oom"] > 0 and "memory" in loaded["error"].lower()
    assert result.status == "finished"


# -- budgets, compare and the report on throughput rows (synthetic run folders) -----------------

def _write_run(folder: Path, run_id: str, levels: dict[int, tuple[float, float, float | None, int]],
               budgets: dict | None = None, knee_ms: float | None = 100.0, jitter: float = 0.01) -> Path:
    """A run folder of the throughput scenario alone: per concurrency (clips/s, p50 ms, p99 ms,
    failures), three windows around the clips/s and 120 clips per level around the p50."""
    from benchrunner.analysis.summary import SUMMARY_COLUMNS
    from benchrunner.store.results import SAMPLE_COLUMNS
    from benchrunner.analysis.throughput.curves import mark_knees
    from benchrunner.analysis.throughput.levelstats import LevelMeta
    from benchrunner.store.throughput import append_level, rewrite_throughput
    import json

    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text(",".join(SUMMARY_COLUMNS) + "\n")
    (folder / "samples.csv").write_text(",".join(SAMPLE_COLUMNS) + "\n")
    (folder / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "status": "finished", "started_at": "2026-11-30T06:00:00+00:00",
        "suite": {"name": "t", "path": "t.toml", "device": "cpu", "modes": ["single"],
                  "as_loaded": {"budgets": budgets or {}}}, "environment": {}}))
    for c, (rate, p50, p99, failures) in levels.items():
        meta = LevelMeta(run_id, "t", "p:b", "default", "single", None, 5.0, c, "cpu", 10.0, 2.0, None, 1,
                         "perf_counter", "t")
        total = {**meta.columns(), "kind": "total", "stage": "total", "device": "cpu", "status": "ok", "error": "",
                 "windows": 4, "stable": True, "clips": 120, "failures": failures, "n_oom": failures, "n_error": 0,
                 "throughput_clips_per_s": rate, "latency_p50_ms": p50, "latency_p90_ms": p50 * 1.1,
                 "latency_p99_ms": p99, "bottleneck": "b",
                 "window_clips_per_s": ";".join(f"{rate * f:.6g}" for f in (1 - jitter, 1.0, 1 + jitter))}
        stages = [{**meta.columns(), "kind": "stage", "stage": s, "device": "cpu", "utilisation_pct": u,
                   "busy_mean_ms": 10.0, "calls": 100} for s, u in (("a", 30.0 * c), ("b", min(99.0, 45.0 * c)))]
        samples = [{"run_id": run_id, "variant": "default", "mode": "single", "clip_s": 5.0, "concurrency": c,
                    "window": 1 + k % 3, "clip": k, "status": "ok", "latency_ms": p50 * (1 + 0.01 * ((k % 7) - 3))}
                   for k in range(120)]
        append_level(folder, [total, *stages], samples)
    rewrite_throughput(folder, mark_knees(read_throughput(folder), knee_ms))
    return folder


def test_budgets_check_the_knee_of_each_curve(tmp_path):
    from benchrunner.analysis.budgets import check_budgets
    from benchrunner.suite import Budget

    run = _write_run(tmp_path / "r", "r", {1: (30.0, 33.0, 40.0, 0), 2: (60.0, 35.0, 60.0, 0),
                                           4: (90.0, 45.0, 150.0, 0)})
    frame = read_throughput(run)
    assert list(frame[frame["knee"] == "yes"]["concurrency"]) == [2]            # 4's p99 is over 100 ms
    results = check_budgets(pd.DataFrame(columns=["stage"]), [Budget("throughput_clips_per_s", 50.0),
                                                              Budget("p99_latency_ms", 100.0),
                                                              Budget("throughput_clips_per_s", 80.0)], frame)
    assert [(r.scenario, r.passed, r.measured) for r in results] == [
        ("throughput", True, 60.0), ("throughput", True, 60.0), ("throughput", False, 60.0)]
    assert "default/single/5s" in results[2].detail
    # no level within the knee budget: the throughput budget cannot hold, and says why
    tight = _write_run(tmp_path / "t", "t", {1: (30.0, 33.0, 40.0, 0)}, knee_ms=20.0)
    [result] = check_budgets(pd.DataFrame(columns=["stage"]), [Budget("throughput_clips_per_s", 10.0)],
                             read_throughput(tight))
    assert not result.passed and "within 20 ms" in result.detail


def test_bench_check_and_compare_on_throughput_runs(tmp_path, bench):
    a = _write_run(tmp_path / "results" / "a", "a", {1: (30.0, 33.0, 40.0, 0), 2: (60.0, 35.0, 60.0, 0)},
                   budgets={"throughput_clips_per_s": 50})
    b = _write_run(tmp_path / "results" / "b", "b", {1: (30.0, 33.0, 40.0, 0), 2: (45.0, 50.0, 80.0, 0)})
    same = _write_run(tmp_path / "results" / "a2", "a2", {1: (30.0, 33.0, 40.0, 0), 2: (60.0, 35.0, 60.0, 0)})
    checked = bench("check", str(a))
    assert checked.returncode == 0 and "throughput: all clips" in checked.stdout
    compared = bench("compare", str(a), str(b), "--metric", "throughput", "--format", "json")
    assert compared.returncode == 0, compared.stderr
    import json
    rows = {r["stage"]: r for r in json.loads(compared.stdout)["rows"]}
    assert rows["c1"]["verdict"] == "no significant change"
    assert rows["c2"]["verdict"] == "lower" and rows["c2"]["ratio"] == pytest.approx(0.75, rel=0.01)
    assert bench("compare", str(a), str(b), "--metric", "throughput", "--fail-on-regression").returncode == 1
    slower = bench("compare", str(a), str(b), "--metric", "load_latency", "--format", "json")
    assert {r["stage"]: r["verdict"] for r in json.loads(slower.stdout)["rows"]}["c2"] == "slower"
    # A/A: identical inputs read "no significant change"
    twin = bench("compare", str(a), str(same), "--metric", "throughput", "--format", "json")
    assert {r["verdict"] for r in json.loads(twin.stdout)["rows"]} == {"no significant change"}
    # a latency-scenario metric on a throughput-only run, and a run without throughput rows: one line, exit 2
    assert bench("compare", str(a), str(b), "--metric", "memory").returncode == 2


def test_report_of_a_throughput_run_has_the_curve_and_the_bottleneck(tmp_path):
    from benchrunner.report.sections import build_model

    run = _write_run(tmp_path / "r", "r", {1: (30.0, 33.0, 40.0, 0), 2: (60.0, 35.0, 60.0, 0),
                                           4: (90.0, 45.0, 150.0, 2)})
    model = build_model(run)
    section = model.section("throughput")
    keys = [getattr(b, "key", None) for b in section.blocks]
    assert keys[:2] == ["throughput_curve", "throughput_stages"]
    curve = section.blocks[0].data["series"][0]
    assert curve["clips_per_s"] == [30.0, 60.0, 90.0] and curve["knee"] == 2
    assert section.blocks[1].data["panels"][0]["stages"]["b"] == [45.0, 90.0, 99.0]
    assert any("Knee: concurrency 2" in p for p in section.paragraphs)
    from benchrunner.report import charts

    assert charts.render(section.blocks[0], "svg").startswith(b"<?xml")
    assert charts.render(section.blocks[1], "png")[:4] == b"\x89PNG"


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    ('stage_devices = { nope = "cpu" }', "stage_devices.nope: no such stage"),
    ('stage_devices = { busy = "cuda:0" }', "stage_devices.busy: the stage declares no modules"),
    ("concurrency = [2, 2]", "concurrency: [2, 2] lists a level twice"),
])
def test_bad_throughput_suites_exit_2_with_one_line(write_suite, bench, extra, message):
    path = write_suite(f"""
        name = "bad"
        pipeline = "testing_pipelines:build"
        device = "cpu"
        clip_lengths_s = [1]
        modes = ["single"]
        scenario = "throughput"
        {extra}
        """)
    done = bench("run", str(path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0] and "Traceback" not in done.stderr


def test_resume_repairs_a_level_cut_short(tmp_path):
    """A kill between a level's raw samples and its rows: the samples go, the level runs again;
    a torn last line goes too."""
    from benchrunner.store.throughput import THROUGHPUT_FILE, THROUGHPUT_SAMPLES_FILE, repair_throughput
    from benchrunner.run.throughput.sweep import done_levels

    run = _write_run(tmp_path / "r", "r", {1: (30.0, 33.0, 40.0, 0), 2: (60.0, 35.0, 60.0, 0)})
    frame = read_throughput(run)
    kept = frame[frame["concurrency"] == 1]
    from benchrunner.store.throughput import rewrite_throughput

    rewrite_throughput(run, kept)                        # level 2's rows never made it to disk
    with open(run / THROUGHPUT_FILE, "a") as f:
        f.write("1,r,t,p:b")                             # and a torn line
    notes = repair_throughput(run)
    assert len(notes) == 2 and any("torn" in n for n in notes)
    assert set(read_throughput_samples(run)["concurrency"]) == {1}
    assert len(read_throughput(run)) == len(kept)
    assert done_levels(run) == {("p:b", "default", "single", None, 5.0, 1)}
    assert (run / THROUGHPUT_SAMPLES_FILE).exists()


def _executor_run(pipeline, mode: str, concurrency: int, clips: int, chunk=None):
    import time as _time

    from benchrunner.modespec import parse_mode
    from benchrunner.suite import ChunkConfig
    from benchrunner.run.throughput.pipelined import PipelinedExecutor

    executor = PipelinedExecutor(pipeline, ["cpu"] * len(pipeline.stages), parse_mode(mode),
                                 chunk or ChunkConfig(window_s=0.4, overlap_s=0.1, max_retries=1),
                                 concurrency=concurrency, queue_depth=1, clip_s=1.0,
                                 next_clip=lambda: ("x", pipeline.make_clip(1.0, 0)))
    executor.start()
    executor.go()
    assert executor.wait_completed(clips, _time.perf_counter_ns() + 60 * 10**9)
    assert executor.stop(10.0)
    return executor


def test_modes_apply_per_clip_under_load():
    """chunked: the 1 s clip runs as 3 chunk items through the stages, a failed chunk is retried
    on its stage; hybrid@0.5 runs it chunked, hybrid@2 single; a permanent failure fails the
    clip, frees its slot, and the next clips still run."""
    from testing_pipelines import build

    chunked = _executor_run(build(fail_chunk=1), "chunked", 2, 6)
    assert all(c.status == "ok" and c.executed_as == "chunked" and c.chunks == 3 for c in chunked.clips)
    assert all(c.retries == 1 for c in chunked.clips)           # chunk 1 fails on its first attempt only
    assert {c.executed_as for c in _executor_run(build(), "hybrid@0.5", 2, 4).clips} == {"chunked"}
    assert {c.executed_as for c in _executor_run(build(), "hybrid@2", 2, 4).clips} == {"single"}
    broken = _executor_run(build(fail_chunk=1, permanent=True), "chunked", 2, 5)
    assert all(c.status == "error" and "chunk 2/3 failed after 2 attempt(s)" in c.error for c in broken.clips)


def test_a_stage_thread_that_cannot_start_ends_the_level_with_its_reason():
    """A harness-level failure (here: a stage placed on a device that does not exist) must not
    hang the level: the executor says why and the level ends."""
    import time as _time

    from testing_pipelines import build
    from benchrunner.modespec import parse_mode
    from benchrunner.suite import ChunkConfig
    from benchrunner.run.throughput.pipelined import PipelinedExecutor

    pipeline = build()
    executor = PipelinedExecutor(pipeline, ["cpu", "cuda:7", "cpu"], parse_mode("single"), ChunkConfig(),
                                 concurrency=2, queue_depth=1, clip_s=1.0,
                                 next_clip=lambda: ("x", pipeline.make_clip(1.0, 0)))
    executor.start()
    executor.go()
    assert not executor.wait_completed(1, _time.perf_counter_ns() + 20 * 10**9)
    assert any("stage thread flaky" in e for e in executor.feed_errors)
    executor.stop(1.0)


@pytest.mark.alone
def test_both_scenarios_in_one_run(write_suite, tmp_path):
    """scenario = ["latency", "throughput"]: the latency cases, then the sweep, in one run folder;
    a throughput budget is checked on both kinds of rows."""
    from benchrunner.analysis.budgets import check_run
    from benchrunner.store.results import read_summary

    path = write_suite("""
        name = "both"
        pipeline = "testing_pipelines:build_sleepy"
        device = "cpu"
        clip_lengths_s = [1]
        modes = ["single"]
        repeats = 3
        scenario = ["latency", "throughput"]
        concurrency = [3]
        throughput = { window_s = 0.4, stability_pct = 20, max_windows = 4 }
        sampler = { enabled = false }
        budgets = { throughput_clips_per_s = 50 }
        """)
    result = run_suite(load_suite(path), out_dir=tmp_path / "results")
    summary = read_summary(result.run_dir)
    one_at_a_time = float(summary[summary["stage"] == "total"]["throughput_clips_per_s"].iloc[0])
    pipelined = float(_level(read_throughput(result.run_dir), 3)["throughput_clips_per_s"])
    assert one_at_a_time < 40 and pipelined > 2 * one_at_a_time
    _, results = check_run(result.run_dir)
    assert [(r.scenario, r.passed) for r in results] == [("latency", False), ("throughput", True)]
