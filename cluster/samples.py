"""A run's samples and data version: the configured dataset loaded through ``evals``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cluster.config import RunConfig
from evals import babilong, demo_set, longbench_v2
from evals.sample import EvalSample


def dataset_revision(config: RunConfig) -> str:
    """What version of the data the rows come from (part of every unit id)."""
    if config.dataset == "babilong_demo":
        return f"demo:{demo_set.DemoSpec(samples_per_cell=config.demo_samples_per_cell).cache_key()}"
    if config.dataset_source is not None:
        return f"local:{Path(config.dataset_source).expanduser().resolve()}"
    return "hub:main"


def limit_per_cell(samples: Iterable[EvalSample], limit: int | None) -> Iterator[EvalSample]:
    """At most ``limit`` samples per (task, length) cell, in order."""
    seen: Counter[tuple[str, str]] = Counter()
    for sample in samples:
        cell = (sample.task, sample.length)
        if limit is None or seen[cell] < limit:
            seen[cell] += 1
            yield sample


def load_samples(config: RunConfig, tokenizer: Any | None) -> list[EvalSample]:
    """The run's samples. LongBench v2 prompts are middle-truncated with ``tokenizer``."""
    if config.dataset == "longbench_v2":
        items = longbench_v2.load_samples(
            config.dataset_source or longbench_v2.HUB_ID, tokenizer, greedy=config.greedy
        )
        samples = list(items)
        return samples if config.limit is None else samples[: config.limit]
    if config.dataset == "babilong_demo":
        spec = demo_set.DemoSpec(samples_per_cell=config.demo_samples_per_cell)
        found: Iterable[EvalSample] = demo_set.load_samples(config.lengths, config.tasks, spec)
    else:
        found = babilong.load_samples(config.dataset, config.lengths, config.tasks, config.dataset_source)
    return list(limit_per_cell(found, config.limit))
