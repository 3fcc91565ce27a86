"""Probe: do identical worker processes run an identical workload at different speeds?

``--processes`` spawned processes each load the reference pipeline (one torch thread) and,
in ``--rounds`` rounds whose process order rotates, run ``--calls`` single-pass calls of one
clip, reporting each call's wall time and the thread's CPU time (``time.thread_time_ns``,
which the scheduling of other work on a busy machine does not stretch as it stretches wall
time). It prints each process's median CPU time per call relative to the median over all
processes, with a 95% bootstrap interval over its rounds, and the same for each round
(time). A process whose interval excludes 1 runs the same code at its own speed: a
per-process effect (address-space layout, allocator state), which rounds alternating between
processes do not cancel; a trend over rounds is drift in time, which they do.

    python benchmarks/process_effect.py [--processes 6] [--rounds 12] [--calls 3] [--scale tiny] [--clip 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np


def _serve(conn, scale: str, clip_s: float) -> None:
    import torch

    from benchrunner.pipeline import load_pipeline

    torch.set_num_threads(1)
    pipeline = load_pipeline("benchrunner.pipelines.reference:build", {"scale": scale}, device="cpu")
    clip = pipeline.make_clip(clip_s, 0)

    def call() -> tuple[float, float]:
        value = {k: v.clone() for k, v in clip.items()}
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        with torch.inference_mode():
            for stage in pipeline.stages:
                value = stage.fn(value)
        return (time.perf_counter_ns() - wall) / 1e6, (time.thread_time_ns() - cpu) / 1e6

    for _ in range(3):
        call()  # warm-up
    conn.send(("ready", os.getpid()))
    while (message := conn.recv()) != "stop":
        conn.send([call() for _ in range(message)])


def _bootstrap_median(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float]:
    draws = np.median(values[rng.integers(0, values.size, (n_boot, values.size))], axis=1)
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--clip", type=float, default=5.0)
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    workers = []
    for _ in range(args.processes):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, args.scale, args.clip), daemon=True)
        process.start()
        workers.append((parent, process))
    for conn, _ in workers:
        conn.recv()
    load_before = os.getloadavg()[0]
    cpu = np.zeros((args.rounds, args.processes))   # median CPU ms per (round, process)
    wall = np.zeros((args.rounds, args.processes))
    for r in range(args.rounds):
        for k in range(args.processes):
            p = (k + r) % args.processes
            conn = workers[p][0]
            conn.send(args.calls)
            calls = np.asarray(conn.recv())
            wall[r, p], cpu[r, p] = np.median(calls[:, 0]), np.median(calls[:, 1])
    for conn, process in workers:
        conn.send("stop")
        process.join(10)
    rng = np.random.default_rng(0)
    # each (round, process) relative to that round's median over processes: time drift cancels
    rel_cpu = cpu / np.median(cpu, axis=1, keepdims=True)
    rel_wall = wall / np.median(wall, axis=1, keepdims=True)
    print(f"{args.processes} processes x {args.rounds} rounds x {args.calls} calls, reference {args.scale}, "
          f"{args.clip:g} s clip, 1 thread; load average {load_before:.2f} -> {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    print("per process: median over rounds of (its CPU time / the round's median over processes) [95% CI]; "
          "same for wall time")
    excluded = 0
    for p in range(args.processes):
        low, high = _bootstrap_median(rel_cpu[:, p], rng)
        wlow, whigh = _bootstrap_median(rel_wall[:, p], rng)
        flag = "excludes 1" if not low <= 1.0 <= high else ""
        excluded += bool(flag)
        print(f"  process {p}: cpu {np.median(rel_cpu[:, p]):.4f} [{low:.4f}, {high:.4f}] {flag:<11} "
              f"wall {np.median(rel_wall[:, p]):.4f} [{wlow:.4f}, {whigh:.4f}]")
    spread = np.median(rel_cpu, axis=0)
    print(f"process medians of CPU time span {spread.min():.4f}-{spread.max():.4f} "
          f"({(spread.max() / spread.min() - 1) * 100:.1f}%); {excluded} of {args.processes} exclude 1")
    per_round = np.median(cpu, axis=1)
    slope = np.polyfit(np.arange(args.rounds), per_round / np.median(per_round), 1)[0] * args.rounds
    print(f"time: median CPU ms per round from {per_round[0]:.3f} to {per_round[-1]:.3f}; "
          f"linear trend over the run {slope * 100:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
