"""Shared fixtures: writing suites, running them in-process or through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).parent
REPO = TESTS_DIR.parent


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite file from TOML text (dedented) and return its path."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def bench_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture
def bench(tmp_path):
    """Run the real ``bench`` CLI in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or tmp_path, env=bench_env())

    return run


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL server's URL: BENCH_TEST_PG_URL (what .ci/run exports), else a server
    started here from the PostgreSQL binaries for this session; skipped, saying why, without."""
    url = os.environ.get("BENCH_TEST_PG_URL")
    if url:
        yield url
        return
    from pg_server import PgServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no PostgreSQL: {reason}")
    server = PgServer.start()
    try:
        yield server.url
    finally:
        server.stop()
