"""RULER conformance: samples come from RULER's own generators and are prompted without changing
their text (one chat template, one BOS); per-sample scores equal RULER's own evaluator
(``eval/evaluate.py``, run as RULER runs it) on a few hundred (prediction, reference) pairs; the
reducer's RULER tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from evals import ruler
from evals.chat import engine_texts, render_chat
from evals.errors import EvalError

pytest.importorskip("wonderwords")


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def official_prepare(
    task: str, tokenizer_dir: Path, save_dir: Path, max_tokens: int, samples: int
) -> list[dict]:
    """RULER's own ``prepare.py`` with its ``base`` model template (it runs the generator)."""
    script = ruler.package_dir() / "data" / "prepare.py"
    command = [
        sys.executable, str(script), "--save_dir", str(save_dir), "--benchmark", "synthetic",
        "--task", task, "--tokenizer_path", str(tokenizer_dir), "--tokenizer_type", "hf",
        "--max_seq_length", str(max_tokens), "--model_template_type", "base", "--num_samples", str(samples),
    ]  # fmt: skip
    env = {
        **os.environ,
        "NLTK_DATA": str(ruler.nltk_data_dir()),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # its `python`
    }
    subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=script.parent)
    lines = (save_dir / task / "validation.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    ("task", "length"), [("niah_single_1", "4k"), ("qa_1", "8k")]
)  # qa at 8k: with a byte-level tokenizer 4k cannot hold qa.py's first 10 documents, and qa.py
#    then retries forever (``generator_timeout`` in evals.ruler stops that)
def test_samples_are_rulers_own_prompts_templated_once(
    tokenizer: Any, tiny_llama_dir: Path, tmp_path: Path, task: str, length: str
) -> None:
    samples = list(ruler.load_samples(tokenizer, [length], [task], 2, root=tmp_path / "cache"))
    budget = ruler.LENGTHS[length] - ruler.wrapper_tokens(tokenizer)
    official = official_prepare(task, tiny_llama_dir, tmp_path / "official", budget, 2)
    assert len(samples) == len(official) == 2
    for sample, record in zip(samples, official, strict=True):
        parts = sample.parts
        assert parts.message + parts.answer_prefix == record["input"]  # the generator's text, unchanged
        assert json.loads(sample.target) == record["outputs"]
        texts = engine_texts(tokenizer, parts)
        assert texts.full_prompt == render_chat(tokenizer, parts.message) + parts.answer_prefix
        ids = tokenizer(texts.full_prompt, add_special_tokens=False)["input_ids"]
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
        assert len(ids) + sample.generation.max_new_tokens <= ruler.LENGTHS[length] + 2
        assert texts.generation_prompt.endswith(parts.answer_prefix) and parts.answer_prefix.startswith(" ")
    again = list(ruler.load_samples(tokenizer, [length], [task], 2, root=tmp_path / "cache"))
    assert [sample.parts for sample in again] == [sample.parts for sample in samples]  # cached


PREDICTIONS = [
    "{0}", "{0} and {1}", "The answer: {0}.", "{upper}", "  {0}\n", "\x07{0}\x1f", "", "none of them",
    "{0}{0}", "almost {partial}", "{1}", "{0}, {1}, {2}, {3}", "\tno\r\n{2}", "{lower}",
]  # fmt: skip
"""Adversarial predictions: case, control characters, partial strings, empty, repeats."""
REFERENCES = [
    ["7402509"], ["France", "france", "Paris"], ["HKXVN", "TUXMH", "MKRUS"], ["12", "123", "1234", "5"],
    ["yes"], ["lush-tornado", "blue sky"], ["ünïcode", "x"],
]  # fmt: skip


def test_scores_equal_rulers_own_evaluator(tmp_path: Path) -> None:
    """Every task's metric, on 13 x 7 x 14 pairs, through RULER's evaluate.py and through ours."""
    pairs: dict[str, list[tuple[str, list[str]]]] = {}
    for task in ruler.task_names():
        pairs[task] = []
        for refs in REFERENCES:
            padded = [*refs, *refs, *refs, *refs][:4]
            fields = {"upper": refs[0].upper(), "lower": refs[0].lower(), "partial": refs[0][:-1]}
            pairs[task] += [(template.format(*padded, **fields), refs) for template in PREDICTIONS]
        lines = [
            json.dumps({"index": i, "input": "", "pred": pred, "outputs": refs, "others": {"id": i}})
            for i, (pred, refs) in enumerate(pairs[task])
        ]
        (tmp_path / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
    script = ruler.package_dir() / "eval" / "evaluate.py"
    subprocess.run(
        [sys.executable, str(script), "--data_dir", str(tmp_path), "--benchmark", "synthetic"],
        check=True, capture_output=True, text=True, cwd=script.parent,
    )  # fmt: skip
    official = json.loads((tmp_path / "per_sample_scores.json").read_text())
    assert sum(len(scores) for scores in official.values()) == 13 * len(REFERENCES) * len(PREDICTIONS)
    for task, task_pairs in pairs.items():
        ours = [100 * ruler.graded_score(json.dumps(refs), pred, task) for pred, refs in task_pairs]
        assert ours == pytest.approx(official[task], abs=1e-9), task
    partial = [score for scores in official.values() for score in scores if 0 < score < 100]
    assert partial and 0 in official["qa_1"] and 100 in official["qa_1"]  # the pairs exercise both


def test_the_ruler_tables_and_published_numbers() -> None:
    rows = [
        {"task": "niah_single_1", "length": "4k", "score": 1.0, "correct": True},
        {"task": "niah_single_1", "length": "4k", "score": 0.5, "correct": False},
        {"task": "qa_1", "length": "4k", "score": 0.0, "correct": False},
    ]
    table = ruler.RULER.official_table(rows)
    assert table["score"] == {"niah_single_1/4k": 75.0, "qa_1/4k": 0.0}
    assert table["average"] == {"4k": 37.5} and table["tasks"] == ["niah_single_1", "qa_1"]
    tables = ruler.RULER.official_tables({"laser": table})
    assert tables[0].rows == [("laser", "37.5")]
    assert tables[1].header == ("Tasks", "niah_single_1", "qa_1") and tables[1].rows == [
        ("laser", "75.00", "0.00")
    ]
    _, published = ruler.RULER.published("meta-llama/Llama-3.1-8B-Instruct") or ("", {})
    assert published["4k"] == 95.5 and published["128k"] == 77.0
    assert ruler.RULER.published("smollm2-135m-instruct") is None


def test_bad_ruler_task_or_length_is_one_line() -> None:
    from evals.benchmark import DataRequest

    with pytest.raises(EvalError, match=r"task='niah_single_9' is not in ruler: one of niah_single_1"):
        ruler.RULER.check(DataRequest(("4k",), ("niah_single_9",)))
    with pytest.raises(EvalError, match=r"length='3k' is not in ruler: one of 4k, 8k"):
        ruler.RULER.check(DataRequest(("3k",), ("qa_1",)))
    assert len(ruler.task_names()) == 13 and ruler.task_names()[-2:] == ("qa_1", "qa_2")
    from evals.benchmarks import listing

    row = next(row for row in listing() if row[0] == "ruler")
    assert row[2] == "4k, 8k, 16k, 32k, 64k, 128k" and all(task in row[3] for task in ruler.task_names())
