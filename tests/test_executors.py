"""The local executor with several workers, the executor options, and where each row ran.

Real worker processes; the Ray executor has its own module (test_ray_executor.py).
"""

from __future__ import annotations

import signal

import pandas as pd
import pytest

from benchrunner.analysis.compare import compare_frames
from benchrunner.analysis.warnings import placement_warnings
from benchrunner.run.executors import executor_spec
from benchrunner.store.results import SAMPLE_COLUMNS, read_manifest, read_samples
from test_isolation import expected_keys, keys_of, only_run_dir, start_bench, wait_for_cases

PARALLEL_SUITE = """
    name = "parallel"
    pipeline = "testing_pipelines:build"
    pipeline_args = { busy_ms = 150 }
    device = "cpu"
    clip_lengths_s = [1, 2, 3, 4]
    modes = ["single", "chunked"]
    chunk = { window_s = 1, overlap_s = 0.2 }
    repeats = 2
    warmup = 0
"""


def test_two_local_workers_run_the_same_keys_one_group_per_worker(bench, write_suite, tmp_path):
    suite = write_suite(PARALLEL_SUITE)
    done = bench("run", str(suite), "--out", "results", "--workers", "2")
    assert done.returncode == 0, done.stderr
    run_dir = only_run_dir(tmp_path / "results")
    assert sorted(keys_of(run_dir)) == sorted(expected_keys(suite, run_dir))
    samples = read_samples(run_dir)
    assert set(samples["worker"]) == {"w0", "w1"}  # 4 groups of ~1 s each: both workers got some
    assert (samples.groupby("clip_s")["worker"].nunique() == 1).all()  # modes of a clip length: one worker
    assert samples["host"].astype(str).str.len().gt(0).all() and samples["gpu"].eq("").all()  # CPU: no GPU
    manifest = read_manifest(run_dir)
    assert [lane["worker"] for lane in manifest["executors"][0]["lanes"]] == ["w0", "w1"]
    by_worker = {s["worker"]: s for s in manifest["worker_summary"]}
    assert sum(s["cases"] for s in by_worker.values()) == 8 and all(s["busy_s"] > 0 for s in by_worker.values())
    assert not [w for w in manifest["warnings"] if w["code"] == "mixed_devices"]
    assert "2 workers (w0 cpu, w1 cpu)" in done.stderr and "[w1] " in done.stderr  # progress shows each worker


def test_sigterm_with_two_workers_then_resume_gives_every_key_once(write_suite, tmp_path):
    """The driver stops both workers mid-group: only whole cases stay on disk, and a resume
    (on two workers again) finishes the run without a duplicate row."""
    suite = write_suite(PARALLEL_SUITE.replace("busy_ms = 150", "busy_ms = 400"))
    proc = start_bench("run", str(suite), "--out", "results", "--run-id", "par", "--workers", "2", cwd=tmp_path)
    run_dir = tmp_path / "results" / "par"
    wait_for_cases(run_dir / "samples.csv", 1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert read_manifest(run_dir)["status"] == "interrupted"
    assert read_samples(run_dir)["case_id"].nunique() < 8
    resumed = start_bench("run", "--resume", "par", "--out", "results", "--workers", "2", cwd=tmp_path)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert sorted(keys_of(run_dir)) == sorted(expected_keys(suite, run_dir))
    assert len(read_manifest(run_dir)["executors"]) == 2  # the run and its resume


def test_a_worker_killed_by_two_threads_at_once_closes_its_pipe_once():
    """SIGTERM: the driver kills every worker while the lane whose worker just died kills it
    too. The pipe's descriptor must be closed once: a second close fails with EBADF (the run
    then ended as a file-system error, exit 74, instead of interrupted, 143) or closes a file
    that took the number in between."""
    import threading
    import time

    from benchrunner.run.executors.local import LocalWorker

    class SlowClose:  # multiprocessing's Connection checks, closes, then forgets its handle
        def __init__(self):
            self.handle, self.closes = 7, 0

        def close(self):
            if self.handle is not None:
                time.sleep(0.05)  # the window in which another thread sees the handle still open
                self.closes += 1
                self.handle = None

    class DeadProcess:
        def is_alive(self):
            return False

        def join(self, timeout=None):
            pass

    worker = LocalWorker.__new__(LocalWorker)  # the real class without its process start
    worker._kill_lock, worker._conn, worker.process = threading.Lock(), SlowClose(), DeadProcess()
    threads = [threading.Thread(target=worker.kill) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert worker._conn.closes == 1


@pytest.mark.parametrize("args, field", [
    (["--workers", "0"], "--workers"),
    (["--devices", "cuda:0"], "--devices"),        # does not fit the suite's CPU device
])
def test_bad_executor_options_are_one_line_exit_2(bench, write_suite, tmp_path, args, field):
    suite = write_suite(PARALLEL_SUITE)
    done = bench("run", str(suite), "--out", "results", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"bench: error: {field}") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()  # nothing created for a run that never started


def test_executor_spec_refuses_bad_combinations():
    from benchrunner.errors import UserError

    for kwargs, field in [({"devices": "gpu0"}, "--devices"), ({"devices": "cuda:0,cuda:0"}, "--devices"),
                          ({"ray_address": "head:6379"}, "--ray-address"), ({"kind": "slurm"}, "--executor"),
                          ({"devices": "cuda:0,cuda:1", "workers": 2}, "--workers")]:
        with pytest.raises(UserError, match=f"^{field}: "):
            executor_spec(**kwargs)
    assert executor_spec("ray", "all", None, "head:6379").ray_address == "head:6379"


def test_local_devices_on_cuda_without_gpus_say_so():
    from benchrunner.errors import UserError
    from benchrunner.run.executors.local import local_devices

    with pytest.raises(UserError, match="all means every CUDA device"):
        local_devices(("all",), "cpu", 1)

    assert local_devices((), "cpu", 3) == ["cpu", "cpu", "cpu"]
    with pytest.raises(UserError, match="would share cuda"):
        local_devices((), "cuda", 2)
    with pytest.raises(UserError, match="is not visible here"):
        local_devices(("cuda:0", "cuda:1"), "cuda", 1)
    assert executor_spec("local", "cuda:0,cuda:1").devices == ("cuda:0", "cuda:1")


def _rows(case: str, clip_s: float, worker: str, host: str = "vm", gpu: str = "", latency_ms: float = 100.0,
          n: int = 6) -> list[dict]:
    variant, mode, _ = case.split("/")
    return [dict.fromkeys(SAMPLE_COLUMNS) | {
        "run_id": "r", "case_id": case, "pipeline": "p", "variant": variant, "mode": mode, "threshold_s": None,
        "clip_s": clip_s, "repeat": r, "stage": "total", "status": "ok", "latency_ms": latency_ms + r,
        "executed_as": mode, "host": host, "gpu": gpu, "worker": worker} for r in range(n)]


def test_placement_warning_when_a_group_ran_on_two_devices():
    same = pd.DataFrame(_rows("default/single/5s", 5, "w0") + _rows("default/chunked/5s", 5, "w0")
                        + _rows("default/single/10s", 10, "w1"))
    assert placement_warnings(same) == []
    mixed = pd.DataFrame(_rows("default/single/5s", 5, "w0", gpu="NVIDIA A100 (GPU-a)")
                         + _rows("default/chunked/5s", 5, "w1", gpu="NVIDIA A100 (GPU-b)"))
    (warning,) = placement_warnings(mixed)
    assert warning.code == "mixed_devices" and "default 5 s" in warning.message and warning.fix


def test_compare_warns_when_the_two_sides_ran_on_different_hardware():
    a = pd.DataFrame(_rows("default/single/5s", 5, "w0", host="box1", gpu="NVIDIA A100-SXM4-80GB (GPU-1)"))
    same_model = pd.DataFrame(_rows("default/single/5s", 5, "w1", host="box1", gpu="NVIDIA A100-SXM4-80GB (GPU-2)"))
    other = pd.DataFrame(_rows("default/single/5s", 5, "w0", host="box2", gpu="NVIDIA H100 (GPU-9)"))
    unknown = pd.DataFrame(_rows("default/single/5s", 5, "", host="", gpu=""))

    def hardware_notes(b):
        result = compare_frames(a, b, a_label="A", b_label="B", match_on=["pipeline", "variant", "mode", "clip_s"])
        return [n for n in result.notes if "different hardware" in n]

    assert hardware_notes(same_model) == []  # another GPU of the same model on the same host
    assert hardware_notes(unknown) == []     # a run from before placement was recorded: not judged
    (note,) = hardware_notes(other)
    assert "box1/NVIDIA A100-SXM4-80GB vs box2/NVIDIA H100" in note and "fix:" in note


def test_runs_before_placement_columns_read_blank_and_are_not_judged(tmp_path):
    rows = pd.DataFrame(_rows("default/single/5s", 5, "w0", n=2) + _rows("default/chunked/5s", 5, "w1", n=2))
    old_columns = [c for c in SAMPLE_COLUMNS if c not in ("host", "gpu", "worker")]
    (tmp_path / "samples.csv").write_text(rows[old_columns].assign(schema_version=2).to_csv(index=False))
    samples = read_samples(tmp_path)
    assert list(samples.columns[:len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert samples["host"].isna().all() and list(samples["latency_ms"]) == [100.0, 101.0, 100.0, 101.0]
    assert placement_warnings(samples) == []
