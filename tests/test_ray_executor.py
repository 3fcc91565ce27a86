"""--executor ray on a real (fake two-node) Ray cluster on this machine.

One cluster for the whole module (Ray starts slowly on 2 cores): a head and a second node,
each with one CPU and one fake GPU, so ``--devices all`` places one actor on each node.
The workers measure on the CPU (there is no CUDA); Ray still gives each actor its GPU.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'benchrunner[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

from benchrunner.run.executors import executor_spec  # noqa: E402
from benchrunner.run.runner import run_suite  # noqa: E402
from benchrunner.store.results import read_manifest, read_samples  # noqa: E402
from benchrunner.suite import load_suite  # noqa: E402
from test_isolation import expected_keys, keys_of, start_bench, statuses, wait_for_cases  # noqa: E402

# alone: kills and node losses race a few seconds of work, and the cluster (a module fixture)
# must not run beside another test's measurement
pytestmark = [pytest.mark.slow, pytest.mark.alone]


@pytest.fixture(scope="module")
def cluster():
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR")
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


SUITE = """
    name = "{name}"
    pipeline = "testing_pipelines:build"
    pipeline_args = {{ {args} }}
    device = "cpu"
    clip_lengths_s = {lengths}
    modes = {modes}
    chunk = {{ window_s = 1, overlap_s = 0.2 }}
    repeats = 2
    warmup = 0
    timeout_s = {timeout}
"""


def suite_file(write_suite, name, *, args="", lengths="[1, 2]", modes='["single", "chunked"]', timeout=120):
    return write_suite(SUITE.format(name=name, args=args, lengths=lengths, modes=modes, timeout=timeout),
                       name=f"{name}.toml")


def test_sweep_on_two_nodes_gives_the_local_row_keys_one_group_per_worker(cluster, write_suite, tmp_path):
    path = suite_file(write_suite, "keys")
    local = run_suite(load_suite(path), out_dir=tmp_path / "local")
    on_ray = run_suite(load_suite(path), out_dir=tmp_path / "ray", executor=executor_spec("ray", devices="all"))
    assert sorted(keys_of(on_ray.run_dir)) == sorted(keys_of(local.run_dir)) == sorted(expected_keys(path, local.run_dir))
    samples = read_samples(on_ray.run_dir)
    assert (samples["status"] == "ok").all()
    per_group = samples.groupby("clip_s")[["worker", "host"]].nunique()
    assert (per_group == 1).all().all(), per_group  # the modes of one clip length ran on one worker
    manifest = read_manifest(on_ray.run_dir)
    assert manifest["executors"][-1]["kind"] == "ray" and manifest["executors"][-1]["ray_nodes"] == 2
    workers = {w["worker"]: w for w in manifest["workers"]}
    assert set(workers) == {"w0", "w1"}
    assert len({w["ray_node_id"] for w in workers.values()}) == 2  # one actor per node (one GPU each)
    assert sorted(w["ray_gpu_ids"][0] for w in workers.values()) == ["0", "0"]  # each node's own GPU 0
    summary = manifest["worker_summary"]
    assert sum(s["cases"] for s in summary) == 4 and all(s["busy_s"] > 0 and s["host"] for s in summary)


def test_an_actor_that_dies_mid_case_is_one_crash_row_and_the_sweep_finishes(cluster, write_suite):
    path = suite_file(write_suite, "abort", args="abort_clip_s = 2", lengths="[1, 2, 3]", modes='["single"]')
    result = run_suite(load_suite(path), out_dir=path.parent / "results", executor=executor_spec("ray", workers=2))
    assert result.status == "finished"
    samples = read_samples(result.run_dir)
    totals = samples[samples["stage"] == "total"]
    crashed = totals[totals["status"] == "crash"]
    assert len(crashed) == 1 and crashed.iloc[0]["case_id"] == "default/single/2s", totals
    assert "Ray worker died" in crashed.iloc[0]["error"]
    assert statuses(result.run_dir).to_dict() == {"default/single/1s": "ok", "default/single/2s": "crash",
                                                  "default/single/3s": "ok"}


def test_a_hang_is_a_timeout_within_timeout_plus_5_s(cluster, write_suite):
    path = suite_file(write_suite, "hang", args="hang_clip_s = 2", lengths="[1, 2]", modes='["single"]', timeout=3)
    seen: dict[str, float] = {}

    def on_event(kind, **event):
        if kind == "repeat" and event["case"].case_id == "default/single/2s" and event["repeat"] == 0:
            seen["call"] = time.monotonic()
        if kind == "case_end" and event["case"].case_id == "default/single/2s":
            seen["row"] = time.monotonic()

    result = run_suite(load_suite(path), out_dir=path.parent / "results", on_event=on_event,
                       executor=executor_spec("ray", workers=2))
    assert statuses(result.run_dir).to_dict() == {"default/single/1s": "ok", "default/single/2s": "timeout"}
    # the events reach this thread through the driver's queue, a moment after the lane saw them
    assert 3.0 - 1.0 <= seen["row"] - seen["call"] <= 3.0 + 5.0, seen


def test_driver_killed_then_resume_gives_the_uninterrupted_keys(cluster, write_suite, tmp_path):
    path = suite_file(write_suite, "killed", args="busy_ms = 300", lengths="[1, 2, 3, 4, 5]", modes='["single"]')
    address = ["--executor", "ray", "--ray-address", cluster.address]
    proc = start_bench("run", str(path), "--out", "results", "--run-id", "night", "--workers", "2", *address,
                       cwd=tmp_path)
    run_dir = tmp_path / "results" / "night"
    try:
        wait_for_cases(run_dir / "samples.csv", 1, timeout_s=180)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert read_manifest(run_dir)["status"] == "running"  # killed: nothing marked it otherwise
    resumed = start_bench("run", "--resume", "night", "--out", "results", "--workers", "2", *address, cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert sorted(keys_of(run_dir)) == sorted(expected_keys(path, run_dir))
    assert read_manifest(run_dir)["status"] == "finished"


def test_a_lost_node_is_a_crash_row_and_its_cases_run_on_the_other_node(cluster, write_suite, monkeypatch):
    """Last in the module: it removes the second node. The actor on it dies mid-case (crash
    row); its lane cannot get a new actor (the head's one GPU is taken), retires, and the
    surviving worker runs the cases left."""
    import threading

    from benchrunner.run.executors import ray as ray_executor

    path = suite_file(write_suite, "lost", args="busy_ms = 400", lengths="[1, 2, 3]")
    running: dict[str, set] = {"workers": set()}
    both_running = threading.Event()

    def on_event(kind, **event):
        if kind == "repeat":
            running["workers"].add(event["worker"])
            if len(running["workers"]) == 2:
                both_running.set()

    outcome = {}
    sweep = threading.Thread(target=lambda: outcome.setdefault("result", run_suite(
        load_suite(path), out_dir=path.parent / "results", on_event=on_event,
        executor=executor_spec("ray", devices="all"))))
    sweep.start()
    assert both_running.wait(180), running
    monkeypatch.setattr(ray_executor, "PLACEMENT_TIMEOUT_S", 15.0)  # for the lost lane's next actor
    (other,) = [node for node in cluster.list_all_nodes() if node is not cluster.head_node]
    cluster.remove_node(other, allow_graceful=False)
    sweep.join(300)
    result = outcome["result"]
    assert result.status == "finished"
    samples = read_samples(result.run_dir)
    totals = samples[samples["stage"] == "total"]
    assert set(totals["case_id"]) == {f"default/{m}/{c}s" for m in ("single", "chunked") for c in (1, 2, 3)}
    crashed = totals[totals["status"] != "ok"]
    assert list(crashed["status"]) == ["crash"] and "died" in crashed.iloc[0]["error"], crashed
    lost_worker = crashed.iloc[0]["worker"]
    after = totals[(totals["case_id"] != crashed.iloc[0]["case_id"]) & (totals["clip_s"] == crashed.iloc[0]["clip_s"])]
    assert set(after["worker"]) == {"w0", "w1"} - {lost_worker}  # the rest of its group: the other worker
    manifest = read_manifest(result.run_dir)
    assert any(w["code"] == "mixed_devices" for w in manifest["warnings"])
