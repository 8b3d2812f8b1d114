"""BABILong with its official protocol (booydar/babilong @7a6efee: ``babilong/prompts.py``,
``babilong/metrics.py``, the evaluation scripts).

- data: ``load_dataset("RMT-team/babilong", "<length>")["qaN"]`` (100 samples per task and
  length) or ``RMT-team/babilong-1k-samples`` (1000), or a local copy; fields ``input``,
  ``question``, ``target``;
- prompt: DEFAULT_TEMPLATE with the task's DEFAULT_PROMPTS (instruction, examples, post_prompt;
  shipped in ``evals/data``), context ``.strip()``ped, the whole string ``.strip()``ped; one user
  message through the chat template;
- generation: greedy, 20 new tokens;
- scoring: ``compare_answers`` with every quirk; accuracy per task x length, headline = the
  mean over qa1-qa5 per length.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals import needle
from evals.benchmark import (
    BenchmarkBase,
    DataRequest,
    OfficialTable,
    check_source,
    output_text,
    percent_cell,
)
from evals.errors import EvalError
from evals.loading import check_fields, load_hub, load_local
from evals.published import published_for
from evals.resources import data_json
from evals.sample import EvalSample, GenerationSettings, PromptParts, split_at_suffix

FIELDS = ("input", "question", "target")
GENERATION = GenerationSettings(max_new_tokens=20, temperature=0.0)
HEADLINE_TASKS = ("qa1", "qa2", "qa3", "qa4", "qa5")
ALL_TASKS = tuple(f"qa{index}" for index in range(1, 21))

HUB_IDS = {"babilong": "RMT-team/babilong", "babilong_1k": "RMT-team/babilong-1k-samples"}
LENGTHS = {
    "babilong": ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k", "256k", "512k", "1M", "10M"),
    "babilong_1k": ("0k", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"),
    "babilong_demo": ("1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k"),  # generated (evals.demo_set)
}


def length_tokens(length: str) -> int:
    """A length config as a nominal token count: ``"4k"`` -> 4000, ``"1M"`` -> 1000000."""
    scale = {"k": 1_000, "M": 1_000_000}[length[-1]]
    return int(length[:-1]) * scale


def tasks_for(dataset: str, length: str) -> tuple[str, ...]:
    """The tasks a dataset has at a length (see the dataset cards)."""
    if dataset == "babilong":
        return HEADLINE_TASKS if length == "10M" else ALL_TASKS[:10]
    if dataset == "babilong_demo":
        return ("qa1", "qa2", "qa3", *needle.TASKS)
    return ALL_TASKS if length == "0k" else HEADLINE_TASKS


def check_config(dataset: str, length: str, task: str) -> None:
    """Refuse an unknown dataset, length or task, naming the valid ones."""
    if dataset not in LENGTHS:
        raise EvalError(f"dataset={dataset!r} is not a BABILong dataset: one of {', '.join(LENGTHS)}")
    if length not in LENGTHS[dataset]:
        raise EvalError(f"length={length!r} is not in {dataset}: one of {', '.join(LENGTHS[dataset])}")
    valid = tasks_for(dataset, length)
    if task not in valid:
        raise EvalError(f"task={task!r} is not in {dataset} at {length}: one of {', '.join(valid)}")


def task_prompt(task: str) -> dict[str, str]:
    """The task's official instruction, examples and post_prompt."""
    prompts = data_json("babilong_prompts.json")["prompts"]
    if task not in prompts:
        raise EvalError(f"task={task!r} has no official prompt: one of {', '.join(prompts)}")
    return dict(prompts[task])


def task_labels(task: str) -> list[str]:
    """metrics.py TASK_LABELS of the task."""
    labels = data_json("babilong_task_labels.json")["task_labels"]
    if task not in labels:
        raise EvalError(f"task={task!r} has no label set: one of {', '.join(labels)}")
    return list(labels[task])


def format_input(
    context: str,
    question: str,
    task: str,
    instruction: bool = True,
    examples: bool = True,
    post_prompt: bool = True,
) -> str:
    """prompts.py ``get_formatted_input`` with the task's DEFAULT_PROMPTS; a component turned off
    is replaced by "" (the official ablation flags)."""
    prompt = task_prompt(task)
    formatted = data_json("babilong_prompts.json")["template"].format(
        instruction=prompt["instruction"] if instruction else "",
        examples=prompt["examples"] if examples else "",
        post_prompt=prompt["post_prompt"] if post_prompt else "",
        context=context.strip(),
        question=question,
    )
    return str(formatted).strip()


def prompt_parts(context: str, question: str, task: str) -> PromptParts:
    """The official message, cut where the context ends (before ``\\n</context>``)."""
    message = format_input(context, question, task)
    template = data_json("babilong_prompts.json")["template"]
    suffix = template.split("{context}", 1)[1].format(question=question).rstrip()
    return split_at_suffix(message, suffix, f"BABILong {task}")


def to_sample(row: dict[str, Any], dataset: str, length: str, task: str, index: int) -> EvalSample:
    """One dataset row as an ``EvalSample`` (id ``<length>/<task>/<index>``); the demo set's
    needle tasks are prompted RULER-style (``evals.needle``) and locate their needle's value
    (``needle.needle_spans``). BABILong's rows do not mark their facts, so its samples and the
    demo set's qa tasks locate nothing."""
    is_needle = task in needle.TASKS
    parts = (
        needle.prompt_parts(row["input"], row["question"])
        if is_needle
        else prompt_parts(row["input"], row["question"], task)
    )
    return EvalSample(
        dataset=dataset,
        sample_id=f"{length}/{task}/{index}",
        task=task,
        length=length,
        parts=parts,
        target=str(row["target"]),
        generation=needle.GENERATION if is_needle else GENERATION,
        question=str(row["question"]),
        answers=needle.needle_spans(parts.context, [str(row["target"])], str) if is_needle else (),
    )


def load_rows(
    dataset: str, length: str, task: str, source: str | None = None, revision: str | None = None
) -> Any:
    """The rows of one task at one length.

    Args:
        source: None for the hub; or a local directory holding ``<length>/<task>.{json,jsonl,parquet}``
            files or ``<length>/`` written by ``DatasetDict.save_to_disk``.

    Raises:
        EvalError: unknown length or task, missing local files or fields.
        DatasetNotAvailableError: the hub is unreachable and nothing is cached.
    """
    check_config(dataset, length, task)
    if source is None:
        if dataset not in HUB_IDS:
            raise EvalError(f"{dataset} is generated locally (evals.demo_set), not loaded from the hub")
        rows = _split(
            load_hub(HUB_IDS[dataset], length, None, revision), task, f"{HUB_IDS[dataset]} {length}"
        )
        where = f"{HUB_IDS[dataset]} {length}/{task}"
    else:
        rows = _load_local_task(Path(source).expanduser(), length, task)
        where = f"{source} {length}/{task}"
    check_fields(rows, FIELDS, f"BABILong {where}")
    return rows


def _split(splits: Any, task: str, where: str) -> Any:
    """The task's split of a ``DatasetDict``, or an error naming the splits it has."""
    if task not in splits:
        raise EvalError(f"{where} has no split {task!r}: it has {', '.join(splits)}")
    return splits[task]


def _load_local_task(root: Path, length: str, task: str) -> Any:
    directory = root / length
    if (directory / "dataset_dict.json").exists():
        return _split(load_local(directory), task, str(directory))
    for suffix in (".parquet", ".jsonl", ".json"):
        if (directory / f"{task}{suffix}").exists():
            return load_local(directory / f"{task}{suffix}")
    raise EvalError(
        f"{directory} holds no {task}.parquet/.jsonl/.json and no saved DatasetDict; "
        f"lay a local copy out as <root>/<length>/<task>.jsonl (fields {', '.join(FIELDS)})"
    )


def load_samples(
    dataset: str, lengths: Iterable[str], tasks: Iterable[str], source: str | None = None
) -> Iterator[EvalSample]:
    """Every sample of the given lengths x tasks as ``EvalSample``s."""
    tasks = list(tasks)
    for length in lengths:
        for task in tasks:
            for index, row in enumerate(load_rows(dataset, length, task, source)):
                yield to_sample(row, dataset, length, task, index)


def compare_answers(target: str, output: str, question: str, task: str) -> bool:
    """metrics.py ``compare_answers`` with the task's TASK_LABELS, quirks kept.

    The output is lower-cased and cut to its first sentence, then at ``<context>``, ``<example>``
    and ``Question`` (never found: the output is already lower-case). Labels found in the
    question are ignored. A target with a comma and longer than 3 characters (qa8 "apple,milk")
    needs exactly its sub-targets; any other needs exactly one label, the target. So qa7's
    "none" never scores (it also contains "one").
    """
    output = output.lower()
    output = output.split(".")[0]
    output = output.split("<context>")[0]
    output = output.split("<example>")[0]
    output = output.split("Question")[0]
    target = target.lower()
    labels = {label.lower() for label in task_labels(task)}
    labels_in_question = {label for label in labels if label in question.lower()}
    labels_in_output = {label for label in labels if label in output} - labels_in_question
    if "," in target and len(target) > 3:
        subtargets = target.split(",")
        return all(sub in labels_in_output for sub in subtargets) and len(labels_in_output) == len(subtargets)
    return target in labels_in_output and len(labels_in_output) == 1


def accuracy_table(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Accuracy in percent per (task, length): 100 * correct / N.

    Args:
        records: dicts with ``task``, ``length``, ``target``, ``output``, ``question``; an output of
            None or NaN (a missing value in the official CSVs) is scored as "".
    """
    totals: dict[tuple[str, str], list[int]] = {}
    for record in records:
        correct = compare_answers(
            record["target"], output_text(record["output"]), record["question"], record["task"]
        )
        cell = totals.setdefault((record["task"], record["length"]), [0, 0])
        cell[0] += int(correct)
        cell[1] += 1
    return {key: 100 * correct / total for key, (correct, total) in totals.items()}


def headline(table: dict[tuple[str, str], float]) -> dict[str, float]:
    """The README / leaderboard headline: per length, the mean accuracy over qa1-qa5 (lengths
    missing any of the five tasks are left out)."""
    lengths = {length for _, length in table}
    return {
        length: sum(table[(task, length)] for task in HEADLINE_TASKS) / len(HEADLINE_TASKS)
        for length in sorted(lengths, key=length_tokens)
        if all((task, length) in table for task in HEADLINE_TASKS)
    }


def score_output(target: str, raw_output: str, question: str, task: str) -> tuple[str, bool]:
    """The stripped output and its judgement: ``compare_answers``, or RULER's string match for
    the demo set's needle tasks."""
    output = raw_output.strip()
    if task in needle.TASKS:
        return output, needle.string_match_all(target, output)
    return output, compare_answers(target, output, question, task)


def length_order(length: str) -> tuple[int, str]:
    """Sort key of a length config (other names, e.g. LongBench's classes, first, by name)."""
    try:
        return length_tokens(length), length
    except (KeyError, ValueError):
        return 0, length


@dataclass(frozen=True)
class BabilongBenchmark(BenchmarkBase):
    """BABILong (``babilong``, ``babilong_1k``): the ``evals.benchmark.Benchmark`` protocol."""

    def lengths(self) -> tuple[str, ...]:
        return LENGTHS[self.name]

    def tasks(self, length: str) -> tuple[str, ...]:
        return tasks_for(self.name, length)

    def check(self, request: DataRequest) -> None:
        check_source(request.source)
        for length in request.lengths:
            for task in request.tasks:
                check_config(self.name, length, task)

    def load(self, request: DataRequest, tokenizer: Any | None) -> Iterable[EvalSample]:
        return load_samples(self.name, request.lengths, request.tasks, request.source)

    def score(self, target: str, raw_output: str, question: str, task: str) -> tuple[str | None, bool]:
        return score_output(target, raw_output, question, task)

    def official_table(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Accuracy per task/length from each row's official judgement, and the headline."""
        cells: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for row in rows:
            cells[(row["task"], row["length"])].append(bool(row["correct"]))
        table = {cell: 100 * sum(values) / len(values) for cell, values in cells.items()}
        return {
            "accuracy": {f"{task}/{length}": value for (task, length), value in sorted(table.items())},
            "headline_qa1_qa5": headline(table),
        }

    def official_tables(self, results: dict[str, dict[str, Any]]) -> list[OfficialTable]:
        found = []
        lengths = sorted(
            {length for scores in results.values() for length in scores["headline_qa1_qa5"]}, key=length_order
        )
        if lengths:
            body = [
                (label, *(percent_cell(scores["headline_qa1_qa5"].get(length)) for length in lengths))
                for label, scores in sorted(results.items())
            ]
            title = f"{self.name}: qa1-qa5 mean per length (%, the official headline)"
            found.append(OfficialTable(title, ("method", *lengths), body))
        cells = sorted({cell for scores in results.values() for cell in scores["accuracy"]})
        body = [
            (label, *(percent_cell(scores["accuracy"].get(cell)) for cell in cells))
            for label, scores in sorted(results.items())
        ]
        found.append(OfficialTable(f"{self.name}: accuracy per task/length (%)", ("method", *cells), body))
        return found

    def published(self, model: str) -> tuple[str, dict[str, float]] | None:
        match = published_for(model)
        if match is None or "babilong" not in match[1]:
            return None
        return match[0], match[1]["babilong"]


BABILONG = BabilongBenchmark(
    "babilong", "BABILong, 100 samples per task and length (10M: qa1-qa5 only)", HUB_IDS["babilong"]
)
BABILONG_1K = BabilongBenchmark(
    "babilong_1k", "BABILong, 1000 samples per task and length (0k-128k)", HUB_IDS["babilong_1k"]
)
