"""One output scored by its benchmark's official metric: (prediction, correct)."""

from __future__ import annotations

from evals.benchmarks import get_benchmark
from evals.sample import EvalSample


def score_output(sample: EvalSample, raw_output: str) -> tuple[str | None, bool]:
    """The parsed prediction and whether it is right, as the sample's benchmark decides."""
    return score_fields(sample.dataset, sample.target, raw_output, sample.fields["question"], sample.task)


def score_fields(
    dataset: str, target: str, raw_output: str, question: str, task: str
) -> tuple[str | None, bool]:
    """``score_output`` from plain fields (as a result row stores them)."""
    return get_benchmark(dataset).score(target, raw_output, question, task)
