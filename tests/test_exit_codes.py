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


# --- corrupt run folders (B13) ---------------------------------------------------------------

CORRUPTIONS = {
    "truncated manifest": ("manifest.json", lambda b: b[: len(b) // 2]),
    "manifest {}": ("manifest.json", lambda b: b"{}"),
    "manifest array": ("manifest.json", lambda b: b"[1, 2]"),
    "random bytes appended": ("samples.csv", lambda b: b + bytes(np.random.default_rng(1).integers(0, 256, 300,
                                                                                                 dtype=np.uint8))),
    "extra column": ("samples.csv", lambda b: b"\n".join(line + (b",extra" if line else b"")
                                                         for line in b.split(b"\n"))),
    "no header": ("samples.csv", lambda b: b.split(b"\n", 1)[1]),
    "non-numeric latency": ("samples.csv", lambda b: _replace_field(b, "latency_ms", "fast")),
    "empty samples": ("samples.csv", lambda b: b""),
    "missing samples": ("samples.csv", None),
}
# what each corruption says, in one line that names the file
MESSAGES = {
    "truncated manifest": "manifest.json: manifest: not valid JSON",
    "manifest {}": "manifest.json: manifest: no 'run_id'",
    "manifest array": "manifest.json: manifest: a JSON list",
    "random bytes appended": "samples.csv: samples: ",
    "extra column": "samples.csv: samples: line 1: unknown column 'extra'",
    "no header": "samples.csv: samples: no header line",
    "non-numeric latency": "samples.csv: samples: line 2: latency_ms: 'fast' is not a number",
    "empty samples": "samples.csv: samples: ",
    "missing samples": "samples.csv: samples: ",
}


def _replace_field(data: bytes, column: str, value: str) -> bytes:
    lines = data.decode().split("\n")
    header = lines[0].split(",")
    for i in range(1, len(lines)):
        fields = lines[i].split(",")
        if len(fields) == len(header) and fields[header.index(column)]:
            fields[header.index(column)] = value
            lines[i] = ",".join(fields)
            break
    return "\n".join(lines).encode()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    import subprocess
    import sys

    from conftest import bench_env

    folder = tmp_path_factory.mktemp("base")
    (folder / "suite.toml").write_text("""
name = "corruptible"
pipeline_args = { scale = "tiny" }
device = "cpu"
clip_lengths_s = [3]
modes = ["single", "chunked"]
chunk = { window_s = 2, overlap_s = 0.5 }
repeats = 2
warmup = 0
""")
    done = subprocess.run([sys.executable, "-m", "benchrunner", "run", "suite.toml", "--out", "results",
                           "--run-id", "base"], cwd=folder, env=bench_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return folder / "results" / "base"


def _commands(run: Path, out: Path) -> dict[str, tuple[str, ...]]:
    return {
        "resume": ("run", "--resume", str(run)),
        "compare": ("compare", "single", "chunked", "--run", str(run)),
        "report": ("report", str(run), "--md", "--research-log", "en", "--out", str(out)),
        "tune-threshold": ("tune-threshold", str(run)),
    }


def test_the_uncorrupted_run_reads_in_every_command(bench, finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name, args in _commands(run, tmp_path / "report").items():
        if name != "resume":
            result = bench(*args)
            assert result.returncode == 0, (name, result.stderr)


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_run_folder_is_one_line_and_exit_2(bench, finished_run, tmp_path, corruption):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    name, damage = CORRUPTIONS[corruption]
    if damage is None:
        (run / name).unlink()
    else:
        (run / name).write_bytes(damage((run / name).read_bytes()))
    for command, args in _commands(run, tmp_path / "report").items():
        if command == "resume" and corruption in ("empty samples", "missing samples"):
            continue  # a run interrupted before its first case has no rows: resuming it runs every case
        result = bench(*args)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert MESSAGES[corruption] in lines[0], (command, lines[0])
        assert str(run / name) in lines[0] or f"{run.name}/{name}" in lines[0], (command, lines[0])


def test_a_torn_last_line_stays_a_note(bench, finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    data = (run / "samples.csv").read_bytes()
    (run / "samples.csv").write_bytes(data + data.split(b"\n")[1][:40])  # half a row, no newline
    assert bench("compare", "single", "chunked", "--run", str(run)).returncode == 0
    resumed = bench("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped a torn last line" in resumed.stderr


# --- file-system errors (B10) ---------------------------------------------------------------

TINY = """
name = "fs"
pipeline = "testing_pipelines:build"
device = "cpu"
clip_lengths_s = [1]
modes = ["single"]
repeats = 1
warmup = 0
"""


def _one_line_74(result, path_text: str, progress: bool = False) -> str:
    assert result.returncode == 74, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    lines = lines[-1:] if progress else lines  # a run that got going printed its progress before
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert path_text in lines[0], lines[0]
    return lines[0]


def test_out_or_run_id_naming_a_file_is_one_line_and_exit_74(bench, tmp_path):
    (tmp_path / "suite.toml").write_text(TINY)
    (tmp_path / "a-file").write_text("not a folder")
    line = _one_line_74(bench("run", "suite.toml", "--out", "a-file"), "a-file")
    assert "Not a directory" in line
    _one_line_74(bench("run", "suite.toml", "--out", "/dev/null"), "/dev/null")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "taken").write_text("a file where the run folder would go")
    _one_line_74(bench("run", "suite.toml", "--out", "results", "--run-id", "taken"), "results/taken")


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount to make a small file system")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_disk_full_mid_run_ends_interrupted_without_temp_files_and_resumes(bench, tmp_path, small_disk):
    import os

    (tmp_path / "suite.toml").write_text(TINY.replace("clip_lengths_s = [1]", "clip_lengths_s = "
                                                      + str(list(range(1, 41)))).replace("repeats = 1", "repeats = 4"))
    # leave room for the reserve, the manifest and a few cases' rows, not for 40 cases
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - (1 << 20) - 96 * 1024))
    result = bench("run", "suite.toml", "--out", str(small_disk / "results"), "--run-id", "full", timeout=600)
    line = _one_line_74(result, str(small_disk / "results" / "full"), progress=True)
    assert "No space left on device" in line and "bench run --resume full" in line
    run = small_disk / "results" / "full"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".space")) == []
    done_before = read_samples(run).query("stage == 'total'")["case_id"].nunique()
    assert 0 < done_before < 40
    filler.unlink()
    resumed = bench("run", "--resume", str(run), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    keys = read_samples(run)[["case_id", "repeat", "stage"]]
    assert not keys.duplicated().any() and keys["case_id"].nunique() == 40
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"


def test_a_read_only_results_folder_is_one_line_and_exit_74(bench, tmp_path, small_disk):
    import subprocess

    (tmp_path / "suite.toml").write_text(TINY)
    (small_disk / "results").mkdir()
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode == 0
    line = _one_line_74(bench("run", "suite.toml", "--out", str(small_disk / "results")), str(small_disk))
    assert "Read-only file system" in line


# --- two SIGINTs at the end of a run (B12) ----------------------------------------------------

def _interrupt_twice_at_the_end(tmp_path, monkeypatch, handlers):
    import os
    import signal
    import time

    import benchrunner.run.runner as runner
    from benchrunner.errors import Interrupted
    from benchrunner.suite import load_suite

    suite_path = tmp_path / "suite.toml"
    suite_path.write_text(TINY.replace("clip_lengths_s = [1]", "clip_lengths_s = [1, 2]"))
    suite = load_suite(suite_path)
    real_summarise = runner.summarise

    def second_sigint_while_summarising(samples):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        return real_summarise(samples)

    monkeypatch.setattr(runner, "summarise", second_sigint_while_summarising)

    def first_sigint_after_the_last_case(kind, **event):
        if kind == "case_end" and event["index"] + 1 == event["total"]:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

    with handlers(), pytest.raises(Interrupted) as caught:
        runner.run_suite(suite, out_dir=tmp_path / "results", run_id="twice", on_event=first_sigint_after_the_last_case)
    return caught.value, tmp_path / "results" / "twice"


def test_two_sigints_at_the_end_leave_the_run_interrupted_with_summaries_and_the_hint(tmp_path, monkeypatch):
    from benchrunner.cli.common import signals_raise_interrupted as _signals_raise_interrupted

    exc, run = _interrupt_twice_at_the_end(tmp_path, monkeypatch, _signals_raise_interrupted)
    assert exc.exit_code == 130 and exc.run_id == "twice"       # the CLI prints the resume hint from it
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert (run / "summary.csv").is_file()


def test_the_runner_holds_signals_while_it_writes_the_final_files(tmp_path, monkeypatch):
    """Even under a handler that raises on every signal (not only the CLI's), the summary and
    the final status are written."""
    import signal
    from contextlib import contextmanager

    from benchrunner.errors import Interrupted

    @contextmanager
    def raise_every_time():
        def handler(signum, _frame):
            raise Interrupted(signum)
        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    exc, run = _interrupt_twice_at_the_end(tmp_path, monkeypatch, raise_every_time)
    assert exc.run_id == "twice"
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert (run / "summary.csv").is_file()


# --- input files (B15) -------------------------------------------------------------------------

INPUTS_SUITE = """
name = "files"
pipeline = "testing_pipelines:build"
device = "cpu"
clip_lengths_s = [5]
modes = ["single"]
inputs = "clips"
repeats = 2
warmup = 0
"""


def _audio(path: Path, seconds: float, rate: int = 16000) -> None:
    data = (np.random.default_rng(0).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)
    soundfile.write(str(path), data, rate)


@pytest.mark.parametrize("bad", ["corrupt", "empty", "text"])
def test_an_unreadable_input_file_is_one_line_exit_2_before_any_case_and_leaves_no_folder(bench, tmp_path, bad):
    clips = tmp_path / "clips"
    clips.mkdir()
    _audio(clips / "good.wav", 5.0)
    target = clips / "bad.wav"
    if bad == "corrupt":
        target.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    elif bad == "empty":
        target.write_bytes(b"")
    else:
        target.write_text("this is not audio\n")
    (tmp_path / "suite.toml").write_text(INPUTS_SUITE)
    result = bench("run", "suite.toml", "--out", "results")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "clips/bad.wav: inputs: cannot read it as audio" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_a_file_failing_mid_run_is_an_input_failure_kept_apart_and_misfits_are_noted(bench, tmp_path):
    from benchrunner.store.results import read_summary

    clips = tmp_path / "clips"
    clips.mkdir()
    _audio(clips / "a-good.wav", 5.0)
    _audio(clips / "b-torn.flac", 5.0)
    data = (clips / "b-torn.flac").read_bytes()
    (clips / "b-torn.flac").write_bytes(data[: len(data) // 2])   # header intact, body cut: "lost sync"
    _audio(clips / "long.wav", 100.0, rate=8000)
    soundfile.write(str(clips / "silent.wav"), np.zeros(0, dtype=np.float32), 16000)  # 0 frames
    (tmp_path / "suite.toml").write_text(INPUTS_SUITE)
    result = bench("run", "suite.toml", "--out", "results")
    assert result.returncode == 0, result.stderr
    assert "left out: long.wav (100 s), silent.wav (0 s)" in result.stderr
    run = run_dir_of(result.stdout)
    run = run if run.is_absolute() else tmp_path / run
    totals = read_samples(run).query("stage == 'total'")
    by_input = dict(zip(totals["input"], totals["status"]))
    assert by_input == {"a-good.wav": "ok", "b-torn.flac": "input_error"}
    error = totals.loc[totals["input"] == "b-torn.flac", "error"].iloc[0]
    assert error.startswith("input b-torn.flac: ") and "lost sync" in error
    summary = read_summary(run).query("stage == 'total'").iloc[0]
    assert summary["n_input_error"] == 1 and summary["failures"] == 0 and summary["failure_rate"] == 0.0
