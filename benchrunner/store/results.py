"""The on-disk schema of a run: one writer and one reader for each file.

results/<run_id>/
  samples.csv    one row per case x repeat x stage ("total" = end to end), append-only
  timeline.csv   background sampler readings: case_id, t_ms, metric, value
  summary.csv    one row per case x stage, computed from samples.csv
  manifest.json  the suite as loaded, argv, times, status, environment, warnings
  worker.log     what the pipeline itself printed (stdout and stderr of every worker), appended
  report.json    where `bench report` last wrote the run's reports (so `bench post` finds them)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..errors import UserError

SCHEMA_VERSION = 4  # 2: peak_mem_bytes absolute on both devices; growth columns added. 3: host, gpu, worker.
                    # 4: accuracy against a reference variant, and the variant's size and set-up cost
TOTAL_STAGE = "total"
WORKER_LOG = "worker.log"
REPORT_LOCATION = "report.json"
# the values of the status column (benchrunner.run.failures classifies exceptions into them)
OK, OOM, ERROR, TIMEOUT, CRASH = "ok", "oom", "error", "timeout", "crash"
STATUSES = (OK, OOM, ERROR, TIMEOUT, CRASH)
FAILURE_KINDS = (OOM, ERROR, TIMEOUT, CRASH)

SAMPLE_COLUMNS = [
    "schema_version", "run_id", "case_id", "suite", "pipeline", "variant", "mode", "threshold_s", "clip_s",
    "executed_as", "repeat", "stage", "status", "error", "latency_ms", "peak_mem_bytes", "peak_mem_growth_bytes",
    "peak_mem_reserved_bytes", "reserved_growth_bytes", "device_mem_bytes", "baseline_mem_bytes", "mem_source",
    "util_mean_pct", "util_p95_pct", "util_samples", "util_source", "io_wait_ms", "chunks", "retries", "quality_snr_db",
    "quality_max_abs_err", "accuracy_reference", "accuracy_snr_db", "accuracy_max_abs_err",
    "accuracy_mean_abs_err", "accuracy_argmax_agree_pct", "accuracy_streams", "variant_backend", "variant_param_bytes",
    "variant_file_bytes", "variant_setup_ms", "input", "device", "timer_source", "started_at", "host", "gpu",
    "worker",
]
# host, gpu, worker: where a row was measured: the machine, the GPU ("<name> (<uuid>)", blank on a
# CPU worker) and the executor's worker that ran it ("w0", "w1", ...); filled by the driver (runner).
SAMPLE_DTYPES = {
    "schema_version": "Int64", "repeat": "Int64", "chunks": "Int64", "retries": "Int64", "util_samples": "Int64",
    "threshold_s": "float64", "clip_s": "float64", "latency_ms": "float64", "peak_mem_bytes": "float64",
    "peak_mem_reserved_bytes": "float64", "device_mem_bytes": "float64", "peak_mem_growth_bytes": "float64",
    "reserved_growth_bytes": "float64", "baseline_mem_bytes": "float64",
    "util_mean_pct": "float64", "util_p95_pct": "float64", "io_wait_ms": "float64", "quality_snr_db": "float64",
    "quality_max_abs_err": "float64", "accuracy_snr_db": "float64", "accuracy_max_abs_err": "float64",
    "accuracy_mean_abs_err": "float64", "accuracy_argmax_agree_pct": "float64", "variant_param_bytes": "float64",
    "variant_file_bytes": "float64", "variant_setup_ms": "float64",
}
TIMELINE_COLUMNS = ["case_id", "repeat", "t_ms", "metric", "value"]
CASE_KEY = ["pipeline", "variant", "mode", "threshold_s", "clip_s"]


def now_iso() -> str:
    """The time stamps of the run folder (samples.csv started_at, manifest.json, lock files): UTC, ms."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def gpu_model(gpu: Any) -> str:
    """The model part of a ``gpu`` value ("NVIDIA A100-SXM4-80GB (GPU-<uuid>)" -> the name): what
    makes two GPUs the same hardware for a comparison; blank for a CPU worker or an old run."""
    return "" if gpu is None or gpu is pd.NA or (isinstance(gpu, float) and math.isnan(gpu)) \
        else str(gpu).split(" (", 1)[0]


def hardware_of(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """The (host, GPU model) pairs that measured ``rows``; empty when not recorded (before schema 3)."""
    if "host" not in rows.columns or rows.empty:
        return set()
    found = {(str(h), gpu_model(g)) for h, g in zip(rows["host"].fillna(""), rows["gpu"])}
    return {pair for pair in found if pair[0]}


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(round(value, 6)) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return value


def _csv_text(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def _append_durably(path: Path, text: str, columns: list[str]) -> None:
    """Append ``text`` with one write, then flush and fsync: a kill leaves whole cases only
    (a power cut may tear the last line; readers drop a torn line). Rows of another schema
    are never appended to a file (a run written by an older version cannot be resumed)."""
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n")
        if header != ",".join(columns):
            raise UserError(f"{path}: written with other columns (an older schema); expected "
                            f"schema_version {SCHEMA_VERSION}: start a new run instead of resuming this one")
    payload = (",".join(columns) + "\n" if new else "") + text
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


class RunFiles:
    """Paths of one run folder, and the writers that append to them."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.samples = self.dir / "samples.csv"
        self.timeline = self.dir / "timeline.csv"
        self.summary = self.dir / "summary.csv"
        self.manifest = self.dir / "manifest.json"

    def append_case(self, rows: list[Mapping[str, Any]], timeline: list[Mapping[str, Any]]) -> None:
        """All rows of one case, written at once. The timeline goes first: a case counts as
        done when its sample rows exist."""
        if timeline:
            _append_durably(self.timeline, _csv_text(timeline, TIMELINE_COLUMNS), TIMELINE_COLUMNS)
        _append_durably(self.samples, _csv_text(rows, SAMPLE_COLUMNS), SAMPLE_COLUMNS)

    def write_summary(self, frame: pd.DataFrame) -> None:
        tmp = self.summary.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, self.summary)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        tmp = self.manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest)


def _rewrite(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _drop_torn_tail(path: Path, n_columns: int) -> str | None:
    """Cut a last line that a power cut left without its newline or its fields."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    text = path.read_text(encoding="utf-8")
    body = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    records = list(csv.reader(io.StringIO(body)))
    n_columns = len(records[0]) if records else n_columns  # the file's own header decides
    if records and len(records[-1]) != n_columns:
        body = body[: body.rstrip("\n").rfind("\n") + 1]
    if body == text:
        return None
    _rewrite(path, body)
    return f"{path.name}: dropped a torn last line ({len(text) - len(body)} bytes) left by an interrupted write"


def _case_is_complete(rows: pd.DataFrame, repeats: int) -> bool:
    """A case's rows end with a ``total`` row of its last repeat, or of a repeat that ended the
    case (timeout, crash)."""
    last = rows.iloc[-1]
    return last["stage"] == TOTAL_STAGE and (int(last["repeat"]) == repeats - 1 or last["status"] in
                                             ("timeout", "crash"))


def repair_run(run_dir: Path, repeats: int) -> tuple[set[str], list[str]]:
    """Make a run folder consistent before resuming it: drop torn last lines, drop the rows of a
    last case that was cut short, and drop timeline rows of cases without complete samples.
    Returns the ids of the complete cases and one note per repair."""
    files = RunFiles(run_dir)
    notes = [n for n in (_drop_torn_tail(files.samples, len(SAMPLE_COLUMNS)),
                         _drop_torn_tail(files.timeline, len(TIMELINE_COLUMNS))) if n]
    samples = read_samples(run_dir)
    complete = set(samples["case_id"])
    if len(samples):
        last_case = samples.iloc[-1]["case_id"]
        if not _case_is_complete(samples[samples["case_id"] == last_case], repeats):
            complete.discard(last_case)
            kept = samples[samples["case_id"] != last_case]
            _rewrite(files.samples, ",".join(SAMPLE_COLUMNS) + "\n" + _csv_text(kept.to_dict("records"),
                                                                                 SAMPLE_COLUMNS))
            notes.append(f"samples.csv: dropped {len(samples) - len(kept)} rows of case {last_case}, "
                         "cut short; it runs again")
    timeline = read_timeline(run_dir)
    if len(timeline) and not timeline["case_id"].isin(complete).all():
        kept = timeline[timeline["case_id"].isin(complete)]
        _rewrite(files.timeline, ",".join(TIMELINE_COLUMNS) + "\n" + _csv_text(kept.to_dict("records"),
                                                                                TIMELINE_COLUMNS))
    return complete, notes


def read_samples(run_dir: Path) -> pd.DataFrame:
    """samples.csv as a DataFrame with typed columns; an empty frame when there is none."""
    path = Path(run_dir) / "samples.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=SAMPLE_DTYPES.get(c, "object")) for c in SAMPLE_COLUMNS})
    frame = pd.read_csv(path, dtype={c: t for c, t in SAMPLE_DTYPES.items()}, keep_default_na=False,
                        na_values={c: [""] for c in SAMPLE_DTYPES})
    return upgrade_samples(frame)


_CPU_MEM_SOURCES = ("rss_hwm", "rss_sampled")


def upgrade_samples(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of an older schema in today's meaning, exactly: schema 1 had no growth columns,
    and on the CPU its ``peak_mem_bytes`` was the growth over ``baseline_mem_bytes`` (the
    RSS before the repeat), so the absolute peak is their sum. Columns added since come
    back blank where they were not measured."""
    frame = frame.copy()
    for column in SAMPLE_COLUMNS:
        if column not in frame:
            dtype = SAMPLE_DTYPES.get(column, "object")
            frame[column] = pd.Series(float("nan") if dtype == "float64" else pd.NA, index=frame.index, dtype=dtype)
    if frame.empty:
        return frame[SAMPLE_COLUMNS + [c for c in frame.columns if c not in SAMPLE_COLUMNS]]
    version = pd.to_numeric(frame["schema_version"], errors="coerce")
    v1 = (version < 2).fillna(False).astype(bool)  # every schema-1 file wrote its version on each row
    if v1.any():
        peak, base = frame["peak_mem_bytes"], frame["baseline_mem_bytes"]
        cpu = v1 & frame["mem_source"].isin(_CPU_MEM_SOURCES)
        cuda = v1 & ~frame["mem_source"].isin(_CPU_MEM_SOURCES)
        frame.loc[cpu, "peak_mem_growth_bytes"] = peak[cpu]
        frame.loc[cpu, "peak_mem_bytes"] = peak[cpu] + base[cpu]
        frame.loc[cuda, "peak_mem_growth_bytes"] = peak[cuda] - base[cuda]
    return frame[SAMPLE_COLUMNS + [c for c in frame.columns if c not in SAMPLE_COLUMNS]]


def samples_schema_matches(run_dir: Path) -> bool:
    """True when samples.csv (if any) has today's columns, so rows can be appended to it."""
    path = Path(run_dir) / "samples.csv"
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    return header == SAMPLE_COLUMNS


def read_timeline(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "timeline.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    return pd.read_csv(path)


def read_summary(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "summary.csv", keep_default_na=False, na_values=[""])


def read_manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))


# --- where the reports went (report.json) ------------------------------------------------

def write_report_location(run_dir: Path, out_dir: Path, paths: Iterable[Path]) -> Path:
    """Record in the run folder where its reports were written (absolute paths)."""
    target = Path(run_dir) / REPORT_LOCATION
    record = {"out_dir": str(Path(out_dir).resolve()), "files": [str(Path(p).resolve()) for p in paths],
              "written_at": now_iso()}
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_report_location(run_dir: Path) -> Path | None:
    """The folder ``bench report`` last wrote the run's reports into, or None when it has not
    recorded one (or the record is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / REPORT_LOCATION).read_text(encoding="utf-8"))
        return Path(record["out_dir"]) if isinstance(record, dict) and isinstance(record.get("out_dir"), str) else None
    except (OSError, ValueError):
        return None


def worker_log_tail(run_dir: Path | None, lines: int = 5, *, log_path: Path | None = None) -> list[str]:
    """The last ``lines`` non-blank lines of the run's worker log ([] when there is none)."""
    path = log_path or (Path(run_dir) / WORKER_LOG if run_dir is not None else None)
    if path is None:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
