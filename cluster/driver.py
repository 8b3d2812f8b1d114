"""The driver: plan the run, start one worker actor per GPU (or CPU worker), dispatch units with
bounded in-flight work and ``ray.wait``, stream rows to the writer, report progress.

Failures never stop the run: a unit that raises is an error row (written by the worker); a unit
past ``unit_timeout_s`` is a ``timeout`` row and its worker is replaced; a dead worker is
replaced and its units re-queued with backoff, up to ``max_retries`` times each, then recorded
as errors. Every unit id is written at most once; rerunning resumes where the rows stop.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from cluster.config import RunConfig
from cluster.plan import WorkUnit, drop_done, plan_units
from cluster.rows import error_row
from cluster.samples import dataset_revision, load_samples
from cluster.worker import EvalWorker
from cluster.writer import (
    ResultsError,
    ShardWriter,
    done_unit_ids,
    previous_revisions,
    shard_paths,
    write_manifest,
)
from evals.benchmarks import get_benchmark
from laserkv.errors import LaserKVError
from laserkv.modeling import load_tokenizer

RETRY_BACKOFF_S = 1.0
START_TIMEOUT_S = 1800.0


class WorkerStartError(LaserKVError):
    """Worker actors failed in their constructor (model or tokenizer not loadable)."""


POLL_S = 1.0


@dataclass
class Progress:
    """What the driver reports after every finished unit."""

    done: int
    total: int
    errors: int
    skipped: int
    elapsed_s: float

    def line(self) -> str:
        """One plain progress line: ``done/total units, errors, ETA``."""
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f}s"
        return f"{self.done}/{self.total} units, {self.errors} errors, ETA {eta}"

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first unit)."""
        if self.done == 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


@dataclass
class _Pending:
    unit: WorkUnit
    attempt: int = 1
    not_before: float = 0.0


@dataclass
class _Running:
    pending: _Pending
    worker: int
    actor_id: Any
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """The worker actors, replaceable one by one."""

    def __init__(self, config: RunConfig, worker_cls: type, run_id: str) -> None:
        self.config, self.run_id = config, run_id
        check_gpus(config)
        self.actor_cls: Any = ray.remote(worker_cls)
        self.actors: list[Any] = [self._start() for _ in range(config.n_workers)]
        self.replaced = 0
        self.wait_ready()

    def wait_ready(self) -> None:
        """Block until every worker has loaded its model (at most ``START_TIMEOUT_S``).

        Raises:
            WorkerStartError: a worker could not start (e.g. the model is not available).
        """
        try:
            ray.get([actor.pid.remote() for actor in self.actors], timeout=START_TIMEOUT_S)
        except GetTimeoutError as error:
            self.shutdown()
            raise WorkerStartError(f"the workers did not start within {START_TIMEOUT_S:.0f} s") from error
        except RayActorError as error:
            self.shutdown()
            causes = re.findall(r"(\w+(?:Error|Exception)): (.+)", str(error))
            cause = ": ".join(causes[-1]) if causes else str(error).splitlines()[0]
            raise WorkerStartError(f"the workers could not start: {cause}") from error

    def _start(self) -> Any:
        gpus = 1 / self.config.workers_per_gpu if self.config.gpus > 0 else 0
        device = self.config.device or ("cuda" if gpus else "cpu")
        options = self.actor_cls.options(num_gpus=gpus, num_cpus=1, max_restarts=0, max_concurrency=1)
        return options.remote(self.config.model, device, self.config.dtype, self.run_id)

    def actor_id(self, index: int) -> Any:
        """The Ray id of the actor now at ``index``."""
        return self.actors[index]._actor_id

    def replace(self, index: int, actor_id: Any) -> None:
        """Replace worker ``index`` by a fresh one, unless it was already replaced since the
        actor ``actor_id`` ran there (several of its units can report its death)."""
        if self.actor_id(index) != actor_id:
            return
        ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._start()
        self.replaced += 1

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)


def check_gpus(config: RunConfig) -> None:
    """Refuse a run that asks for more GPUs than the Ray cluster has.

    Raises:
        WorkerStartError: too few GPUs.
    """
    available = ray.cluster_resources().get("GPU", 0)
    if config.gpus > available:
        raise WorkerStartError(f"gpus={config.gpus} but the Ray cluster has {available:g} GPU(s)")


def connect(config: RunConfig) -> bool:
    """Connect to Ray: an existing cluster (``address``, or ``RAY_ADDRESS`` under ``ray job
    submit``) or a local one started here. Returns whether this call started the connection."""
    if ray.is_initialized():
        return False
    address = config.address
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # a new local cluster: never attach to one a `ray start` left on this machine (it may
        # be someone else's, or gone, with its address file still there)
        address = "local"
    local = address == "local"
    # worker output stays in Ray's logs: every outcome, errors included, is a result row
    ray.init(address=address, include_dashboard=False if local else None, log_to_driver=False)
    return True


def prepare_output(config: RunConfig) -> Path:
    """The output directory (created if missing). Previous shards are removed by ``overwrite``
    only once the workers are up (``_dispatch``), so a failing start loses nothing."""
    output = Path(config.output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    return output


def run_eval(
    config: RunConfig,
    worker_cls: type = EvalWorker,
    progress: Callable[[Progress], None] | None = None,
    on_row: Callable[[dict[str, Any], WorkerPool], None] | None = None,
) -> Path:
    """Run ``config`` to completion (or resume it) and return the output directory.

    Args:
        worker_cls: the actor class (tests inject faulty workers).
        progress: called after every finished unit.
        on_row: called with each written row and the worker pool (fault-injection tests).
    """
    output = prepare_output(config)
    started_ray = connect(config)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    try:
        check_gpus(config)  # before anything slow: the tokenizer, the data, the workers
        needs_tokenizer = get_benchmark(config.dataset).needs_tokenizer  # truncation, generated lengths
        tokenizer = load_tokenizer(config.model) if needs_tokenizer else None
        revision = dataset_revision(config)
        earlier = set() if config.overwrite else previous_revisions(output, config.dataset) - {revision}
        if earlier:  # resuming would mix two versions of the data in one set of cells
            raise ResultsError(
                f"{output} holds {config.dataset} results of another data version "
                f"({', '.join(sorted(earlier))}, now {revision}): use another --output, or --overwrite"
            )
        units = plan_units(
            load_samples(config, tokenizer), config.methods, config.model, revision, config.seed
        )
        done = set() if config.overwrite else done_unit_ids(output, ok_only=config.retry_failed)
        todo = drop_done(units, done)
        write_manifest(
            output,
            run_id,
            config.to_dict(),
            {
                "dataset_revision": revision,
                "units_planned": len(units),
                "units_already_done": len(units) - len(todo),
                "ray_resources": ray.cluster_resources(),
            },
        )
        if todo:
            _dispatch(config, todo, worker_cls, run_id, output, len(units) - len(todo), progress, on_row)
    finally:
        if started_ray:
            ray.shutdown()
    return output


def _dispatch(
    config: RunConfig,
    todo: list[WorkUnit],
    worker_cls: type,
    run_id: str,
    output: Path,
    skipped: int,
    progress: Callable[[Progress], None] | None,
    on_row: Callable[[dict[str, Any], WorkerPool], None] | None,
) -> None:
    old_shards = shard_paths(output) if config.overwrite else []
    pool = WorkerPool(config, worker_cls, run_id)
    for path in old_shards:  # --overwrite: the workers are up, the previous rows can go
        path.unlink()
    writer = ShardWriter(output, run_id)
    queue = deque(_Pending(unit) for unit in todo)
    running: dict[Any, _Running] = {}
    written: set[str] = set()
    errors = 0
    start = time.monotonic()

    def write(row: dict[str, Any]) -> None:
        nonlocal errors
        if row["unit_id"] in written:
            return
        written.add(row["unit_id"])
        errors += row["status"] != "ok"
        writer.add(row)
        if on_row is not None:
            on_row(row, pool)
        if progress is not None:
            progress(Progress(len(written), len(todo), errors, skipped, time.monotonic() - start))

    def requeue_or_fail(item: _Pending, reason: str) -> None:
        if item.attempt > config.max_retries:
            write(
                error_row(
                    item.unit,
                    run_id,
                    item.attempt,
                    "",
                    "error",
                    f"worker died {item.attempt} times: {reason}",
                )
            )
            return
        delay = RETRY_BACKOFF_S * 2 ** (item.attempt - 1)
        queue.append(_Pending(item.unit, item.attempt + 1, time.monotonic() + delay))

    try:
        while queue or running:
            _fill(pool, queue, running, config.max_in_flight)
            if not running:  # everything waits for its backoff
                time.sleep(POLL_S / 10)
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                item = running.pop(ref)
                _start_next_clock(running, item.worker)
                try:
                    write(ray.get(ref))
                except RayActorError as error:  # the worker died: replace it, re-queue its unit
                    pool.replace(item.worker, item.actor_id)
                    requeue_or_fail(item.pending, type(error).__name__)
                except RayTaskError as error:  # raised outside the worker's own error handling
                    write(error_row(item.pending.unit, run_id, item.pending.attempt, "", "error", str(error)))
            _expire(config, pool, running, write, run_id)
    finally:
        writer.flush()
        pool.shutdown()


def _fill(pool: WorkerPool, queue: deque[_Pending], running: dict[Any, _Running], per_worker: int) -> None:
    """Submit queued units to workers with free slots (respecting retry backoff)."""
    load = [0] * len(pool.actors)
    for item in running.values():
        load[item.worker] += 1
    now = time.monotonic()
    for _ in range(len(queue)):
        free = [index for index, count in enumerate(load) if count < per_worker]
        if not free:
            return
        pending = queue.popleft()
        if pending.not_before > now:
            queue.append(pending)
            continue
        index = min(free, key=lambda worker: load[worker])
        ref = pool.actors[index].run.remote(pending.unit, pending.attempt)
        running[ref] = _Running(pending, index, pool.actor_id(index))
        load[index] += 1


def _start_next_clock(running: dict[Any, _Running], worker: int) -> None:
    """A worker runs its units one at a time: the oldest one still queued there starts now."""
    queued = [item for item in running.values() if item.worker == worker]
    if queued:
        min(queued, key=lambda item: item.started).started = time.monotonic()


def _expire(
    config: RunConfig,
    pool: WorkerPool,
    running: dict[Any, _Running],
    write: Callable[[dict[str, Any]], None],
    run_id: str,
) -> None:
    """Units past the timeout become ``timeout`` rows; their worker is replaced (which also
    returns its other units as actor errors, so they are re-queued)."""
    now = time.monotonic()
    oldest: dict[int, Any] = {}
    for ref, item in running.items():  # only the unit a worker is running can time out
        if item.worker not in oldest or item.started < running[oldest[item.worker]].started:
            oldest[item.worker] = ref
    for ref in oldest.values():
        item = running[ref]
        if now - item.started <= config.unit_timeout_s:
            continue
        running.pop(ref)
        message = f"unit ran longer than {config.unit_timeout_s} s"
        write(error_row(item.pending.unit, run_id, item.pending.attempt, "", "timeout", message))
        pool.replace(item.worker, item.actor_id)


__all__ = ["Progress", "WorkerPool", "connect", "run_eval"]
