"""The throughput scenario: clips in flight, stages pipelined, the latency-throughput curve.

``scenario = "throughput"`` in a suite sweeps concurrency levels (clips in flight). At each
level the stages run pipelined, one thread per stage (its own CUDA stream on a GPU) with
bounded queues between them, measured in windows until the last three agree (the stability
rule of Triton's perf_analyzer). One row per level, mode and stage goes to throughput.csv.

Modules, by layer:

- ``benchrunner.store.throughput``: throughput.csv and throughput_samples.csv, their one writer
  and reader.
- ``benchrunner.analysis.throughput``: the stability rule (``windows``), the knee (``knee``),
  one level's events -> its rows (``levelstats``), curves and knee marking (``curves``),
  ``bench compare`` on throughput rows (``compare``). Pure, no torch.
- here (``run``): stage devices, CUDA streams and timed transfers (``placement``), the executor
  with its stage threads, bounded queues and concurrency window (``pipelined``), one level in
  the worker (``level``), the parent's sweep over levels (``sweep``).
"""
