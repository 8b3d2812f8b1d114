"""A run's samples and data version: the configured dataset loaded through ``evals``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from cluster.config import RunConfig
from evals.benchmarks import get_benchmark
from evals.sample import EvalSample


def dataset_revision(config: RunConfig) -> str:
    """What version of the data the rows come from (part of every unit id)."""
    return get_benchmark(config.dataset).revision(config.data_request())


def limit_per_cell(samples: Iterable[EvalSample], limit: int | None) -> Iterator[EvalSample]:
    """At most ``limit`` samples per (task, length) cell, in order."""
    seen: Counter[tuple[str, str]] = Counter()
    for sample in samples:
        cell = (sample.task, sample.length)
        if limit is None or seen[cell] < limit:
            seen[cell] += 1
            yield sample


def interleave_cells(samples: Iterable[EvalSample]) -> list[EvalSample]:
    """The first sample of every (task, length) cell, then the second of each, ...: a run cut
    short has covered every cell about equally."""
    rank: Counter[tuple[str, str]] = Counter()
    ranked = []
    for order, sample in enumerate(samples):
        cell = (sample.task, sample.length)
        ranked.append((rank[cell], order, sample))
        rank[cell] += 1
    return [sample for _, _, sample in sorted(ranked, key=lambda item: item[:2])]


def load_samples(config: RunConfig, tokenizer: Any | None) -> list[EvalSample]:
    """The run's samples: per cell up to the limit, cells interleaved (a benchmark without cells:
    the first ``limit`` samples). ``tokenizer`` is the run model's, for benchmarks that need it."""
    benchmark = get_benchmark(config.dataset)
    found = benchmark.load(config.data_request(), tokenizer)
    if not benchmark.cells:
        samples = list(found)
        return samples if config.limit is None else samples[: config.limit]
    return interleave_cells(limit_per_cell(found, config.limit))
