"""Finding run folders: by id under the results folder, by path, or the latest one.

A run folder holds manifest.json (see results.py). "Latest" is the run with the newest
``started_at`` among those whose status is finished or interrupted (a running or torn run
is never picked by default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError

DONE_STATUSES = ("finished", "interrupted")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class RunData:
    """What compare, tuning and check read from one run folder."""

    path: Path
    manifest: dict[str, Any]
    samples: Any  # pandas.DataFrame (pandas is imported lazily)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)


def resolve_run(ref: str | Path | None, results_dir: Path = Path("results")) -> Path:
    """The run folder ``ref`` names: a path to a run folder, a run id under ``results_dir``,
    or (None) the latest finished or interrupted run in ``results_dir``. A path to a folder
    of run folders (what ``bench run --out`` was given) means the latest run inside it."""
    results_dir = Path(results_dir)
    if ref is None:
        return latest_run(results_dir)
    path = Path(ref)
    for candidate in (path, results_dir / str(ref)):
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
    best: tuple[datetime, Path] | None = None
    for folder in _run_folders(results_dir):
        manifest = read_manifest_quietly(folder)
        if manifest is None or manifest.get("status") not in DONE_STATUSES:
            continue
        started = parse_time(manifest.get("started_at"))
        if started is not None and (best is None or started > best[0]):
            best = (started, folder)
    if best is None:
        raise UserError(f"{results_dir}: run: no finished or interrupted run found "
                        f"(expected run folders made by `bench run SUITE --out {results_dir}`, or pass --run)")
    return best[1]


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
