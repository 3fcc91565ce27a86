"""The history store: runs and their per-case summaries, for nightly trends.

One SQLite file by default (results/history.db); any SQLAlchemy URL (e.g. PostgreSQL for a
team) through ``--db`` or BENCH_DB_URL. The tool creates and migrates the schema itself:
``schema_version`` holds one row per applied migration, and MIGRATIONS are ordered
functions, each taking a database from version k-1 to k inside one transaction.

Tables (current version 2):
  runs            one row per run_id: suite, started_at (UTC ISO, sortable), status,
                  environment summary fields, run_dir; v2 adds regression, note, marked_at
  case_summaries  one row per run x case x stage: the summary.csv figures trends use

Trends: ``series`` gives one value per night and case; benchrunner.analysis.history_trend finds
level changes in it. Nothing here prints.
"""

from __future__ import annotations

import importlib
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
from sqlalchemy import (Boolean, Column, Engine, Float, Index, Integer, MetaData, String, Table, Text,
                        create_engine, event, func, inspect, or_, select, text)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..errors import UserError, scrub
from ..measure.environment import SUMMARY_FIELDS, environment_summary
from .results import TOTAL_STAGE, read_manifest, read_summary
from .runs import parse_time

DB_ENV = "BENCH_DB_URL"
DONE_STATUSES = ("finished", "interrupted")


# --- metrics ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryMetric:
    """Which stored column a metric reads, its display unit and scale, and which direction of
    change is a regression ("up", "down" or None: never)."""

    column: str
    label: str
    unit: str
    scale: float
    bad: str | None
    per_stage: bool


METRICS = {
    "latency": HistoryMetric("latency_p50_ms", "latency p50", "ms", 1.0, "up", True),
    "memory": HistoryMetric("peak_mem_bytes", "peak memory", "GiB", 2.0**-30, "up", False),
    # Utilisation is shown next to the real figures, never judged on its own.
    "util": HistoryMetric("util_mean_pct", "utilisation mean", "%", 1.0, None, False),
    "failure": HistoryMetric("failure_rate", "failure rate", "%", 100.0, "up", True),
    "throughput": HistoryMetric("throughput_clips_per_s", "throughput", "clips/s", 1.0, "down", False),
    "quality": HistoryMetric("quality_snr_db", "quality SNR median", "dB", 1.0, "down", False),
}


def metric_spec(metric: str, stage: str = TOTAL_STAGE) -> HistoryMetric:
    if metric not in METRICS:
        raise UserError(f"--metric: {metric!r} is not a metric (expected one of {', '.join(METRICS)})")
    spec = METRICS[metric]
    if stage != TOTAL_STAGE and not spec.per_stage:
        raise UserError(f"--stage: {metric} is measured end to end only (expected --stage {TOTAL_STAGE})")
    return spec


# --- schema: the current tables (what queries use) -------------------------------------------

_CURRENT = MetaData()
_RUN_FIELDS = ("suite", "started_at", "ended_at", "status", *SUMMARY_FIELDS, "run_dir", "recorded_at")
_MARK_FIELDS = ("regression", "note", "marked_at")
_CASE_KEY = ("pipeline", "variant", "mode", "threshold_s", "clip_s", "executed_as", "device")
_CASE_INTS = ("n", "n_total", "failures")
_CASE_FLOATS = ("failure_rate", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
                "latency_cv", "throughput_clips_per_s", "rtf", "peak_mem_bytes", "util_mean_pct",
                "util_p95_pct", "quality_snr_db")
_CASE_TEXTS = ("mem_source", "util_source")


def _runs_columns_v1() -> list[Column]:
    return [Column("run_id", String(200), primary_key=True), Column("suite", String(200), nullable=False),
            Column("started_at", String(40), nullable=False), Column("ended_at", String(40)),
            Column("status", String(20), nullable=False), *[Column(f, Text) for f in SUMMARY_FIELDS],
            Column("run_dir", Text), Column("recorded_at", String(40), nullable=False)]


def _cases_columns_v1() -> list[Column]:
    return [Column("run_id", String(200), primary_key=True), Column("case_id", String(300), primary_key=True),
            Column("stage", String(100), primary_key=True),
            *[Column(k, Float if k.endswith("_s") else Text) for k in _CASE_KEY],
            *[Column(k, Integer) for k in _CASE_INTS], *[Column(k, Float) for k in _CASE_FLOATS],
            *[Column(k, Text) for k in _CASE_TEXTS]]


def _mark_columns_v2() -> list[Column]:
    return [Column("regression", Boolean), Column("note", Text), Column("marked_at", String(40))]


RUNS = Table("runs", _CURRENT, *_runs_columns_v1(), *_mark_columns_v2())
CASES = Table("case_summaries", _CURRENT, *_cases_columns_v1())
SCHEMA_VERSION_TABLE = Table("schema_version", _CURRENT, Column("version", Integer, primary_key=True),
                             Column("applied_at", String(40), nullable=False))


# --- migrations: ordered functions, version k at MIGRATIONS[k - 1] ---------------------------

def _v1_runs_and_cases(conn: Connection) -> None:
    """v1: runs and case_summaries, with an index for a suite's runs in time order."""
    meta = MetaData()
    Table("runs", meta, *_runs_columns_v1(), Index("ix_runs_suite_started", "suite", "started_at"))
    Table("case_summaries", meta, *_cases_columns_v1())
    meta.create_all(conn)


def _v2_run_marks(conn: Connection) -> None:
    """v2: the nightly's judgement of a run (regression flag, note, when it was marked)."""
    for column in _mark_columns_v2():
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE runs ADD COLUMN {column.name} {kind}"))


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_runs_and_cases, _v2_run_marks]
CURRENT_VERSION = len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    """The version of the database behind ``conn``: 0 when it has no schema yet."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(select(func.max(SCHEMA_VERSION_TABLE.c.version))).scalar() or 0)


def migrate(engine: Engine, target: int = CURRENT_VERSION) -> int:
    """Bring the database to version ``target`` (default: current) in one transaction; return
    the version it had before. A database newer than this benchrunner is bad input."""
    with _writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7201977)"))  # one migrator at a time
        SCHEMA_VERSION_TABLE.create(conn, checkfirst=True)
        before = schema_version(conn)
        if before > CURRENT_VERSION:
            raise UserError(f"history database schema is version {before}, newer than this benchrunner "
                            f"understands ({CURRENT_VERSION}); upgrade benchrunner")
        for version in range(before + 1, target + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(SCHEMA_VERSION_TABLE.insert().values(version=version, applied_at=_now()))
    return before


# --- engine and URLs --------------------------------------------------------------------------

def default_db_url(results_dir: Path = Path("results")) -> str:
    """BENCH_DB_URL when set, else a SQLite file results_dir/history.db."""
    return os.environ.get(DB_ENV) or f"sqlite:///{Path(results_dir) / 'history.db'}"


def mask_url(url: str) -> str:
    """``url`` with its credentials replaced, for messages (benchrunner.errors.scrub)."""
    return scrub(url)


def _bad_db(url: str, reason: str) -> UserError:
    password = _password(url)
    return UserError(f"--db/{DB_ENV}: cannot open history database {mask_url(url)}: "
                     f"{scrub(reason, secrets=(password,) if password else ())} "
                     "(expected a SQLAlchemy URL, e.g. sqlite:///results/history.db or postgresql://user@host/db)")


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        engine = create_engine(parsed, connect_args={"timeout": 30} if sqlite else {})
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise _bad_db(url, _reason(exc)) from None
    if sqlite:
        _sqlite_transactions(engine)
    return engine


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_transactions(engine: Engine) -> None:
    """Real transactions on SQLite (pysqlite commits DDL on its own otherwise): BEGIN for reads,
    BEGIN IMMEDIATE for writes, so two writers (or migrators) queue instead of deadlocking."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writing") else "BEGIN")


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed on success, rolled back on an exception."""
    with engine.connect() as conn:
        conn.execution_options(writing=True)
        with conn.begin():
            yield conn


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def open_history(db_url: str, *, create: bool = True) -> "History":
    """The history store at ``db_url``, created or migrated to the current schema. With
    ``create=False`` a SQLite file that does not exist yet is bad input (for read-only use)."""
    engine = _engine(db_url)
    path = _sqlite_file(engine)
    if path is not None and create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif path is not None and not path.is_file():
        engine.dispose()
        raise UserError(f"--db/{DB_ENV}: no history database at {mask_url(db_url)} (runs are recorded by the "
                        "nightly command, or with `bench history SUITE --record RESULTS_DIR`)")
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise _bad_db(db_url, _reason(exc)) from None
    return History(engine, db_url)


# --- the store --------------------------------------------------------------------------------

def _db_errors(method):
    """A database that fails mid-command (server gone, disk full) is one line, not a traceback."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise UserError(f"--db/{DB_ENV}: history database {self.url}: {_reason(exc)}") from None

    return wrapper


class History:
    """Runs and per-case summaries in one database. Use as a context manager, or call close()."""

    def __init__(self, engine: Engine, db_url: str):
        self.engine = engine
        self.url = mask_url(db_url)

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        self.engine.dispose()

    @_db_errors
    def record_run(self, run_dir: Path) -> None:
        """Store the run in ``run_dir`` (manifest.json + summary.csv). Re-recording a run_id
        replaces its facts and case rows; a mark set by mark_run stays."""
        run, cases = _read_run(Path(run_dir))
        with _writing(self.engine) as conn:
            _upsert_run(conn, run)  # first: the run's row lock queues a concurrent recording of it
            conn.execute(CASES.delete().where(CASES.c.run_id == run["run_id"]))
            if cases:
                conn.execute(CASES.insert(), cases)

    @_db_errors
    def runs(self, suite: str, last_n: int | None = None) -> list[dict]:
        """The suite's recorded runs (any status), oldest first; the newest ``last_n`` if given."""
        query = select(RUNS).where(RUNS.c.suite == suite)
        return [dict(r) for r in self._newest(query, last_n)]

    @_db_errors
    def last_good_run(self, suite: str, exclude_run_id: str | None = None) -> dict | None:
        """The newest finished run of ``suite`` not marked as a regression (unmarked counts as
        good), other than ``exclude_run_id``."""
        query = select(RUNS).where(RUNS.c.suite == suite, RUNS.c.status == "finished",
                                   or_(RUNS.c.regression.is_(None), RUNS.c.regression.is_(False)))
        if exclude_run_id is not None:
            query = query.where(RUNS.c.run_id != exclude_run_id)
        rows = self._newest(query, 1)
        return dict(rows[0]) if rows else None

    @_db_errors
    def mark_run(self, run_id: str, *, regression: bool, note: str = "") -> None:
        """Record the nightly's judgement of a recorded run."""
        with _writing(self.engine) as conn:
            done = conn.execute(RUNS.update().where(RUNS.c.run_id == run_id)
                                .values(regression=bool(regression), note=note, marked_at=_now()))
            if done.rowcount == 0:
                raise UserError(f"{run_id}: run: not recorded in {self.url} (record it first)")

    @_db_errors
    def series(self, suite: str, metric: str, stage: str = TOTAL_STAGE, last_n: int | None = None) -> pd.DataFrame:
        """One row per night x case of the newest ``last_n`` finished or interrupted runs of
        ``suite``, oldest first: run_id, started_at (UTC timestamp), case_id, value (the
        metric's stored column, in its stored unit; NaN where the case ran without a value,
        e.g. every repeat failed). Cases are ordered by variant, mode, threshold, clip length."""
        spec = metric_spec(metric, stage)
        window = [r["run_id"] for r in self._newest(select(RUNS.c.run_id, RUNS.c.started_at).where(
            RUNS.c.suite == suite, RUNS.c.status.in_(DONE_STATUSES)), last_n)]
        query = (select(CASES.c.run_id, RUNS.c.started_at, CASES.c.case_id, CASES.c[spec.column].label("value"))
                 .join(RUNS, RUNS.c.run_id == CASES.c.run_id)
                 .where(CASES.c.run_id.in_(window), CASES.c.stage == stage)
                 .order_by(RUNS.c.started_at, RUNS.c.run_id, CASES.c.variant, CASES.c.mode, CASES.c.threshold_s,
                           CASES.c.clip_s, CASES.c.case_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return _series_frame(rows)

    @_db_errors
    def stages(self, suite: str) -> list[str]:
        """The stages recorded for ``suite`` (for messages)."""
        query = (select(CASES.c.stage).distinct().join(RUNS, RUNS.c.run_id == CASES.c.run_id)
                 .where(RUNS.c.suite == suite).order_by(CASES.c.stage))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def _newest(self, query, last_n: int | None) -> list:
        """Rows of ``query`` (over RUNS) oldest first, keeping the newest ``last_n``."""
        query = query.order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc())
        if last_n is not None:
            query = query.limit(last_n)
        with self.engine.connect() as conn:
            return list(reversed(conn.execute(query).mappings().all()))


def _upsert_run(conn: Connection, run: dict) -> None:
    facts = {k: v for k, v in run.items() if k != "run_id"}
    if conn.dialect.name in ("postgresql", "sqlite"):
        dialect = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
        conn.execute(dialect.insert(RUNS).values(**run).on_conflict_do_update(index_elements=["run_id"], set_=facts))
    elif conn.execute(select(RUNS.c.run_id).where(RUNS.c.run_id == run["run_id"])).first():
        conn.execute(RUNS.update().where(RUNS.c.run_id == run["run_id"]).values(**facts))
    else:
        conn.execute(RUNS.insert().values(**run))


def history_series(db_url: str, suite: str, metric: str, last_n: int | None = None,
                   stage: str = TOTAL_STAGE) -> pd.DataFrame:
    """History.series on the store at ``db_url`` (for the report's trend chart)."""
    with open_history(db_url) as history:
        return history.series(suite, metric, stage=stage, last_n=last_n)


def _series_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["run_id", "started_at", "case_id", "value"])
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame


def record_folders(history: History, suite: str, paths) -> int:
    """Record the run folders of ``suite`` at ``paths`` (each a run folder or a folder of them);
    folders of other suites, or without summary.csv (a run still going or killed), are left out.
    Returns how many were recorded."""
    count = 0
    for path in map(Path, paths):
        folders = [path] if (path / "manifest.json").is_file() else sorted(
            p for p in (path.iterdir() if path.is_dir() else []) if (p / "manifest.json").is_file())
        if not folders:
            raise UserError(f"--record: {path}: no run folder here (expected a folder with manifest.json, "
                            "or a folder of them)")
        for folder in folders:
            if _suite_of(folder) == suite and (folder / "summary.csv").is_file():
                history.record_run(folder)
                count += 1
    return count


def _suite_of(folder: Path) -> str | None:
    try:
        return (read_manifest(folder).get("suite") or {}).get("name")
    except (OSError, ValueError, AttributeError, UserError):  # a corrupt folder is not one of the suite
        return None


# --- reading a run folder -----------------------------------------------------------------------

def _read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    try:
        manifest = read_manifest(run_dir)
        summary = read_summary(run_dir)
    except FileNotFoundError as exc:
        raise UserError(f"{run_dir}: run: {Path(exc.filename).name} not found (expected a run folder "
                        "that `bench run` finished or interrupted)") from None
    except ValueError as exc:
        raise UserError(f"{run_dir}: run: unreadable manifest or summary ({exc})") from None
    run = _run_row(run_dir, manifest)
    return run, [_case_row(run["run_id"], r) for r in summary.to_dict("records")]


def _run_row(run_dir: Path, manifest: dict) -> dict:
    suite = (manifest.get("suite") or {}).get("name")
    run_id, started = manifest.get("run_id"), _utc_iso(manifest.get("started_at"))
    if not suite or not run_id or started is None:
        raise UserError(f"{run_dir / 'manifest.json'}: manifest: run_id, suite.name and started_at are needed "
                        "to record a run (expected a manifest written by `bench run`)")
    env = environment_summary(manifest.get("environment") or {})
    return {"run_id": str(run_id), "suite": str(suite), "started_at": started,
            "ended_at": _utc_iso(manifest.get("ended_at")), "status": str(manifest.get("status") or "unknown"),
            **{k: None if env[k] is None else str(env[k]) for k in SUMMARY_FIELDS},
            "run_dir": str(Path(run_dir).resolve()), "recorded_at": _now()}


def _case_row(run_id: str, record: dict) -> dict:
    row = {"run_id": run_id, "case_id": str(record["case_id"]), "stage": str(record["stage"])}
    for key in _CASE_KEY + _CASE_TEXTS:
        value = _plain(record.get(key))
        row[key] = value if value is None or key.endswith("_s") else str(value)
    row.update({k: None if _plain(record.get(k)) is None else int(record[k]) for k in _CASE_INTS})
    row.update({k: None if _plain(record.get(k)) is None else float(record[k]) for k in _CASE_FLOATS})
    return row


def _plain(value: Any) -> Any:
    """None for blanks and NaN; Python scalars for numpy ones."""
    if value is None or value is pd.NA or (isinstance(value, str) and not value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _utc_iso(value: Any) -> str | None:
    parsed = parse_time(value)
    return parsed.astimezone(timezone.utc).isoformat(timespec="milliseconds") if parsed else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
