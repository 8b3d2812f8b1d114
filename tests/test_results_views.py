"""Results as one scored table with declared views: outputs are scored once, from the raw output
(the report's prediction is the one that gives ``correct``); a benchmark's breakdown field reaches
the report's tables with no change in ``cluster/``; ``laserkv report`` writes nothing into the
results directories it reads; older rows get their breakdown from the columns they had."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.table import scored_table
from analysis.views import compare, versus
from cluster.plan import plan_units
from cluster.rows import (
    LEGACY_BREAKDOWN,
    RESULT_SCHEMA,
    ResultRow,
    base_row,
    blank_row,
    prefill_regime,
    upgrade_table,
)
from evals import benchmarks
from evals.benchmark import Scored
from evals.demo_set import DEMO
from evals.sample import EvalSample, GenerationSettings, PromptParts
from evals.scoring import score_output
from laserkv.methods import get_method
from reports.pages import sample_rows
from reports.write import write_report

DEPTH_BENCHMARK = dataclasses.replace(DEMO, name="depth_demo", breakdown_fields=("depth",))
"""A benchmark with its own breakdown field: a module's worth of declaration and a registration."""


def needle_sample(index: int, depth: int) -> EvalSample:
    return EvalSample(
        dataset=DEPTH_BENCHMARK.name,
        sample_id=f"s{index}",
        task="niah_single",
        length="1k",
        parts=PromptParts("context ", "question"),
        target="4500697",
        generation=GenerationSettings(max_new_tokens=16),
        question="What is the number?",
        fields={"depth": str(depth)},
    )


def write_units(
    directory: Path, answers: dict[str, list[str]], depths: list[int], kept: dict[str, int] | None = None
) -> None:
    """Rows as a worker builds them (``cluster.rows.base_row``) with the given raw outputs, each
    method keeping ``kept[name]`` tokens (default 10) of 20, in 2 blocks."""
    samples = [needle_sample(index, depth) for index, depth in enumerate(depths)]
    rows = []
    for name, outputs in answers.items():
        method = get_method(name, budget=64) if name != "full" else get_method("full")
        for unit, output in zip(plan_units(samples, [method], "m", "rev"), outputs, strict=True):
            row = base_row(unit, "run", 1, "w")
            tokens = (kept or {}).get(name, 10)
            row.update(status="ok", raw_output=output, kept_tokens_final=tokens, context_tokens=20)
            row.update(block_size_used=16, cache_length_per_block=[tokens, tokens])
            row["prefill_regime"], row["compression_rounds"] = prefill_regime(
                method.kind, method.params(), 16, 20, [tokens, tokens]
            )
            rows.append(row)
    (directory / "results").mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
    pq.write_table(table, directory / "results" / "part-run-00000.parquet")


@pytest.fixture
def depth_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(benchmarks.BENCHMARKS, DEPTH_BENCHMARK.name, DEPTH_BENCHMARK)


def test_a_benchmark_breakdown_field_reaches_the_report(depth_benchmark: None, tmp_path: Path) -> None:
    answers = {
        "full": ["It is 4500697."] * 4,
        "laser": ["It is 4500697.", "It is 450069.", "It is 4500697.", "no idea"],
    }
    write_units(tmp_path / "run", answers, depths=[10, 10, 90, 90])
    table = scored_table([tmp_path / "run"])
    assert table.breakdown_fields == ("depth",)
    by_depth = table.frame.groupby(["config", "depth"])["correct"].mean().to_dict()
    assert by_depth == {("full", "10"): 1.0, ("full", "90"): 1.0, ("laser", "10"): 0.5, ("laser", "90"): 0.5}
    path = write_report([tmp_path / "run"], with_plots=False, out=tmp_path / "report")
    text = path.read_text()
    section = text.split("## Accuracy by depth")[1].split("##")[0]
    assert (
        "| depth_demo | 10 | laser | 2 | 50.0 " in section
        and "| depth_demo | 90 | full | 2 | 100.0 " in section
    )


def test_the_prediction_shown_is_the_one_scored(depth_benchmark: None, tmp_path: Path) -> None:
    write_units(tmp_path / "run", {"full": ["  The number is 4500697.\n", "It is 450069."]}, depths=[5, 6])
    table = scored_table([tmp_path / "run"])
    shown = {sample["sample"]: sample for sample in sample_rows(table)}
    for _, row in table.frame.iterrows():
        scored = score_output(row["dataset"], row["target"], row["raw_output"], row["question"], row["task"])
        assert isinstance(scored, Scored)
        assert shown[row["sample_id"]]["prediction"] == scored.prediction
        assert shown[row["sample_id"]]["correct"] == ("yes" if scored.correct else "no")
    assert [shown["s0"]["correct"], shown["s1"]["correct"]] == ["yes", "no"]
    stored = pq.read_table(next((tmp_path / "run" / "results").iterdir())).to_pylist()
    assert {row["prediction"] for row in stored} == {None} and {row["correct"] for row in stored} == {None}


def test_the_report_writes_nothing_into_a_read_only_results_directory(
    depth_benchmark: None, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    write_units(run, {"full": ["It is 4500697."], "laser": ["no"]}, depths=[50])
    before = sorted(str(path.relative_to(run)) for path in run.rglob("*"))
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if not os.access(run, os.W_OK):  # as root the bits do not bind; the listing below still must hold
            with pytest.raises(ValueError, match="not writable: give --out"):
                write_report([run], with_plots=False)
        write_report([run], fmt="html", with_plots=False, out=tmp_path / "out")
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == before
    assert (tmp_path / "out" / "report.html").exists()


def test_four_against_zero_discordant_pairs_is_not_called_significant(
    depth_benchmark: None, tmp_path: Path
) -> None:
    right, wrong = "It is 4500697.", "no"
    answers = {"full": [wrong] * 4 + [right] * 20 + [wrong] * 26, "laser": [right] * 24 + [wrong] * 26}
    write_units(tmp_path / "run", answers, depths=[50] * 50)
    versus = compare(scored_table([tmp_path / "run"]), ("dataset", "length"), "full").iloc[0]
    assert (versus["only_member"], versus["only_baseline"], versus["pairs"]) == (4, 0, 50)
    assert versus["difference"] == 8.0 and versus["p"] == 0.125
    assert versus["low"] < 0 < versus["high"] and versus["verdict"] == "not shown"


def test_a_version_3_row_gets_its_breakdown_from_its_longbench_columns() -> None:
    values = {**blank_row(), "unit_id": "u", "status": "ok", "schema_version": 3}
    values.update(difficulty="hard", domain="Code Repository Understanding", sub_domain=None)
    v3 = pa.Table.from_pylist([values], schema=RESULT_SCHEMA).drop_columns(
        ["breakdown", "prefill_regime", "compression_rounds", "diagnostics"]
    )
    upgraded = upgrade_table(v3).to_pylist()[0]
    assert json.loads(upgraded["breakdown"]) == {
        "difficulty": "hard",
        "domain": "Code Repository Understanding",
    }
    assert set(LEGACY_BREAKDOWN) <= set(upgraded)


def test_the_typed_row_declares_every_column() -> None:
    assert list(ResultRow.__annotations__) == RESULT_SCHEMA.names


@pytest.mark.parametrize(
    ("kind", "params", "block", "context", "blocks", "expected"),
    [
        ("none", {}, 4096, 16000, [4096, 8192, 12288, 16000], ("uncompressed", 0)),
        ("kvpress", {"query_aware": False}, 4096, 16000, [4000], ("one-shot", 1)),
        ("kvpress", {"query_aware": True}, 4096, 16000, [4000], ("one-shot, first token uncompressed", 1)),
        ("hybrid", {}, 4096, 16000, [1000, 2000, 3000, 4000], ("blocks", 4)),
        ("snapkv", {}, 32768, 16000, [4000], ("one-shot", 1)),
        ("exact", {}, 4096, 16000, None, ("blocks", 4)),  # older rows: ceil(context / block)
        ("exact", {}, None, None, None, ("unknown", None)),  # a failed unit's row
    ],
)
def test_every_row_records_its_prefill_regime(
    kind: str, params: dict[str, object], block: int | None, context: int | None,
    blocks: list[int] | None, expected: tuple[str, int | None],
) -> None:  # fmt: skip
    assert prefill_regime(kind, params, block, context, blocks) == expected


def test_a_version_4_row_gets_its_regime_derived() -> None:
    values = {**blank_row(), "unit_id": "u", "status": "ok", "schema_version": 4, "method_kind": "kvpress"}
    values.update(method_params=json.dumps({"selector": "kvpress", "query_aware": True}))
    v4 = pa.Table.from_pylist([values], schema=RESULT_SCHEMA).drop_columns(
        ["prefill_regime", "compression_rounds", "diagnostics"]
    )
    upgraded = upgrade_table(v4).to_pylist()[0]
    assert (upgraded["prefill_regime"], upgraded["compression_rounds"]) == (
        "one-shot, first token uncompressed",
        1,
    )


def test_comparisons_say_whether_they_are_matched(depth_benchmark: None, tmp_path: Path) -> None:
    right, wrong = "It is 4500697.", "no"
    answers = {
        "full": [right] * 8,
        "laser": [right] * 6 + [wrong] * 2,
        "exact": [right] * 5 + [wrong] * 3,  # query-aware, blocks, same kept tokens: matched
        "streaming": [wrong] * 8,  # query-agnostic
        "lsh_magicpig": [right] * 8,  # query-aware, but keeps 12 tokens where laser keeps 10
    }
    write_units(tmp_path / "run", answers, depths=[50] * 8, kept={"lsh_magicpig": 12})
    table = scored_table([tmp_path / "run"])
    found = versus(table, "laser", ("dataset", "length")).set_index("config")
    assert found.loc["exact", "matched"] == "matched" and found.loc["exact", "verdict"] != "mismatched"
    assert found.loc["exact", "difference"] == 12.5  # laser - exact: one more right of 8
    assert found.loc["streaming", "matched"] == "differs: protocol (query-agnostic vs query-aware)"
    assert found.loc["lsh_magicpig", "matched"] == "differs: kept tokens (differ by 20.0%)"
    assert found.loc[["streaming", "lsh_magicpig"], "verdict"].tolist() == ["mismatched", "mismatched"]
    assert found.loc[["streaming", "lsh_magicpig"], "p_holm"].isna().all()
    assert found.loc["exact", "p_holm"] == found.loc["exact", "p"]  # a family of one matched comparison
    asked = versus(table, "laser", ("dataset", "length"), mismatched=True).set_index("config")
    assert asked["p_holm"].notna().all() and "mismatched" not in set(asked["verdict"])
    reference = compare(table, ("dataset", "length"), "full")
    assert set(reference["matched"]) == {"reference (full cache)"}
    text = write_report([tmp_path / "run"], with_plots=False, out=tmp_path / "report").read_text()
    assert "## laser against each configuration at the same settings" in text
    assert "| depth_demo | 1k | streaming | 8 | 10 / 10 |" in text and "differs: protocol" in text
