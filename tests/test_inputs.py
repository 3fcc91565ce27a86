"""Real audio inputs: WAV files bucketed by clip length, resampled, with optional face frames."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from benchrunner.pipelines.reference import build
from benchrunner.run.inputs import InputRef, bucket_inputs, load_clip
from benchrunner.store.results import read_samples


def write_wav(path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    soundfile.write(str(path), np.stack([tone] * channels, axis=1), rate)


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_wav(folder / "a.wav", 5.2)
    write_wav(folder / "b.wav", 4.8, rate=16000, channels=1)
    write_wav(folder / "c.wav", 12.0)
    write_wav(folder / "d.wav", 100.0, rate=8000, channels=1)  # fits no bucket
    np.save(folder / "a.npy", np.full((130, 20, 20, 3), 128, dtype=np.uint8))
    return folder


def test_files_go_to_the_nearest_clip_length_within_25_percent(clips):
    buckets = bucket_inputs(clips, [5.0, 12.0, 30.0])
    assert [r.label for r in buckets[5.0]] == ["a.wav", "b.wav"]
    assert [r.label for r in buckets[12.0]] == ["c.wav"]
    assert buckets[30.0] == []


def test_a_file_is_mixed_to_mono_resampled_and_takes_its_frames(clips):
    pipeline = build("tiny")  # 8 kHz
    clip = load_clip(InputRef(clip_s=5.0, path=str(clips / "a.wav")), pipeline)
    assert clip["audio"].shape == (1, round(5.2 * 8000))
    assert clip["frames"].shape == (1, 130, 3, 20, 20) and float(clip["frames"].max()) == pytest.approx(128 / 255)
    synthetic_frames = load_clip(InputRef(clip_s=5.0, path=str(clips / "b.wav")), pipeline)["frames"]
    assert synthetic_frames.shape[1] == round(4.8 * 25)  # no .npy: the pipeline's frames for that duration


def test_bench_run_cycles_through_a_buckets_files_and_leaves_out_empty_buckets(bench, write_suite, tmp_path, clips):
    suite = write_suite("""
        name = "wav"
        pipeline_args = { scale = "tiny" }
        device = "cpu"
        clip_lengths_s = [5, 12, 30]
        modes = ["single", "chunked"]
        chunk = { window_s = 4, overlap_s = 0.5 }
        inputs = "clips"
        repeats = 4
        warmup = 0
    """)
    result = bench("run", str(suite), "--out", "results")
    assert result.returncode == 0, result.stderr
    assert "no input file of about 30 s" in result.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    totals = read_samples(run_dir).query("stage == 'total'")
    assert set(totals["clip_s"]) == {5.0, 12.0} and set(totals["status"]) == {"ok"}
    single_5 = totals.query("case_id == 'default/single/5s'")
    assert list(single_5["input"]) == ["a.wav", "b.wav", "a.wav", "b.wav"]
    chunked_12 = totals.query("case_id == 'default/chunked/12s'")
    assert (chunked_12["quality_snr_db"] > 20).all() and (chunked_12["io_wait_ms"] >= 0).all()


def _loading_suite(write_suite, tmp_path, loading: str):
    clips = tmp_path / f"clips-{loading}"
    clips.mkdir()
    for i in range(3):
        write_wav(clips / f"c{i}.wav", 2.0, rate=8000, channels=2)  # resampled to the pipeline's 1 kHz
    return write_suite(f"""
        name = "loading"
        pipeline = "testing_pipelines:build"
        pipeline_args = {{ fail_if_loading = true }}
        device = "cpu"
        clip_lengths_s = [2]
        modes = ["single"]
        repeats = 3
        warmup = 1
        inputs = "{clips}"
        input_loading = "{loading}"
    """, name=f"{loading}.toml")


def test_inputs_are_loaded_before_the_measured_call_unless_overlap_is_chosen(write_suite, tmp_path):
    from benchrunner.store.results import read_manifest, read_samples
    from benchrunner.run.runner import run_suite
    from benchrunner.suite import load_suite

    before = run_suite(load_suite(_loading_suite(write_suite, tmp_path, "before")), out_dir=tmp_path / "r1").run_dir
    totals = read_samples(before).query("stage == 'total'")
    assert (totals["status"] == "ok").all() and (totals["io_wait_ms"] > 0).all()
    assert not [w for w in read_manifest(before)["warnings"] if w["code"] == "input_overlap"]
    overlap = run_suite(load_suite(_loading_suite(write_suite, tmp_path, "overlap")), out_dir=tmp_path / "r2").run_dir
    totals = read_samples(overlap).query("stage == 'total'")
    assert (totals["status"] == "error").all()  # the scenario: a loading thread runs beside the call
    assert read_manifest(overlap)["design"]["input_loading"] == "overlap"
    assert [w for w in read_manifest(overlap)["warnings"] if w["code"] == "input_overlap"]
