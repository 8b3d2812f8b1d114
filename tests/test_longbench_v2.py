"""LongBench v2 on files in the official schema loaded through ``datasets``: the prompt byte for
byte, middle truncation, the engine's cut, extraction edge cases and result.py's aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals import longbench_v2
from evals.chat import engine_texts, render_chat
from evals.errors import DatasetNotAvailableError, EvalError
from evals.longbench_v2 import aggregate, extract_answer, judge
from laserkv.prompting import encode_text
from tests.tiny import build_byte_tokenizer


def item(index: int, **changes: str) -> dict[str, str]:
    base = {
        "_id": f"id{index}",
        "domain": "Single-Document QA",
        "sub_domain": "Academic",
        "difficulty": "easy" if index % 2 else "hard",
        "length": ("short", "medium", "long")[index % 3],
        "question": f"  Which value does item {index} hold?\n",
        "choice_A": " 1 ",
        "choice_B": "2",
        "choice_C": "\t3",
        "choice_D": "4\n",
        "answer": "ABCD"[index % 4],
        "context": f"\n  Document {index}: the value is {index % 4 + 1}. " + "Filler text. " * 40 + "\n\n",
    }
    return {**base, **changes}


def official_prompt(row: dict[str, str]) -> str:
    """prompts/0shot.txt written out line by line, fields stripped."""
    return (
        "Please read the following text and answer the question below.\n"
        "\n"
        "<text>\n"
        f"{row['context'].strip()}\n"
        "</text>\n"
        "\n"
        f"What is the correct answer to this question: {row['question'].strip()}\n"
        "Choices:\n"
        f"(A) {row['choice_A'].strip()}\n"
        f"(B) {row['choice_B'].strip()}\n"
        f"(C) {row['choice_C'].strip()}\n"
        f"(D) {row['choice_D'].strip()}\n"
        "\n"
        'Format your response as follows: "The correct answer is (insert answer here)".'
    )


@pytest.fixture
def data_json(tmp_path: Path) -> Path:
    """Like the hub's data.json: one JSON array of items."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps([item(index) for index in range(5)]))
    return path


@pytest.mark.parametrize("layout", ["json-array", "jsonl", "saved"])
def test_local_copies_load_and_render_the_official_prompt(
    tmp_path: Path, data_json: Path, layout: str
) -> None:
    source = data_json
    if layout == "jsonl":
        source = tmp_path / "data.jsonl"
        source.write_text("".join(json.dumps(item(index)) + "\n" for index in range(5)))
    elif layout == "saved":
        longbench_v2.load_items(str(data_json)).save_to_disk(str(tmp_path / "saved"))
        source = tmp_path / "saved"
    samples = list(longbench_v2.load_samples(str(source)))
    assert [sample.sample_id for sample in samples] == [f"id{index}" for index in range(5)]
    for index, sample in enumerate(samples):
        assert sample.parts.message == official_prompt(item(index))
        assert sample.parts.question.startswith("\n</text>\n\nWhat is the correct answer")
        assert sample.target == "ABCD"[index % 4]
        assert (sample.generation.temperature, sample.generation.max_new_tokens) == (0.1, 128)
        assert sample.fields["difficulty"] == item(index)["difficulty"]


def test_greedy_is_a_recorded_option(data_json: Path) -> None:
    sample = next(longbench_v2.load_samples(str(data_json), greedy=True))
    assert (sample.generation.temperature, sample.generation.max_new_tokens) == (0.0, 128)


def test_fields_are_replaced_in_the_official_order() -> None:
    """pred.py chains str.replace starting with $DOC$, so a '$Q$' inside the document is replaced."""
    row = item(1, context="see $Q$ here")
    message = longbench_v2.prompt_parts(row).message
    assert "see Which value does item 1 hold? here" in message


def test_middle_truncation_keeps_first_and_last_halves(byte_tokenizer: Any) -> None:
    row = item(2, context="Head. " + "x" * 3000 + " Tail.")
    prompt = longbench_v2.build_prompt(row)
    ids = byte_tokenizer.encode(prompt)
    assert ids[0] == byte_tokenizer.bos_token_id and len(ids) > 1000  # encode adds BOS, as pred.py's does
    parts = longbench_v2.prompt_parts(row, byte_tokenizer, max_len=1000)
    expected = byte_tokenizer.decode(ids[:500] + ids[-500:], skip_special_tokens=True)
    assert parts.message == expected
    assert (
        parts.message.startswith("Please read") and len(byte_tokenizer.encode(parts.message)) == 1000 - 1 + 1
    )
    assert parts.question == longbench_v2.question_part(row)
    short = longbench_v2.prompt_parts(item(3), byte_tokenizer, max_len=100_000)
    assert short.message == official_prompt(item(3))


LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}<|user|>{{ message['content'] | trim }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.mark.parametrize("template", ["plain", "trimming"])
def test_engine_texts_concatenate_to_the_chat_prompt(tmp_path: Path, template: str) -> None:
    tokenizer = build_byte_tokenizer(tmp_path, LLAMA3_LIKE) if template == "trimming" else None
    tokenizer = tokenizer or build_byte_tokenizer(tmp_path)
    parts = longbench_v2.prompt_parts(item(4))
    texts = engine_texts(tokenizer, parts)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": official_prompt(item(4))}], tokenize=False, add_generation_prompt=True
    )
    assert texts.full_prompt == full == render_chat(tokenizer, parts.message)
    assert texts.context_text.endswith("Filler text.") and texts.context_text.startswith(
        "<s><|user|>Please read"
    )
    assert texts.question_text.startswith("\n</text>\n\nWhat is") and texts.question_text.endswith(
        "<|assistant|>"
    )
    ids = encode_text(tokenizer, texts.context_text) + encode_text(tokenizer, texts.question_text)
    assert ids == encode_text(tokenizer, full) and ids[0] == tokenizer.bos_token_id


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**", "C"),  # '*' removed first
        ("The correct answer is D.", "D"),  # the second pattern
        ("The correct answer is (A). The correct answer is (B)", "A"),  # first match
        ("The correct answer is B, no wait: The correct answer is (C)", "C"),  # pattern 1 wins anywhere
        ("the correct answer is (B)", None),  # case-sensitive
        ("The correct answer is (E)", None),
        ("The answer is (A)", None),
        ("", None),
    ],
)
def test_extract_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response) == expected
    assert judge(response, "B") == (expected == "B")


def test_aggregation_by_hand() -> None:
    records = [
        {"difficulty": "easy", "length": "short", "answer": "A", "response": "The correct answer is (A)"},
        {"difficulty": "easy", "length": "medium", "answer": "B", "response": "The correct answer is (C)"},
        {"difficulty": "hard", "length": "long", "answer": "C", "response": "The correct answer is (C)"},
        {"difficulty": "hard", "length": "short", "answer": "D", "response": "I do not know"},
        {"difficulty": "medium?", "length": "huge", "answer": "A", "response": "The correct answer is A"},
        {"difficulty": "easy", "length": "short", "answer": "A", "response": ""},  # skipped, not counted
        {"difficulty": "hard", "length": "medium", "answer": "B", "response": None},  # skipped
        {"difficulty": "hard", "length": "medium", "answer": "B", "response": "  "},  # not '': scored, wrong
    ]
    scores = aggregate(records)
    # 6 scored: correct = 1, 0, 1, 0, 1, 0. easy {1, 0}; hard {1, 0, 1, 0} (any non-easy is hard);
    # short {1, 0}; medium {0, 0}; long {1, 1} (any other length is long)
    assert (scores.overall, scores.easy, scores.hard) == (50.0, 50.0, 50.0)
    assert (scores.short, scores.medium, scores.long) == (50.0, 0.0, 100.0)
    assert (scores.n_scored, scores.skipped_empty) == (6, 2)
    compensated = aggregate(records, compensated=True)  # the two None predictions score 0.25
    assert (compensated.overall, compensated.hard, compensated.short) == (58.3, 62.5, 62.5)
    assert compensated.medium == 12.5
    assert aggregate([records[0]]).medium is None  # result.py would divide by zero


def test_missing_fields_and_offline_hub_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    row = item(0)
    del row["choice_C"], row["difficulty"]
    broken.write_text(json.dumps(row) + "\n")
    with pytest.raises(EvalError, match=r"lacks the field\(s\) difficulty, choice_C"):
        longbench_v2.load_items(str(broken))
    with pytest.raises(
        DatasetNotAvailableError, match=r"THUDM/LongBench-v2 is not available offline.*HF_DATASETS_OFFLINE=1"
    ):
        longbench_v2.load_items()
