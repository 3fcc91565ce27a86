"""Shared fixtures: writing suites, running them in-process or through the real CLI."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
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


# pytest-xdist runs the tests two (or more) at a time (pyproject's addopts). A test marked
# ``alone`` measures time, CPU share or memory, or races a short deadline: it runs with the
# machine to itself. Every other test holds a shared lock on a file for its setup, call and
# teardown, an ``alone`` test the exclusive lock; a turnstile lock taken first lets a waiting
# ``alone`` test in before the next shared holder (no starvation). Consecutive ``alone`` tests of
# one module keep the lock, so a module fixture they share (a Ray cluster) never runs beside
# another test. GPU tests are ``alone`` too: they share the one GPU. Without xdist: no locks.
_room = None  # the lock file this worker holds (closing it drops the lock)


def _runs_alone(item) -> bool:
    return item.get_closest_marker("alone") is not None or item.get_closest_marker("gpu") is not None


def _lock_file(name: str):
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    return open(Path(tempfile.gettempdir()) / f"benchrunner-tests-{run}.{name}", "a")


LOCK_WAIT_S = 900.0  # longer than any test; past it a stray holder must not hang the suite


def _flock(file, mode: int) -> None:
    """flock, polled, giving up after LOCK_WAIT_S with a warning (the test then runs anyway)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(file, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                warnings.warn(f"no test lock after {LOCK_WAIT_S:g} s ({file.name}); running without it")
                return
            time.sleep(0.05)


def _acquire(exclusive: bool):
    turnstile, room = _lock_file("turnstile"), _lock_file("room")
    _flock(turnstile, fcntl.LOCK_EX)
    try:
        _flock(room, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    finally:
        turnstile.close()
    return room


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _room
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    alone = _runs_alone(item)
    if _room is None:  # else the previous test, alone in this module too, kept the lock for this one
        _room = _acquire(alone)
    try:
        yield
    finally:
        if not (alone and nextitem is not None and _runs_alone(nextitem) and nextitem.module is item.module):
            _room.close()
            _room = None


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
