"""The benchmark protocol, checked over every registered benchmark (conformance), and missing
outputs (None, NaN) handled the same way by every aggregation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.table import scored_table
from analysis.views import accuracy
from cluster.reduce import reduce_results
from cluster.rows import RESULT_SCHEMA, blank_row
from evals import babilong
from evals.benchmark import DataRequest, OfficialTable, output_text
from evals.benchmarks import BENCHMARKS, get_benchmark, listing
from evals.errors import EvalError


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_implements_the_protocol(name: str) -> None:
    benchmark = get_benchmark(name)
    assert benchmark.name == name and benchmark.description and benchmark.source
    lengths = benchmark.lengths()
    assert lengths and all(benchmark.tasks(length) for length in lengths)
    length, task = lengths[-1], benchmark.tasks(lengths[-1])[0]
    benchmark.check(DataRequest((length,), (task,)))
    if benchmark.cells:
        with pytest.raises(EvalError, match=r"length='7x' .*one of"):
            benchmark.check(DataRequest(("7x",), (task,)))
        with pytest.raises(EvalError, match=r"task='nope' .*one of"):
            benchmark.check(DataRequest((length,), ("nope",)))
    revision = benchmark.revision(DataRequest((length,), (task,), model="m"))
    assert isinstance(revision, str) and revision == benchmark.revision(
        DataRequest((length,), (task,), model="m")
    )
    prediction, correct = benchmark.score("A", "  nothing useful  ", "Which one?", task)
    assert correct is False and (prediction is None or isinstance(prediction, str))
    assert benchmark.counts("some output")
    rows = [
        {
            "task": task,
            "length": length,
            "correct": True,
            "response": "x",
            "answer": "A",
            "difficulty": "easy",
        },
        {
            "task": task,
            "length": length,
            "correct": False,
            "response": "y",
            "answer": "A",
            "difficulty": "hard",
        },
    ]
    official = benchmark.official_table(rows)
    tables = benchmark.official_tables({"full": official, "laser": official})
    assert tables and all(isinstance(table, OfficialTable) and len(table.rows) == 2 for table in tables)
    assert all(len(row) == len(table.header) for table in tables for row in table.rows)


def test_unknown_benchmark_names_the_registered_ones() -> None:
    with pytest.raises(EvalError, match=r"dataset='babilon' .*one of babilong_demo, babilong.*did you mean"):
        get_benchmark("babilon")


def test_listing_covers_every_benchmark() -> None:
    names = [row[0] for row in listing()]
    assert names == list(BENCHMARKS)
    demo = next(row for row in listing() if row[0] == "babilong_demo")
    assert "qa1-qa3" in demo[3] and "niah_single" in demo[3]


def test_published_numbers_come_from_the_benchmark() -> None:
    assert get_benchmark("babilong").published("meta-llama/Llama-3.1-8B-Instruct")[1]["128k"] == 39  # type: ignore[index]
    assert get_benchmark("longbench_v2").published("x/Llama-3.1-8B-Instruct")[1]["overall"] == 30.0  # type: ignore[index]
    assert get_benchmark("babilong_demo").published("meta-llama/Llama-3.1-8B-Instruct") is None


@pytest.mark.parametrize("missing", [None, math.nan])
def test_missing_outputs_are_the_empty_string(missing: object) -> None:
    assert output_text(missing) == "" and output_text(" a ") == " a "
    table = babilong.accuracy_table(
        [{"task": "qa1", "length": "1k", "target": "garden", "output": missing, "question": "Where?"}]
    )
    assert table == {("qa1", "1k"): 0.0}


def write_rows(directory: Path, rows: list[dict[str, Any]]) -> None:
    (directory / "results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), directory / "results" / "part-x-00000.parquet"
    )


def row(dataset: str, unit: str, output: str | None, **fields: Any) -> dict[str, Any]:
    values = blank_row()
    values.update(
        unit_id=unit, status="ok", dataset=dataset, dataset_revision="r", sample_id=unit, task="qa1",
        length="1k", question="Where is Mary?", target="garden", method="full", method_hash="h1",
        model="m", temperature=0.0, max_new_tokens=20, seed=0, raw_output=output,
    )  # fmt: skip
    values.update(fields)
    return values


def test_an_ok_row_without_output_counts_the_same_in_every_aggregation(tmp_path: Path) -> None:
    rows = [row("babilong", "a", "The garden."), row("babilong", "b", None)]
    long_rows = [
        row(
            "longbench_v2",
            "c",
            "The correct answer is (A)",
            target="A",
            length="short",
            breakdown='{"difficulty": "easy"}',
        ),
        row("longbench_v2", "d", None, target="A", length="short", breakdown='{"difficulty": "easy"}'),
    ]
    write_rows(tmp_path, rows + long_rows)
    summary = reduce_results(tmp_path)
    cells = {cell["dataset"]: cell for cell in summary["cells"]}
    assert (cells["babilong"]["n"], cells["babilong"]["n_scored"], cells["babilong"]["accuracy"]) == (
        2,
        2,
        50.0,
    )
    # LongBench v2 skips an empty output (pred.py); None is empty
    assert (cells["longbench_v2"]["n_scored"], cells["longbench_v2"]["accuracy"]) == (1, 100.0)
    assert summary["official"]["longbench_v2"]["full"]["skipped_empty"] == 1
    per_length = accuracy(scored_table([tmp_path]), ("dataset", "length")).set_index("dataset")
    assert per_length.loc["babilong", "accuracy"] == 50.0
    assert per_length.loc["longbench_v2", "accuracy"] == 100.0


def test_two_models_or_two_configs_of_one_name_are_separate_cells(tmp_path: Path) -> None:
    rows = [
        row("babilong", f"{model}-{hash_}-{index}", "The garden." if model == "m1" else "no", model=model,
            method="snapkv", method_hash=hash_, sample_id=f"s{index}")
        for model in ("m1", "m2") for hash_ in ("h1", "h2") for index in range(2)
    ]  # fmt: skip
    write_rows(tmp_path, rows)
    summary = reduce_results(tmp_path)
    labels = sorted(cell["config"] for cell in summary["cells"])
    assert labels == ["snapkv #h1 @ m1", "snapkv #h1 @ m2", "snapkv #h2 @ m1", "snapkv #h2 @ m2"]
    assert all(cell["n"] == 2 for cell in summary["cells"])
    accuracy = {cell["config"]: cell["accuracy"] for cell in summary["cells"]}
    assert accuracy["snapkv #h1 @ m1"] == 100.0 and accuracy["snapkv #h2 @ m2"] == 0.0
    assert set(summary["official"]["babilong"]) == set(labels)


def test_a_benchmark_from_the_base_writes_only_what_differs(tmp_path: Path) -> None:
    """A new benchmark: a frozen dataclass over ``BenchmarkBase`` with lengths, tasks, load and score."""
    import dataclasses

    from evals.benchmark import BenchmarkBase, Scored
    from evals.scoring import score_output

    @dataclasses.dataclass(frozen=True)
    class Echo(BenchmarkBase):
        def lengths(self) -> tuple[str, ...]:
            return ("1k",)

        def tasks(self, length: str) -> tuple[str, ...]:
            return ("echo",)

        def score(self, target: str, raw_output: str, question: str, task: str) -> tuple[str | None, bool]:
            return raw_output.strip(), raw_output.strip() == target

    echo = Echo("echo", "repeat the target", "generated")
    assert (echo.needs_tokenizer, echo.cells, echo.breakdown_fields) == (False, True, ())
    assert echo.revision(DataRequest()) == "hub:main" and echo.published("m") is None
    with pytest.raises(Exception, match="does not exist"):
        echo.check(DataRequest(source=str(tmp_path / "missing")))
    rows = [{"task": "echo", "length": "1k", "correct": right} for right in (True, False, True, True)]
    assert echo.official_table(rows) == {"accuracy": {"echo/1k": 75.0}}
    (table,) = echo.official_tables({"m": echo.official_table(rows)})
    assert table.header == ("method", "echo/1k") and table.rows == [("m", "75.0")]
    original = dict(BENCHMARKS)
    BENCHMARKS["echo"] = echo
    try:
        assert score_output("echo", "x", " x ", "", "echo") == Scored("x", True, 1.0, True)
    finally:
        BENCHMARKS.clear()
        BENCHMARKS.update(original)
