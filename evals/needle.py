"""RULER-style needle-in-a-haystack samples (single and multi-key), generated offline.

Needles "One of the special magic numbers for <key> is: <7-digit number>." are hidden at random
sentence boundaries of the haystack (RULER's Paul Graham essays); the question asks for one
key's number. ``niah_single``: one needle; ``niah_multikey``: four needles with different keys,
one asked for. Written in BABILong's schema (``input``, ``question``, ``target``) like the demo
set, prompted RULER-style as one user message, and scored as RULER's ``string_match_all``
(the reference number appears in the output). Nothing of RULER's own data is reused.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from evals.sample import AnswerSpan, GenerationSettings, PromptParts, split_at_suffix

TASKS = ("niah_single", "niah_multikey")
GENERATION = GenerationSettings(max_new_tokens=128, temperature=0.0)  # RULER: tokens_to_generate 128
KEYS = (
    "amber-falcon", "quiet-harbor", "silver-orchard", "paper-lantern", "rapid-meadow", "hidden-canyon",
    "copper-violin", "frozen-river", "velvet-comet", "lonely-tower", "crimson-maple", "gentle-storm",
)  # fmt: skip
INSTRUCTION = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize them. "
    "I will quiz you about the numbers afterwards."
)


def needle(key: str, value: str) -> str:
    """The needle sentence."""
    return f"One of the special magic numbers for {key} is: {value}."


def needle_spans(
    context: str, values: Sequence[str], target_of: Callable[[str], str]
) -> tuple[AnswerSpan, ...]:
    """Where each answer value sits in ``context``: its characters in the one needle sentence that
    states it ("... is: <value>.", the needle of RULER's ``niah.py`` and of ``needle``), with its
    target (``target_of(value)``). Empty when a value is stated in no needle or in several (a
    distractor with the same value): the sample then records nothing rather than a guess."""
    spans = []
    for value in values:
        found = [match.start(1) for match in re.finditer(rf"is: ({re.escape(value)})\.", context)]
        if len(found) != 1 or not value:
            return ()
        spans.append(AnswerSpan(found[0], found[0] + len(value), target_of(value)))
    return tuple(spans)


def needle_facts(rng: random.Random, task: str) -> tuple[list[str], str, str]:
    """The needles, the question and the target number of one sample."""
    n_needles = 1 if task == "niah_single" else 4
    keys = rng.sample(KEYS, n_needles)
    values = [str(rng.randrange(1_000_000, 10_000_000)) for _ in keys]
    asked = rng.randrange(n_needles)
    question = f"What is the special magic number for {keys[asked]} mentioned in the provided text?"
    return [needle(key, value) for key, value in zip(keys, values, strict=True)], question, values[asked]


def prompt_parts(context: str, question: str) -> PromptParts:
    """``{instruction}\\n{context}\\n{question}``, cut where the context ends."""
    message = f"{INSTRUCTION}\n{context.strip()}\n{question}"
    return split_at_suffix(message, f"\n{question}", "needle")


def string_match_all(target: str, output: str) -> bool:
    """RULER's metric for one reference: it appears in the output (case-insensitive)."""
    return target.lower() in output.lower()
