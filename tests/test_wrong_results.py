"""No silent wrong result (issue 12, section A): NaN outputs, per-stream quality with a
one-step length tolerance, chunk outputs of the wrong length, file inputs that must reach the
pipeline, the environment of the workers, the progress median and tune-threshold's text.
Real `bench run` processes on the misbehaving pipelines of tests/misbehaving_pipelines.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from benchrunner.store.results import read_samples, read_summary
from benchrunner.analysis.tuning import tune_run


def run_dir_of(stdout: str) -> Path:
    line = next(l for l in stdout.splitlines() if l.startswith("manifest:"))
    return Path(line.split(":", 1)[1].strip()).parent


SUITE = """
    name = "{name}"
    pipeline = "misbehaving_pipelines:{factory}"
    device = "cpu"
    clip_lengths_s = {lengths}
    modes = ["single", "chunked"]
    chunk = {{ window_s = {window}, overlap_s = 0.5 }}
    repeats = 2
    warmup = 0
"""


def _run(bench, write_suite, tmp_path, factory, lengths="[12]", window=5, extra=""):
    suite = write_suite(SUITE.format(name=factory, factory=factory, lengths=lengths, window=window) + extra)
    result = bench("run", str(suite), "--out", str(tmp_path / "results"))
    return result


def test_nan_outputs_are_counted_fail_quality_warn_and_are_never_recommended(bench, write_suite, tmp_path):
    result = _run(bench, write_suite, tmp_path, "nan_in_chunks", lengths="[4, 12]")
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result.stdout)
    totals = read_samples(run_dir).query("stage == 'total'")
    chunked_12 = totals.query("case_id == 'default/chunked/12s'")
    assert (chunked_12["output_nonfinite"] > 0).all()
    assert (chunked_12["quality_snr_db"] == -math.inf).all()           # not 0 error, not blank
    assert (chunked_12["quality_max_abs_err"] == math.inf).all()
    assert (totals.query("mode == 'single'")["output_nonfinite"] == 0).all()
    summary = read_summary(run_dir).query("case_id == 'default/chunked/12s' and stage == 'total'")
    assert int(summary["output_nonfinite"].iloc[0]) > 0
    codes = [w["code"] for w in json.loads((run_dir / "manifest.json").read_text())["warnings"]]
    assert "nonfinite_output" in codes and "NaN or inf" in result.stderr
    tuned = tune_run(run_dir, min_snr_db=None)                            # no quality bound at all
    rows = {r.threshold_s: r for r in tuned.rows}
    assert not rows[4.0].eligible and "NaN/inf outputs" in rows[4.0].why_not
    assert tuned.recommended == 12.0


def test_a_stream_one_step_longer_keeps_quality_per_stream(bench, write_suite, tmp_path):
    result = _run(bench, write_suite, tmp_path, "with_vad", lengths="[5]", window=2)
    assert result.returncode == 0, result.stderr
    run_dir = run_dir_of(result.stdout)
    chunked = read_samples(run_dir).query("stage == 'total' and mode == 'chunked'")
    assert set(chunked["status"]) == {"ok"}
    assert chunked["quality_snr_db"].notna().all()                      # not blanked by the 157 vs 156 frames
    from benchrunner.store.results import read_quality

    quality = read_quality(run_dir)
    assert set(quality["stream"]) == {"audio", "vad"} and len(quality) == 4
    assert set(quality.loc[quality["stream"] == "vad", "length_diff"]) == {-1}
    for repeat, rows in quality.groupby("repeat"):                       # the case figure is the worst stream's
        row = chunked[chunked["repeat"] == repeat].iloc[0]
        assert row["quality_snr_db"] == pytest.approx(rows["snr_db"].min(), abs=1e-5)


def test_chunk_outputs_of_the_wrong_length_are_an_error_naming_chunk_stream_and_lengths(bench, write_suite,
                                                                                       tmp_path):
    result = _run(bench, write_suite, tmp_path, "short_chunks")
    assert result.returncode == 0, result.stderr
    chunked = read_samples(run_dir_of(result.stdout)).query("stage == 'total' and mode == 'chunked'")
    assert set(chunked["status"]) == {"error"}
    error = chunked["error"].iloc[0]
    assert "chunk 1/3" in error and "output stream 'audio'" in error and "2750 steps, expected 5500" in error


def _wav(folder: Path, seconds: float, name="a.wav") -> None:
    folder.mkdir(exist_ok=True)
    soundfile.write(str(folder / name), np.zeros(int(seconds * 1000), dtype=np.float32) + 0.1, 1000)


def test_files_need_an_input_stream_to_take_their_audio(bench, write_suite, tmp_path):
    _wav(tmp_path / "clips", 5.0)
    suite = write_suite(SUITE.format(name="named", factory="named_input", lengths="[5]", window=2)
                        + 'inputs = "clips"\n')
    result = bench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "inputs: pipeline 'named-input' has no input stream 'audio'" in line and "wave" in line
    assert not (tmp_path / "results").exists()
    suite.write_text(suite.read_text() + 'pipeline_args = { file_input = "wave" }\n')
    result = bench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    totals = read_samples(run_dir_of(result.stdout)).query("stage == 'total'")
    assert set(totals["input"]) == {"a.wav"} and set(totals["status"]) == {"ok"}


def test_files_replace_the_named_stream():
    from benchrunner.run.inputs import InputRef, load_clip
    from misbehaving_pipelines import named_input

    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        _wav(Path(folder), 2.0)
        clip = load_clip(InputRef(clip_s=2.0, path=str(Path(folder) / "a.wav")), named_input("wave"))
    assert set(clip) == {"wave"} and float(clip["wave"].mean()) == pytest.approx(0.1, abs=1e-3)


def test_the_manifest_records_the_workers_threads_and_plugin(bench, write_suite, tmp_path):
    result = _run(bench, write_suite, tmp_path, "one_thread", lengths="[2]", window=1)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir_of(result.stdout) / "manifest.json").read_text())
    (worker,) = manifest["workers"]
    assert worker["torch_threads"]["intra_op"] == 1
    assert worker["plugin"] == {"module": "misbehaving_pipelines", "distribution": None, "version": None}
    assert manifest["environment"]["torch"]["num_threads"] == 1   # what the report shows
    assert manifest["environment"]["plugin"]["module"] == "misbehaving_pipelines"


def test_an_installed_plugin_is_named_with_its_distribution_and_version():
    from importlib import metadata

    from benchrunner.run.worker import loaded_environment

    found = loaded_environment("benchrunner.pipelines.reference:build")
    assert found["plugin"] == {"module": "benchrunner", "distribution": "benchrunner",
                               "version": metadata.version("benchrunner")}


def test_progress_median_is_summary_csv_p50():
    from types import SimpleNamespace

    from benchrunner.run.progress import case_line
    from benchrunner.analysis.summary import summarise

    rows = [{"stage": "total", "status": "ok", "latency_ms": v, "error": ""} for v in (100.0, 300.0, 200.0, 400.0)]
    line = case_line(SimpleNamespace(case_id="default/single/5s"), rows, None)
    from benchrunner.store.results import SAMPLE_COLUMNS

    frame = pd.DataFrame([{c: None for c in SAMPLE_COLUMNS} | {**r, "case_id": "c", "run_id": "r", "suite": "s", "pipeline": "p", "variant": "v",
                           "mode": "single", "threshold_s": None, "clip_s": 5.0, "device": "cpu",
                           "executed_as": "single"} for r in rows])
    p50 = float(summarise(frame)["latency_p50_ms"].iloc[0])
    assert p50 == 250.0 and "median 250.0 ms" in line


def test_tune_threshold_says_what_cpu_peaks_hold():
    """The model is fit on peak_mem_bytes, which since schema 2 is the absolute RSS (baseline
    included, as the README defines it): the note must say so, and name the growth column."""
    from benchrunner.analysis.tuning import GIB, _model_notes

    notes = _model_notes({"gpu_memory_bytes": 8 * GIB, "safety_margin": 0.1, "mem_source": "rss_hwm",
                          "single_failed_at_s": []}, 30.0, 40.0)
    text = " ".join(notes)
    assert "absolute RSS" in text and "include the Python and torch baseline" in text
    assert "peak_mem_growth_bytes" in text
