"""RULER conformance: samples come from RULER's own generators and are prompted without changing
their text (one chat template, one BOS); per-sample scores equal RULER's own evaluator
(``eval/evaluate.py``, run as RULER runs it) on a few hundred (prediction, reference) pairs; the
reducer's RULER tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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
    ("task", "length", "nominal"),
    [("niah_multikey_3", "4k", True), ("cwe", "4k", True), ("qa_1", "8k", False)],
)  # qa at 8k: with a byte-level tokenizer 4k cannot hold qa.py's first 10 documents, and qa.py
#    then retries forever (``generator_timeout`` in evals.ruler stops that)
def test_samples_are_rulers_own_prompts_templated_once(
    tokenizer: Any, tiny_llama_dir: Path, tmp_path: Path, task: str, length: str, nominal: bool
) -> None:
    """At 4k the cells are RULER's own 4k cells, byte for byte (``prepare.py`` at 4,096: the
    set-up is decided on the nominal length, below the 4,096 switch of ``cwe`` and of the niah
    ``repeat``/``needle`` haystacks; the chat template's 3 tokens leave this tokenizer's fill where
    it is); qa at 8k is compared at the fill budget."""
    budget = ruler.LENGTHS[length] - ruler.wrapper_tokens(tokenizer)
    official_length = ruler.LENGTHS[length] if nominal else budget
    with ThreadPoolExecutor(1) as pool:  # RULER's run beside ours (each is a subprocess)
        running = pool.submit(
            official_prepare, task, tiny_llama_dir, tmp_path / "official", official_length, 2
        )
        samples = list(ruler.load_samples(tokenizer, [length], [task], 2, root=tmp_path / "cache"))
        official = running.result()
    assert len(samples) == len(official) == 2
    if task == "niah_multikey_3":  # RULER's 4k haystack step: 25 needle-like lines and the needle
        assert all(record["input"].count("One of the special magic uuids") == 26 for record in official)
    if task == "cwe":  # RULER's 4k set-up: every common word 30 times (the short one has 6)
        context = official[0]["input"].rsplit("Below is a numbered list", 1)[1]
        assert all(
            context.count(f". {word} ") + context.count(f". {word}\n") == 30
            for word in official[0]["outputs"]
        )
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


CHANGED_AT_SMOLLM2 = {
    ("cwe", "4k"), ("niah_single_1", "4k"), ("niah_multikey_2", "4k"), ("niah_multikey_3", "4k"),
    ("fwe", "32k"), ("fwe", "128k"),
}  # fmt: skip
"""The cells whose set-up the nominal length changes with SmolLM2's chat template (30 tokens)."""


def test_only_cells_whose_setup_changed_get_a_new_version_key_and_revision(tmp_path: Path) -> None:
    changed = {
        (task, length)
        for task in ruler.task_names()
        for length, nominal in ruler.LENGTHS.items()
        if ruler.cell_version(task, nominal, nominal - 30) == ruler.SETUP_VERSION
    }
    assert changed == CHANGED_AT_SMOLLM2
    for length, nominal in ruler.LENGTHS.items():  # any template decides the 4k switches alike
        for wrapper in (1, 3, 30, 200):
            assert ruler.setup_differs("cwe", nominal, nominal - wrapper) == (length == "4k")
            assert ruler.setup_differs("niah_single_2", nominal, nominal - wrapper) is False  # essay
    # version-1 cells keep the cache file names they had before the fix (pinned)
    key = ruler.CellKey("0123456789abcdef", "16k", "cwe", 50)
    assert key.file_name() == "cwe-16k-7509432ecc69.parquet"
    assert ruler.CellKey("0123456789abcdef", "4k", "fwe", 50).file_name() == "fwe-4k-c74808cc524a.parquet"
    old_4k = ruler.CellKey("0123456789abcdef", "4k", "cwe", 50)
    assert old_4k.file_name() == "cwe-4k-30b9c30548b9.parquet"
    assert ruler.CellKey(**{**old_4k.__dict__, "version": 2}).file_name() != old_4k.file_name()
    # ... and the command they always had; changed cells keep RULER's code generating
    args = (Path("tok"), tmp_path, 2, ruler.SEED, "T")
    same = ruler.generator_command("cwe", 16354, *args, nominal=16384)
    assert same[1].endswith("common_words_extraction.py") and "--vocab_size" not in same
    assert same[same.index("--max_seq_length") + 1] == "16354" and same == ruler.generator_command(
        "cwe", 16354, *args
    )
    runner = ruler.generator_command("cwe", 4066, *args, nominal=4096)
    assert runner[1:3] == ["-c", ruler.SETUP_RUNNER] and runner[4:6] == ["4066", "sys_word_pair_random"]
    assert runner[runner.index("--max_seq_length") + 1] == "4096"
    fwe = ruler.generator_command("fwe", 32738, *args, nominal=32768)
    assert fwe[fwe.index("--max_seq_length") + 1] == "32738" and fwe[fwe.index("--vocab_size") + 1] == "655"
    # the run's revision never changes; a changed cell's samples carry their own
    from evals.benchmark import DataRequest

    everything = tuple(ruler.task_names())
    for lengths in (("8k", "16k"), ("4k",), ("32k",)):
        request = DataRequest(lengths, everything, samples_per_cell=50)
        assert ruler.RULER.revision(request) == "ruler:v1:seed42:n50"
    assert ruler.cell_revision(ruler.GENERATOR_VERSION, 50) is None
    assert ruler.cell_revision(ruler.SETUP_VERSION, 50) == "ruler:v2:seed42:n50"


def test_a_changed_cell_gets_its_own_unit_ids_and_never_resumes_into_old_rows(tmp_path: Path) -> None:
    """Unit ids hash a sample's own revision where it has one, and the driver refuses a cell whose
    revision differs from an earlier run's rows of that cell (older manifests: their run's)."""
    import dataclasses

    from cluster.driver import check_cell_revisions
    from cluster.plan import cell_revisions, plan_units
    from cluster.writer import ResultsError, write_manifest
    from evals.sample import EvalSample, GenerationSettings, PromptParts
    from laserkv.methods import get_method

    old = EvalSample("ruler", "4k/qa_1/0", "qa_1", "4k", PromptParts("c", "q"), "[]", GenerationSettings(32))
    new = dataclasses.replace(old, revision=ruler.cell_revision(ruler.SETUP_VERSION, 50))
    run = ruler.run_revision(50)
    (before,), (after,) = (plan_units([sample], [get_method("full")], "m", run) for sample in (old, new))
    assert before.dataset_revision == run and after.dataset_revision == "ruler:v2:seed42:n50"
    assert before.unit_id != after.unit_id
    write_manifest(tmp_path, "r1", {"dataset": "ruler", "lengths": ["4k", "8k"], "tasks": ["qa_1"]},
                   {"dataset_revision": run})  # fmt: skip
    check_cell_revisions(tmp_path, "ruler", cell_revisions([before]))  # the same version: fine
    check_cell_revisions(tmp_path, "ruler", {"qa_1/16k": "ruler:v2:seed42:n50"})  # a new cell: fine
    with pytest.raises(ResultsError, match=r"ruler qa_1/4k results of another data version \(ruler:v1"):
        check_cell_revisions(tmp_path, "ruler", cell_revisions([after]))


def test_a_cell_on_an_exact_half_is_rulers_digit(tmp_path: Path) -> None:
    """40 niah_multivalue samples (4 values each): 5 right, one with 3 of 4, the rest wrong. The
    mean is 14.375: RULER's ``sum / n * 100`` rounds to 14.37 (``100 * sum / n``: 14.38)."""
    refs = ["1111111", "2222222", "3333333", "4444444"]
    predictions = [" ".join(refs)] * 5 + [" ".join(refs[:3])] + ["nothing"] * 34
    rows = [
        {"task": "niah_multivalue", "length": "4k", "sample_id": f"4k/niah_multivalue/{i}",
         "response": pred, "answer": json.dumps(refs), "correct": pred == predictions[0],
         "score": ruler.graded_score(json.dumps(refs), pred, "niah_multivalue")}
        for i, pred in enumerate(predictions)
    ]  # fmt: skip
    lines = [
        json.dumps({"index": i, "input": "", "pred": pred, "outputs": refs, "others": {"id": i}})
        for i, pred in enumerate(predictions)
    ]
    (tmp_path / "niah_multivalue.jsonl").write_text("\n".join(lines) + "\n")
    script = ruler.package_dir() / "eval" / "evaluate.py"
    subprocess.run(
        [sys.executable, str(script), "--data_dir", str(tmp_path), "--benchmark", "synthetic"],
        check=True, capture_output=True, text=True, cwd=script.parent,
    )  # fmt: skip
    summary = (tmp_path / "summary-niah_multivalue.csv").read_text().splitlines()
    assert summary[2].split(",")[1] == "14.37"  # RULER's evaluate.py
    table = ruler.RULER.official_table(list(reversed(rows)))
    assert table["score"] == {"niah_multivalue/4k": 14.37}
    assert ruler.RULER.official_tables({"laser": table})[1].rows == [("laser", "14.37")]
    scores_only = [
        {key: row[key] for key in ("task", "length", "sample_id", "score", "correct")} for row in rows
    ]
    assert ruler.RULER.official_table(scores_only)["score"] == {"niah_multivalue/4k": 14.37}
