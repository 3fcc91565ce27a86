"""The throughput scenario's CUDA paths: a stream per stage, GPU stages overlapping, timed
transfers between devices. Written against torch's documented CUDA API; skipped without a GPU
(conftest) and, for two devices, without a second GPU. Not yet run on a GPU (see the README)."""

from __future__ import annotations

import time

import pytest
import torch

from benchrunner import Pipeline, Stage, Stream
from benchrunner.modespec import parse_mode
from benchrunner.suite import ChunkConfig
from benchrunner.analysis.throughput.levelstats import level_rows
from benchrunner.run.throughput.pipelined import PipelinedExecutor
from benchrunner.run.throughput.placement import place_modules
from benchrunner.analysis.throughput.windows import Window

pytestmark = pytest.mark.gpu
RATE = 1000


def _cycles_for_ms(ms: float) -> int:
    """torch.cuda._sleep spins a kernel for a number of GPU clock cycles: calibrate them."""
    torch.cuda._sleep(1000)
    torch.cuda.synchronize()
    start = time.perf_counter()
    torch.cuda._sleep(10_000_000)
    torch.cuda.synchronize()
    per_cycle_ms = (time.perf_counter() - start) * 1000 / 10_000_000
    return int(ms / per_cycle_ms)


def _gpu_pipeline(cycles: int, seen: dict) -> Pipeline:
    def make(name: str):
        def stage(value: dict) -> dict:
            seen.setdefault(name, set()).add(torch.cuda.current_stream().cuda_stream)
            torch.cuda._sleep(cycles)        # ~10 ms of GPU time, queued on the current stream
            return {"audio": value["audio"] * 2}
        return stage

    return Pipeline(name="gpu-sleepy", stages=[Stage(n, make(n)) for n in ("a", "b", "c")],
                    inputs={"audio": Stream(-1, RATE)}, outputs={"audio": Stream(-1, RATE)},
                    make_clip=lambda clip_s, seed: {"audio": torch.ones(1, int(clip_s * RATE))}, sample_rate=RATE)


def _run(pipeline: Pipeline, devices: list[str], concurrency: int, seconds: float = 1.0):
    executor = PipelinedExecutor(pipeline, devices, parse_mode("single"), ChunkConfig(), concurrency=concurrency,
                                 queue_depth=1, clip_s=1.0, next_clip=lambda: ("x", pipeline.make_clip(1.0, 0)))
    executor.start()
    executor.go()
    time.sleep(0.3)
    start, done = time.perf_counter_ns(), executor.completed()
    time.sleep(seconds)
    end, finished = time.perf_counter_ns(), executor.completed()
    assert executor.stop(10.0)
    return executor, (finished - done) / ((end - start) / 1e9), Window(start, end, finished - done, 0, None)


def test_each_stage_runs_on_its_own_cuda_stream_and_gpu_stages_overlap():
    seen: dict = {}
    pipeline = _gpu_pipeline(_cycles_for_ms(10.0), seen)
    _, one, _ = _run(pipeline, ["cuda:0"] * 3, 1)
    _, three, _ = _run(pipeline, ["cuda:0"] * 3, 3)
    streams = [seen[name] for name in ("a", "b", "c")]
    default = torch.cuda.default_stream().cuda_stream
    assert all(len(s) == 1 for s in streams)                         # one stream per stage thread
    assert len(set().union(*streams)) == 3 and default not in set().union(*streams)
    assert 25.0 <= one <= 36.0                                       # ~33 clips/s: 3 x 10 ms in sequence
    assert three >= 2.5 * one                                        # the three streams' kernels overlap


def test_a_stage_on_another_device_gets_its_input_by_a_timed_transfer():
    """Voice conversion on the CPU, the rest on the GPU: the move of its output to cuda:0 is
    timed as its own row, and the output equals the all-GPU pipeline's."""
    from benchrunner.pipelines.reference import build

    pipeline = build(scale="tiny", device="cuda:0")
    devices = ["cpu", "cuda:0", "cuda:0", "cuda:0"]
    place_modules(pipeline.stages, devices, "cuda:0")
    executor, _, window = _run(pipeline, devices, 2, seconds=1.0)
    assert executor.transfer_events and all(e.to_stage == 1 and e.nbytes > 0 for e in executor.transfer_events)
    assert all(c.status == "ok" for c in executor.clips)
    rows = level_rows(_meta(), pipeline.stage_names(), devices, [window], True, executor.clips,
                      executor.stage_events, executor.transfer_events, peak_mem_bytes=None, mem_source="",
                      cpu_util_pct=None)
    [transfer] = [r for r in rows if r["kind"] == "transfer"]
    assert transfer["stage"] == "voice_conversion->acoustic" and transfer["device"] == "cpu->cuda:0"
    assert transfer["busy_mean_ms"] > 0 and transfer["transfer_bytes_mean"] > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_devices_through_bench_run(write_suite, tmp_path):
    from benchrunner.run.runner import run_suite
    from benchrunner.suite import load_suite
    from benchrunner.store.throughput import read_throughput

    path = write_suite("""
        name = "two-gpus"
        pipeline_args = { scale = "tiny" }
        device = "cuda:0"
        clip_lengths_s = [5]
        modes = ["single"]
        scenario = "throughput"
        concurrency = [1, 4]
        stage_devices = { voice_conversion = "cuda:0", acoustic = "cuda:0", pitch = "cuda:1", lipsync = "cuda:1" }
        throughput = { window_s = 0.5 }
        """)
    frame = read_throughput(run_suite(load_suite(path), out_dir=tmp_path / "results").run_dir)
    transfers = frame[frame["kind"] == "transfer"]
    assert set(transfers["stage"]) == {"acoustic->pitch"} and set(transfers["device"]) == {"cuda:0->cuda:1"}
    assert (frame[frame["kind"] == "total"]["status"].isin(["ok", "unstable"])).all()
    assert set(frame[frame["kind"] == "stage"]["timer_source"]) == {"perf_counter+stream_sync"}


def _meta():
    from benchrunner.analysis.throughput.levelstats import LevelMeta

    return LevelMeta("r", "s", "p", "default", "single", None, 1.0, 2, "cuda:0", 10.0, 1.0, None, 1,
                     "perf_counter+stream_sync", "t")
