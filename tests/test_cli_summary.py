"""The end-of-run summary table fits 80 columns without cutting a name."""

from __future__ import annotations

import io

from rich.console import Console

from cli.summary import summary_table


def cell(config: str, dataset: str = "babilong", task: str = "qa1", errors: int = 0) -> dict[str, object]:
    return {
        "dataset": dataset,
        "config": config,
        "task": task,
        "length": "16k",
        "n": 50,
        "errors": errors,
        "accuracy": 42.0,
        "delta_vs_full": -12.5,
        "kept": 2048.0,
    }


def render(cells: list[dict[str, object]], width: int = 80) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(summary_table(cells, "laserkv eval: results/a-long-output-directory/for-this-run"))
    return console.export_text()


NAMES = ["full", "laser[compression_ratio=0.125,score_pooling=7]", "kvpress:expected_attention_query_aware"]


def test_the_summary_fits_80_columns_and_cuts_nothing() -> None:
    text = render([cell(name, task="niah_multikey_2") for name in NAMES])
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    first_column = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    for name in NAMES:  # folded onto several lines, each name is whole, brackets included
        assert name in first_column
    assert "(babilong)" in text and "dataset" not in text and "errors" not in text


def test_several_datasets_and_errors_get_their_columns() -> None:
    text = render([cell("full"), cell("laser", dataset="ruler", errors=2)])
    assert "dataset" in text and "errors" in text and "ruler" in text
    assert all(len(line) <= 80 for line in text.splitlines())
