"""Retention of run folders: keep the newest N runs of each suite, delete older ones.

A run folder is a folder of the results folder with a manifest.json. Runs are grouped by
the manifest's suite name and ordered by its started_at. An older run is deleted only when
its lock (``.lock``, benchrunner.store.locks.FileLock, the lock `bench run` holds while writing) can
be taken without waiting and its manifest, read again under that lock, is not "running".
Folders without a readable manifest, suite name or start time are never touched, and symbolic
links are never followed: a linked run folder, a linked manifest or a linked lock file is
skipped with the reason (taking a lock through a link would create or truncate a file
wherever the link points). The dry run lists exactly what the real run deletes. The history
database keeps its rows: pruning removes raw files, not the trend.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import LockedError, UserError
from .locks import FileLock
from .runs import parse_time, read_manifest_quietly

MANIFEST = "manifest.json"
LOCK = ".lock"


@dataclass(frozen=True)
class RunFolder:
    path: Path
    suite: str
    started_at: datetime
    status: str

    @property
    def run_id(self) -> str:
        return self.path.name


@dataclass
class PruneResult:
    keep: int
    dry_run: bool
    kept: list[RunFolder] = field(default_factory=list)
    deleted: list[RunFolder] = field(default_factory=list)   # would be deleted, with dry_run
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    freed_bytes: int = 0


def prune_runs(results_dir: Path, *, keep: int, dry_run: bool = False) -> PruneResult:
    """Keep the newest ``keep`` run folders of each suite in ``results_dir``; delete the rest
    unless locked or running (those are skipped, with the reason)."""
    results_dir = Path(results_dir)
    if keep < 1:
        raise UserError(f"--keep: {keep} keeps no run (expected 1 or more)")
    if not results_dir.is_dir():
        raise UserError(f"--results: {results_dir} is not a folder (expected the folder `bench run` writes to)")
    result = PruneResult(keep, dry_run)
    folders = _scan(results_dir, result)
    for suite in sorted({f.suite for f in folders}):
        runs = sorted((f for f in folders if f.suite == suite), key=lambda f: (f.started_at, f.run_id), reverse=True)
        result.kept.extend(runs[:keep])
        for run in runs[keep:]:
            _prune_one(run, result)
    return result


def _scan(results_dir: Path, result: PruneResult) -> list[RunFolder]:
    folders = []
    for path in sorted(results_dir.iterdir()):
        if path.is_symlink():  # never followed: its target may be anywhere
            if path.is_dir():
                result.skipped.append((path, "symbolic link (never followed)"))
            continue
        if not (path.is_dir() and (path / MANIFEST).is_file()):
            continue
        folder = _read_folder(path)
        if isinstance(folder, str):
            result.skipped.append((path, folder))
        else:
            folders.append(folder)
    return folders


def _read_folder(path: Path) -> RunFolder | str:
    """The run folder at ``path``, or why it cannot be placed (then it is left alone)."""
    if (path / MANIFEST).is_symlink():
        return "manifest.json is a symbolic link (never followed)"
    manifest = read_manifest_quietly(path)
    if manifest is None:
        return "unreadable manifest.json"
    suite, started = (manifest.get("suite") or {}).get("name"), parse_time(manifest.get("started_at"))
    if not suite or started is None:
        return "manifest without suite name or started_at"
    return RunFolder(path, str(suite), started, str(manifest.get("status") or ""))


def _prune_one(run: RunFolder, result: PruneResult) -> None:
    """Delete ``run`` (or, in a dry run, say it would be deleted) unless :func:`_why_kept`
    finds a reason to keep it. The dry run and the real run take the same decision: the real
    one takes the lock first and decides under it; the dry run probes the lock (creating
    no lock file) and decides the same way."""
    if result.dry_run:
        why = _why_kept(run, _probe_lock(run))
        if why:
            result.skipped.append((run.path, why))
        else:
            result.deleted.append(run)
            result.freed_bytes += _size(run.path)
        return
    why = _why_kept(run, None)
    if why:
        result.skipped.append((run.path, why))
        return
    lock = FileLock(run.path / LOCK, what=f"run folder {run.path}")
    try:
        lock.acquire(wait=False)
    except LockedError:
        result.skipped.append((run.path, f"locked by {lock.holder_text()}"))
        return
    try:
        _delete_locked(run, result)
    finally:
        lock.release()


def _why_kept(run: RunFolder, locked_by: str | None) -> str | None:
    """Why ``run`` must not be deleted, or None. ``locked_by`` names a holder found by a probe."""
    if run.path.is_symlink():
        return "symbolic link (never followed)"
    if (run.path / LOCK).is_symlink():
        return f"{LOCK} is a symbolic link (never followed)"
    if run.status == "running":
        return "status running"
    if locked_by:
        return f"locked by {locked_by}"
    return None


def _probe_lock(run: RunFolder) -> str | None:
    """The lock's holder when another process holds it; probes only an existing, real lock
    file (so a dry run creates none)."""
    path = run.path / LOCK
    if path.is_symlink() or not path.exists():
        return None
    lock = FileLock(path, what=f"run folder {run.path}")
    try:
        lock.acquire(wait=False).release()
    except LockedError:
        return lock.holder_text()
    return None


def _delete_locked(run: RunFolder, result: PruneResult) -> None:
    manifest = read_manifest_quietly(run.path) or {}
    if manifest.get("status") == "running":  # a resume started between the scan and the lock
        result.skipped.append((run.path, "status running"))
        return
    size = _size(run.path)
    try:
        shutil.rmtree(run.path)  # removes links inside the folder, never what they point to
    except OSError as exc:
        result.skipped.append((run.path, f"could not delete: {exc.strerror or exc}"))
        return
    result.deleted.append(run)
    result.freed_bytes += size


def _size(path: Path) -> int:
    """Bytes of the regular files under ``path``, links neither counted nor followed, the
    run's lock file left out (the real run holds it, the dry run may find none)."""
    total = 0
    for folder, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            if name == LOCK and folder == str(path):
                continue
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total
