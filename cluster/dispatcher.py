"""The dispatcher: one object owns the run's bookkeeping: the queue, the in-flight units (per
worker, in the order they were sent) with the time each really started, and the written ids.

A worker actor runs one unit at a time, in the order its units were sent (Ray runs the tasks one
caller sends to an actor in that order), so the first in-flight unit of a worker is the one
running there: it started when it was sent to an idle worker or when the one before it finished,
and not before the worker had loaded its model (a replacement's load, or its wait for a node
with room, never counts against the unit's timeout).
A unit id written twice is a bookkeeping bug and raises ``BookkeepingError``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from cluster.config import RunConfig
from cluster.plan import WorkUnit
from cluster.pool import WorkerPool
from cluster.rows import ResultRow, error_row

RETRY_BACKOFF_S = 1.0
POLL_S = 1.0


class BookkeepingError(RuntimeError):
    """The dispatcher's own invariant broke (a unit id planned or written twice)."""


@dataclass
class Pending:
    """A unit waiting to be sent: its attempt number and when its retry backoff ends."""

    unit: WorkUnit
    attempt: int = 1
    not_before: float = 0.0


@dataclass
class InFlight:
    """A unit sent to worker ``worker`` (of that slot's ``generation``); ``started`` is set
    when it becomes the unit the worker runs."""

    pending: Pending
    worker: int
    generation: int
    started: float | None = None


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


RowSink = Callable[[ResultRow], None]


class Dispatcher:
    """Runs ``todo`` on ``pool`` until every unit has exactly one row.

    Args:
        sink: receives each row once (the writer).
        skipped: units already done before this run (for progress).
        progress: called after every written row.
    """

    def __init__(
        self,
        config: RunConfig,
        pool: WorkerPool,
        todo: list[WorkUnit],
        sink: RowSink,
        run_id: str,
        skipped: int = 0,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        ids = [unit.unit_id for unit in todo]
        if len(set(ids)) != len(ids):
            raise BookkeepingError("the plan holds a unit id twice")
        self.config, self.pool, self.sink, self.run_id = config, pool, sink, run_id
        self.queue: deque[Pending] = deque(Pending(unit) for unit in todo)
        self.running: dict[Any, InFlight] = {}
        self.order: list[deque[Any]] = [deque() for _ in pool.actors]
        self.written: set[str] = set()
        self.total, self.skipped, self.errors = len(todo), skipped, 0
        self.progress = progress
        self.start = time.monotonic()

    def run(self) -> None:
        """Send, collect and expire until the queue and the workers are empty."""
        while self.queue or self.running:
            self.fill()
            if not self.running:  # everything waits for its backoff
                time.sleep(POLL_S / 10)
                continue
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self.collect(ref)
            self.expire()

    def fill(self) -> None:
        """Send queued units to workers with free slots (respecting retry backoff)."""
        now = time.monotonic()
        for _ in range(len(self.queue)):
            free = [index for index, sent in enumerate(self.order) if len(sent) < self.config.max_in_flight]
            if not free:
                return
            pending = self.queue.popleft()
            if pending.not_before > now:
                self.queue.append(pending)
                continue
            index = min(free, key=lambda worker: len(self.order[worker]))
            ref = self.pool.actors[index].run.remote(pending.unit, pending.attempt)
            self.running[ref] = InFlight(pending, index, self.pool.generations[index])
            self.order[index].append(ref)
            self._mark_started(index)

    def collect(self, ref: Any) -> None:
        """The row of a finished unit, or the consequences of its worker's death."""
        item = self._remove(ref)
        try:
            self.write(ray.get(ref))
        except RayActorError as error:  # the worker died: replace it, re-queue its unit
            self._replace(item)
            self.requeue_or_fail(item.pending, type(error).__name__)
        except RayTaskError as error:  # raised outside the worker's own error handling
            self.write(
                error_row(item.pending.unit, self.run_id, item.pending.attempt, "", "error", str(error))
            )

    def expire(self) -> None:
        """A running unit past the timeout becomes a ``timeout`` row; its worker is replaced
        (its other units then come back as actor errors and are re-queued)."""
        now = time.monotonic()
        for index, sent in enumerate(self.order):
            if not sent:
                continue
            self._mark_started(index)
            item = self.running[sent[0]]
            if item.started is None or now - item.started <= self.config.timeout:
                continue
            self._remove(sent[0])
            message = f"unit ran longer than {self.config.timeout} s"
            self.write(
                error_row(item.pending.unit, self.run_id, item.pending.attempt, "", "timeout", message)
            )
            self._replace(item)

    def requeue_or_fail(self, pending: Pending, reason: str) -> None:
        """Send a unit again after a backoff, or record it as failed after ``max_retries``."""
        if pending.attempt > self.config.max_retries:
            message = f"worker died {pending.attempt} times: {reason}"
            self.write(error_row(pending.unit, self.run_id, pending.attempt, "", "error", message))
            return
        delay = RETRY_BACKOFF_S * 2 ** (pending.attempt - 1)
        self.queue.append(Pending(pending.unit, pending.attempt + 1, time.monotonic() + delay))

    def write(self, row: ResultRow) -> None:
        """Hand one row to the sink.

        Raises:
            BookkeepingError: a row for this unit id was already written.
        """
        if row["unit_id"] in self.written:
            raise BookkeepingError(f"unit {row['unit_id']} came back twice")
        self.written.add(row["unit_id"])
        self.errors += row["status"] != "ok"
        self.sink(row)
        if self.progress is not None:
            elapsed = time.monotonic() - self.start
            self.progress(Progress(len(self.written), self.total, self.errors, self.skipped, elapsed))

    def _remove(self, ref: Any) -> InFlight:
        """Take ``ref`` out of the in-flight units; the next unit of its worker starts now."""
        item = self.running.pop(ref)
        sent = self.order[item.worker]
        if ref in sent:
            was_running = sent[0] == ref
            sent.remove(ref)
            if was_running:
                self._mark_started(item.worker)
        return item

    def _mark_started(self, worker: int) -> None:
        sent = self.order[worker]
        if sent and self.running[sent[0]].started is None and self.pool.is_ready(worker):
            self.running[sent[0]].started = time.monotonic()

    def _replace(self, item: InFlight) -> None:
        """Replace the item's worker if it is still the actor the item was sent to; the units
        still sent there will come back as actor errors (each re-queued then)."""
        if self.pool.replace(item.worker, item.generation):
            self.order[item.worker].clear()
