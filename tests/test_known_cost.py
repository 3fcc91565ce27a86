"""The known-cost check (benchmarks/known_cost.py): a pipeline whose stage times and
allocation are known, three interleaved variants (two identical, one with a 5% slower
stage), 20 repeats at 10 and 40 s, single and chunked."""

from __future__ import annotations

import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import known_cost  # noqa: E402

pytestmark = pytest.mark.alone  # a busy second test would be part of what it measures


def test_known_costs_read_as_known(tmp_path):
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    outcome = known_cost.run_check(repeats=20, lengths=[10.0, 40.0], out=tmp_path)
    busy = max(load_before, os.getloadavg()[0]) > cores
    checks = {name: (ok, detail) for name, ok, detail in outcome["checks"]}
    identical = {n: c for n, c in checks.items() if n.startswith("identical")}
    memory = {n: c for n, c in checks.items() if n.startswith("memory")}
    slower = {n: c for n, c in checks.items() if n.startswith("5% slower")}
    assert len(identical) == 4 and len(memory) == 12 and len(slower) == 4
    assert all(ok for ok, _ in identical.values()), _failed(identical)  # paired: no false verdict even when busy
    assert all(ok for ok, _ in memory.values()), _failed(memory)
    assert all("(paired)" in detail for _, detail in [*identical.values(), *slower.values()])
    if busy and _failed(slower):  # passed 5% verdicts count even after a busy minute (the tests before this one)
        pytest.skip(f"load average {load_before:.1f} on {cores} cores: busy-wait stages measure other processes' "
                    f"scheduling, so the 5% verdicts need a quiet machine ({slower})")
    assert all(ok for ok, _ in slower.values()), _failed(slower)


def _failed(checks: dict) -> dict:
    return {name: detail for name, (ok, detail) in checks.items() if not ok}
