"""The offline demo set: seeded BABILong-format samples in the real haystack, the targets
recomputed from the hidden facts, the schema, the cache and the scorer."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pytest

from evals import demo_set, needle
from evals.babilong import compare_answers
from evals.demo_set import DemoSpec, approximate_tokens
from evals.errors import DatasetNotAvailableError, EvalError
from evals.haystack import haystack_text
from evals.scoring import score_sample

ACTOR = r"(Mary|John|Daniel|Sandra)"
MOVE = re.compile(ACTOR + r" (?:moved to|went to|journeyed to|travelled to|went back to) the (\w+)\.")
PICK = re.compile(ACTOR + r" (?:picked up|got|grabbed|took) the (\w+) there\.")


def target_from_facts(text: str, question: str) -> str:
    """Brute force: replay the facts hidden in the text in order."""
    events = sorted(
        [(match.start(), "move", match.group(1), match.group(2)) for match in MOVE.finditer(text)]
        + [(match.start(), "pick", match.group(1), match.group(2)) for match in PICK.finditer(text)]
    )
    place: dict[str, str] = {}
    holder: dict[str, str] = {}
    for _, kind, actor, what in events:
        if kind == "move":
            place[actor] = what
        else:
            holder[what] = actor
    if question.startswith("Where was the "):  # qa3: the holder's place before the named one
        item, last = question.removeprefix("Where was the ").removesuffix("?").split(" before the ")
        holder_of = {what: actor for _, kind, actor, what in events if kind == "pick"}[item]
        route = [what for _, kind, actor, what in events if kind == "move" and actor == holder_of]
        return route[len(route) - 1 - route[::-1].index(last) - 1]
    asked = question.removeprefix("Where is ").removesuffix("?")
    if asked.startswith("the "):
        return place[holder[asked.removeprefix("the ")]]
    return place[asked]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("demo")
    spec = DemoSpec(samples_per_cell=12, seed=5)
    samples = list(demo_set.load_samples(["1k", "4k"], ["qa1", "qa2", "qa3"], spec, root=root))
    return root, samples


def test_samples_hide_facts_in_the_real_haystack(generated: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    _, samples = generated
    assert len(samples) == 2 * 3 * 12
    assert {sample.dataset for sample in samples} == {"babilong_demo"}
    corpus = haystack_text("paul_graham")
    for sample in samples:
        document = sample.parts.context.split("<context>\n", 1)[1]
        assert sample.target == target_from_facts(document, sample.question)
        nominal = 1000 if sample.length == "1k" else 4000
        assert nominal <= approximate_tokens(document) <= nominal * 1.1
        first_haystack = next(part for part in re.split(r"(?<=[.!?]) ", document) if not MOVE.fullmatch(part))
        assert first_haystack in corpus
        answer = f"The most recent location of someone is {sample.target}."
        if sample.task == "qa3":
            last = sample.question.split(" before the ")[1].removesuffix("?")
            answer = f"Before the {last} the item was in the {sample.target}."
        assert compare_answers(sample.target, answer, sample.question, sample.task)
    assert len({sample.target for sample in samples}) > 3, "targets must vary"


def test_written_in_the_babilong_schema_and_cached(generated: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    root, _ = generated
    spec = DemoSpec(samples_per_cell=12, seed=5)
    directory = root / "babilong_demo" / spec.cache_key()
    files = sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*.parquet"))
    assert files == [f"{length}/{task}.parquet" for length in ("1k", "4k") for task in ("qa1", "qa2", "qa3")]
    rows = datasets.load_dataset("parquet", data_files=str(directory / "1k" / "qa2.parquet"), split="train")
    assert rows.column_names == ["input", "question", "target"] and len(rows) == 12
    before = (directory / "1k" / "qa1.parquet").stat().st_mtime_ns
    assert demo_set.ensure_demo_set(["1k"], ["qa1"], spec, root=root) == directory
    assert (directory / "1k" / "qa1.parquet").stat().st_mtime_ns == before  # not regenerated


def test_generation_is_seeded(tmp_path: Path) -> None:
    spec = DemoSpec(samples_per_cell=3, seed=5)
    first = demo_set.generate_rows(spec, "1k", "qa1", approximate_tokens)
    assert first == demo_set.generate_rows(spec, "1k", "qa1", approximate_tokens)
    assert first != demo_set.generate_rows(
        DemoSpec(samples_per_cell=3, seed=6), "1k", "qa1", approximate_tokens
    )
    assert spec.cache_key() != DemoSpec(samples_per_cell=3, seed=6).cache_key()


def test_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        EvalError, match=r"length='256k' is not in babilong_demo: one of 1k, 2k, 4k, 8k, 16k, 32k, 64k, 128k"
    ):
        list(demo_set.load_samples(["256k"], ["qa1"], root=tmp_path))
    with pytest.raises(
        EvalError, match=r"task='qa4' is not in babilong_demo at 1k: one of qa1, qa2, qa3, niah_single"
    ):
        list(demo_set.load_samples(["1k"], ["qa4"], root=tmp_path))
    with pytest.raises(DatasetNotAvailableError, match="haystack='tolstoy' is unknown"):
        list(demo_set.load_samples(["1k"], ["qa1"], DemoSpec(haystack="tolstoy"), root=tmp_path))


NEEDLE = re.compile(r"One of the special magic numbers for ([a-z-]+) is: (\d{7})\.")


@pytest.mark.parametrize(("task", "n_needles"), [("niah_single", 1), ("niah_multikey", 4)])
def test_needle_samples_hide_the_asked_number(tmp_path: Path, task: str, n_needles: int) -> None:
    samples = list(demo_set.load_samples(["1k"], [task], DemoSpec(samples_per_cell=6, seed=2), root=tmp_path))
    assert len(samples) == 6
    for sample in samples:
        document = sample.parts.context.split("\n", 1)[1]
        needles = dict(NEEDLE.findall(document))
        assert len(needles) == n_needles
        asked = sample.question.removeprefix("What is the special magic number for ").split(" ")[0]
        assert needles[asked] == sample.target
        assert sample.parts.message == f"{needle.INSTRUCTION}\n{document}\n{sample.question}"
        assert (sample.generation.max_new_tokens, sample.generation.temperature) == (128, 0.0)
        assert score_sample(sample, f"The special magic number for {asked} is {sample.target}.").correct
        assert not score_sample(sample, "I do not know.").correct
