"""``--nsys``: the same profile under NVIDIA Nsight Systems, with NVTX ranges only.

The re-run passes ``--nvtx-only``: torch.profiler is left off, because it and nsys would
both subscribe to CUPTI on a GPU (CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) and the
torch profiler's own overhead would show in the nsys timeline. Stage ranges are NVTX
ranges with the same names (``chunked/acoustic/chunk2``, ``io_wait``), each call is
inside ``warmup<k>`` or ``repeat<k>``. NVTX needs a CUDA build of torch: on a CPU-only
build the report has OS runtime events but no stage ranges.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import UserError

NSYS_REPORT = "nsys_report"
NSYS_TRACE = "cuda,nvtx,osrt"
NSYS_MISSING = ("--nsys: nsys (NVIDIA Nsight Systems CLI) is not on PATH; install NVIDIA Nsight Systems, e.g. the "
                "nsight-systems-cli package from NVIDIA's CUDA repository (or the installer from "
                "developer.nvidia.com/nsight-systems), put nsys on PATH, or run without --nsys")


def find_nsys() -> str:
    path = shutil.which("nsys")
    if path is None:
        raise UserError(NSYS_MISSING)
    return path


def nsys_command(nsys: str, base_dir: Path, bench_args: list[str]) -> list[str]:
    """``nsys profile ... python -m benchrunner profile <bench_args>``."""
    return [nsys, "profile", "-t", NSYS_TRACE, "-o", str(base_dir / NSYS_REPORT), "--force-overwrite", "true",
            sys.executable, "-m", "benchrunner", "profile", *bench_args]


def run_under_nsys(nsys: str, base_dir: Path, bench_args: list[str]) -> Path:
    """Run the profile under nsys (its output passes through); the path of the report."""
    from .runner import ProfileError

    base_dir.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(nsys_command(nsys, base_dir, bench_args), check=False)
    if completed.returncode != 0:
        raise ProfileError(f"--nsys: nsys profile exited with status {completed.returncode} (see its output above)")
    return base_dir / f"{NSYS_REPORT}.nsys-rep"


def run_nvtx_only(cases: list, *, stage: str | None = None) -> list[str]:
    """Run each case like a profile, with NVTX ranges and no torch.profiler (under nsys):
    each call inside ``warmup<k>`` (unprofiled and warm-up calls) or ``repeat<k>``."""
    from .runner import open_pipeline, run_steps, schedule_for
    from .timer import ProfilingStageTimer

    pipeline = open_pipeline(cases[0], stage)
    done = []
    for case in cases:
        plan = schedule_for(case)
        warm = plan.wait + plan.warmup
        timer = ProfilingStageTimer(case.device, torch_ranges=False)
        run_steps(pipeline, case, timer, plan.steps,
                  step_range=lambda i: timer.range(f"warmup{i}" if i < warm else f"repeat{i - warm}"))
        nvtx = "on" if timer.nvtx else "off (the case runs on the CPU; NVTX ranges need CUDA)"
        done.append(f"{case.case_id}: {warm} warm-up calls (NVTX 'warmup<k>'), {plan.active} repeats "
                    f"(NVTX 'repeat<k>'), NVTX {nvtx}")
    return done
