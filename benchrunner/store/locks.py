"""Exclusive locks on a run folder (and on a nightly suite), safe against dead holders.

The lock is an ``fcntl.flock`` on a file that also records the holder's pid, host and
start time for messages. The kernel drops a flock when its holder dies, so a lock left
by a killed process is simply taken over; the recorded pid is only informative.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import LockedError
from .results import now_iso


class FileLock:
    def __init__(self, path: Path, *, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self, *, wait: bool = False, timeout_s: float | None = None, poll_s: float = 0.5) -> "FileLock":
        """Take the lock, or raise :class:`LockedError` naming the holder (after ``timeout_s``
        when waiting; ``wait`` without a timeout waits for as long as it takes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    raise LockedError(f"{self.what} is locked by {self.holder_text()}"
                                      f"{'' if wait else ' (use --wait to wait for it)'}") from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def holder_text(self) -> str:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
