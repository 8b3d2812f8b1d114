"""The one place an output is scored: a benchmark's official metric turns a raw output into its
named per-sample values (``evals.benchmark.Scored``). The worker, ``laserkv run`` and the results
table (``analysis.table``) all call ``score_output``; rows store the raw output only."""

from __future__ import annotations

from evals.benchmark import Scored, output_text
from evals.benchmarks import get_benchmark
from evals.sample import EvalSample

FAILED = Scored(prediction=None, correct=False, score=0.0, counts=True)
"""A unit that produced no answer (error, OOM, timeout): wrong for every benchmark, and counted,
so a method cannot gain by failing on hard samples."""


def score_output(dataset: str, target: str, raw_output: object, question: str, task: str) -> Scored:
    """The official judgement of one raw output (None or NaN, a missing output, is scored as the
    empty string: BABILong's metric judges it wrong, LongBench v2 skips it as pred.py skips '')."""
    benchmark = get_benchmark(dataset)
    text = output_text(raw_output)
    prediction, correct = benchmark.score(target, text, question, task)
    score = float(benchmark.graded(target, text, question, task))
    return Scored(prediction, bool(correct), score, bool(benchmark.counts(text)))


def score_sample(sample: EvalSample, raw_output: str) -> Scored:
    """``score_output`` of a sample's answer (as a unit is scored when it runs)."""
    return score_output(sample.dataset, sample.target, raw_output, sample.question, sample.task)
