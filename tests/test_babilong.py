"""BABILong on local copies in the official schema loaded through ``datasets``: the prompt byte
for byte, the engine's cut, every quirk of ``compare_answers`` and the accuracy tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from evals import babilong
from evals.babilong import accuracy_table, compare_answers, headline
from evals.chat import engine_texts
from evals.errors import DatasetNotAvailableError, EvalError

ROWS = [
    {
        "input": "  Some text. Mary moved to the kitchen. More text.\n",
        "question": "Where is Mary?",
        "target": "kitchen",
    },
    {"input": "John went to the garden. Filler.", "question": "Where is John?", "target": "garden"},
]


def official_message(context: str, question: str, task: str) -> str:
    """DEFAULT_TEMPLATE filled as prompts.py does, written out here."""
    prompts = json.loads((Path(__file__).parents[1] / "evals/data/babilong_prompts.json").read_text())[
        "prompts"
    ]
    prompt = prompts[task]
    return (
        f"{prompt['instruction']}\n\n{prompt['examples']}\n\n{prompt['post_prompt']}\n\n"
        f"<context>\n{context.strip()}\n</context>\n\nQuestion: {question}"
    ).strip()


@pytest.fixture
def local_copy(tmp_path: Path) -> Path:
    """<root>/<length>/<task>.jsonl plus a save_to_disk DatasetDict for another length."""
    (tmp_path / "4k").mkdir()
    (tmp_path / "4k" / "qa1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    datasets.DatasetDict({"qa2": datasets.Dataset.from_list(ROWS[::-1])}).save_to_disk(str(tmp_path / "8k"))
    return tmp_path


def test_the_shipped_prompts_are_the_official_ones() -> None:
    qa1 = babilong.task_prompt("qa1")
    assert qa1["instruction"].startswith(
        "I will give you context with the facts about positions of different"
    )
    assert qa1["post_prompt"].startswith("Always return your answer in the following format: The most recent")
    assert qa1["examples"].count("<example>") == 2
    for task in ("qa10", "qa13", "qa16", "qa20"):  # the stray "<context>\n" of the originals, kept
        assert babilong.task_prompt(task)["examples"].endswith("</example>\n<context>\n")
    assert (
        babilong.task_labels("qa19")[:3] == ["e,e", "e,n", "e,s"] and len(babilong.task_labels("qa19")) == 12
    )


def test_local_copies_load_and_render_the_official_prompt(local_copy: Path) -> None:
    samples = list(babilong.load_samples("babilong", ["4k"], ["qa1"], source=str(local_copy))) + list(
        babilong.load_samples("babilong", ["8k"], ["qa2"], source=str(local_copy))
    )
    with pytest.raises(EvalError, match=r"8k has no split 'qa1': it has qa2"):
        babilong.load_rows("babilong", "8k", "qa1", str(local_copy))
    with pytest.raises(EvalError, match=r"holds no qa3.parquet/.jsonl/.json and no saved DatasetDict"):
        babilong.load_rows("babilong", "4k", "qa3", str(local_copy))
    first, second, third, fourth = samples[0], samples[1], samples[2], samples[3]
    assert (first.sample_id, first.task, first.length, first.target) == ("4k/qa1/0", "qa1", "4k", "kitchen")
    assert first.parts.message == official_message(ROWS[0]["input"], ROWS[0]["question"], "qa1")
    assert first.parts.question == "\n</context>\n\nQuestion: Where is Mary?"
    assert first.parts.context.endswith("<context>\nSome text. Mary moved to the kitchen. More text.")
    assert (first.generation.max_new_tokens, first.generation.temperature) == (20, 0.0)
    assert second.parts.message == official_message(ROWS[1]["input"], ROWS[1]["question"], "qa1")
    assert (third.sample_id, fourth.sample_id, third.target) == ("8k/qa2/0", "8k/qa2/1", "garden")
    assert third.parts.message == official_message(ROWS[1]["input"], ROWS[1]["question"], "qa2")


def test_engine_texts_concatenate_to_the_chat_prompt(byte_tokenizer: Any) -> None:
    parts = babilong.prompt_parts(ROWS[0]["input"], "Where is Mary?  ", "qa1")  # trailing spaces stripped
    texts = engine_texts(byte_tokenizer, parts)
    message = official_message(ROWS[0]["input"], "Where is Mary?  ", "qa1")
    assert message.endswith("Where is Mary?")
    expected = byte_tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
    assert texts.full_prompt == expected
    assert texts.question_text == "\n</context>\n\nQuestion: Where is Mary?<|assistant|>"


def test_ablation_flags_replace_components_with_nothing() -> None:
    bare = babilong.format_input(" ctx ", "Q?", "qa1", instruction=False, examples=False, post_prompt=False)
    assert bare == "<context>\nctx\n</context>\n\nQuestion: Q?"


@pytest.mark.parametrize(
    ("target", "output", "question", "task", "correct"),
    [
        ("kitchen", "The most recent location of Mary is kitchen.", "Where is Mary?", "qa1", True),
        ("kitchen", "KITCHEN", "Where is Mary?", "qa1", True),  # case-insensitive
        ("kitchen", "kitchen. Then she went to the garden.", "Where is Mary?", "qa1", True),  # first sentence
        ("kitchen", "kitchen or garden", "Where is Mary?", "qa1", False),  # exactly one label
        ("kitchen", "kitchen <context> garden", "Where is Mary?", "qa1", True),  # <context> cut
        ("kitchen", "kitchen <example> garden", "Where is Mary?", "qa1", True),  # <example> cut
        ("kitchen", "kitchen Question: garden", "Where is Mary?", "qa1", False),  # the dead 'Question' cut
        ("kitchen", "", "Where is Mary?", "qa1", False),  # empty output
        ("kitchen", "garden", "Where is Mary?", "qa1", False),
        # labels named in the question are ignored in the output
        ("bedroom", "The garden is east of the bedroom", "What is east of the garden?", "qa4", True),
        ("Fred", "Fred gave it to Mary", "Who did Fred give the milk to?", "qa5", False),
        ("none", "none", "How many objects is Mary carrying?", "qa7", False),  # 'none' holds 'one'
        ("two", "two", "How many objects is Mary carrying?", "qa7", True),
        ("apple,milk", "apple and milk", "What is Mary carrying?", "qa8", True),  # multi-answer
        ("apple,milk", "milk, apple", "What is Mary carrying?", "qa8", True),
        ("apple,milk", "apple", "What is Mary carrying?", "qa8", False),
        ("apple,milk", "apple, milk and football", "What is Mary carrying?", "qa8", False),
        ("nothing", "nothing", "What is Mary carrying?", "qa8", True),
        ("n,w", "n,w", "How do you go from the kitchen to the garden?", "qa19", True),  # len 3: one label
        ("n,w", "n,w then s,e", "How do you go from the kitchen to the garden?", "qa19", False),
        ("yes", "Yes, she is", "Is Mary in the office?", "qa6", True),
    ],
)
def test_compare_answers(target: str, output: str, question: str, task: str, correct: bool) -> None:
    assert compare_answers(target, output, question, task) is correct


def test_accuracy_tables_by_hand() -> None:
    records = []
    for task, length, outcomes in [
        ("qa1", "1k", [1, 1, 0, 1]),
        ("qa2", "1k", [0, 1]),
        ("qa3", "1k", [1]),
        ("qa4", "1k", [0, 0]),
        ("qa5", "1k", [1, 1, 1, 1, 0]),
        ("qa1", "16k", [0, 1]),
        ("qa2", "2k", [1]),
    ]:
        for outcome in outcomes:
            output = "The most recent location is kitchen." if outcome else None
            target = "kitchen" if task != "qa5" else "Fred"
            if task == "qa5":
                output = "Fred" if outcome else "Mary"
            records.append(
                {"task": task, "length": length, "target": target, "output": output, "question": "Q?"}
            )
    table = accuracy_table(records)
    assert table == {
        ("qa1", "1k"): 75.0,
        ("qa2", "1k"): 50.0,
        ("qa3", "1k"): 100.0,
        ("qa4", "1k"): 0.0,
        ("qa5", "1k"): 80.0,
        ("qa1", "16k"): 50.0,
        ("qa2", "2k"): 100.0,
    }
    assert headline(table) == {"1k": (75 + 50 + 100 + 0 + 80) / 5}  # 16k and 2k lack qa1-qa5


def test_bad_lengths_tasks_fields_and_offline_hub(tmp_path: Path, local_copy: Path) -> None:
    with pytest.raises(EvalError, match=r"length='3k' is not in babilong: one of 0k, 1k"):
        babilong.load_rows("babilong", "3k", "qa1")
    with pytest.raises(EvalError, match=r"task='qa11' is not in babilong at 4k: one of qa1, .*qa10"):
        babilong.load_rows("babilong", "4k", "qa11")
    with pytest.raises(
        EvalError, match=r"task='qa6' is not in babilong_1k at 4k: one of qa1, qa2, qa3, qa4, qa5"
    ):
        babilong.load_rows("babilong_1k", "4k", "qa6")
    babilong.check_config("babilong_1k", "0k", "qa20")  # the 0k config has all 20 tasks
    babilong.check_config("babilong", "10M", "qa5")
    with pytest.raises(EvalError, match="task='qa6' is not in babilong at 10M"):
        babilong.check_config("babilong", "10M", "qa6")
    (local_copy / "4k" / "qa2.jsonl").write_text(json.dumps({"input": "x", "answer": "kitchen"}) + "\n")
    with pytest.raises(EvalError, match=r"lacks the field\(s\) question, target"):
        babilong.load_rows("babilong", "4k", "qa2", str(local_copy))
    with pytest.raises(DatasetNotAvailableError, match=r"RMT-team/babilong \(4k\) is not available offline"):
        babilong.load_rows("babilong", "4k", "qa1")
