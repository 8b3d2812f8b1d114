"""Diagnostics against brute force: needles located in the document (demo set and RULER's own
generator), their token positions against the tokenizer's decoded text, the kept shares against
loops over the kept positions, and the attention recall against the model's own eager attention
probabilities."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from cluster.diagnostics import answer_positions, recall_record, unit_diagnostics
from evals import demo_set, needle, ruler
from evals.chat import EngineTexts, engine_texts
from evals.sample import AnswerSpan
from evals.scoring import score_output
from laserkv import diagnostics, get_method
from laserkv.diagnostics import attention_recall, kept_class, kept_mask, kept_share, token_positions
from laserkv.engine import answer_texts
from laserkv.model_sources import PACKAGED_MODELS, package_dir
from laserkv.modeling import load_tokenizer
from tests.reference import eager_forward


@pytest.mark.parametrize(("task", "n_needles"), [("niah_single", 1), ("niah_multikey", 4)])
def test_demo_needles_locate_the_asked_value_once(tmp_path: Path, task: str, n_needles: int) -> None:
    samples = list(
        demo_set.load_samples(["1k"], [task], demo_set.DemoSpec(samples_per_cell=5), root=tmp_path)
    )
    for sample in samples:
        (span,) = sample.answers  # the asked needle only, not the other keys' numbers
        assert sample.parts.context[span.start : span.end] == sample.target == span.target
        assert sample.parts.context[span.start - 4 : span.end + 1] == f"is: {sample.target}."
    qa = next(
        iter(demo_set.load_samples(["1k"], ["qa1"], demo_set.DemoSpec(samples_per_cell=1), root=tmp_path))
    )
    assert qa.answers == ()  # bAbI-style rows do not mark their facts


def test_a_value_stated_twice_or_never_locates_nothing() -> None:
    twice = f"{needle.needle('a', '1234567')} text {needle.needle('b', '1234567')}"
    assert needle.needle_spans(twice, ["1234567"], str) == ()
    assert needle.needle_spans("no needle here", ["1234567"], str) == ()
    one = f"start {needle.needle('a', '7654321')} end"
    start = one.index("7654321")
    assert needle.needle_spans(one, ["7654321"], str) == (AnswerSpan(start, start + 7, "7654321"),)


@pytest.fixture(scope="module")
def ruler_tokenizer(tiny_llama_dir: Path) -> Any:
    pytest.importorskip("wonderwords")
    return load_tokenizer(str(tiny_llama_dir))


def test_ruler_retrieval_samples_locate_every_reference(ruler_tokenizer: Any, tmp_path: Path) -> None:
    """RULER's own generator (``niah_multivalue``: four values of one key); each span's target is
    that reference alone: an output naming only it gets full credit from RULER's metric for it."""
    needles = list(ruler.load_samples(ruler_tokenizer, ["4k"], ["niah_multivalue"], 2, root=tmp_path))
    assert len(needles) == 2
    for sample in needles:
        references = ruler.references(sample.target)
        assert [span.target for span in sample.answers] == [json.dumps([value]) for value in references]
        assert [sample.parts.context[span.start : span.end] for span in sample.answers] == references
        for span, value in zip(sample.answers, references, strict=True):
            assert score_output("ruler", span.target, f"It is {value}.", "", sample.task).score == 1.0
        assert score_output("ruler", sample.target, f"It is {references[0]}.", "", sample.task).score == 0.25
    retrieval = [
        task for task, config in ruler.task_configs().items() if config["task"] in ruler.RETRIEVAL_GENERATORS
    ]
    assert (
        retrieval == [task for task in ruler.task_names() if task.startswith("niah")] and len(retrieval) == 8
    )


SMOLLM2 = PACKAGED_MODELS["smollm2-135m-instruct"]


@pytest.mark.skipif(
    package_dir(SMOLLM2.files[0][0]) is None, reason="the SmolLM2 weights package is not installed"
)
def test_answer_positions_are_the_tokens_that_spell_the_needle(tmp_path: Path) -> None:
    """A real BPE (SmolLM2's): the tokens found from the offsets are exactly those whose decoded
    text overlaps the needle's characters, by boundaries from decoding every prefix near them."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    spec = demo_set.DemoSpec(samples_per_cell=3, counter="tokenizer:smollm2-135m-instruct")
    samples = demo_set.load_samples(
        ["1k"], ["niah_multikey"], spec, demo_set.tokenizer_counter(tokenizer), tmp_path
    )
    for sample in samples:
        texts = engine_texts(tokenizer, sample.parts)
        (positions,) = answer_positions(tokenizer, texts, sample) or [[]]
        ids = tokenizer(texts.context_text, add_special_tokens=False)["input_ids"]
        span = sample.answers[0]
        start, end = texts.message_start + span.start, texts.message_start + span.end
        assert texts.context_text[start:end] == sample.target
        near = range(positions[0] - 3, positions[-1] + 4)
        bounds = {i: len(tokenizer.decode(ids[:i])) for i in (*near, near[-1] + 1)}
        brute = [i for i in near if bounds[i] < end and bounds[i + 1] > start]
        assert positions == brute
        assert sample.target in tokenizer.decode([ids[i] for i in positions])


def test_token_positions_skip_tokens_without_characters() -> None:
    offsets = [(0, 3), (3, 3), (3, 5), (5, 9), (9, 12)]
    assert token_positions(offsets, 4, 9) == [2, 3]
    assert token_positions(offsets, 3, 4) == [2]
    assert token_positions(offsets, 12, 14) == []


def test_kept_shares_equal_loops_over_the_kept_positions() -> None:
    generator = torch.Generator().manual_seed(0)
    context_len, layers, heads, keep = 50, 3, 2, 20
    per_head = torch.stack(
        [
            torch.sort(torch.randperm(context_len, generator=generator)[:keep]).values
            for _ in range(layers * heads)
        ]
    ).reshape(layers, heads, keep)
    per_head[1, 0, :5] = -1  # a head that kept fewer, padded in front
    answer = [7, 8, 9, 30, 31]
    share = kept_share(kept_mask(per_head, context_len), answer)
    for layer in range(layers):
        for head in range(heads):
            kept = {int(p) for p in per_head[layer, head] if p >= 0}
            assert share[layer, head].item() == pytest.approx(sum(p in kept for p in answer) / len(answer))
    one_set = torch.tensor([0, 1, 8, 9, 31])
    assert kept_share(kept_mask(one_set, context_len), answer).tolist() == [[3 / 5]]


def test_the_kept_class_counts_exactly_where_a_rounded_share_would_not() -> None:
    answer = list(range(30_000))
    almost = kept_mask(torch.tensor(answer[1:]), 30_000)  # one token of 30,000 evicted
    assert round(float(kept_share(almost, answer).mean()), 4) == 1.0
    assert (kept_class(almost, answer), kept_class(kept_mask(torch.tensor([7]), 30_000), answer)) == (
        "partial",
    ) * 2
    assert kept_class(kept_mask(torch.tensor(answer), 30_000), answer) == "all"
    assert kept_class(kept_mask(torch.tensor([-1, 30_001 - 2]), 30_000), [0, 1]) == "none"


def test_a_failed_recall_is_recorded_and_costs_the_unit_nothing(tiny: Any) -> None:
    model, tokenizer = tiny
    texts = EngineTexts("abc def", "")  # no question rows: the recall forward refuses
    found = recall_record(model, tokenizer, texts, kept_mask(torch.tensor([0]), 7))
    assert found == {"recall_error": "ValueError: attention recall needs a context and a question"}


def brute_force_recall(
    model_dir: Path, context: list[int], question: list[int], mask: torch.Tensor
) -> list[float]:
    """Per layer, mean over KV heads of (question rows' mass on kept context keys) / (on all context
    keys), query heads summed within their group, from the eager attention probabilities."""
    out, _ = eager_forward(model_dir, context, 0, question, len(context))
    found = []
    for layer, probabilities in enumerate(out.attentions):  # (1, heads, rows, keys)
        heads = probabilities.shape[1]
        groups = mask.shape[1] if mask.shape[1] > 1 else 2
        ratios = []
        for group in range(groups):
            kept_mass = total = 0.0
            for head in range(group * heads // groups, (group + 1) * heads // groups):
                for row in range(len(context), len(context) + len(question)):
                    for key in range(len(context)):
                        value = float(probabilities[0, head, row, key])
                        total += value
                        kept_mass += (
                            value
                            if mask[min(layer, mask.shape[0] - 1), min(group, mask.shape[1] - 1), key]
                            else 0.0
                        )
            ratios.append(kept_mass / total)
        found.append(sum(ratios) / len(ratios))
    return found


def test_attention_recall_equals_the_eager_attention_mass(
    tiny: Any, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = tiny
    monkeypatch.setattr(diagnostics, "RECALL_BLOCK", 16)  # the context prefilled in three blocks
    rng = random.Random(3)
    context = [rng.randrange(5, 90) for _ in range(40)]
    question = [rng.randrange(5, 90) for _ in range(6)]
    per_head = torch.stack([torch.sort(torch.tensor(rng.sample(range(40), 12))).values for _ in range(4)])
    mask = kept_mask(per_head.reshape(2, 2, 12), 40)  # 2 layers x 2 KV heads, each its own set
    recall = attention_recall(model, context, question, mask)
    assert recall == pytest.approx(brute_force_recall(tiny_model_dir, context, question, mask), abs=1e-5)
    everything = kept_mask(torch.arange(40), 40)
    assert attention_recall(model, context, question, everything) == pytest.approx([1.0, 1.0], abs=1e-6)


def test_a_units_diagnostics_name_the_needle_and_its_tokens_kept(tiny: Any, tmp_path: Path) -> None:
    """End to end on a tiny model: the demo set's needle under ``streaming`` (it keeps the first and
    last tokens) and ``full``; the shares agree with the kept positions the engine returned."""
    model, tokenizer = tiny
    spec = demo_set.DemoSpec(samples_per_cell=2)
    sample = list(demo_set.load_samples(["1k"], ["niah_single"], spec, root=tmp_path))[1]
    texts = engine_texts(tokenizer, sample.parts)
    methods = [get_method("full"), get_method("streaming", budget=64, block_size=256)]
    methods.append(get_method("kvpress:pyramidkv", budget=64))  # per layer, heads padded with -1
    for method in methods:
        result = answer_texts(model, tokenizer, texts.context_text, texts.question_text, method)
        found = unit_diagnostics(model, tokenizer, texts, sample, result, recall=True)
        assert found is not None
        (answer,) = found["answers"]
        per_head = result.kept_positions.reshape(-1, result.kept_positions.shape[-1]).tolist()
        shares = [
            sum(p in set(kept) for p in answer["positions"]) / len(answer["positions"]) for kept in per_head
        ]
        expected = round(sum(shares) / len(shares), 4)
        assert (answer["target"], answer["kept"], found["answer_kept"]) == (sample.target, expected, expected)
        assert ("answer_kept_by_layer" in found) == (result.kept_positions.dim() == 3)
        assert answer["depth"] == round(100 * answer["positions"][0] / result.stats.context_tokens, 2)
        assert len(found["attention_recall_by_layer"]) == 2
        if method.name == "full":
            assert found["answer_kept"] == 1.0 and found["attention_recall_by_layer"] == [1.0, 1.0]
        else:
            assert 0 < found["attention_recall_by_layer"][0] < 1
    qa = next(iter(demo_set.load_samples(["1k"], ["qa1"], spec, root=tmp_path)))
    texts = engine_texts(tokenizer, qa.parts)
    result = answer_texts(model, tokenizer, texts.context_text, texts.question_text, get_method("full"))
    assert unit_diagnostics(model, tokenizer, texts, qa, result) is None


KEPT = {
    "full": [1.0] * 6,
    "laser": [1.0, 1.0, 0.5, 0.5, 0.0, 1.0],
    "streaming": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
}
RIGHT = {
    "full": [True] * 6,
    "laser": [True, True, True, False, False, False],
    "streaming": [False] * 3 + [True, False, False],
}
DEPTHS = [5.0, 15.0, 55.0, 95.0, 99.9, 50.0]
RECALL = {"laser": [0.9, 0.7], "streaming": [0.4, 0.2]}


def write_diagnosed_rows(directory: Path) -> None:
    """The demo set's needle task under three methods with set answer-kept shares, outputs, depths
    and (for two methods) recall; plus a schema-5 shard (no ``diagnostics`` column) beside them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cluster.plan import plan_units
    from cluster.rows import RESULT_SCHEMA, base_row
    from evals.sample import EvalSample, GenerationSettings, PromptParts

    samples = [
        EvalSample("babilong_demo", f"2k/niah_single/{index}", "niah_single", "2k", PromptParts("c", "q"),
                   str(1000000 + index), GenerationSettings(16), "What is the number?")
        for index in range(6)
    ]  # fmt: skip
    rows = []
    for name in KEPT:
        method = get_method(name, budget=64) if name != "full" else get_method("full")
        for index, unit in enumerate(plan_units(samples, [method], "m", "rev")):
            row = base_row(unit, "run", 1, "w")
            target = samples[index].target
            output = f"The number is {target}." if RIGHT[name][index] else "The number is 4."
            found = {
                "answers": [
                    {
                        "target": target,
                        "positions": [10, 11],
                        "depth": DEPTHS[index],
                        "kept": KEPT[name][index],
                    }
                ],
                "answer_tokens": 2,
                "answer_kept": KEPT[name][index],
            }
            if name in RECALL:
                found["attention_recall_by_layer"] = [value - index / 100 for value in RECALL[name]]
            row.update(status="ok", raw_output=output, context_tokens=200, diagnostics=json.dumps(found))
            rows.append(row)
    (directory / "results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), directory / "results" / "part-run-00000.parquet"
    )
    old = [dict(row, method="snapkv", unit_id=row["unit_id"] + "old", schema_version=5) for row in rows[:6]]
    v5 = pa.Table.from_pylist(old, schema=RESULT_SCHEMA).drop_columns(["diagnostics"])
    pq.write_table(v5, directory / "results" / "part-old-00000.parquet")


def test_views_and_report_split_misses_by_what_was_kept(tmp_path: Path) -> None:
    from analysis.diagnostics import answer_kept_split, depth_grid, misses_by_kept, needles, recall_by_layer
    from analysis.table import scored_table
    from reports.write import write_report

    write_diagnosed_rows(tmp_path / "run")
    table = scored_table([tmp_path / "run"])
    assert table.frame.loc[table.frame["method"].eq("snapkv"), "answer_kept"].isna().all()  # schema 5: none
    misses = misses_by_kept(table).set_index("config")
    for name in KEPT:
        wrong = [share for share, right in zip(KEPT[name], RIGHT[name], strict=True) if not right]
        expected = (6, len(wrong), wrong.count(0.0), sum(0 < s < 1 for s in wrong), wrong.count(1.0))
        assert tuple(misses.loc[name, ["n", "misses", "evicted", "partial", "ignored"]]) == expected
    assert "snapkv" not in misses.index
    split = answer_kept_split(table)
    laser = split[split["config"].eq("laser")].set_index("answer_kept_class")
    assert list(laser.index) == ["all", "partial", "none"]
    assert (laser.loc["all", "n"], laser.loc["all", "accuracy"]) == (3, pytest.approx(200 / 3))
    assert (laser.loc["partial", "misses"], laser.loc["none", "accuracy"]) == (1, 0.0)
    found = needles(table)
    assert found.groupby("config")["found"].sum().to_dict() == {name: sum(RIGHT[name]) for name in KEPT}
    grid = depth_grid(table).set_index(["config", "depth_bin"])
    assert grid.loc[("laser", "90-100%"), ["n", "found", "kept"]].tolist() == [2, 0.0, 25.0]
    assert grid.loc[("full", "50-60%"), "n"] == 2
    recall = recall_by_layer(table).set_index(["config", "layer"])
    assert recall.loc[("laser", 1), "recall"] == pytest.approx(100 * (0.7 - sum(range(6)) / 600))
    assert ("full", 0) not in recall.index

    report = write_report(tmp_path / "run", out=tmp_path / "report")
    text = report.read_text()
    assert "| babilong_demo | laser | 6 | 3 | 1 | 1 | 1 |" in text
    assert "| babilong_demo | streaming | 6 | 5 | 5 | 0 | 0 |" in text
    plots = sorted(path.name for path in (tmp_path / "report" / "plots").iterdir())
    assert {"depth_heatmap_babilong_demo_laser.png", "attention_recall_by_layer_babilong_demo.png"} <= set(
        plots
    )


def test_a_report_without_diagnostics_has_no_such_section(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from reports.write import write_report

    write_diagnosed_rows(tmp_path / "run")
    (tmp_path / "run" / "results" / "part-run-00000.parquet").unlink()  # the schema-5 shard alone
    text = write_report(tmp_path / "run", out=tmp_path / "report").read_text()
    assert pq.read_table(tmp_path / "run" / "results" / "part-old-00000.parquet").num_rows == 6
    assert "Evicted or ignored" not in text and "Needles found" not in text and "Attention recall" not in text
    assert not any(
        path.name.startswith("depth_heatmap") for path in (tmp_path / "report" / "plots").iterdir()
    )


def test_the_committed_ruler_needle_run_reads_as_its_page_says() -> None:
    """docs/diagnostics.md's table of the committed RULER needle run, from its rows."""
    from analysis.diagnostics import depth_grid, misses_by_kept
    from analysis.table import scored_table

    pytest.importorskip("long_context_eval")
    run = Path(__file__).resolve().parents[1] / "docs" / "diagnostics" / "runs" / "ruler_niah_smollm2"
    table = scored_table([run])
    misses = misses_by_kept(table).set_index("config")[["n", "misses", "evicted", "partial", "ignored"]]
    assert misses.to_dict("index") == {
        "full": {"n": 40, "misses": 25, "evicted": 0, "partial": 0, "ignored": 25},
        "laser": {"n": 40, "misses": 33, "evicted": 0, "partial": 29, "ignored": 4},
        "streaming": {"n": 40, "misses": 34, "evicted": 20, "partial": 14, "ignored": 0},
    }
    grid = depth_grid(table).set_index(["config", "length", "depth_bin"])
    assert grid.loc[("streaming", "8k", "90-100%"), ["n", "found", "kept"]].tolist() == [6, 100.0, 100.0]
    page = (run.parents[2] / "diagnostics.md").read_text()
    assert "| streaming | 40 | 34 | 20 | 14 | 0 |" in page
