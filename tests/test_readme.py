"""The README's example pipeline, copied outside the repo and named in a suite, runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO


def readme_block(name: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}:start -->\s*```\w*\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


def test_readme_example_pipeline_runs_with_bench_run(tmp_path):
    (tmp_path / "mypipe.py").write_text(readme_block("example-pipeline"), encoding="utf-8")
    (tmp_path / "my-suite.toml").write_text(readme_block("example-suite"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}  # this checkout's package
    result = subprocess.run([sys.executable, "-m", "benchrunner", "run", "my-suite.toml", "--repeats", "2"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "results").glob("*/summary.csv")
    import pandas as pd

    frame = pd.read_csv(next(summary))
    totals = frame[frame["stage"] == "total"]
    assert len(totals) == 6 and (totals["failures"] == 0).all()
    chunked = totals[totals["mode"] == "chunked"]
    assert (chunked["quality_snr_db"] > 40).all()  # conv edges stay inside the dropped context
    assert set(frame["stage"]) == {"denoise", "upsample", "total"}
