"""Finding run folders: by id under the results folder, by path, or the latest one.

A run folder holds manifest.json (see results.py). "Latest" is the run with the newest
``started_at`` among those whose status is finished or interrupted (a running or torn run
is never picked by default).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError

DONE_STATUSES = ("finished", "interrupted")
MANIFEST = "manifest.json"
RUN_ID_MAX_CHARS = 128
_RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_run_id(run_id: object, what: str = "run id") -> str:
    """``run_id`` when it is a valid run id, else UserError. A run id is a folder name, never
    a path: letters, digits, ``.``, ``_`` and ``-`` only, no leading dot (so not ``.``,
    ``..`` or a hidden folder), at most RUN_ID_MAX_CHARS characters. The one rule, used
    wherever an id is read (CLI arguments, a manifest's run_id) or written (run folders,
    report folders)."""
    text = run_id if isinstance(run_id, str) else ""
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(text) and len(text) <= RUN_ID_MAX_CHARS):
        shown = repr(run_id) if len(repr(run_id)) <= 80 else repr(run_id)[:77] + "..."
        raise UserError(f"{what}: {shown} is not a run id (expected letters, digits, '.', '_' or '-', "
                        f"not starting with '.', at most {RUN_ID_MAX_CHARS} characters)")
    return text


def is_run_id(text: object) -> bool:
    try:
        check_run_id(text)
    except UserError:
        return False
    return True


def run_dir_for(results_dir: Path, run_id: str, what: str = "run id") -> Path:
    """The folder of run ``run_id`` under ``results_dir`` (the id checked first)."""
    return Path(results_dir) / check_run_id(run_id, what)


@dataclass(frozen=True)
class RunData:
    """What compare, tuning and check read from one run folder."""

    path: Path
    manifest: dict[str, Any]
    samples: Any  # pandas.DataFrame (pandas is imported lazily)

    @property
    def run_id(self) -> str:
        """The manifest's run id when it is a valid one, else the folder's name."""
        stored = self.manifest.get("run_id")
        return stored if is_run_id(stored) else self.path.name


def resolve_run(ref: str | Path | None, results_dir: Path = Path("results")) -> Path:
    """The run folder ``ref`` names: a path to a run folder, a run id under ``results_dir``,
    or (None) the latest finished or interrupted run in ``results_dir``. A path to a folder
    of run folders (what ``bench run --out`` was given) means the latest run inside it."""
    results_dir = Path(results_dir)
    if ref is None:
        return latest_run(results_dir)
    path = Path(ref)
    candidates = [path] + ([results_dir / str(ref)] if is_run_id(str(ref)) else [])
    for candidate in candidates:
        if (candidate / MANIFEST).is_file():
            return candidate
    if path.is_dir() and _run_folders(path):
        return latest_run(path)
    raise UserError(f"{ref}: run: not a run folder nor a run id in {results_dir} "
                    f"(expected a folder with {MANIFEST}, e.g. {results_dir}/<run_id>)")


def is_run_ref(ref: str, results_dir: Path = Path("results")) -> bool:
    """True when ``ref`` names an existing run folder (by path or id); never raises."""
    try:
        resolve_run(ref, results_dir)
    except UserError:
        return False
    return True


def latest_run(results_dir: Path) -> Path:
    """The finished or interrupted run with the newest started_at in ``results_dir``."""
    return done_runs_newest_first(results_dir)[0]


def done_runs_newest_first(results_dir: Path) -> list[Path]:
    """The finished or interrupted runs of ``results_dir``, newest started_at first (ties by
    name); UserError when there is none."""
    found: list[tuple[datetime, str, Path]] = []
    for folder in _run_folders(results_dir):
        manifest = read_manifest_quietly(folder)
        if manifest is None or manifest.get("status") not in DONE_STATUSES:
            continue
        started = parse_time(manifest.get("started_at"))
        if started is not None:
            found.append((started, folder.name, folder))
    if not found:
        raise UserError(f"{results_dir}: run: no finished or interrupted run found "
                        f"(expected run folders made by `bench run SUITE --out {results_dir}`, or pass --run)")
    return [folder for _, _, folder in sorted(found, key=lambda f: (f[0], f[1]), reverse=True)]


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json of ``run_dir``; a missing or unreadable one is bad input."""
    from .results import read_manifest as read_checked

    return read_checked(run_dir)


def load_run(ref: str | Path | None, results_dir: Path = Path("results")) -> RunData:
    """Resolve ``ref`` and read its manifest and samples."""
    from .results import read_samples

    path = resolve_run(ref, results_dir)
    manifest = read_manifest(path)
    samples = read_samples(path)
    if samples.empty:
        raise UserError(f"{path / 'samples.csv'}: samples: no rows (the run recorded nothing; "
                        "expected a run that measured at least one case)")
    return RunData(path, manifest, samples)


def _run_folders(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return [p for p in results_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]


def read_manifest_quietly(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def parse_time(text: Any) -> datetime | None:
    """An ISO-8601 time as an aware datetime (naive ones are taken as local time); None if not one."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()
