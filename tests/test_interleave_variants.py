"""Variants measured together: one live worker per variant, rounds alternating between them,
paired statistics where the design is paired, and the GPU fallback to sequential."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchrunner.analysis.compare import compare
from benchrunner.store.results import read_manifest, read_samples
from benchrunner.run.executors import ExecutorSpec
from benchrunner.run.runner import design_warnings, run_suite, variant_design
from benchrunner.suite import load_suite

GIB = 2**30

TWO_VARIANTS = """
    name = "variants"
    pipeline = "testing_pipelines:build"
    variants = {{ a = {{ busy_ms = 2.0 }}, b = {{ busy_ms = 2.0 }} }}
    device = "cpu"
    clip_lengths_s = [2, 4]
    modes = ["single", "chunked"]
    chunk = {{ window_s = 1, overlap_s = 0.25 }}
    repeats = 3
    warmup = 1
    interleave = {interleave}
"""


def _run(write_suite, tmp_path: Path, text: str) -> Path:
    suite = load_suite(write_suite(text))
    return run_suite(suite, out_dir=tmp_path / "results", argv=["test"]).run_dir


def test_variants_of_a_clip_length_alternate_rounds_in_their_own_live_workers(write_suite, tmp_path):
    run_dir = _run(write_suite, tmp_path, TWO_VARIANTS.format(interleave="true"))
    manifest = read_manifest(run_dir)
    assert manifest["design"]["variants"] == "interleaved" and manifest["design"]["modes"] == "interleaved"
    workers = manifest["workers"]
    assert sorted(w["variant"] for w in workers) == ["a", "b"]  # one each, kept warm over both clip lengths
    assert len({w["pid"] for w in workers}) == 2
    totals = read_samples(run_dir).query("stage == 'total'")
    assert (totals["status"] == "ok").all() and len(totals) == 2 * 2 * 2 * 3
    for clip_s, rows in totals.groupby("clip_s"):
        rows = rows.assign(t=pd.to_datetime(rows["started_at"])).sort_values("t")
        # round r (repeat r of every case of both variants) ends before round r + 1 starts
        assert list(rows["repeat"].astype(int)) == sorted(rows["repeat"].astype(int)), clip_s
        firsts = [rows[rows["repeat"] == r]["variant"].iloc[0] for r in range(3)]
        assert firsts == ["a", "b", "a"]  # the order of the workers rotates each round
    result = compare("a", "b", run=run_dir)
    assert result.design == "paired" and any("design: paired" in note for note in result.notes)
    chunked = read_samples(run_dir).query("mode == 'chunked'")
    assert {"split", "merge"} <= set(chunked["stage"])


def test_with_two_lanes_each_lane_runs_a_clip_lengths_variants_in_rounds_with_a_worker_per_variant(
        write_suite, tmp_path):
    """Issue 17's lanes take whole groups; with interleaved variants a group is every variant
    of one clip length, so a lane keeps one live worker per variant and alternates rounds."""
    suite = load_suite(write_suite(TWO_VARIANTS.format(interleave="true")))
    run_dir = run_suite(suite, out_dir=tmp_path / "results", argv=["test"],
                        executor=ExecutorSpec(workers=2)).run_dir
    manifest = read_manifest(run_dir)
    assert manifest["design"]["variants"] == "interleaved"
    samples = read_samples(run_dir)
    totals = samples.query("stage == 'total'")
    assert (totals["status"] == "ok").all() and len(totals) == 2 * 2 * 2 * 3
    for clip_s, rows in totals.groupby("clip_s"):
        assert rows["worker"].nunique() == 1, clip_s  # the whole group (both variants) on one lane
        assert (rows["host"] != "").all()
        lane = rows["worker"].iloc[0]
        pids = {w["pid"] for w in manifest["workers"] if w["worker"] == lane}
        assert {w["variant"] for w in manifest["workers"] if w["worker"] == lane} == {"a", "b"}
        assert len(pids) >= 2  # a live worker per variant on that lane
        rows = rows.assign(t=pd.to_datetime(rows["started_at"])).sort_values("t")
        assert list(rows["repeat"].astype(int)) == sorted(rows["repeat"].astype(int)), clip_s
        firsts = [rows[rows["repeat"] == r]["variant"].iloc[0] for r in range(3)]
        assert firsts == ["a", "b", "a"]
    summary = manifest["worker_summary"]
    assert sum(row["cases"] for row in summary) == 8
    assert compare("a", "b", run=run_dir).design == "paired"


def test_on_a_remote_executor_variants_are_measured_one_after_the_other_with_a_warning(write_suite):
    """A Ray lane reserves one worker's resources (e.g. a GPU): a live worker per variant would
    not be placed, so variants run one after the other there, and the run says so."""
    from benchrunner.run.cases import build_cases
    from benchrunner.run.executors import Lane
    from benchrunner.run.runner import _decide_variant_design, _WorkerSlot, case_groups

    class RemoteExecutor:
        kind = "ray"

        def start_worker(self, lane, config, source):
            raise AssertionError("the design needs no worker on the CPU")

    suite = load_suite(write_suite(TWO_VARIANTS.format(interleave="true")))
    cases, _ = build_cases(suite, run_id="x", device="cpu")
    slot = _WorkerSlot(suite, RemoteExecutor(), Lane("w0", "cpu", {"num_cpus": 1}))
    sibling = slot.sibling(Lane("w1", "cpu", {"num_cpus": 1}))
    _decide_variant_design(slot, cases)
    assert slot.design["variants"] == sibling.design["variants"] == "sequential"
    assert all(len({c.variant for c in group}) == 1
               for group in case_groups(cases, True, across_variants=slot.design["variants"] == "interleaved"))
    (warning,) = design_warnings({"variants": "sequential", "variants_reason": slot.design["reason"]})
    assert warning["code"] == "variants_sequential" and "ray executor" in warning["message"]
    assert "local executor" in warning["fix"]


def test_without_interleaving_variants_run_one_after_the_other_and_compare_unpaired(write_suite, tmp_path):
    run_dir = _run(write_suite, tmp_path, TWO_VARIANTS.format(interleave="false").replace("[2, 4]", "[2]"))
    manifest = read_manifest(run_dir)
    assert manifest["design"]["variants"] == "sequential"
    assert not [w for w in manifest["warnings"] if w["code"] == "variants_sequential"]  # asked for: no warning
    totals = read_samples(run_dir).query("stage == 'total'")
    order = totals.assign(t=pd.to_datetime(totals["started_at"])).sort_values("t")["variant"].tolist()
    assert order == sorted(order)  # every a before every b
    assert compare("a", "b", run=run_dir).design == "unpaired"
    assert compare("single", "chunked", run=run_dir.parent / run_dir.name).design == "unpaired"


def test_a_worker_that_dies_in_one_variant_leaves_the_other_variants_rounds_going(write_suite, tmp_path):
    run_dir = _run(write_suite, tmp_path, """
        name = "variant-crash"
        pipeline = "testing_pipelines:build"
        variants = { a = {}, b = { abort_clip_s = 4 } }
        device = "cpu"
        clip_lengths_s = [2, 4]
        modes = ["single", "chunked"]
        chunk = { window_s = 1, overlap_s = 0.25 }
        repeats = 3
        warmup = 0
    """)
    samples = read_samples(run_dir)
    totals = samples.query("stage == 'total'")
    status = totals.groupby("case_id")["status"].agg(lambda s: ",".join(sorted(set(s))))
    assert status["b/single/4s"] == "crash" and status["b/chunked/4s"] == "ok"  # rerun alone, fresh worker
    assert len(totals.query("case_id == 'b/single/4s'")) == 1
    for case_id in ("a/single/4s", "a/chunked/4s", "a/single/2s", "b/single/2s"):
        assert list(totals.query("case_id == @case_id")["repeat"].astype(int)) == [0, 1, 2], case_id
        assert status[case_id] == "ok"
    keys = list(zip(samples["case_id"], samples["repeat"], samples["stage"]))
    assert len(keys) == len(set(keys))


def test_on_a_gpu_variants_interleave_only_when_their_workers_fit():
    info = {"device_free_bytes": 70 * GIB, "device_total_bytes": 80 * GIB}  # the first worker took 10 GiB
    fits = variant_design(variants=2, interleave=True, device="cuda", worker_info=info, memory_limit_bytes=20 * GIB)
    assert fits == ("interleaved", "")
    design, reason = variant_design(variants=3, interleave=True, device="cuda", worker_info=info,
                                    memory_limit_bytes=20 * GIB)
    assert design == "sequential" and "need 80.0 GiB" in reason and "70.0 GiB is free" in reason
    design, reason = variant_design(variants=2, interleave=True, device="cuda:1", worker_info=info,
                                    memory_limit_bytes=None)
    assert design == "sequential" and "memory_limit_gb" in reason
    assert variant_design(variants=2, interleave=True, device="cpu", worker_info=None,
                          memory_limit_bytes=None) == ("interleaved", "")
    warnings = design_warnings({"variants": design, "variants_reason": reason, "input_loading": "before"})
    assert [w["code"] for w in warnings] == ["variants_sequential"] and warnings[0]["fix"]


def test_aa_command_measures_one_configuration_twice_and_reports_false_verdicts_and_floor(bench, write_suite,
                                                                                       tmp_path):
    suite = write_suite("""
        name = "aa"
        pipeline = "testing_pipelines:build"
        variants = { fast = { busy_ms = 3.0 }, other = { busy_ms = 9.0 } }
        device = "cpu"
        clip_lengths_s = [2]
        modes = ["single"]
        repeats = 8
        warmup = 1
    """)
    done = bench("aa", str(suite), "--out", str(tmp_path / "results"), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    import json

    document = json.loads(done.stdout[done.stdout.index("{"):])
    text = json.dumps(document)
    assert "A/A: two identical variants (paired design); false verdicts" in text and "noise floor up to" in text
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    manifest = read_manifest(run_dir)
    assert manifest["suite"]["variants"] == {"aa1": {"busy_ms": 3.0}, "aa2": {"busy_ms": 3.0}}
    assert manifest["design"]["variants"] == "interleaved"
    assert (done.returncode == 1) == ("slower" in text or "faster" in text)


def test_each_variant_can_be_measured_in_several_processes_one_block_each(write_suite, tmp_path):
    run_dir = _run(write_suite, tmp_path, TWO_VARIANTS.format(interleave="true").replace("[2, 4]", "[2]")
                   .replace('modes = ["single", "chunked"]', 'modes = ["single"]').replace("repeats = 3", "repeats = 4")
                   + "processes_per_variant = 2\n")
    manifest = read_manifest(run_dir)
    assert manifest["design"]["processes_per_variant"] == 2
    pids = {}
    for worker in manifest["workers"]:
        pids.setdefault(worker["variant"], set()).add(worker["pid"])
    assert {v: len(p) for v, p in pids.items()} == {"a": 2, "b": 2}
    totals = read_samples(run_dir).query("stage == 'total'")
    assert (totals["status"] == "ok").all() and len(totals) == 2 * 4
    from benchrunner.analysis.compare import process_blocks

    assert process_blocks(manifest) == [0, 0, 1, 1]
    assert compare("a", "b", run=run_dir).design == "paired"


def test_false_aa_verdicts_with_one_process_per_variant_suggest_several():
    from benchrunner.analysis.compare import aa_fix

    one = {"design": {"variants": "interleaved", "processes_per_variant": 1}}
    assert "processes_per_variant = 4" in aa_fix(2, one)
    assert aa_fix(0, one) is None  # nothing false: nothing to fix
    assert aa_fix(2, {"design": {"variants": "interleaved", "processes_per_variant": 4}}) is None
    assert aa_fix(2, {"design": {"variants": "sequential"}}) is None
