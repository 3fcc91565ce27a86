"""The throughput scenario: clips in flight, stages pipelined, the latency-throughput curve.

``scenario = "throughput"`` in a suite sweeps concurrency levels (clips in flight). At each
level the stages run pipelined, one thread per stage (its own CUDA stream on a GPU) with
bounded queues between them, measured in windows until the last three agree (the stability
rule of Triton's perf_analyzer). One row per level, mode and stage goes to throughput.csv.

Modules, by role (the pure ones import neither torch nor the executor):

- ``schema``: throughput.csv and throughput_samples.csv, their one writer and reader (pure).
- ``windows``: the measurement-window stability rule (pure).
- ``knee``: the knee of the latency-throughput curve (pure).
- ``levelstats``: one level's events -> its rows: clips/s, latency quantiles, per-stage busy,
  queue wait, utilisation, the bottleneck (pure).
- ``placement``: stage devices, CUDA streams, timed transfers between devices (torch).
- ``pipelined``: the executor: stage threads, bounded queues, the concurrency window (torch).
- ``level``: runs one level inside the worker process (torch).
- ``sweep``: the parent's side: levels -> worker -> rows on disk, failures per level.
"""
