"""``laserkv methods`` and ``laserkv datasets``: the registries, with descriptions."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.render import stdout

app = typer.Typer()


@app.command("methods")
def methods_command() -> None:
    """The registered methods (LASER-KV, the ablation grid, the baselines)."""
    from laserkv.methods import DESCRIPTIONS, METHODS

    table = Table(title="laserkv methods")
    table.add_column("method", no_wrap=True)
    for column in ("selector", "mode", "backend", "default budget", "what it is"):
        table.add_column(column)
    for name, factory in METHODS.items():
        config = factory()
        engine = config.engine
        budget = "-" if engine.budget is None else str(engine.budget)
        if engine.budget is None and engine.compression_ratio is not None:
            budget = f"r={engine.compression_ratio}"
        mode = engine.compression_mode if config.selector.evicts else "-"
        table.add_row(name, config.selector.summary(), mode, engine.backend, budget, DESCRIPTIONS[name])
    stdout.print(table)


@app.command("datasets")
def datasets_command() -> None:
    """The benchmarks, with their sources, lengths and tasks."""
    from evals.benchmarks import listing

    table = Table(title="laserkv datasets")
    for column in ("dataset", "source", "lengths", "tasks", "what it is"):
        table.add_column(column, no_wrap=column == "dataset")
    for row in listing():
        table.add_row(*row)
    stdout.print(table)
