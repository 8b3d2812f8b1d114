"""The summary table ``laserkv eval`` / ``sweep`` print at the end: one row per method x task x
length, folded to the terminal's width (names wrap, nothing is cut)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def summary_table(cells: list[dict[str, Any]], title: str) -> Table:
    """The summary's cells (``cluster.reduce``) as a table. The dataset joins the title when there
    is one; the errors column appears only when a unit failed; every column folds instead of
    cutting its text."""
    datasets = sorted({str(cell["dataset"]) for cell in cells})
    one_dataset = len(datasets) == 1
    with_errors = any(cell["errors"] for cell in cells)
    table = Table(title=f"{title} ({datasets[0]})" if one_dataset else title, title_justify="left")
    columns = ["method", "task", "length", "n"]
    if not one_dataset:
        columns.insert(1, "dataset")
    if with_errors:
        columns.append("errors")
    columns += ["acc %", "vs full", "kept"]
    numeric = {"length", "n", "errors", "acc %", "vs full", "kept"}
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in numeric else "left")
    for cell in cells:
        values = {
            "method": str(cell["config"]),
            "dataset": str(cell["dataset"]),
            "task": str(cell["task"]),
            "length": str(cell["length"]),
            "n": str(cell["n"]),
            "errors": str(cell["errors"]),
            "acc %": _number(cell["accuracy"], "{:.1f}"),
            "vs full": _number(cell["delta_vs_full"], "{:+.1f}"),
            "kept": _number(cell["kept"], "{:.0f}"),
        }
        table.add_row(*(Text(values[column]) for column in columns))  # Text: "[...]" is no markup
    return table
