"""The worker actors of a run: started together, checked ready, replaceable one by one. Each
slot has a generation that counts its replacements, so a unit knows whether the actor it was
sent to is still the one there (no Ray internals are read)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from cluster.config import RunConfig
from laserkv.errors import LaserKVError
from laserkv.switches import engine_switches

START_TIMEOUT_S = 1800.0
WAIT_NOTICE_S = 30.0  # a worker start this slow is reported (it may wait for room on the cluster)


class WorkerStartError(LaserKVError):
    """Worker actors failed in their constructor (model or tokenizer not loadable)."""


def check_gpus(config: RunConfig) -> None:
    """Refuse a run that asks for more GPUs than the Ray cluster has.

    Raises:
        WorkerStartError: too few GPUs.
    """
    available = ray.cluster_resources().get("GPU", 0)
    if config.gpus > available:
        raise WorkerStartError(f"gpus={config.gpus} but the Ray cluster has {available:g} GPU(s)")


def notice(text: str) -> None:
    """One warning line on stderr (the run goes on)."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


def worker_needs(config: RunConfig, extra: dict[str, float] | None = None) -> dict[str, float]:
    """The Ray resources one worker actor asks for (``WorkerPool._start``)."""
    gpus = 1 / config.workers_per_gpu if config.gpus > 0 else 0
    needs = {"CPU": 1.0, **({"GPU": gpus} if gpus else {}), **(extra or {})}
    return {name: float(amount) for name, amount in needs.items() if amount > 0}


def fitting_workers(needs: dict[str, float]) -> int:
    """How many actors asking for ``needs`` the alive nodes of the Ray cluster can hold at once
    (each node's total resources; an actor never spans nodes)."""
    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        total += min(math.floor(have.get(name, 0.0) / amount + 1e-6) for name, amount in needs.items())
    return total


def _resources_text(needs: dict[str, float]) -> str:
    have = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    held = ", ".join(f"{have.get(name, 0):g} {name}" for name in needs)
    wants = ", ".join(f"{amount:g} {name}" for name, amount in needs.items())
    return f"the Ray cluster has {held} over {nodes} node(s); each worker needs {wants}"


def worker_count(config: RunConfig, first_placement: dict[str, float] | None = None) -> int:
    """How many workers the run starts: ``config.n_workers``, or as many as fit on the Ray
    cluster (with a warning line), so no worker waits for room that never comes.

    Raises:
        WorkerStartError: not one worker fits (the message says what the cluster has).
    """
    needs = worker_needs(config, first_placement)
    fit = fitting_workers(needs)
    wanted = config.n_workers
    if fit <= 0:
        raise WorkerStartError(f"none of the {wanted} worker(s) fits: {_resources_text(needs)}")
    if fit < wanted:
        notice(f"only {fit} of {wanted} workers fit ({_resources_text(needs)}): running on {fit}")
        return fit
    return wanted


class WorkerPool:
    """``config.n_workers`` actors of ``worker_cls`` (each loads the model once).

    Args:
        first_placement: extra Ray resources the first workers ask for (tests place them on one
            node); their replacements go wherever Ray finds room.
    """

    def __init__(
        self,
        config: RunConfig,
        worker_cls: type,
        run_id: str,
        first_placement: dict[str, float] | None = None,
        count: int | None = None,
    ) -> None:
        self.config, self.run_id = config, run_id
        self.actor_cls: Any = ray.remote(worker_cls)
        count = config.n_workers if count is None else count
        self.actors: list[Any] = [self._start(first_placement or {}) for _ in range(count)]
        self.generations = [0] * len(self.actors)
        self.readiness: list[Any] = [actor.start_error.remote() for actor in self.actors]
        self.ready = [False] * len(self.actors)
        self.replaced = 0
        self.wait_ready()
        self.engine_paths: list[dict[str, object]] = ray.get(
            [actor.engine_path.remote() for actor in self.actors]
        )
        """Each starting worker's host and process and the engine path its model takes."""
        self.replacement_paths: list[Any] = []
        """Each replacement's engine path, asked for as it starts (before any unit is sent to it)."""

    def wait_ready(self) -> None:
        """Block until every worker has loaded its model (at most ``START_TIMEOUT_S``), saying
        every ``WAIT_NOTICE_S`` how many are ready.

        Raises:
            WorkerStartError: a worker could not start (its own message: e.g. the model is not
                available), or did not start in time.
        """
        start = time.monotonic()
        try:
            while True:
                waited = time.monotonic() - start
                timeout = min(WAIT_NOTICE_S, max(START_TIMEOUT_S - waited, 0.0))
                ready, _ = ray.wait(self.readiness, num_returns=len(self.readiness), timeout=timeout)
                if len(ready) == len(self.readiness) or time.monotonic() - start >= START_TIMEOUT_S:
                    break
                waited = time.monotonic() - start
                notice(
                    f"{len(ready)} of {len(self.readiness)} workers ready after {waited:.0f} s; the others"
                    " load the model or wait for room on the Ray cluster (ray status)"
                )
            problems = ray.get(self.readiness, timeout=0)
        except GetTimeoutError as error:
            self.shutdown()
            raise WorkerStartError(f"the workers did not start within {START_TIMEOUT_S:.0f} s") from error
        except RayActorError as error:
            self.shutdown()
            raise WorkerStartError(
                f"a worker process died while starting ({type(error).__name__})"
            ) from error
        problem = next((problem for problem in problems if problem), None)
        if problem is not None:
            self.shutdown()
            raise WorkerStartError(f"the workers could not start: {problem}")
        self.ready = [True] * len(self.actors)

    def is_ready(self, index: int) -> bool:
        """Whether worker ``index`` has finished loading its model (a replacement may still be
        loading, or waiting for a node with room); never blocks."""
        if not self.ready[index]:
            done, _ = ray.wait([self.readiness[index]], timeout=0)
            self.ready[index] = bool(done)
        return self.ready[index]

    def _start(self, resources: dict[str, float]) -> Any:
        gpus = 1 / self.config.workers_per_gpu if self.config.gpus > 0 else 0
        device = self.config.device or ("cuda" if gpus else "cpu")
        switches = engine_switches()  # the driver's switches, on every worker wherever it runs
        extra: dict[str, Any] = {"runtime_env": {"env_vars": switches}} if switches else {}
        options = self.actor_cls.options(
            num_gpus=gpus, num_cpus=1, max_restarts=0, max_concurrency=1, resources=resources, **extra
        )
        return options.remote(
            self.config.model, device, self.config.dtype, self.run_id, self.config.attention_recall
        )

    def replace(self, index: int, generation: int) -> bool:
        """Replace worker ``index`` by a fresh one, unless it was already replaced since
        ``generation`` (several of its units can report its death). Returns whether it did."""
        if self.generations[index] != generation:
            return False
        ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._start({})
        self.readiness[index] = self.actors[index].start_error.remote()
        self.replacement_paths.append(self.actors[index].engine_path.remote())
        self.ready[index] = False
        self.generations[index] += 1
        self.replaced += 1
        return True

    def all_engine_paths(self) -> list[dict[str, object]]:
        """The starting workers' engine paths, then those of the replacements that came up; one
        still loading or dead before it answered ran no unit and is left out. Never blocks."""
        answered, _ = ray.wait(self.replacement_paths, num_returns=len(self.replacement_paths), timeout=0)
        paths = list(self.engine_paths)
        for ref in answered:
            try:
                paths.append(ray.get(ref, timeout=0))
            except RayError:  # the replacement died before it answered
                continue
        return paths

    def shutdown(self) -> None:
        """Stop every worker."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
