"""Exit codes and no traceback (issue 12, section B): misbehaving stages, corrupt run folders,
file-system errors, signals at the end of a run, unreadable input files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from benchrunner.store.results import read_samples


def run_dir_of(stdout: str) -> Path:
    line = next(l for l in stdout.splitlines() if l.startswith("manifest:"))
    return Path(line.split(":", 1)[1].strip()).parent


def test_a_stage_returning_a_non_dict_or_exiting_is_an_error_of_its_repeat(bench, write_suite, tmp_path):
    suite = write_suite("""
        name = "misbehaving-stages"
        pipeline = "misbehaving_pipelines:returns"
        variants = { int = { what = "int" }, tensor = { what = "tensor" }, exit = { what = "exit" }, interrupt = { what = "interrupt" } }
        device = "cpu"
        clip_lengths_s = [2]
        modes = ["single"]
        repeats = 2
        warmup = 0
    """)
    result = bench("run", str(suite), "--out", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    totals = read_samples(run_dir_of(result.stdout)).query("stage == 'total'")
    assert set(totals["status"]) == {"error"} and len(totals) == 8        # no crash, no worker restart
    errors = dict(zip(totals["variant"], totals["error"]))
    assert errors["int"] == "post: TypeError: returned int 42, expected a dict of tensors (output streams)"
    assert errors["tensor"].startswith("post: TypeError: returned Tensor tensor(")
    assert errors["exit"] == "post: SystemExit: 3"
    assert errors["interrupt"] == "post: KeyboardInterrupt"
    manifest = json.loads((run_dir_of(result.stdout) / "manifest.json").read_text())
    assert len(manifest["workers"]) == 4                                    # one per variant, none replaced
