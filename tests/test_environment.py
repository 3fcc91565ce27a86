"""Environment capture: real capture on this machine, real git repositories in tmp_path,
and a fake NVML (the only hardware we do not have) behind pynvml's own interface."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest
import torch

from benchrunner.measure.environment import (
    SUMMARY_FIELDS,
    ValidityWarning,
    capture_environment,
    diff_environments,
    environment_summary,
    environment_warnings,
    format_environment,
    parse_cpuinfo,
    read_cpu_governor,
)

TOP_LEVEL_KEYS = {"format_version", "captured_at", "host", "python", "packages", "torch", "cpu",
                  "memory", "gpus", "gpu_source", "gpu_error", "env_vars", "git"}


# --- fakes and helpers -------------------------------------------------------------------


class FakeNVML:
    """One GPU, with pynvml's function names; `as_bytes` mimics older pynvml."""

    NVMLError = pynvml.NVMLError

    def __init__(self, as_bytes: bool = False, fail_on: str | None = None):
        self.as_bytes = as_bytes
        self.fail_on = fail_on
        self.calls: list[str] = []

    def _s(self, text: str):
        return text.encode() if self.as_bytes else text

    def _call(self, name: str):
        self.calls.append(name)
        if name == self.fail_on:
            raise pynvml.NVMLError_LibraryNotFound()

    def nvmlInit(self):
        self._call("nvmlInit")

    def nvmlShutdown(self):
        self._call("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self):
        self._call("nvmlSystemGetDriverVersion")
        return self._s("550.54.15")

    def nvmlSystemGetCudaDriverVersion(self):
        self._call("nvmlSystemGetCudaDriverVersion")
        return 12040

    def nvmlDeviceGetCount(self):
        self._call("nvmlDeviceGetCount")
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        self._call("nvmlDeviceGetHandleByIndex")
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):
        self._call("nvmlDeviceGetName")
        return self._s("NVIDIA H100 80GB HBM3")

    def nvmlDeviceGetUUID(self, handle):
        self._call("nvmlDeviceGetUUID")
        return self._s("GPU-12345678-abcd-ef01-2345-6789abcdef01")

    def nvmlDeviceGetPciInfo(self, handle):
        self._call("nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=self._s("00000000:3B:00.0"))

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=85520809984, free=85000000000, used=520809984)


def git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-C", str(cwd), "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid",
           "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first")
    return path


def fake_env(**parts) -> dict:
    """A minimal capture-shaped dict; parts replace whole groups."""
    env = {
        "host": {"hostname": "box"}, "python": {"version": "3.11.7"},
        "torch": {"version": "2.13.0", "cuda": "12.4"}, "cpu": {"model": "EPYC", "governor": "performance"},
        "gpus": [], "env_vars": {}, "git": {"commit": "abc", "dirty": False},
    }
    env.update(parts)
    return env


# --- real capture ------------------------------------------------------------------------


def test_real_capture_has_every_group_and_is_json(tmp_path):
    env = capture_environment(cwd=tmp_path)
    assert TOP_LEVEL_KEYS <= env.keys()
    assert json.loads(json.dumps(env)) == env
    assert env["torch"]["version"] == torch.__version__
    assert env["torch"]["cuda"] == torch.version.cuda
    assert env["torch"]["cuda_available"] == torch.cuda.is_available()
    assert env["torch"]["num_threads"] == torch.get_num_threads()
    assert {"hostname", "os", "kernel", "machine"} <= env["host"].keys()
    assert {"version", "executable"} <= env["python"].keys()
    assert env["packages"]["torch"] is not None and env["packages"]["benchrunner"] is not None
    assert env["packages"]["numpy"] is not None
    assert {"model", "physical_cores", "logical_cores", "flags_of_interest", "governor", "freq_mhz"} <= env["cpu"].keys()
    assert env["cpu"]["logical_cores"] == os.cpu_count()
    # governor: a value, or None with the reason
    assert (env["cpu"]["governor"] is None) == (env["cpu"]["governor_error"] is not None)
    assert env["memory"]["total_bytes"] >= env["memory"]["available_bytes"] > 0
    assert env["gpu_source"] in {"nvml", "torch", "none"}
    if env["gpu_source"] == "none":
        assert env["gpus"] == [] and env["gpu_error"]
    captured = datetime.fromisoformat(env["captured_at"])
    assert captured.utcoffset() == timedelta(0)


@pytest.mark.alone
def test_real_capture_is_fast():
    capture_environment()  # first call pays for lazy imports (pynvml)
    start = time.perf_counter()
    capture_environment()
    assert time.perf_counter() - start < 1.0


def test_env_vars_only_those_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("SOME_UNRELATED_SECRET", "x")
    env_vars = capture_environment(include_gpu=False)["env_vars"]
    assert env_vars["OMP_NUM_THREADS"] == "4"
    assert env_vars["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "MKL_NUM_THREADS" not in env_vars
    assert "SOME_UNRELATED_SECRET" not in env_vars


# --- git -----------------------------------------------------------------------------------


def test_git_of_a_clean_repo(repo):
    info = capture_environment(cwd=repo, include_gpu=False)["git"]
    assert info["commit"] == git(repo, "rev-parse", "HEAD")
    assert info["dirty"] is False
    assert info["branch"] == "main"
    assert info["untracked_files"] == 0
    assert Path(info["root"]).resolve() == repo.resolve()


def test_git_dirty_counts_tracked_changes_not_untracked_files(repo):
    (repo / "new.txt").write_text("untracked\n")
    info = capture_environment(cwd=repo, include_gpu=False)["git"]
    assert info["dirty"] is False and info["untracked_files"] == 1
    (repo / "a.txt").write_text("two\n")
    info = capture_environment(cwd=repo, include_gpu=False)["git"]
    assert info["dirty"] is True


def test_git_from_a_subdirectory_and_detached_head(repo):
    sub = repo / "sub"
    sub.mkdir()
    git(repo, "checkout", "-q", "--detach")
    info = capture_environment(cwd=sub, include_gpu=False)["git"]
    assert info["commit"] == git(repo, "rev-parse", "HEAD")
    assert info["branch"] is None


def test_git_of_a_non_repo_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    info = capture_environment(cwd=plain, include_gpu=False)["git"]
    assert info["commit"] is None and info["dirty"] is None and info["branch"] is None
    assert "not a git repository" in info["error"]


def test_git_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    info = capture_environment(cwd=tmp_path, include_gpu=False)["git"]
    assert info["commit"] is None and info["error"] == "git executable not found"


# --- gpus through NVML ---------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_fake_nvml_one_gpu(as_bytes):
    nvml = FakeNVML(as_bytes=as_bytes)
    env = capture_environment(nvml=nvml)
    assert env["gpu_source"] == "nvml" and env["gpu_error"] is None
    assert env["gpus"] == [{
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-12345678-abcd-ef01-2345-6789abcdef01",
        "pci_bus_id": "00000000:3B:00.0",
        "driver_version": "550.54.15",
        "memory_total_bytes": 85520809984,
        "cuda_driver_version": "12.4",
    }]
    assert nvml.calls[0] == "nvmlInit" and nvml.calls[-1] == "nvmlShutdown"
    json.dumps(env)
    assert environment_summary(env)["gpu"] == "NVIDIA H100 80GB HBM3"
    assert environment_summary(env)["driver"] == "550.54.15"


def test_nvml_library_not_found_gives_no_gpus_and_a_reason():
    nvml = FakeNVML(fail_on="nvmlInit")
    env = capture_environment(nvml=nvml)
    assert "NVMLError_LibraryNotFound" in env["gpu_error"]
    assert env["gpu_source"] == ("torch" if torch.cuda.is_available() else "none")
    if not torch.cuda.is_available():
        assert env["gpus"] == []
    assert "nvmlShutdown" not in nvml.calls


def test_nvml_failing_after_init_still_shuts_down():
    nvml = FakeNVML(fail_on="nvmlDeviceGetCount")
    env = capture_environment(nvml=nvml)
    assert env["gpu_error"] and nvml.calls[-1] == "nvmlShutdown"


def test_unsupported_nvml_query_gives_none_for_that_field():
    nvml = FakeNVML(fail_on="nvmlSystemGetCudaDriverVersion")
    env = capture_environment(nvml=nvml)
    assert env["gpu_source"] == "nvml"
    assert env["gpus"][0]["cuda_driver_version"] is None
    assert env["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_real_pynvml_without_a_driver_never_raises():
    env = capture_environment()  # default: import pynvml
    if env["gpu_source"] != "nvml":
        assert env["gpu_error"]


def test_include_gpu_false_does_not_touch_nvml():
    nvml = FakeNVML()
    env = capture_environment(nvml=nvml, include_gpu=False)
    assert nvml.calls == [] and env["gpus"] == [] and env["gpu_source"] == "none"


# --- cpu parsing ---------------------------------------------------------------------------


def test_parse_cpuinfo_first_block_only():
    text = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni amx_tile hypervisor\n\n"
            "processor\t: 1\nmodel name\t: Something else\n")
    info = parse_cpuinfo(text)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags_of_interest"] == ["sse4_2", "avx2", "avx512f", "avx512_vnni", "amx_tile"]
    assert info["virtualized"] is True


def test_governor_from_sysfs_tree(tmp_path):
    for cpu, gov in (("cpu0", "performance"), ("cpu1", "performance")):
        (tmp_path / cpu / "cpufreq").mkdir(parents=True)
        (tmp_path / cpu / "cpufreq" / "scaling_governor").write_text(gov + "\n")
    assert read_cpu_governor(tmp_path) == ("performance", None)
    (tmp_path / "cpu1" / "cpufreq" / "scaling_governor").write_text("powersave\n")
    assert read_cpu_governor(tmp_path) == ("performance,powersave", None)


def test_governor_unreadable_gives_a_reason(tmp_path):
    governor, reason = read_cpu_governor(tmp_path)
    assert governor is None and "scaling_governor" in reason


# --- summary, diff, format -----------------------------------------------------------------


def test_summary_fields_and_tolerates_partial_env():
    assert tuple(environment_summary(fake_env())) == SUMMARY_FIELDS
    assert environment_summary({}) == dict.fromkeys(SUMMARY_FIELDS)


def test_diff_environments():
    a = capture_environment(nvml=FakeNVML())
    b = copy.deepcopy(a)
    assert diff_environments(a, b) == []
    b["torch"]["version"] = "9.9.9"
    b["git"]["commit"] = "deadbeef"
    b["captured_at"] = "2000-01-01T00:00:00+00:00"  # not a summary field
    assert diff_environments(a, b) == [
        ("torch", torch.__version__, "9.9.9"),
        ("commit", a["git"]["commit"], "deadbeef"),
    ]
    assert diff_environments(a, b, fields=["commit"]) == [("commit", a["git"]["commit"], "deadbeef")]
    b["gpus"] = []
    assert ("gpu", "NVIDIA H100 80GB HBM3", None) in diff_environments(a, b)
    with pytest.raises(ValueError, match="unknown summary field"):
        diff_environments(a, b, fields=["colour"])


def test_format_environment_shows_torch_version_in_aligned_sections():
    env = capture_environment(nvml=FakeNVML())
    text = format_environment(env)
    assert torch.__version__ in text
    for title in ("Host", "Python", "PyTorch", "CPU", "GPU", "Packages", "Git"):
        assert f"== {title} ==" in text
    assert "NVIDIA H100 80GB HBM3" in text
    rows = [line for line in text.splitlines() if line and not line.startswith("==")]
    value_columns = {re.match(r"[^:]+:\s+", line).end() for line in rows}
    assert len(value_columns) == 1  # every value starts in the same column


def test_format_environment_of_a_partial_env():
    assert "N/A" in format_environment({})


# --- warnings ------------------------------------------------------------------------------


def test_governor_warning_with_fix():
    warnings = environment_warnings(fake_env(cpu={"model": "EPYC", "governor": "powersave"}))
    assert [w.code for w in warnings] == ["cpu_governor"]
    assert "powersave" in warnings[0].message
    assert warnings[0].fix == "sudo cpupower frequency-set -g performance"


def test_no_warning_for_performance_or_unreadable_governor():
    assert environment_warnings(fake_env()) == []
    unreadable = fake_env(cpu={"governor": None, "governor_error": "no cpufreq"})
    assert environment_warnings(unreadable) == []


def test_device_order_warning_only_with_several_gpus():
    two = [{"index": 0, "name": "A"}, {"index": 1, "name": "A"}]
    assert [w.code for w in environment_warnings(fake_env(gpus=two))] == ["cuda_device_order"]
    ordered = fake_env(gpus=two, env_vars={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert environment_warnings(ordered) == []
    assert environment_warnings(fake_env(gpus=two[:1])) == []


def test_dirty_tree_warning_from_a_real_repo(repo):
    (repo / "a.txt").write_text("changed\n")
    env = capture_environment(cwd=repo, include_gpu=False)
    env["cpu"]["governor"] = "performance"
    warnings = environment_warnings(env)
    assert [w.code for w in warnings] == ["git_dirty"]
    assert "commit" in warnings[0].fix


def test_every_warning_has_a_fix():
    env = fake_env(cpu={"governor": "ondemand"}, gpus=[{"name": "A"}, {"name": "B"}],
                   git={"commit": "abc", "dirty": True})
    warnings = environment_warnings(env)
    assert len(warnings) == 3
    assert all(isinstance(w, ValidityWarning) and w.message and w.fix for w in warnings)


def test_source_commits_come_from_where_the_code_lives_not_the_working_directory(tmp_path, monkeypatch):
    """The pipeline's and benchrunner's commits are read from their own folders, so a run
    started from any directory (here one outside every repository) still records them."""
    import subprocess
    from pathlib import Path

    import benchrunner
    from benchrunner.measure.environment import source_commits

    monkeypatch.chdir(tmp_path)
    root = Path(benchrunner.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    found = source_commits("benchrunner.pipelines.reference:build")
    if head.returncode == 0:
        assert found["benchrunner"]["commit"] == head.stdout.strip()
        assert found["pipeline"]["commit"] == head.stdout.strip()
    outside = tmp_path / "outside_pipe.py"
    outside.write_text("def build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    alone = source_commits("outside_pipe:build")
    assert alone["pipeline"]["commit"] is None and "not a git repository" in alone["pipeline"]["error"]
    missing = source_commits("no_such_module_xyz:build")
    assert missing["pipeline"]["commit"] is None and "cannot locate" in missing["pipeline"]["error"]
