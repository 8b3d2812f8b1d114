"""``laserkv methods`` and ``laserkv datasets``: the registries, with descriptions."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from cli.render import stdout

app = typer.Typer()


@app.command("methods")
def methods_command() -> None:
    """The registered methods: LASER-KV, its ablations, the native rivals, kvpress's presses."""
    from laserkv.methods import LISTING_COLUMNS, method_listing

    shown = ("method", "protocol", "budget split", "source", "what it is")  # docs/methods.md has every column
    table = Table(title="laserkv methods")
    for column in shown:
        table.add_column(column, no_wrap=column == "method")
    for row in method_listing():
        table.add_row(*(Text(str(row[LISTING_COLUMNS.index(column)])) for column in shown))
    stdout.print(table)


@app.command("datasets")
def datasets_command() -> None:
    """The benchmarks, with their sources, lengths and tasks."""
    from evals.benchmarks import listing

    table = Table(title="laserkv datasets")
    for column in ("dataset", "source", "lengths", "tasks", "what it is"):
        table.add_column(column, no_wrap=column == "dataset")
    for row in listing():
        table.add_row(*(Text(str(value)) for value in row))
    stdout.print(table)
