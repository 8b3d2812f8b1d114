"""One output scored by its dataset's official metric: (prediction, correct)."""

from __future__ import annotations

from evals import babilong, longbench_v2, needle
from evals.sample import EvalSample


def score_output(sample: EvalSample, raw_output: str) -> tuple[str | None, bool]:
    """The parsed prediction and whether it is right, as the official code decides.

    LongBench v2: the extracted letter of the stripped response (None if no match). BABILong
    and the demo set: the stripped output itself, judged by ``compare_answers``.
    """
    return score_fields(sample.dataset, sample.target, raw_output, sample.fields["question"], sample.task)


def score_fields(
    dataset: str, target: str, raw_output: str, question: str, task: str
) -> tuple[str | None, bool]:
    """``score_output`` from plain fields (as a result row stores them)."""
    output = raw_output.strip()
    if task in needle.TASKS:
        return output, needle.string_match_all(target, output)
    if dataset == longbench_v2.DATASET:
        prediction = longbench_v2.extract_answer(output)
        return prediction, prediction == target
    return output, babilong.compare_answers(target, output, question, task)
