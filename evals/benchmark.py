"""The benchmark protocol: what the orchestrator, the reducer and the CLI may ask of a benchmark.
Nothing outside ``evals`` names a dataset; everything goes through a ``Benchmark`` from
``evals.benchmarks.get_benchmark``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evals.errors import DatasetNotAvailableError
from evals.sample import EvalSample


@dataclass(frozen=True)
class DataRequest:
    """The data a run asks for.

    Attributes:
        lengths / tasks: the cells (benchmarks with ``cells=False`` ignore them).
        source: a local copy of the data (None: the hub, or a generated set).
        samples_per_cell: samples generated per cell (generated benchmarks).
        greedy: greedy decoding instead of the official sampling (LongBench v2).
        model: the run's model (generated sets count lengths with its tokenizer).
    """

    lengths: tuple[str, ...] = ("1k",)
    tasks: tuple[str, ...] = ("qa1",)
    source: str | None = None
    samples_per_cell: int = 100
    greedy: bool = False
    model: str = ""


@dataclass(frozen=True)
class Scored:
    """A benchmark's named per-sample values of one raw output, from ``evals.scoring.score_output``
    (the one place outputs are scored).

    Attributes:
        prediction: the official parse of the raw output (what a report shows as the prediction).
        correct: the official right/wrong judgement.
        score: the official per-sample score in [0, 1] (partial credit where the metric gives it).
        counts: whether the sample enters the accuracy (an official skip leaves it out).
    """

    prediction: str | None
    correct: bool
    score: float
    counts: bool


@dataclass(frozen=True)
class OfficialTable:
    """One table of a benchmark's official results, rendered as it is by the report."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


class Benchmark(Protocol):
    """One benchmark with its official protocol.

    Attributes:
        name: the registered name (``--dataset``).
        description: one line for ``laserkv datasets``.
        source: where the data comes from (hub id, or how it is generated).
        needs_tokenizer: whether samples depend on the model's tokenizer (truncation, lengths).
        cells: whether samples come in (task, length) cells (``--lengths`` / ``--tasks``; a
            limit is per cell); otherwise the limit counts samples in all.
        breakdown_fields: the sample fields (``EvalSample.fields``) every result row keeps in its
            ``breakdown`` column, and by which views may group (LongBench v2's difficulty, a
            needle's depth); JSON values (strings or numbers).
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def needs_tokenizer(self) -> bool: ...

    @property
    def cells(self) -> bool: ...

    @property
    def breakdown_fields(self) -> tuple[str, ...]: ...

    def lengths(self) -> tuple[str, ...]:
        """The lengths a run may ask for (or the length classes, without cells)."""
        ...

    def tasks(self, length: str) -> tuple[str, ...]:
        """The tasks there are at ``length``."""
        ...

    def check(self, request: DataRequest) -> None:
        """Refuse unknown lengths or tasks (``EvalError`` naming the valid ones)."""
        ...

    def revision(self, request: DataRequest) -> str:
        """The data's version (part of every unit id)."""
        ...

    def load(self, request: DataRequest, tokenizer: Any | None) -> Iterable[EvalSample]:
        """The samples, prompted as the official code prompts them."""
        ...

    def score(self, target: str, raw_output: str, question: str, task: str) -> tuple[str | None, bool]:
        """The parsed prediction of one raw output and whether it is right, as the official
        code decides."""
        ...

    def graded(self, target: str, raw_output: str, question: str, task: str) -> float:
        """The official per-sample score as a fraction in [0, 1]: 1.0 or 0.0 where the official
        metric judges right or wrong, a part where it gives partial credit (RULER)."""
        ...

    def counts(self, raw_output: str) -> bool:
        """Whether a row with this raw output enters the accuracy (official skips)."""
        ...

    def official_table(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The official result of one configuration's scored rows (``correct``, ``task``,
        ``length``, ``response``, ... as the reducer has them), as plain JSON-able data."""
        ...

    def official_tables(self, results: dict[str, dict[str, Any]]) -> list[OfficialTable]:
        """``official_table`` results per configuration label, as the tables to show."""
        ...

    def published(self, model: str) -> tuple[str, dict[str, float]] | None:
        """Published full-cache numbers for ``model`` (the name they were published under)."""
        ...


@dataclass(frozen=True)
class BenchmarkBase:
    """The ``Benchmark`` protocol's defaults: a benchmark subclasses this (a frozen dataclass) and
    writes only ``lengths``, ``tasks``, ``load`` and ``score``, plus what it does differently.

    Defaults: no tokenizer needed, (task, length) cells, no breakdown fields; ``check`` refuses a
    local copy that does not exist; the revision is the source's (``source_revision``); the graded
    score is the right/wrong judgement; every output counts; the official table is accuracy per
    task/length; no published numbers.
    """

    name: str
    description: str
    source: str
    needs_tokenizer: bool = False
    cells: bool = True
    breakdown_fields: tuple[str, ...] = ()

    def lengths(self) -> tuple[str, ...]:
        raise NotImplementedError(f"{type(self).__name__}.lengths")

    def tasks(self, length: str) -> tuple[str, ...]:
        raise NotImplementedError(f"{type(self).__name__}.tasks")

    def check(self, request: DataRequest) -> None:
        check_source(request.source)

    def revision(self, request: DataRequest) -> str:
        return source_revision(request.source)

    def load(self, request: DataRequest, tokenizer: Any | None) -> Iterable[EvalSample]:
        raise NotImplementedError(f"{type(self).__name__}.load")

    def score(self, target: str, raw_output: str, question: str, task: str) -> tuple[str | None, bool]:
        raise NotImplementedError(f"{type(self).__name__}.score")

    def graded(self, target: str, raw_output: str, question: str, task: str) -> float:
        return float(self.score(target, raw_output, question, task)[1])

    def counts(self, raw_output: str) -> bool:
        return True

    def official_table(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy (%) per ``task/length`` from each row's official judgement."""
        cells: dict[str, list[bool]] = {}
        for row in rows:
            cells.setdefault(f"{row['task']}/{row['length']}", []).append(bool(row["correct"]))
        return {"accuracy": {cell: 100 * sum(values) / len(values) for cell, values in sorted(cells.items())}}

    def official_tables(self, results: dict[str, dict[str, Any]]) -> list[OfficialTable]:
        cells = sorted({cell for scores in results.values() for cell in scores["accuracy"]})
        body = [
            (label, *(percent_cell(scores["accuracy"].get(cell)) for cell in cells))
            for label, scores in sorted(results.items())
        ]
        return [OfficialTable(f"{self.name}: accuracy per task/length (%)", ("method", *cells), body)]

    def published(self, model: str) -> tuple[str, dict[str, float]] | None:
        return None


def percent_cell(value: float | None) -> str:
    """A percentage as a table shows it (``-`` for none)."""
    return "-" if value is None else f"{value:.1f}"


def output_text(raw_output: object) -> str:
    """A stored raw output as text: None (no output) and NaN (a missing value in a pandas or CSV
    copy of the rows) are the empty string, as the official pipelines treat a missing output."""
    if raw_output is None or (isinstance(raw_output, float) and raw_output != raw_output):
        return ""
    return str(raw_output)


def check_source(source: str | None) -> None:
    """A local copy of the data, if given, must exist.

    Raises:
        DatasetNotAvailableError: it does not.
    """
    if source is not None and not Path(source).expanduser().exists():
        raise DatasetNotAvailableError(f"source={source!r} does not exist: pass a local copy of the dataset")


def source_revision(source: str | None) -> str:
    """The data version of a hub dataset (``hub:main``) or of a local copy (its resolved path)."""
    if source is not None:
        return f"local:{Path(source).expanduser().resolve()}"
    return "hub:main"
