"""A run's samples and data version: the configured dataset loaded through ``evals``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cluster.config import RunConfig
from evals import babilong, demo_set, longbench_v2
from evals.sample import EvalSample


def demo_spec(config: RunConfig) -> demo_set.DemoSpec:
    """The demo set a run uses: lengths counted by the run model's tokenizer."""
    return demo_set.DemoSpec(
        samples_per_cell=config.demo_samples_per_cell, counter=f"tokenizer:{config.model}"
    )


def dataset_revision(config: RunConfig) -> str:
    """What version of the data the rows come from (part of every unit id)."""
    if config.dataset == "babilong_demo":
        return f"demo:{demo_spec(config).cache_key()}"
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
    """The run's samples, cells interleaved. LongBench v2 prompts are middle-truncated with
    ``tokenizer``; demo-set lengths are counted with it."""
    if config.dataset == "longbench_v2":
        items = longbench_v2.load_samples(
            config.dataset_source or longbench_v2.HUB_ID, tokenizer, greedy=config.greedy
        )
        samples = list(items)
        return samples if config.limit is None else samples[: config.limit]
    if config.dataset == "babilong_demo":
        if tokenizer is None:
            raise ValueError("the demo set counts tokens with the run model's tokenizer: pass it")
        counter = demo_set.tokenizer_counter(tokenizer)
        found: Iterable[EvalSample] = demo_set.load_samples(
            config.lengths, config.tasks, demo_spec(config), counter
        )
    else:
        found = babilong.load_samples(config.dataset, config.lengths, config.tasks, config.dataset_source)
    return interleave_cells(limit_per_cell(found, config.limit))
