"""The offline demo set: seeded BABILong-format samples (qa1-, qa2- and qa3-style bAbI facts,
or RULER-style needles ``niah_single`` / ``niah_multikey``, hidden in haystack text, 1k-128k
tokens, counted by the model's tokenizer in runs or estimated from words), written through
``datasets`` as Parquet in the exact BABILong schema (``input``, ``question``, ``target``) and then
loaded like a local copy of BABILong (dataset name ``babilong_demo``): qa tasks prompted and
scored as BABILong, needles as RULER (``evals.needle``).

Generated on first use into ``$LASERKV_CACHE/datasets`` (default ``~/.cache/laserkv``), never
committed. The facts are generated here; no text of the real benchmarks is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evals import babilong, needle
from evals.benchmark import DataRequest
from evals.errors import EvalError
from evals.haystack import haystack_sentences
from evals.loading import datasets_package
from evals.sample import EvalSample

MAX_SAMPLES_PER_CELL = 100_000
"""The most samples a generated benchmark (the demo set, RULER) makes per (task, length) cell: far
above any study here (RULER's own runs use 500), low enough that a mistyped count is refused at
once instead of generating for hours before ``--limit`` applies."""


def check_samples_per_cell(samples: int) -> None:
    """Raises EvalError unless ``1 <= samples <= MAX_SAMPLES_PER_CELL``."""
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES_PER_CELL:
        raise EvalError(
            f"samples_per_cell={samples!r} is not allowed: an integer from 1 to {MAX_SAMPLES_PER_CELL:,}"
        )


DATASET = "babilong_demo"
GENERATOR_VERSION = 1  # bump when the generated text changes, so caches are rebuilt
ACTORS = ("Mary", "John", "Daniel", "Sandra")
LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")  # the qa1/qa2 label set
OBJECTS = ("apple", "football", "milk")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
PICKS = ("picked up", "got", "grabbed", "took")

TokenCounter = Callable[[str], int]


def approximate_tokens(text: str) -> int:
    """About 4/3 tokens per English word (without a tokenizer at hand)."""
    return round(len(text.split()) * 4 / 3)


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Counts tokens as the model sees them (no special tokens)."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


@dataclass(frozen=True)
class DemoSpec:
    """What to generate.

    Attributes:
        samples_per_cell: samples per (task, length) file.
        seed: base seed; each cell and sample derives its own.
        haystack: ``paul_graham`` or ``austen`` (see ``evals.haystack``).
        qa1_moves: move facts per qa1 sample (two actors; the question asks about one of them).
        counter: name of the token counter (part of the cache key): ``words`` for
            ``approximate_tokens``, ``tokenizer:<model>`` for a model's tokenizer
            (``tokenizer_counter``).
    """

    samples_per_cell: int = 100
    seed: int = 0
    haystack: str = "paul_graham"
    qa1_moves: int = 4
    counter: str = "words"

    def cache_key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return f"v{GENERATOR_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def model_spec(model: str, samples_per_cell: int = DemoSpec.samples_per_cell) -> DemoSpec:
    """The demo set for ``model``: lengths counted by its tokenizer (``tokenizer_counter``)."""
    return DemoSpec(samples_per_cell=samples_per_cell, counter=f"tokenizer:{model}")


def qa1_facts(rng: random.Random, n_moves: int) -> tuple[list[str], str, str]:
    """qa1 (single supporting fact): moves of two actors; where is one of them (latest place)?"""
    actors = rng.sample(ACTORS, 2)
    moves = [(rng.choice(actors), rng.choice(LOCATIONS)) for _ in range(n_moves)]
    asked = rng.choice(sorted({actor for actor, _ in moves}))
    target = next(place for actor, place in reversed(moves) if actor == asked)
    facts = [f"{actor} {rng.choice(MOVES)} the {place}." for actor, place in moves]
    return facts, f"Where is {asked}?", target


def qa2_facts(rng: random.Random) -> tuple[list[str], str, str]:
    """qa2 (two supporting facts): an actor takes an object and moves; where is the object?"""
    holder, other = rng.sample(ACTORS, 2)
    item = rng.choice(OBJECTS)
    first, last, elsewhere = rng.sample(LOCATIONS, 3)
    facts = [
        f"{holder} {rng.choice(MOVES)} the {first}.",
        f"{other} {rng.choice(MOVES)} the {elsewhere}.",
        f"{holder} {rng.choice(PICKS)} the {item} there.",
        f"{holder} {rng.choice(MOVES)} the {last}.",
    ]
    return facts, f"Where is the {item}?", last


def qa3_facts(rng: random.Random) -> tuple[list[str], str, str]:
    """qa3 (three supporting facts): an actor takes an object and moves twice; where was the
    object before the last place? (the place of the move before it)."""
    holder, other = rng.sample(ACTORS, 2)
    item = rng.choice(OBJECTS)
    first, before, last = rng.sample(LOCATIONS, 3)
    facts = [
        f"{holder} {rng.choice(MOVES)} the {first}.",
        f"{holder} {rng.choice(PICKS)} the {item} there.",
        f"{other} {rng.choice(MOVES)} the {rng.choice(LOCATIONS)}.",
        f"{holder} {rng.choice(MOVES)} the {before}.",
        f"{holder} {rng.choice(MOVES)} the {last}.",
    ]
    return facts, f"Where was the {item} before the {last}?", before


QA_FACTS: dict[str, Callable[[random.Random, DemoSpec], tuple[list[str], str, str]]] = {
    "qa1": lambda rng, spec: qa1_facts(rng, spec.qa1_moves),
    "qa2": lambda rng, spec: qa2_facts(rng),
    "qa3": lambda rng, spec: qa3_facts(rng),
}
"""The bAbI-style generators by task (the needle tasks are in ``evals.needle``)."""


def hide_facts(
    rng: random.Random,
    facts: list[str],
    sentences: tuple[str, ...],
    n_tokens: int,
    count_tokens: TokenCounter,
) -> str:
    """Haystack sentences from a random start with the facts inserted in order at random sentence
    boundaries: just enough sentences for the whole text to count at least ``n_tokens`` tokens."""
    budget = n_tokens - sum(count_tokens(fact) for fact in facts)
    start = rng.randrange(len(sentences))
    chosen: list[str] = []
    used = 0
    while used < budget:  # a per-sentence estimate first ...
        sentence = sentences[(start + len(chosen)) % len(sentences)]
        used += count_tokens(sentence)
        chosen.append(sentence)
    slots = sorted(rng.randrange(len(chosen) + 1) for _ in facts)
    pieces = list(chosen)
    for offset, (slot, fact) in enumerate(zip(slots, facts, strict=True)):
        pieces.insert(slot + offset, fact)
    text = " ".join(pieces)
    next_sentence = start + len(chosen)
    while count_tokens(text) < n_tokens:  # ... then the whole text's count decides
        text += " " + sentences[next_sentence % len(sentences)]
        next_sentence += 1
    return text


def generate_rows(spec: DemoSpec, length: str, task: str, count_tokens: TokenCounter) -> list[dict[str, str]]:
    """The rows of one (task, length) cell, in BABILong's schema."""
    n_tokens = babilong.length_tokens(length)
    sentences = haystack_sentences(spec.haystack)
    rows = []
    for index in range(spec.samples_per_cell):
        rng = random.Random(f"{spec.seed}/{task}/{length}/{index}")
        if task in needle.TASKS:
            facts, question, target = needle.needle_facts(rng, task)
        else:
            facts, question, target = QA_FACTS[task](rng, spec)
        rows.append(
            {
                "input": hide_facts(rng, facts, sentences, n_tokens, count_tokens),
                "question": question,
                "target": target,
            }
        )
    return rows


def cache_dir() -> Path:
    """``$LASERKV_CACHE/datasets`` (default ``~/.cache/laserkv/datasets``)."""
    root = os.environ.get("LASERKV_CACHE", str(Path.home() / ".cache" / "laserkv"))
    return Path(root).expanduser() / "datasets"


def ensure_demo_set(
    lengths: Iterable[str],
    tasks: Iterable[str],
    spec: DemoSpec = DemoSpec(),
    count_tokens: TokenCounter = approximate_tokens,
    root: Path | None = None,
) -> Path:
    """Generate the missing (task, length) cells and return the set's directory, laid out as a
    local BABILong copy (``<dir>/<length>/<task>.parquet``). Each file is published by rename."""
    directory = (root or cache_dir()) / DATASET / spec.cache_key()
    for length in lengths:
        for task in tasks:
            babilong.check_config(DATASET, length, task)
            path = directory / length / f"{task}.parquet"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            rows = generate_rows(spec, length, task, count_tokens)
            datasets_package().Dataset.from_list(rows).to_parquet(str(partial))
            partial.replace(path)
    return directory


def load_samples(
    lengths: Iterable[str],
    tasks: Iterable[str],
    spec: DemoSpec = DemoSpec(),
    count_tokens: TokenCounter = approximate_tokens,
    root: Path | None = None,
) -> Iterator[EvalSample]:
    """The demo set's samples (generated on first use), prompted as BABILong."""
    lengths, tasks = list(lengths), list(tasks)
    check_samples_per_cell(spec.samples_per_cell)
    directory = ensure_demo_set(lengths, tasks, spec, count_tokens, root)
    yield from babilong.load_samples(DATASET, lengths, tasks, source=str(directory))


@dataclass(frozen=True)
class DemoBenchmark(babilong.BabilongBenchmark):
    """The offline demo set: BABILong's prompts, metric and tables (RULER's string match for the
    needle tasks), generated per model tokenizer; no published numbers."""

    needs_tokenizer: bool = True

    def revision(self, request: DataRequest) -> str:
        return f"demo:{model_spec(request.model, request.samples_per_cell).cache_key()}"

    def load(self, request: DataRequest, tokenizer: Any | None) -> Iterable[EvalSample]:
        if tokenizer is None:
            raise EvalError("the demo set counts tokens with the run model's tokenizer: pass it")
        spec = model_spec(request.model, request.samples_per_cell)
        return load_samples(request.lengths, request.tasks, spec, tokenizer_counter(tokenizer))

    def published(self, model: str) -> tuple[str, dict[str, float]] | None:
        return None


DEMO = DemoBenchmark(
    DATASET,
    "offline demo set: bAbI qa1-qa3 facts and RULER-style needles in Paul Graham essays",
    "generated offline (RULER essays haystack)",
)
