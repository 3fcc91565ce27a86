"""Malformed suite files fail before anything runs: one line naming the file and the field, exit 2.

Each file in tests/data/bad_suites/ starts with its expectation::

    # expect: FIELD: what is wrong (expected ...)

the message that follows ``FILE: `` (it may stop early; ``{dir}`` stands for the suite's
own folder, so relative ``inputs`` are checked to resolve against the suite file). Optional
header lines:

    # stage: run      only calling the factory (in the worker) can reject it: no in-process check
    # xfail: WHY      a known bug; the CLI checks are strict xfails until it is fixed

Three layers, cheapest first: ``load_suite`` + ``check_pipeline`` in-process for every file;
the click command in-process for every file (exit code, one line on stderr, nothing written);
the real ``python -m benchrunner run`` in a subprocess for a handful (each costs a torch
import, ~2 s). Set BENCH_BAD_SUITES_ALL=1 to run every file in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchrunner.cli import main
from benchrunner.errors import UserError
from benchrunner.run.runner import check_pipeline
from benchrunner.suite import load_suite

BAD_SUITES = Path(__file__).parent / "data" / "bad_suites"
SUBPROCESS_HANDFUL = (
    "01_unknown_top_level_key.toml",
    "19_hybrid_thresholds_outside_lengths.toml",
    "27_pipeline_module_missing.toml",
    "29_pipeline_args_unknown_name.toml",
    "32_inputs_folder_missing.toml",
    "35_not_toml.toml",
    "48_pipeline_args_bad_value.toml",
)


@dataclass(frozen=True)
class BadSuite:
    path: Path
    expect: str  # the message after "FILE: ", or its beginning
    stage: str = "load"
    xfail: str | None = None


def read_bad_suite(path: Path) -> BadSuite:
    header: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# "):
            break
        key, sep, value = line[2:].partition(": ")
        if sep and key in ("expect", "stage", "xfail"):
            header[key] = value
    assert "expect" in header, f"{path.name}: first line must be '# expect: FIELD: ...'"
    expect = header["expect"].replace("{dir}", str(path.parent))
    return BadSuite(path, expect, header.get("stage", "load"), header.get("xfail"))


ALL = [read_bad_suite(p) for p in sorted(BAD_SUITES.glob("*.toml"))]


def params(suites, *, cli: bool):
    out = []
    for suite in suites:
        marks = [pytest.mark.xfail(strict=True, reason=suite.xfail)] if cli and suite.xfail else []
        out.append(pytest.param(suite, id=suite.path.stem, marks=marks))
    return out


def expected_line(suite: BadSuite) -> str:
    return f"bench: error: {suite.path}: {suite.expect}"


def assert_one_line_error(suite: BadSuite, exit_code: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stdout + stderr
    assert exit_code == 2, stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith(expected_line(suite)), lines[0]


def test_the_folder_covers_enough_cases():
    assert len(ALL) >= 25
    for suite in ALL:
        field = suite.expect.split(":")[0]
        if field == "not valid TOML":  # nothing was parsed, so there is no field to name
            continue
        assert field and " " not in field, f"{suite.path.name}: expectation must start with the field name"


@pytest.mark.parametrize("suite", params([s for s in ALL if s.stage == "load"], cli=False))
def test_load_and_check_reject_it(suite: BadSuite):
    with pytest.raises(UserError) as caught:
        check_pipeline(load_suite(suite.path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{suite.path}: {suite.expect}"), message


@pytest.mark.parametrize("suite", params([s for s in ALL if s.stage == "load"], cli=True))
def test_cli_command_rejects_it(suite: BadSuite, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(suite.path), "--out", str(out)])
    assert_one_line_error(suite, result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()


def _subprocess_suites():
    if os.environ.get("BENCH_BAD_SUITES_ALL") == "1":
        return ALL
    chosen = [s for s in ALL if s.path.name in SUBPROCESS_HANDFUL]
    assert len(chosen) == len(SUBPROCESS_HANDFUL), "a file in SUBPROCESS_HANDFUL is missing"
    return chosen


@pytest.mark.parametrize("suite", params(_subprocess_suites(), cli=True))
def test_bench_run_rejects_it(suite: BadSuite, tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "benchrunner", "run", str(suite.path), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(suite, result.returncode, result.stdout, result.stderr)
    assert list(tmp_path.iterdir()) == [], "a run folder was created"


# -- errors that need no file of their own --------------------------------------------------

def test_a_folder_given_as_the_suite_is_one_line(tmp_path: Path):
    folder = tmp_path / "suite.toml"
    folder.mkdir()
    result = CliRunner().invoke(main, ["run", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"bench: error: {folder}: cannot read it: Is a directory "
                                          "(expected a suite .toml file)"]


def test_set_through_a_value_that_is_not_a_table_is_one_line(tmp_path: Path):
    suite = BAD_SUITES.parent / "bad_suites" / "01_unknown_top_level_key.toml"
    result = CliRunner().invoke(main, ["run", str(suite), "--set", "name.x=1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["bench: error: --set: name.x: 'name' is not a table "
                                          "(expected e.g. chunk.window_s=5)"]
