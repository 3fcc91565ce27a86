"""Exceptions the core raises; only the CLI turns them into exit codes. And the one
scrubber that keeps credentials out of every message, log line, manifest and report."""

import re

REDACTED = "[REDACTED]"
# scheme://user:password@host -> the password part (a user name alone is not a secret)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):(?P<password>[^/@\s]*)@")
# Slack tokens (xoxb-, xoxp-, xapp-, ...), wherever they appear
_SLACK_TOKEN = re.compile(r"\b(?:xox[a-z]|xapp)-[A-Za-z0-9-]+")
# password=..., token=..., secret=... in query strings and key=value text
_KEY_VALUE = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key|apikey)=([^&\s;,)'\"]+)")


def scrub(text: str, secrets=()) -> str:
    """``text`` with credentials replaced by [REDACTED]: the password of a URL's user info
    (``postgresql://user:pass@host`` -> ``postgresql://user:[REDACTED]@host``; a user name
    alone stays), Slack tokens, ``password=``/``token=`` values, and every given secret (and
    its stripped form). The one scrubber of the project."""
    text = str(text)
    for secret in secrets:
        for s in {secret, (secret or "").strip()}:
            if s:
                text = text.replace(s, REDACTED)

    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    text = _SLACK_TOKEN.sub(REDACTED, text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def scrub_argv(argv) -> list[str]:
    """A command line with every argument scrubbed (what manifests record)."""
    return [scrub(arg) for arg in argv]


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
