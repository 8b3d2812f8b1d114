"""A seeded generator of BABILong-qa1-style samples for offline demos: a few "X moved to the Y."
facts hidden in haystack text; the question asks where one actor is (the last place named).

Pure Python, no downloads. The haystack is the classic passkey filler text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ACTORS = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)


@dataclass(frozen=True)
class DemoSample:
    """One generated sample.

    Attributes:
        sample_id: ``demo-qa1-<seed>-<words>``.
        context: haystack with the facts inside.
        question: the bare question (``Where is Mary?``).
        instruction: the question with the answer format the engine is asked.
        answer: the expected location.
        facts: the inserted fact sentences, in order.
    """

    sample_id: str
    context: str
    question: str
    instruction: str
    answer: str
    facts: tuple[str, ...]


def generate_qa1(seed: int, context_words: int, n_facts: int = 4) -> DemoSample:
    """A qa1-style sample of about ``context_words`` words (facts included).

    Raises:
        ValueError: ``context_words`` too small to hold the facts, or ``n_facts`` < 1.
    """
    if n_facts < 1:
        raise ValueError(f"n_facts={n_facts} is not allowed: at least 1")
    if context_words < 10 * n_facts:
        raise ValueError(f"context_words={context_words} is not allowed: at least {10 * n_facts}")
    rng = random.Random(seed)
    actors = rng.sample(ACTORS, 2)
    facts = [f"{rng.choice(actors)} {rng.choice(MOVES)} the {rng.choice(PLACES)}." for _ in range(n_facts)]
    target = facts[-1].split()[0]
    answer = next(fact.split()[-1].rstrip(".") for fact in reversed(facts) if fact.startswith(target))
    sentences: list[str] = []
    words = 0
    while words < context_words:
        filler = FILLER[len(sentences) % len(FILLER)]
        sentences.append(filler)
        words += len(filler.split())
    slots = sorted(rng.sample(range(1, len(sentences)), n_facts))
    for offset, (slot, fact) in enumerate(zip(slots, facts, strict=True)):
        sentences.insert(slot + offset, fact)
    question = f"Where is {target}?"
    return DemoSample(
        sample_id=f"demo-qa1-{seed}-{context_words}",
        context=" ".join(sentences),
        question=question,
        instruction=f"{question} Answer with one word: the place.",
        answer=answer,
        facts=tuple(facts),
    )


def is_correct(sample: DemoSample, output: str) -> bool:
    """The expected place is the first place the answer names."""
    named = [word.strip(".,!?;:'\"").lower() for word in output.split()]
    places = [word for word in named if word in PLACES]
    return bool(places) and places[0] == sample.answer
