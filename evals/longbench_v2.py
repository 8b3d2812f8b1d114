"""LongBench v2 with its official protocol (THUDM/LongBench @2e00731: ``pred.py``, ``result.py``).

- data: ``load_dataset("THUDM/LongBench-v2", split="train")`` (503 items) or a local copy;
- prompt: ``prompts/0shot.txt`` (shipped in ``evals/data``), fields ``.strip()``ped, substituted
  by chained ``str.replace`` in the official order; one user message through the chat template;
- truncation: the whole prompt tokenised; over ``max_len`` tokens, the first ``max_len//2`` and
  last ``max_len//2`` ids are decoded with ``skip_special_tokens=True``;
- generation: temperature 0.1, 128 new tokens (``greedy=True`` records the deviation);
- scoring: ``*`` removed, first regex match of "The correct answer is (X)" then "... is X";
  judge = pred == answer; an empty raw output is skipped (not in any denominator) and counted;
  a whitespace-only one is scored (wrong), as pred.py tests for '' before stripping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.benchmark import BenchmarkBase, DataRequest, OfficialTable, percent_cell
from evals.loading import check_fields, load_hub, load_local
from evals.published import published_for
from evals.resources import data_text
from evals.sample import EvalSample, GenerationSettings, PromptParts, split_at_suffix

HUB_ID = "THUDM/LongBench-v2"
DATASET = "longbench_v2"
FIELDS = (
    "_id",
    "domain",
    "sub_domain",
    "difficulty",
    "length",
    "question",
    "choice_A",
    "choice_B",
    "choice_C",
    "choice_D",
    "answer",
    "context",
)
MAX_LEN = 120_000  # pred.py maxlen_map: every listed open model and GPT-4o
OFFICIAL_GENERATION = GenerationSettings(max_new_tokens=128, temperature=0.1)
GREEDY_GENERATION = GenerationSettings(max_new_tokens=128, temperature=0.0)
DOCUMENT_MARK = "$DOC$"


def template() -> str:
    """The official 0-shot template, exactly as shipped (no trailing newline)."""
    return data_text("longbench_v2_0shot.txt")


def build_prompt(item: dict[str, Any]) -> str:
    """pred.py: the template with each field ``.strip()``ped, replaced in the official order."""
    return (
        template()
        .replace("$DOC$", item["context"].strip())
        .replace("$Q$", item["question"].strip())
        .replace("$C_A$", item["choice_A"].strip())
        .replace("$C_B$", item["choice_B"].strip())
        .replace("$C_C$", item["choice_C"].strip())
        .replace("$C_D$", item["choice_D"].strip())
    )


def question_part(item: dict[str, Any]) -> str:
    """The prompt after the document: the template's tail with the question and choices filled."""
    tail = template().split(DOCUMENT_MARK, 1)[1]
    return (
        tail.replace("$Q$", item["question"].strip())
        .replace("$C_A$", item["choice_A"].strip())
        .replace("$C_B$", item["choice_B"].strip())
        .replace("$C_C$", item["choice_C"].strip())
        .replace("$C_D$", item["choice_D"].strip())
    )


def truncate_middle(prompt: str, tokenizer: Any, max_len: int = MAX_LEN) -> str:
    """pred.py ``query_llm``: keep the first and last ``max_len//2`` tokens of a long prompt.

    ``tokenizer.encode`` adds the model's special tokens (BOS) as the official code does; they
    count toward ``max_len`` and are dropped by the decode.
    """
    input_ids = tokenizer.encode(prompt)
    if len(input_ids) <= max_len:
        return prompt
    input_ids = input_ids[: max_len // 2] + input_ids[-max_len // 2 :]
    return str(tokenizer.decode(input_ids, skip_special_tokens=True))


def prompt_parts(item: dict[str, Any], tokenizer: Any | None = None, max_len: int = MAX_LEN) -> PromptParts:
    """The (possibly truncated) official prompt, cut where the document ends.

    Truncation needs the model's tokenizer; without one the prompt is not truncated.
    """
    prompt = build_prompt(item)
    if tokenizer is not None:
        prompt = truncate_middle(prompt, tokenizer, max_len)
    suffix = question_part(item)
    if not prompt.endswith(suffix):  # the decode after truncation changed the tail's text
        cut = prompt.rfind(suffix.split("\n", 2)[1])  # the closing "</text>" line
        suffix = prompt[cut - 1 :] if cut > 0 else suffix
    return split_at_suffix(prompt, suffix, f"LongBench v2 item {item['_id']}")


def to_sample(
    item: dict[str, Any], tokenizer: Any | None = None, max_len: int = MAX_LEN, greedy: bool = False
) -> EvalSample:
    """One dataset item as an ``EvalSample`` (target = the answer letter)."""
    return EvalSample(
        dataset=DATASET,
        sample_id=str(item["_id"]),
        task=str(item["domain"]),
        length=str(item["length"]),
        parts=prompt_parts(item, tokenizer, max_len),
        target=str(item["answer"]),
        generation=GREEDY_GENERATION if greedy else OFFICIAL_GENERATION,
        question=str(item["question"]),
        fields={
            "domain": str(item["domain"]),
            "sub_domain": str(item["sub_domain"]),
            "difficulty": str(item["difficulty"]),
            "length": str(item["length"]),
        },
    )


def load_items(source: str = HUB_ID, revision: str | None = None) -> Any:
    """The dataset rows: from the hub (``split="train"``) or from a local file or directory.

    Raises:
        DatasetNotAvailableError: the hub is unreachable and nothing is cached.
        EvalError: a local copy lacks official fields.
    """
    path = Path(source).expanduser()
    rows = load_local(path) if path.exists() else load_hub(source, None, "train", revision)
    check_fields(rows, FIELDS, f"LongBench v2 from {source}")
    return rows


def load_samples(
    source: str = HUB_ID,
    tokenizer: Any | None = None,
    max_len: int = MAX_LEN,
    greedy: bool = False,
    revision: str | None = None,
) -> Iterator[EvalSample]:
    """Every item of LongBench v2 as an ``EvalSample`` (see ``to_sample``)."""
    for item in load_items(source, revision):
        yield to_sample(item, tokenizer, max_len, greedy)


def extract_answer(response: str) -> str | None:
    """pred.py ``extract_answer``: the answer letter, or None."""
    response = response.replace("*", "")
    match = re.search(r"The correct answer is \(([A-D])\)", response)
    if match:
        return match.group(1)
    match = re.search(r"The correct answer is ([A-D])", response)
    if match:
        return match.group(1)
    return None


def judge(response: str, answer: str) -> bool:
    """pred.py: the extracted letter equals the answer (None is wrong)."""
    return extract_answer(response) == answer


@dataclass(frozen=True)
class LongBenchScores:
    """result.py's table row (percent, rounded to 0.1; None for an empty group) plus counts.

    Attributes:
        skipped_empty: outputs that were '' (pred.py writes nothing for them).
    """

    overall: float | None
    easy: float | None
    hard: float | None
    short: float | None
    medium: float | None
    long: float | None
    n_scored: int
    skipped_empty: int


def _percent(correct: float, total: int) -> float | None:
    return None if total == 0 else round(100 * correct / total, 1)


def aggregate(records: Iterable[dict[str, Any]], compensated: bool = False) -> LongBenchScores:
    """result.py: overall, easy/hard and short/medium/long accuracies.

    Args:
        records: dicts with ``response`` (the raw model output, unstripped), ``answer``,
            ``difficulty``, ``length``.
        compensated: result.py's off-by-default option scoring None predictions as 0.25.

    Any difficulty other than ``easy`` counts as hard, any length other than short/medium as
    long (as result.py). result.py divides by zero on an empty group; here it is None.
    """
    sums = dict.fromkeys(("easy", "hard", "short", "medium", "long"), 0.0)
    counts = dict.fromkeys(sums, 0)
    skipped = scored = 0
    for record in records:
        raw = record["response"] or ""
        if raw == "":  # pred.py: `if output == '': continue`, before stripping
            skipped += 1
            continue
        response = raw.strip()
        scored += 1
        pred = extract_answer(response)
        acc = float(pred == record["answer"])
        if compensated and pred is None:
            acc = 0.25
        difficulty = "easy" if record["difficulty"] == "easy" else "hard"
        length = record["length"] if record["length"] in ("short", "medium") else "long"
        for group in (difficulty, length):
            sums[group] += acc
            counts[group] += 1
    return LongBenchScores(
        overall=_percent(sums["easy"] + sums["hard"], scored),
        easy=_percent(sums["easy"], counts["easy"]),
        hard=_percent(sums["hard"], counts["hard"]),
        short=_percent(sums["short"], counts["short"]),
        medium=_percent(sums["medium"], counts["medium"]),
        long=_percent(sums["long"], counts["long"]),
        n_scored=scored,
        skipped_empty=skipped,
    )


SCORE_COLUMNS = ("overall", "easy", "hard", "short", "medium", "long")
LENGTH_CLASSES = ("short", "medium", "long")
DOMAINS = (
    "Single-Document QA",
    "Multi-Document QA",
    "Long In-context Learning",
    "Long-dialogue History Understanding",
    "Code Repository Understanding",
    "Long Structured Data Understanding",
)


@dataclass(frozen=True)
class LongBenchV2Benchmark(BenchmarkBase):
    """LongBench v2: the ``evals.benchmark.Benchmark`` protocol (503 items, no cells: a limit
    counts items in all; ``--lengths`` / ``--tasks`` do not apply)."""

    name: str = DATASET
    description: str = "LongBench v2, 503 multiple-choice items in 6 domains (0-shot, w/o CoT)"
    source: str = HUB_ID
    needs_tokenizer: bool = True
    cells: bool = False
    breakdown_fields: tuple[str, ...] = ("difficulty", "domain", "sub_domain")

    def lengths(self) -> tuple[str, ...]:
        return LENGTH_CLASSES

    def tasks(self, length: str) -> tuple[str, ...]:
        return DOMAINS

    def load(self, request: DataRequest, tokenizer: Any | None) -> Iterable[EvalSample]:
        return load_samples(request.source or HUB_ID, tokenizer, greedy=request.greedy)

    def score(self, target: str, raw_output: str, question: str, task: str) -> tuple[str | None, bool]:
        prediction = extract_answer(raw_output.strip())
        return prediction, prediction == target

    def counts(self, raw_output: str) -> bool:
        return raw_output != ""  # pred.py skips '' before stripping

    def official_table(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return vars(aggregate(rows))

    def official_tables(self, results: dict[str, dict[str, Any]]) -> list[OfficialTable]:
        header = ("method", *SCORE_COLUMNS, "scored", "empty outputs")
        body = [
            (
                label,
                *(percent_cell(scores[key]) for key in SCORE_COLUMNS),
                str(scores["n_scored"]),
                str(scores["skipped_empty"]),
            )
            for label, scores in sorted(results.items())
        ]
        return [OfficialTable("LongBench v2, official table (%)", header, body)]

    def published(self, model: str) -> tuple[str, dict[str, float]] | None:
        match = published_for(model)
        if match is None or DATASET not in match[1]:
            return None
        return match[0], match[1][DATASET]


LONGBENCH_V2 = LongBenchV2Benchmark()
