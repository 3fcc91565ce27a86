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

SCHEMA_VERSION = 5  # 2: peak_mem_bytes absolute on both devices; growth columns added. 3: host, gpu, worker.
                    # 4: accuracy against a reference variant, and the variant's size and set-up cost.
                    # 5: output_nonfinite (NaN/inf elements of the output)
TOTAL_STAGE = "total"
WORKER_LOG = "worker.log"
REPORT_LOCATION = "report.json"
# the values of the status column (benchrunner.run.failures classifies exceptions into them)
OK, OOM, ERROR, TIMEOUT, CRASH = "ok", "oom", "error", "timeout", "crash"
INPUT_ERROR = "input_error"  # the input file failed to load: not the pipeline's failure
STATUSES = (OK, OOM, ERROR, TIMEOUT, CRASH, INPUT_ERROR)
FAILURE_KINDS = (OOM, ERROR, TIMEOUT, CRASH)  # the pipeline's failures (failure_rate counts these)
# Rows the harness adds for its own work in chunked execution: cutting the clip into chunks
# and merging their outputs, so total = pipeline stages + split + merge + device sync.
SPLIT_STAGE = "split"
MERGE_STAGE = "merge"
HARNESS_STAGES = (SPLIT_STAGE, MERGE_STAGE)


def pipeline_failed(status) -> bool:
    """A repeat the pipeline failed (not ok, and not an input that could not be read)."""
    return status != OK and status != INPUT_ERROR

SAMPLE_COLUMNS = [
    "schema_version", "run_id", "case_id", "suite", "pipeline", "variant", "mode", "threshold_s", "clip_s",
    "executed_as", "repeat", "stage", "status", "error", "latency_ms", "peak_mem_bytes", "peak_mem_growth_bytes",
    "peak_mem_reserved_bytes", "reserved_growth_bytes", "device_mem_bytes", "baseline_mem_bytes", "mem_source",
    "util_mean_pct", "util_p95_pct", "util_samples", "util_source", "io_wait_ms", "chunks", "retries", "quality_snr_db",
    "quality_max_abs_err", "accuracy_reference", "accuracy_snr_db", "accuracy_max_abs_err",
    "accuracy_mean_abs_err", "accuracy_argmax_agree_pct", "accuracy_streams", "variant_backend", "variant_param_bytes",
    "variant_file_bytes", "variant_setup_ms", "input", "device", "timer_source", "started_at", "host", "gpu",
    "worker", "output_nonfinite",
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
    "variant_file_bytes": "float64", "variant_setup_ms": "float64", "output_nonfinite": "Int64",
}
TIMELINE_COLUMNS = ["case_id", "repeat", "t_ms", "metric", "value"]
QUALITY_COLUMNS = ["case_id", "repeat", "stream", "snr_db", "max_abs_err", "nonfinite", "length_diff"]
QUALITY_STREAMS_KEY = "quality_streams"  # a total row's per-stream quality, split off into quality.csv
CASE_KEY = ["pipeline", "variant", "mode", "threshold_s", "clip_s"]
RESERVE_BYTES = 1 << 20  # disk held during a run for its final summary and manifest


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
    size = path.stat().st_size if path.exists() else 0
    if size:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n")
        if header != ",".join(columns):
            raise UserError(f"{path}: written with other columns (an older schema); expected "
                            f"schema_version {SCHEMA_VERSION}: start a new run instead of resuming this one")
    payload = ((",".join(columns) + "\n" if size == 0 else "") + text).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:  # disk full mid-write: take back the part written, so no torn case stays
        os.ftruncate(fd, size)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


class RunFiles:
    """Paths of one run folder, and the writers that append to them."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.samples = self.dir / "samples.csv"
        self.timeline = self.dir / "timeline.csv"
        self.summary = self.dir / "summary.csv"
        self.manifest = self.dir / "manifest.json"
        self.quality = self.dir / "quality.csv"

    def append_case(self, rows: list[Mapping[str, Any]], timeline: list[Mapping[str, Any]]) -> None:
        """All rows of one case, written at once. The timeline and per-stream quality go
        first: a case counts as done when its sample rows exist."""
        rows, quality = split_quality_streams(rows)
        if timeline:
            _append_durably(self.timeline, _csv_text(timeline, TIMELINE_COLUMNS), TIMELINE_COLUMNS)
        if quality:
            _append_durably(self.quality, _csv_text(quality, QUALITY_COLUMNS), QUALITY_COLUMNS)
        _append_durably(self.samples, _csv_text(rows, SAMPLE_COLUMNS), SAMPLE_COLUMNS)

    def write_summary(self, frame: pd.DataFrame) -> None:
        _replace_atomically(self.summary, frame.to_csv(index=False, float_format="%.6g"))

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        _replace_atomically(self.manifest, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")

    @property
    def reserve(self) -> Path:
        return self.dir / ".space-reserve"

    def reserve_space(self, n_bytes: int = RESERVE_BYTES) -> None:
        """Hold ``n_bytes`` of disk while the run writes, so that when the disk fills up mid-run
        the final summary and manifest (status interrupted) still fit: see :meth:`release_space`."""
        try:
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * n_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.release_space()
            raise

    def release_space(self) -> None:
        self.reserve.unlink(missing_ok=True)


def split_quality_streams(rows: list[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """samples.csv rows without their per-stream quality, and that quality as quality.csv rows."""
    plain, quality = [], []
    for row in rows:
        row = dict(row)
        for stream in row.pop(QUALITY_STREAMS_KEY, None) or []:
            quality.append({"case_id": row["case_id"], "repeat": row["repeat"], **stream})
        plain.append(row)
    return plain, quality


def read_quality(run_dir: Path) -> pd.DataFrame:
    """quality.csv: one row per chunked repeat x output stream (empty when nothing was compared)."""
    path = Path(run_dir) / "quality.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _replace_atomically(path: Path, text: str) -> None:
    """Write ``path.tmp`` then rename it over ``path``; a failed write leaves no temporary file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, exc.filename or str(path)) from None


def _rewrite(path: Path, text: str) -> None:
    _replace_atomically(path, text)


def _drop_torn_tail(path: Path, n_columns: int) -> str | None:
    """Cut a last line that a power cut left without its newline or its fields."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    text = _read_text(path, path.stem)
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
    last case that was cut short, and drop timeline and quality rows of cases without complete samples.
    Returns the ids of the complete cases and one note per repair."""
    files = RunFiles(run_dir)
    read_samples(run_dir)  # a corrupt file is bad input before anything is rewritten
    notes = [n for n in (_drop_torn_tail(files.samples, len(SAMPLE_COLUMNS)),) if n]
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
    for path, columns, reader in ((files.timeline, TIMELINE_COLUMNS, read_timeline),
                                  (files.quality, QUALITY_COLUMNS, read_quality)):
        note = _drop_torn_tail(path, len(columns))
        notes += [note] if note else []
        frame = reader(run_dir)
        if len(frame) and not frame["case_id"].isin(complete).all():
            kept = frame[frame["case_id"].isin(complete)]
            _rewrite(path, ",".join(columns) + "\n" + _csv_text(kept.to_dict("records"), columns))
    return complete, notes


def read_samples(run_dir: Path) -> pd.DataFrame:
    """samples.csv as a DataFrame with typed columns; an empty frame when there is none.
    A file that is not what ``bench run`` writes (no or unknown header, a row of the wrong
    width, a non-number in a numeric column, bytes that are not text) is bad input: one
    :class:`UserError` naming the file, the line and what is wrong. A torn last line (a power
    cut mid-write: no newline, a prefix of a row) is left out; ``frame.attrs["notes"]`` says so."""
    path = Path(run_dir) / "samples.csv"
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=SAMPLE_DTYPES.get(c, "object")) for c in SAMPLE_COLUMNS})
    text = _read_text(path, "samples")
    header, body, notes = _split_checked(path, text, SAMPLE_COLUMNS)
    frame = pd.read_csv(io.StringIO(",".join(header) + "\n" + body), dtype=str, keep_default_na=False)
    frame = upgrade_samples(_typed(path, frame))
    frame.attrs["notes"] = notes
    return frame


# absent from runs written before them: read as blank (see upgrade_samples)
# columns added after schema 1: a file of an older schema lacks them, and reads them blank
LATER_SAMPLE_COLUMNS = ("peak_mem_growth_bytes", "reserved_growth_bytes",                    # schema 2
                        "host", "gpu", "worker",                                             # schema 3
                        "accuracy_reference", "accuracy_snr_db", "accuracy_max_abs_err",     # schema 4
                        "accuracy_mean_abs_err", "accuracy_argmax_agree_pct", "accuracy_streams",
                        "variant_backend", "variant_param_bytes", "variant_file_bytes", "variant_setup_ms",
                        "output_nonfinite")                                                  # schema 5


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: {what}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: {what}: not UTF-8 text at byte {exc.start} (corrupted; expected the CSV "
                        "bench run writes)") from None
    if "\x00" in text:
        raise UserError(f"{path}: {what}: NUL byte at character {text.index(chr(0))} (corrupted; expected the "
                        "CSV bench run writes)")
    return text


def _split_checked(path: Path, text: str, columns: list[str]) -> tuple[list[str], str, list[str]]:
    """The header (checked against ``columns``), the body without a torn last line, and notes."""
    first, _, body = text.partition("\n")
    header = next(csv.reader([first]), [])
    if header and header[0].isdigit() and "schema_version" not in header:
        raise UserError(f"{path}: samples: no header line (line 1 is a data row; expected the header "
                        f"{','.join(columns[:3])},...)")
    unknown = [c for c in header if c not in columns]
    if unknown:
        raise UserError(f"{path}: samples: line 1: unknown column {unknown[0]!r} (expected the columns of "
                        f"schema {SCHEMA_VERSION}: {','.join(columns[:3])},...)")
    missing = [c for c in columns if c not in header and c not in LATER_SAMPLE_COLUMNS]
    if missing or len(set(header)) != len(header):
        what = f"missing column {missing[0]!r}" if missing else "a column appears twice"
        raise UserError(f"{path}: samples: line 1: {what} (expected the header bench run writes)")
    notes = []
    if body and not body.endswith("\n"):
        cut = body.rfind("\n") + 1
        torn = body[cut:]
        fields = next(csv.reader([torn]), [])
        if len(fields) > len(header) or not (fields and fields[0].isdigit()):
            line = body.count("\n") + 2
            raise UserError(f"{path}: samples: line {line}: not a row of samples.csv ({len(fields)} fields, "
                            f"no newline; bytes appended to the file?)")
        body = body[:cut]
        notes.append(f"{path.name}: left out a torn last line ({len(torn)} bytes) left by an interrupted write")
    for number, record in enumerate(csv.reader(io.StringIO(body)), start=2):
        if len(record) != len(header):
            raise UserError(f"{path}: samples: line {number}: {len(record)} fields, expected {len(header)} "
                            "(a corrupted or hand-edited row)")
    return header, body, notes


def _typed(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as numbers (blank = missing); a non-number names its line and column."""
    for column, dtype in SAMPLE_DTYPES.items():
        if column not in frame:
            frame[column] = pd.Series([pd.NA] * len(frame), dtype=dtype)
            continue
        raw = frame[column]
        blank = raw == ""
        numbers = pd.to_numeric(raw.where(~blank, None), errors="coerce")
        bad = (numbers.isna() & ~blank) | (dtype == "Int64") & numbers.notna() & (numbers % 1 != 0)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{path}: samples: line {row + 2}: {column}: {raw.iloc[row]!r} is not "
                            f"{'an integer' if dtype == 'Int64' else 'a number'}")
        frame[column] = numbers.astype(dtype)
    return frame


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
    path = Path(run_dir) / "summary.csv"
    if not path.is_file():
        raise UserError(f"{path}: summary: file not found (expected a run folder bench run finished or "
                        "interrupted; bench run --resume writes it)")
    try:
        return pd.read_csv(io.StringIO(_read_text(path, "summary")), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: summary: not a CSV table ({str(exc).strip().splitlines()[0]})") from None


MANIFEST_REQUIRED = ("run_id", "status")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json of ``run_dir``; missing, not JSON, not an object or without run_id and
    status is bad input (one line naming the file)."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(f"{path}: manifest: file not found (expected a run folder made by `bench run`)")
    text = _read_text(path, "manifest")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: manifest: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
                        "truncated?)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: manifest: a JSON {type(data).__name__} (expected an object written by bench run)")
    missing = [k for k in MANIFEST_REQUIRED if not isinstance(data.get(k), str)]
    if missing:
        raise UserError(f"{path}: manifest: no {missing[0]!r} (expected a manifest written by bench run)")
    return data


def manifest_field(manifest: dict[str, Any], run_dir: Path, *keys: str) -> Any:
    """``manifest[k1][k2]...``; a missing or malformed field is bad input naming it."""
    value: Any = manifest
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise UserError(f"{Path(run_dir) / 'manifest.json'}: manifest: no {'.'.join(keys[:depth + 1])!r} "
                            "(expected a manifest written by bench run)")
        value = value[key]
    return value


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
