"""Executors: where the workers of a sweep run, behind one interface.

An executor turns an :class:`ExecutorSpec` (``--executor``, ``--devices``, ``--workers``,
``--ray-address``) into lanes, one per worker slot (a local device, a Ray GPU or CPU slot),
and starts a worker for a lane. A worker (:class:`WorkerHandle`) loads the pipeline once
and measures groups of cases; the runner (the driver) feeds each lane one group at a time,
keeps every timeout, and is the only writer of the run folder.

- ``local`` (:mod:`.local`): worker processes on this machine, one per device.
- ``ray`` (:mod:`.ray`): one Ray actor per GPU (or per CPU slot) of a Ray cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ...errors import UserError

EXECUTOR_KINDS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorSpec:
    """What the command line asked for. ``devices`` empty: the suite's device; ``workers``:
    how many workers share it (CPU slots), when no list of devices is given."""

    kind: str = "local"
    devices: tuple[str, ...] = ()
    workers: int = 1
    ray_address: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "devices": list(self.devices), "workers": self.workers,
                "ray_address": self.ray_address}


@dataclass(frozen=True)
class Lane:
    """One worker slot: its label in rows and progress (``w0``...), the device its worker
    measures on, and what the executor needs to place it (e.g. Ray resources)."""

    label: str
    device: str
    resources: dict[str, float] = field(default_factory=dict)


class WorkerUnavailable(UserError):
    """A lane cannot get a worker (e.g. its Ray node is gone and no other node has room): in
    the middle of a sweep the lane retires and the other lanes take over its cases; for the
    first worker of a run it is bad input (the cluster cannot host the workers asked for)."""


class WorkerHandle(Protocol):
    """The driver's end of one worker (see executors.local.LocalWorker)."""

    config: Any
    info: dict

    @property
    def stages(self) -> list[str]: ...

    def run_group(self, cases: list, next_refs: list, on_repeat: Callable | None = None): ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...


class Executor(Protocol):
    kind: str

    def lanes(self, device: str) -> list[Lane]: ...

    def start_worker(self, lane: Lane, config: Any, source: str) -> WorkerHandle: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def parse_devices(text: str | None) -> tuple[str, ...]:
    """``--devices``: ``cuda:0,cuda:1``, ``all`` (every GPU the executor sees), or none."""
    if not text:
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if names == ("all",):
        return names
    for name in names:
        if name != "cpu" and not (name.startswith("cuda:") and name[5:].isdigit()):
            raise UserError(f"--devices: {name!r} is not a device (expected e.g. cuda:0,cuda:1 or all)")
    if len(set(names)) != len(names):
        raise UserError(f"--devices: {text!r} names a device twice (expected each once)")
    return names


def executor_spec(kind: str = "local", devices: str | None = None, workers: int | None = None,
                  ray_address: str | None = None) -> ExecutorSpec:
    """Validate the command line's executor options into a spec (bad input: UserError)."""
    if kind not in EXECUTOR_KINDS:
        raise UserError(f"--executor: {kind!r} is not an executor (expected one of {', '.join(EXECUTOR_KINDS)})")
    if workers is not None and workers < 1:
        raise UserError(f"--workers: {workers} is not valid (expected 1 or more)")
    parsed = parse_devices(devices)
    if parsed and workers not in (None, 1) and kind == "local":
        raise UserError("--workers: cannot be combined with --devices for the local executor "
                        "(expected one worker per device)")
    if ray_address and kind != "ray":
        raise UserError("--ray-address: only for --executor ray")
    return ExecutorSpec(kind, parsed, workers or 1, ray_address)


def open_executor(spec: ExecutorSpec | None) -> Executor:
    spec = spec or ExecutorSpec()
    if spec.kind == "ray":
        from .ray import RayExecutor
        return RayExecutor(spec)
    from .local import LocalExecutor
    return LocalExecutor(spec)
