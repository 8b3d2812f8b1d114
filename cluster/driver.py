"""The driver: plan the run, start one worker actor per GPU (or CPU worker), dispatch units with
bounded in-flight work and ``ray.wait``, stream rows to the writer, report progress.

Failures never stop the run: a unit that raises is an error row (written by the worker); a unit
running past the ``timeout`` option is a ``timeout`` row and its worker is replaced; a dead worker is
replaced and its units re-queued with backoff, up to ``max_retries`` times each, then recorded
as errors. Every unit id is written at most once; rerunning resumes where the rows stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ray

from cluster.address import check_address
from cluster.config import RunConfig
from cluster.dispatcher import Dispatcher, Progress
from cluster.plan import WorkUnit, cell_revisions, drop_done, plan_units
from cluster.pool import WorkerPool, check_gpus, worker_count
from cluster.rows import ResultRow
from cluster.samples import dataset_revision, load_samples
from cluster.worker import EvalWorker
from cluster.writer import (
    MANIFESTS,
    RESULTS,
    OutputLock,
    ResultsError,
    ShardWriter,
    check_output_placement,
    check_shards,
    done_unit_ids,
    previous_cell_revisions,
    previous_revisions,
    remove_shards,
    update_manifest,
    write_manifest,
)
from evals.benchmarks import get_benchmark
from laserkv.modeling import load_tokenizer


@dataclass(frozen=True)
class FaultInjection:
    """Test-only hooks (not part of ``run_eval``): another worker class, a callback after each
    written row (with the worker pool), Ray resources the first workers ask for (to place them
    on one node)."""

    worker_cls: type = EvalWorker
    on_row: Callable[[ResultRow, WorkerPool], None] | None = None
    first_placement: dict[str, float] = field(default_factory=dict)


def connect(config: RunConfig, ray_logs: bool = False) -> bool:
    """Connect to Ray: an existing cluster (``address``, or ``RAY_ADDRESS`` under ``ray job
    submit``) or a local one started here. Ray's own log lines (its start, its token
    authentication notice) are shown only with ``ray_logs``; its errors always are. Returns
    whether this call started the connection."""
    if ray.is_initialized():
        return False
    address = config.address
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # a new local cluster: never attach to one a `ray start` left on this machine (it may
        # be someone else's, or gone, with its address file still there)
        address = "local"
    check_address(address, config.allow_remote_address)  # the address Ray will use (RAY_ADDRESS now)
    local = address == "local"
    # worker output stays in Ray's logs: every outcome, errors included, is a result row
    ray.init(
        address=address,
        include_dashboard=False if local else None,
        log_to_driver=False,
        logging_level=logging.INFO if ray_logs else logging.ERROR,
    )
    return True


class OutputClaim:
    """The output directory for one driver: checked not to lie inside another run's directory,
    created if missing, locked (``OutputLock``) until the run ends. A run that fails before any
    of its rows is written leaves nothing new behind: its manifest and the folders it created
    (when still empty) are removed; nothing it did not create is ever touched.
    """

    def __init__(self, config: RunConfig, run_id: str) -> None:
        self.output = Path(config.output).expanduser()
        self.run_id = run_id
        self.created: list[Path] = []  # folders this run made, outermost first
        self.manifest: Path | None = None
        self.lock = OutputLock(self.output, run_id)

    def __enter__(self) -> OutputClaim:
        check_output_placement(self.output)
        missing = [path for path in (self.output, *self.output.parents) if not path.exists()]
        self.output.mkdir(parents=True, exist_ok=True)
        self.created = list(reversed(missing))
        for name in (RESULTS, MANIFESTS):  # made later by the writer / the manifest
            if not (self.output / name).exists():
                self.created.append(self.output / name)
        try:
            self.lock.acquire()
        except BaseException:
            self._remove_created()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is not None and not any((self.output / RESULTS).glob(f"part-{self.run_id}-*.parquet")):
                if self.manifest is not None:  # no row refers to this run
                    self.manifest.unlink(missing_ok=True)
                self._remove_created()
        finally:
            self.lock.release()

    def _remove_created(self) -> None:
        for path in reversed(self.created):  # innermost first; a folder with anything in it stays
            if path == self.output:
                self.lock.release()
            with contextlib.suppress(OSError):
                path.rmdir()


def run_eval(
    config: RunConfig, progress: Callable[[Progress], None] | None = None, ray_logs: bool = False
) -> Path:
    """Run ``config`` to completion (or resume it) and return the output directory.

    The data and the plan come first (a bad dataset fails before any Ray cluster starts); then
    Ray, the GPU check, the manifest and the workers.

    The output directory is claimed first (``OutputClaim``: not inside another run's directory,
    locked against a second driver); a run that fails before any row is written leaves nothing new.

    Args:
        progress: called after every finished unit.
        ray_logs: show Ray's own log lines (``--verbose``).

    Raises:
        ResultsError: the output directory is another driver's now, lies inside another run's
            directory, or holds a file that is not a laserkv shard (``overwrite`` included).
        WorkerStartError: no worker fits on the Ray cluster, or the workers cannot start.
        AddressError: the address Ray would join (``RAY_ADDRESS`` for ``auto``) is refused.
    """
    return execute(config, progress, FaultInjection(), ray_logs)


def check_cell_revisions(output: Path, dataset: str, cells: dict[str, str]) -> None:
    """Refuse a run whose cell has another data version than earlier runs' rows of that cell.

    Raises:
        ResultsError: the cell, both versions and what to do.
    """
    earlier = previous_cell_revisions(output, dataset)
    for cell, revision in sorted(cells.items()):
        other = sorted(earlier.get(cell, set()) - {revision})
        if other:  # its old rows would sit beside the new version's under other unit ids
            raise ResultsError(
                f"{output} holds {dataset} {cell} results of another data version ({', '.join(other)}, "
                f"now {revision}): use another --output, or --overwrite"
            )


def execute(
    config: RunConfig,
    progress: Callable[[Progress], None] | None,
    faults: FaultInjection,
    ray_logs: bool = False,
) -> Path:
    """``run_eval`` with fault-injection hooks (tests)."""
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    with OutputClaim(config, run_id) as claim:
        _execute(config, progress, faults, ray_logs, claim)
    return claim.output


def _execute(
    config: RunConfig,
    progress: Callable[[Progress], None] | None,
    faults: FaultInjection,
    ray_logs: bool,
    claim: OutputClaim,
) -> None:
    output, run_id = claim.output, claim.run_id
    needs_tokenizer = get_benchmark(config.dataset).needs_tokenizer  # truncation, generated lengths
    tokenizer = load_tokenizer(config.model) if needs_tokenizer else None
    revision = dataset_revision(config)
    earlier = set() if config.overwrite else previous_revisions(output, config.dataset) - {revision}
    if earlier:  # resuming would mix two versions of the data in one set of cells
        raise ResultsError(
            f"{output} holds {config.dataset} results of another data version "
            f"({', '.join(sorted(earlier))}, now {revision}): use another --output, or --overwrite"
        )
    units = plan_units(load_samples(config, tokenizer), config.methods, config.model, revision, config.seed)
    cells = cell_revisions(units)
    if not config.overwrite:
        check_cell_revisions(output, config.dataset, cells)
    # --overwrite removes only files read as laserkv shards (a foreign file refuses the run)
    old_shards = check_shards(output) if config.overwrite else []
    done = set() if config.overwrite else done_unit_ids(output, ok_only=config.retry_failed)
    todo = drop_done(units, done)
    started_ray = connect(config, ray_logs)
    try:
        check_gpus(config)
        workers = worker_count(config, faults.first_placement) if todo else 0
        details = {
            "dataset_revision": revision,
            "cell_revisions": cells,
            "units_planned": len(units),
            "units_already_done": len(units) - len(todo),
            "ray_resources": ray.cluster_resources(),
        }
        claim.manifest = write_manifest(output, run_id, config.to_dict(), details)
        if todo:
            skipped = len(units) - len(todo)
            _dispatch(
                config, todo, run_id, output, skipped, progress, faults, old_shards, workers, claim.manifest
            )
    finally:
        if started_ray:
            ray.shutdown()


def _dispatch(
    config: RunConfig,
    todo: list[WorkUnit],
    run_id: str,
    output: Path,
    skipped: int,
    progress: Callable[[Progress], None] | None,
    faults: FaultInjection,
    old_shards: list[Path],
    workers: int,
    manifest: Path,
) -> None:
    """Start the workers (the manifest gets each one's engine path: ``workers``, with the
    replacements' added at the end), then let a ``Dispatcher`` run ``todo`` into a ``ShardWriter``."""
    pool = WorkerPool(config, faults.worker_cls, run_id, faults.first_placement, workers)
    update_manifest(manifest, {"workers": pool.engine_paths})
    remove_shards(old_shards)  # --overwrite: the workers are up, the previous rows can go
    writer = ShardWriter(output, run_id)

    def sink(row: ResultRow) -> None:
        writer.add(row)
        if faults.on_row is not None:
            faults.on_row(row, pool)

    try:
        Dispatcher(config, pool, todo, sink, run_id, skipped, progress).run()
    finally:
        try:
            writer.flush()
            if pool.replacement_paths:  # a replacement may run another path (another node)
                update_manifest(manifest, {"workers": pool.all_engine_paths()})
        finally:
            pool.shutdown()


__all__ = ["Progress", "WorkerPool", "connect", "run_eval"]
