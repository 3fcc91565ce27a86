"""Environment capture for benchmark manifests, in the spirit of torch.utils.collect_env.

`capture_environment()` returns one JSON-serialisable dict describing the machine, the
software stack and the source tree a run was made with. Each collector is a small function
that never raises for a missing piece of the environment: it records None and, where it
matters, the reason. Nothing here prints, spawns pip, or creates a CUDA context; the only
subprocesses are a few `git -C cwd ...` calls.

`environment_summary()` / `diff_environments()` reduce two captures to the fields that
decide whether their timings are comparable; `environment_warnings()` lists what in the
static environment makes timings less trustworthy, each with its fix.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .nvml_backend import nvml_text
from ..errors import scrub

FORMAT_VERSION = 1

# Packages whose versions go into every manifest, besides benchrunner's own requirements
# (read from its installed metadata, so this list does not duplicate pyproject.toml).
_CORE_PACKAGES = ("torch", "numpy", "pandas", "scipy", "psutil", "nvidia-ml-py")
_EXTRA_PACKAGES = ("torchvision", "torchaudio", "triton")

# CPU flags that change which kernels torch runs (x86 names, then Arm names).
_CPU_FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16",
)

# Environment variables that change what is measured; recorded only when set.
_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING",
    "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "OMP_PROC_BIND", "OMP_PLACES", "KMP_AFFINITY", "KMP_BLOCKTIME", "GOMP_CPU_AFFINITY",
    "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "LD_PRELOAD",
)
_ENV_PREFIXES = ("PYTORCH_", "TORCHINDUCTOR_", "TORCH_CUDNN_", "NCCL_")

_SYS_CPU = Path("/sys/devices/system/cpu")
_GIT_TIMEOUT_S = 5.0

SUMMARY_FIELDS = ("gpu", "driver", "cuda", "torch", "commit", "cpu_model", "python", "host")


# ---------------------------------------------------------------------------------------
# capture


def capture_environment(*, cwd: Path | None = None, nvml=None, include_gpu: bool = True) -> dict:
    """Capture the environment of this process as a JSON-serialisable dict.

    Keys: format_version, captured_at (UTC ISO-8601), host, python, packages, torch, cpu,
    memory, gpus, gpu_source ("nvml" | "torch" | "none"), gpu_error (why NVML was not
    usable, else None), env_vars (only those set), git (of `cwd`, default the current
    directory).

    `nvml` is a module-like object with pynvml's function names (default: `import pynvml`).
    NVML lists every GPU the driver sees, in PCI bus order, whatever CUDA_VISIBLE_DEVICES
    says; the torch fallback (used only when NVML fails and torch sees CUDA) lists the
    devices visible to this process, in CUDA order, without driver versions.
    """
    gpus, gpu_source, gpu_error = _collect_gpus(nvml, include_gpu)
    return {
        "format_version": FORMAT_VERSION,
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": _collect_host(),
        "python": _collect_python(),
        "packages": _collect_packages(),
        "torch": _collect_torch(),
        "cpu": _collect_cpu(),
        "memory": _collect_memory(),
        "gpus": gpus,
        "gpu_source": gpu_source,
        "gpu_error": gpu_error,
        "env_vars": _collect_env_vars(),
        "git": _collect_git(Path.cwd() if cwd is None else Path(cwd)),
    }


def _collect_host() -> dict:
    distro = None
    try:
        distro = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "distro": distro,
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def _collect_python() -> dict:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def _requirement_name(requirement: str) -> str | None:
    """'torch>=2.1' -> 'torch'; None for a requirement behind an extra ('pytest; extra == "dev"')."""
    if re.search(r";.*\bextra\s*==", requirement):
        return None
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else None


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _collect_packages() -> dict[str, str | None]:
    """Installed versions (importlib.metadata, no pip subprocess); None when absent."""
    try:
        requirements = importlib.metadata.requires("benchrunner") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    names = ["benchrunner", *_CORE_PACKAGES]
    names += [n for n in map(_requirement_name, requirements) if n]
    names += _EXTRA_PACKAGES
    return {name: _package_version(name) for name in dict.fromkeys(names)}


def _collect_torch() -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"version": None, "error": f"{type(exc).__name__}: {exc}"}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    cuda_available = torch.cuda.is_available()
    return {
        "version": torch.__version__,
        "git_version": getattr(torch.version, "git_version", None),
        "debug": bool(getattr(torch.version, "debug", False)),
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": cudnn,
        "cuda_available": cuda_available,
        "cuda_device_count": torch.cuda.device_count() if cuda_available else 0,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkl_available": torch.backends.mkl.is_available(),
        "openmp_available": torch.backends.openmp.is_available(),
    }


# --- cpu ---------------------------------------------------------------------------------


def parse_cpuinfo(text: str) -> dict:
    """Model name and flags of interest from the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or fields.get("hardware") or fields.get("processor")
    flag_text = fields.get("flags", fields.get("features"))
    flags = set(flag_text.split()) if flag_text is not None else None
    return {
        "model": model or None,
        "flags_of_interest": None if flags is None else [f for f in _CPU_FLAGS_OF_INTEREST if f in flags],
        "virtualized": None if flags is None else "hypervisor" in flags,
    }


def read_cpu_governor(sys_cpu: Path = _SYS_CPU) -> tuple[str | None, str | None]:
    """(governor, reason). The governor is the common value over all CPUs, or the sorted
    distinct values joined by ',' when they differ; (None, reason) when unreadable."""
    paths = sorted(sys_cpu.glob("cpu[0-9]*/cpufreq/scaling_governor"))
    if not paths:
        return None, (f"no {sys_cpu}/cpu*/cpufreq/scaling_governor "
                      "(no cpufreq driver: virtual machine, container or cpufreq disabled)")
    values = set()
    for path in paths:
        try:
            values.add(path.read_text().strip())
        except OSError as exc:
            return None, f"cannot read {path}: {type(exc).__name__}: {exc.strerror or exc}"
    return ",".join(sorted(values)), None


def _collect_cpu() -> dict:
    import psutil

    try:
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        info = {"model": platform.processor() or None, "flags_of_interest": None, "virtualized": None}
    governor, governor_error = read_cpu_governor()
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    try:
        affinity_cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity_cores = None
    return {
        **info,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": os.cpu_count(),
        "affinity_cores": affinity_cores,
        "governor": governor,
        "governor_error": governor_error,
        "freq_mhz": round(freq.current, 1) if freq and freq.current else None,
        "max_freq_mhz": round(freq.max, 1) if freq and freq.max else None,
    }


def _collect_memory() -> dict:
    import psutil

    mem = psutil.virtual_memory()
    return {"total_bytes": int(mem.total), "available_bytes": int(mem.available)}


# --- gpus --------------------------------------------------------------------------------




def _cuda_version_text(value: int | None) -> str | None:
    """NVML's integer CUDA version (12040) as '12.4'."""
    if value is None:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _nvml_error_types(nvml) -> tuple[type[BaseException], ...]:
    types = []
    own = getattr(nvml, "NVMLError", None)
    if isinstance(own, type) and issubclass(own, BaseException):
        types.append(own)
    try:
        import pynvml

        types.append(pynvml.NVMLError)
    except ImportError:
        pass
    return tuple(types)


def _gpus_from_nvml(nvml) -> list[dict]:
    """Every GPU NVML sees. Raises the library's NVMLError when NVML itself is unusable;
    a single query a device does not support gives None for that field."""
    errors = _nvml_error_types(nvml)

    def query(fn, *args):
        try:
            return fn(*args)
        except errors:
            return None

    nvml.nvmlInit()
    try:
        driver = nvml_text(query(nvml.nvmlSystemGetDriverVersion))
        cuda_driver = _cuda_version_text(query(nvml.nvmlSystemGetCudaDriverVersion))
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            pci = query(nvml.nvmlDeviceGetPciInfo, handle)
            memory = query(nvml.nvmlDeviceGetMemoryInfo, handle)
            gpus.append({
                "index": index,
                "name": nvml_text(query(nvml.nvmlDeviceGetName, handle)),
                "uuid": nvml_text(query(nvml.nvmlDeviceGetUUID, handle)),
                "pci_bus_id": nvml_text(getattr(pci, "busId", None)),
                "driver_version": driver,
                "memory_total_bytes": int(memory.total) if memory is not None else None,
                "cuda_driver_version": cuda_driver,
            })
        return gpus
    finally:
        query(nvml.nvmlShutdown)


def _gpus_from_torch() -> list[dict]:
    """Devices visible to this process through torch.cuda (no driver versions)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        bus = getattr(props, "pci_bus_id", None)
        pci = (f"{getattr(props, 'pci_domain_id', 0):08X}:{bus:02X}:"
               f"{getattr(props, 'pci_device_id', 0):02X}.0") if bus is not None else None
        uuid = getattr(props, "uuid", None)
        gpus.append({
            "index": index,
            "name": props.name,
            "uuid": f"GPU-{uuid}" if uuid is not None else None,
            "pci_bus_id": pci,
            "driver_version": None,
            "memory_total_bytes": int(props.total_memory),
            "cuda_driver_version": None,
        })
    return gpus


def _collect_gpus(nvml, include_gpu: bool) -> tuple[list[dict], str, str | None]:
    """(gpus, gpu_source, gpu_error); never raises for a missing driver or library."""
    if not include_gpu:
        return [], "none", "not collected (include_gpu=False)"
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as exc:
            nvml, error = None, f"pynvml not importable: {exc}"
    if nvml is not None:
        try:
            return _gpus_from_nvml(nvml), "nvml", None
        except _nvml_error_types(nvml) as exc:
            error = f"{type(exc).__name__}: {exc}"
    gpus = _gpus_from_torch()
    return gpus, ("torch" if gpus else "none"), error


# --- process environment and source tree -------------------------------------------------


def _collect_env_vars() -> dict[str, str]:
    return {
        name: scrub(value)
        for name, value in sorted(os.environ.items())
        if name in _ENV_VARS or name.startswith(_ENV_PREFIXES)
    }


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of `git -C cwd args...`, or None when it fails. Optional locks are off so
    that capturing never blocks or disturbs another git process in the same tree."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    result = subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True, text=True, env=env, timeout=_GIT_TIMEOUT_S, check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _collect_git(cwd: Path) -> dict:
    """commit, dirty (tracked files modified or staged; untracked files are counted
    separately in untracked_files), branch (None when detached) of cwd's repository."""
    empty = {"root": None, "commit": None, "dirty": None, "untracked_files": None, "branch": None}
    try:
        root = _git(cwd, "rev-parse", "--show-toplevel")
        if root is None:
            return {**empty, "error": f"not a git repository: {cwd}"}
        status = _git(cwd, "status", "--porcelain=v1", "--untracked-files=normal")
        lines = status.splitlines() if status is not None else None
        return {
            "root": root,
            "commit": _git(cwd, "rev-parse", "--verify", "-q", "HEAD"),
            "dirty": None if lines is None else any(not line.startswith("??") for line in lines),
            "untracked_files": None if lines is None else sum(line.startswith("??") for line in lines),
            "branch": _git(cwd, "symbolic-ref", "--short", "-q", "HEAD"),
            "error": None,
        }
    except FileNotFoundError:
        return {**empty, "error": "git executable not found"}
    except subprocess.TimeoutExpired:
        return {**empty, "error": f"git timed out after {_GIT_TIMEOUT_S} s"}


# ---------------------------------------------------------------------------------------
# comparing and presenting captures


def _gpu_names(env: dict) -> str | None:
    names = [gpu.get("name") or "?" for gpu in env.get("gpus") or []]
    if not names:
        return None
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"
    return ", ".join(names)


def environment_summary(env: dict) -> dict[str, str | None]:
    """The flat fields that decide whether two runs are comparable (SUMMARY_FIELDS).
    Missing parts of `env` (older or partial manifests) give None."""
    gpus = env.get("gpus") or []
    return {
        "gpu": _gpu_names(env),
        "driver": gpus[0].get("driver_version") if gpus else None,
        "cuda": (env.get("torch") or {}).get("cuda"),
        "torch": (env.get("torch") or {}).get("version"),
        "commit": (env.get("git") or {}).get("commit"),
        "cpu_model": (env.get("cpu") or {}).get("model"),
        "python": (env.get("python") or {}).get("version"),
        "host": (env.get("host") or {}).get("hostname"),
    }


def diff_environments(a: dict, b: dict, fields: Sequence[str] | None = None) -> list[tuple[str, str | None, str | None]]:
    """(field, a_value, b_value) for each summary field (default: all) that differs,
    in the order of `fields`. Raises ValueError for a field that is not a summary field."""
    fields = SUMMARY_FIELDS if fields is None else tuple(fields)
    unknown = [f for f in fields if f not in SUMMARY_FIELDS]
    if unknown:
        raise ValueError(f"unknown summary field(s) {unknown}; known: {list(SUMMARY_FIELDS)}")
    sa, sb = environment_summary(a), environment_summary(b)
    return [(f, sa[f], sb[f]) for f in fields if sa[f] != sb[f]]


def _show(value: Any, reason: str | None = None) -> str:
    if value is None:
        return f"N/A ({reason})" if reason else "N/A"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "(none)"
    return str(value)


def _gib(num_bytes: int | None) -> str | None:
    return None if num_bytes is None else f"{num_bytes / 2**30:.1f} GiB"


def _sections(env: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    host, py = env.get("host") or {}, env.get("python") or {}
    torch_, cpu = env.get("torch") or {}, env.get("cpu") or {}
    mem, git = env.get("memory") or {}, env.get("git") or {}
    gpu_rows = [
        (f"GPU {g.get('index')}", f"{_show(g.get('name'))} | {_show(_gib(g.get('memory_total_bytes')))} | "
                                   f"{_show(g.get('pci_bus_id'))} | {_show(g.get('uuid'))}")
        for g in env.get("gpus") or []
    ]
    gpus = env.get("gpus") or []
    return [
        ("Host", [
            ("Hostname", _show(host.get("hostname"))),
            ("OS", _show(host.get("distro") or host.get("os"))),
            ("Kernel", _show(host.get("kernel"))),
            ("Machine", _show(host.get("machine"))),
        ]),
        ("Python", [
            ("Python version", _show(py.get("version"))),
            ("Python executable", _show(py.get("executable"))),
        ]),
        ("PyTorch", [
            ("PyTorch version", _show(torch_.get("version"), torch_.get("error"))),
            ("Is debug build", _show(torch_.get("debug"))),
            ("CUDA used to build PyTorch", _show(torch_.get("cuda"))),
            ("cuDNN version", _show(torch_.get("cudnn"))),
            ("Is CUDA available", _show(torch_.get("cuda_available"))),
            ("Threads (intra / inter-op)",
             f"{_show(torch_.get('num_threads'))} / {_show(torch_.get('num_interop_threads'))}"),
            ("MKL-DNN / MKL / OpenMP", " / ".join(
                _show(torch_.get(k)) for k in ("mkldnn_available", "mkl_available", "openmp_available"))),
        ]),
        ("CPU", [
            ("CPU model", _show(cpu.get("model"))),
            ("Cores (physical / logical / usable)", " / ".join(
                _show(cpu.get(k)) for k in ("physical_cores", "logical_cores", "affinity_cores"))),
            ("Flags of interest", _show(cpu.get("flags_of_interest"))),
            ("Virtualized", _show(cpu.get("virtualized"))),
            ("Frequency governor", _show(cpu.get("governor"), cpu.get("governor_error"))),
            ("Frequency (MHz)", _show(cpu.get("freq_mhz"))),
        ]),
        ("Memory", [
            ("Total", _show(_gib(mem.get("total_bytes")))),
            ("Available", _show(_gib(mem.get("available_bytes")))),
        ]),
        ("GPU", [
            ("GPU source", _show(env.get("gpu_source"))),
            *([("NVML error", _show(env.get("gpu_error")))] if env.get("gpu_error") else []),
            ("Nvidia driver version", _show(gpus[0].get("driver_version") if gpus else None)),
            ("CUDA driver version", _show(gpus[0].get("cuda_driver_version") if gpus else None)),
            *(gpu_rows or [("GPUs", "(none)")]),
        ]),
        ("Packages", [(name, _show(version, "not installed"))
                      for name, version in (env.get("packages") or {}).items()]),
        ("Environment variables", [(k, v) for k, v in (env.get("env_vars") or {}).items()]
         or [("Set", "(none of interest)")]),
        ("Git", [
            ("Commit", _show(git.get("commit"), git.get("error"))),
            ("Branch", _show(git.get("branch"))),
            ("Dirty", _show(git.get("dirty"))),
            ("Untracked files", _show(git.get("untracked_files"))),
        ]),
        ("Capture", [("Captured at (UTC)", _show(env.get("captured_at")))]),
    ]


def format_environment(env: dict) -> str:
    """Human-readable text in the style of torch.utils.collect_env: one block per section,
    'Key: value' lines with the values aligned across the whole report."""
    sections = _sections(env)
    width = max(len(key) for _, rows in sections for key, _ in rows) + 1
    blocks = []
    for title, rows in sections:
        lines = [f"== {title} =="]
        lines += [f"{key + ':':<{width}} {value}".rstrip() for key, value in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def source_commits(pipeline_ref: str) -> dict:
    """The git state of the pipeline's own source and of benchrunner's, found from where their
    modules live (not from the working directory, which may be any folder): {"pipeline": ...,
    "benchrunner": ...}, each as _collect_git gives it (an "error" when not in a repository)."""
    import importlib.util

    module = str(pipeline_ref).partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
        origin = Path(spec.origin).parent if spec is not None and spec.origin else None
    except (ImportError, ValueError, AttributeError) as exc:
        origin, reason = None, f"cannot locate {module}: {exc.__class__.__name__}"
    else:
        reason = f"cannot locate {module}"
    pipeline = _collect_git(origin) if origin is not None else {"commit": None, "error": reason}
    return {"pipeline": pipeline, "benchrunner": _collect_git(Path(__file__).resolve().parent)}


# ---------------------------------------------------------------------------------------
# validity warnings


@dataclass(frozen=True)
class ValidityWarning:
    """Something that makes timings less trustworthy; every warning comes with its fix.

    code: "cpu_governor", "cuda_device_order", "git_dirty" here; runtime checks add
    "gpu_other_process", "gpu_throttle", "clock_change", "high_cv", "too_few_samples".
    """

    code: str
    message: str
    fix: str


def environment_warnings(env: dict) -> list[ValidityWarning]:
    """Warnings from the static environment only. An unreadable governor gives no warning
    (its reason stays in env['cpu']['governor_error'] and in format_environment)."""
    warnings = []
    governor = (env.get("cpu") or {}).get("governor")
    if governor is not None and governor != "performance":
        warnings.append(ValidityWarning(
            "cpu_governor",
            f"CPU frequency governor is {governor!r}, not 'performance': clocks follow the load, "
            "which adds noise and drift to timings",
            "sudo cpupower frequency-set -g performance",
        ))
    gpus = env.get("gpus") or []
    order = (env.get("env_vars") or {}).get("CUDA_DEVICE_ORDER")
    if len(gpus) > 1 and order != "PCI_BUS_ID":
        warnings.append(ValidityWarning(
            "cuda_device_order",
            f"{len(gpus)} GPUs and CUDA_DEVICE_ORDER is {order or 'unset'}: CUDA numbers devices "
            "fastest first, so cuda:N may not be GPU N of nvidia-smi/NVML, and the GPU recorded "
            "may not be the one measured",
            "export CUDA_DEVICE_ORDER=PCI_BUS_ID",
        ))
    git = env.get("git") or {}
    if git.get("dirty"):
        warnings.append(ValidityWarning(
            "git_dirty",
            f"the working tree of {git.get('root') or 'the repository'} has uncommitted changes, "
            f"so the results are not those of commit {git.get('commit') or '(none)'}",
            "commit the changes before benchmarking: results are tied to a commit",
        ))
    return warnings
