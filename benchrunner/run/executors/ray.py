"""Ray actors as workers: one actor per GPU (``--devices all``) or per CPU slot (``--workers N``).

An actor loads the pipeline once (a :class:`benchrunner.run.worker.Worker` inside it) and measures
the groups the driver sends, exactly as a local worker process does. The actor is threaded
(``max_concurrency=2``): one thread measures, the other hands the driver the messages of the
group in progress (``take``), so the driver sees every call start and keeps each case's
timeout itself: past it the actor is killed with ``ray.kill`` (``timeout``); an actor that
dies (its process, or its node) surfaces as ``RayActorError`` and is recorded as ``crash``.
The driver stays the only writer of the run folder. The actors find the suite's pipeline
through ``runtime_env``: PYTHONPATH carries the folders its module and benchrunner come from.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import time
from collections import deque
from pathlib import Path

from ...errors import UserError
from ...store.results import CRASH, TIMEOUT
from ..cases import Case
from ..inputs import InputRef
from ..worker import GroupPart, WorkerConfig
from . import Lane, WorkerUnavailable
from .local import READY_TIMEOUT_S, LocalWorker

POLL_S = 0.5              # longest wait of one ``take`` call: how soon the driver sees a timeout
RPC_SLACK_S = 10.0        # a ``take`` answer later than this past its wait: the actor is stuck
PLACEMENT_TIMEOUT_S = READY_TIMEOUT_S  # no node with room for a lane's actor by then: the lane retires
DEATH_TEXT_CHARS = 300


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray: Ray is not installed (expected: pip install 'benchrunner[ray]')") from None
    return ray


def _actor_class():
    ray = import_ray()

    @ray.remote(max_concurrency=2, max_restarts=0)
    class WorkerActor:
        """A worker in a Ray actor; messages queue up until the driver takes them."""

        def __init__(self, config: WorkerConfig):
            self.messages: queue.Queue = queue.Queue()
            self.worker, self.load_error = None, None
            try:
                from ..worker import Worker
                self.worker = Worker(config)
            except BaseException as exc:  # reported by ready(), as a local worker's load_error
                from ..failures import describe_exception
                self.load_error = (isinstance(exc, UserError), str(exc) if isinstance(exc, UserError)
                                   else describe_exception(exc))

        def ready(self):
            if self.worker is None:
                return ("load_error", *self.load_error)
            info = self.worker.info()
            info["ray_node_id"] = ray.get_runtime_context().get_node_id()
            info["ray_gpu_ids"] = [str(i) for i in ray.get_gpu_ids()]
            return ("ready", info)

        def run_group(self, cases, next_refs, part=None) -> None:
            try:
                self.worker.run_group(cases, next_refs, self.messages.put, part)
            except Exception as exc:  # a harness bug or a broken pipeline: the driver records a crash
                from ..failures import describe_exception
                self.messages.put(("worker_error", f"worker error: {describe_exception(exc)}"))

        def take(self, wait_s: float) -> list:
            try:
                taken = [self.messages.get(timeout=wait_s)]
            except queue.Empty:
                return []
            while True:
                try:
                    taken.append(self.messages.get_nowait())
                except queue.Empty:
                    return taken

        def close(self) -> None:
            if self.worker is not None:
                self.worker.close()

    return WorkerActor


class RayWorker(LocalWorker):
    """The driver's end of one actor; the message loop and the failure rows are the local
    worker's (see LocalWorker.run_group), only the transport differs."""

    def __init__(self, actor_class, lane: Lane, config: WorkerConfig, source: str, runtime_env: dict):
        self.ray = import_ray()
        self.config, self.source, self.lane = config, source, lane
        self.log_path = None  # an actor's output goes to Ray's worker logs (see RayExecutor.start_worker)
        self._buffer: deque = deque()
        self._death: str | None = None
        self.actor = actor_class.options(runtime_env=runtime_env, **lane.resources).remote(config)
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict:
        ray = self.ray
        try:
            message = ray.get(self.actor.ready.remote(), timeout=PLACEMENT_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.kill()
            raise WorkerUnavailable(f"worker {self.lane.label}: no Ray node had room for "
                                    f"{_resources_text(self.lane.resources)} or the pipeline did not load "
                                    f"within {PLACEMENT_TIMEOUT_S:g} s") from None
        except ray.exceptions.RayActorError as exc:
            raise UserError(f"{self.source}: pipeline: {self.config.pipeline}: the Ray worker died while "
                            f"loading it ({_one_line(exc)})") from None
        if message[0] == "load_error":
            self.kill()
            _, is_user_error, text = message
            raise UserError(f"{self.source}: {text}" if is_user_error else
                            f"{self.source}: pipeline: {self.config.pipeline} failed to load: {text}")
        return message[1]

    def _start_group(self, cases: list[Case], next_refs: list[InputRef], part: GroupPart | None = None) -> None:
        self._buffer.clear()
        self._group_ref = self.actor.run_group.remote(cases, next_refs, part)

    def _receive(self, timeout_s: float):
        """The next message of the group, TIMEOUT when none came in time (the actor is then
        killed by the caller), or CRASH when the actor died."""
        ray = self.ray
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return TIMEOUT
            wait_s = min(left, POLL_S)
            try:
                self._buffer.extend(ray.get(self.actor.take.remote(wait_s), timeout=wait_s + RPC_SLACK_S))
            except ray.exceptions.GetTimeoutError:
                continue  # the actor holds the GIL (a hung call): the deadline decides
            except ray.exceptions.RayActorError as exc:
                self._death = f"Ray worker died: {_one_line(exc)}"
                return CRASH
        return self._buffer.popleft()

    def _death_description(self) -> str:
        self.kill()
        return self._death or "Ray worker died"

    def stop(self) -> None:
        try:
            self.ray.get(self.actor.close.remote(), timeout=10)
        except Exception:  # already dead or stuck: killed below either way
            pass
        self.kill()

    def kill(self) -> None:
        try:
            self.ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone
            pass


class RayExecutor:
    """Workers as Ray actors on the cluster at ``--ray-address`` (default: a local Ray
    started for this run and stopped after it). Inside a process already connected to Ray
    (e.g. tests), that connection is used."""

    kind = "ray"

    def __init__(self, spec):
        self.spec = spec
        ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", **({} if spec.ray_address else {"num_cpus": _local_cpus(spec)}))
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UserError(f"--ray-address: {spec.ray_address or 'local'}: cannot connect to Ray "
                                f"({_one_line(exc)}) (expected the address of a running head, e.g. "
                                "ray://head:10001 or head:6379)") from None
        self._actor_class = _actor_class()

    def lanes(self, device: str) -> list[Lane]:
        ray = import_ray()
        on_cuda = device.startswith("cuda")
        worker_device = "cuda:0" if on_cuda else device  # Ray's CUDA_VISIBLE_DEVICES: the actor's GPU is 0
        if self.spec.devices == ("all",):
            gpus = int(ray.cluster_resources().get("GPU", 0))
            if gpus < 1:
                raise UserError("--devices all: the Ray cluster has no GPU resources "
                                "(expected nodes started with GPUs, or --workers N for CPU slots)")
            return [Lane(f"w{i}", worker_device, {"num_gpus": 1, "num_cpus": 1}) for i in range(gpus)]
        if self.spec.devices:
            raise UserError("--devices: with --executor ray, Ray assigns the GPUs "
                            "(expected --devices all: one actor per GPU, or --workers N)")
        if on_cuda:
            return [Lane(f"w{i}", worker_device, {"num_gpus": 1, "num_cpus": 1}) for i in range(self.spec.workers)]
        return [Lane(f"w{i}", worker_device, {"num_cpus": 1}) for i in range(self.spec.workers)]

    def start_worker(self, lane: Lane, config: WorkerConfig, source: str, log_path=None) -> RayWorker:
        """``log_path`` is not used: an actor's output goes to Ray's own worker logs."""
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(plugin_paths(config.pipeline))}}
        return RayWorker(self._actor_class, lane, config, source, env)

    def describe(self) -> dict:
        ray = import_ray()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {**self.spec.describe(), "ray_nodes": len(nodes),
                "ray_resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}}

    def close(self) -> None:
        if self._owns_ray:
            import_ray().shutdown()


def plugin_paths(pipeline: str) -> list[str]:
    """Folders the actors need on their PYTHONPATH: where the pipeline's top-level module
    and benchrunner come from, then the driver's own PYTHONPATH."""
    paths = [str(Path(__file__).resolve().parents[3])]
    top = pipeline.split(":", 1)[0].split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin not in (None, "built-in", "frozen"):
        origin = Path(spec.origin)
        paths.insert(0, str(origin.parent.parent if origin.name == "__init__.py" else origin.parent))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(paths))


def _local_cpus(spec) -> int:
    return max(os.cpu_count() or 1, spec.workers)


def _resources_text(resources: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in resources.items()) or "a worker"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:DEATH_TEXT_CHARS] + ("..." if len(text) > DEATH_TEXT_CHARS else "")
