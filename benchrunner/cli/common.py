"""Shared by the command modules: errors to exit codes, --set parsing, the run options,
signals. Exit codes: 0 ok, 1 regression or budget breach, 2 bad input, 3 locked, 4 notification
failed, 74 file-system error (read-only, disk full, a path that is a file), 130/143 interrupted."""

from __future__ import annotations

import signal
import sys
import tomllib
from contextlib import contextmanager
from functools import wraps

import click

from ..errors import BenchError, Interrupted, StorageError, UserError, scrub


def fail_cleanly(fn):
    """Turn the core's errors into one line on stderr and their exit code (no traceback)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Interrupted as exc:
            run_id = getattr(exc, "run_id", None)
            hint = f"; run {run_id} marked interrupted, finish it with: bench run --resume {run_id}" if run_id else ""
            click.echo(scrub(f"bench: {exc}{hint}"), err=True)
            sys.exit(exc.exit_code)
        except StorageError as exc:
            run_id = getattr(exc, "run_id", None)
            hint = (f"; run {run_id} marked interrupted, make room or fix the folder, then finish it with: "
                    f"bench run --resume {run_id}") if run_id else ""
            click.echo(f"bench: error: {exc}{hint}", err=True)
            sys.exit(exc.exit_code)
        except BenchError as exc:
            click.echo(scrub(f"bench: error: {exc}"), err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a file-system error the core did not expect: one line, exit 74
            error = StorageError(exc)
            click.echo(f"bench: error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("bench: interrupted", err=True)
            sys.exit(130)

    return wrapper


def number_list(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a comma-separated list of seconds (expected e.g. 5,30,60)") from None


def parse_set(items: tuple[str, ...]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set: {item!r} is not KEY=VALUE (expected e.g. chunk.window_s=5)")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    return overrides


def suite_overrides(lengths, modes, repeats, warmup, device, timeout, memory_limit_gb, set_items) -> dict:
    overrides = parse_set(set_items)
    named = {
        "clip_lengths_s": number_list("--lengths", lengths),
        "modes": [m.strip() for m in modes.split(",") if m.strip()] if modes else None,
        "repeats": repeats, "warmup": warmup, "device": device, "timeout_s": timeout,
        "memory_limit_gb": memory_limit_gb,
    }
    overrides.update({k: v for k, v in named.items() if v is not None})
    return overrides


@contextmanager
def signals_raise_interrupted():
    """SIGTERM (and SIGINT) raise :class:`Interrupted` in the main thread, so the runner's
    cleanup runs and the exit code says which signal it was. Only the first signal raises:
    one that follows while that cleanup runs (a double Ctrl-C) is ignored, so the cleanup
    finishes (the run ends interrupted, with its summaries and the resume hint); SIGKILL
    remains for a cleanup that hangs."""
    raised: list[int] = []

    def handler(signum, _frame):
        if raised:
            return
        raised.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def executor_options(fn):
    """--executor, --devices, --workers, --ray-address (bench run and bench nightly)."""
    for option in reversed([
        click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True, help="Where workers run: local processes, or Ray actors on a cluster."),
        click.option("--devices", help="One worker per device: cuda:0,cuda:1 or all (every GPU; on Ray, "
                                       "one actor per GPU of the cluster)."),
        click.option("--workers", type=int, help="Workers on the suite's device when it is the CPU "
                                                 "(Ray: CPU slots); default 1."),
        click.option("--ray-address", help="A running Ray cluster's address (default: start a local one)."),
    ]):
        fn = option(fn)
    return fn


def executor_from_options(executor_kind, devices, workers, ray_address):
    from ..run.executors import executor_spec

    return executor_spec(executor_kind, devices, workers, ray_address)
