"""Exceptions the core raises; only the CLI turns them into exit codes."""


class BenchError(Exception):
    """Base of every error benchrunner raises on purpose."""

    exit_code = 1


class UserError(BenchError):
    """Bad input (suite file, CLI value, missing folder): exit code 2."""

    exit_code = 2


class LockedError(BenchError):
    """Another process holds the lock: exit code 3."""

    exit_code = 3


class NotifyError(BenchError):
    """A notification (Slack) failed for good: exit code 4."""

    exit_code = 4


class Interrupted(BenchError):
    """SIGINT or SIGTERM: the run stopped cleanly; exit 128 + signal number."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


class StorageError(BenchError):
    """The file system failed us (read-only folder, disk full, a path that is a file or a
    device): exit code 74 (EX_IOERR of sysexits.h), never 1, which means "regression"."""

    exit_code = 74

    def __init__(self, exc: OSError, run_id: str | None = None):
        where = exc.filename if exc.filename is not None else "file system"
        super().__init__(f"{where}: {exc.strerror or exc}")
        self.run_id = run_id


def storage_error(exc: OSError) -> StorageError:
    """One line naming the path and the error for any OSError the core lets through."""
    return exc if isinstance(exc, StorageError) else StorageError(exc)
