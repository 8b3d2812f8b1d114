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
    """The datasets and their lengths and tasks."""
    from evals import babilong
    from evals.longbench_v2 import HUB_ID

    table = Table(title="laserkv datasets")
    for column in ("dataset", "source", "lengths", "tasks"):
        table.add_column(column, no_wrap=column == "dataset")
    for name, lengths in babilong.LENGTHS.items():
        source = babilong.HUB_IDS.get(name, "generated offline (RULER essays haystack)")
        tasks = {task for length in lengths for task in babilong.tasks_for(name, length)}
        qa = sorted((task for task in tasks if task.startswith("qa")), key=lambda task: int(task[2:]))
        others = sorted(task for task in tasks if not task.startswith("qa"))
        table.add_row(name, source, ", ".join(lengths), ", ".join([f"{qa[0]}-{qa[-1]}", *others]))
    table.add_row("longbench_v2", HUB_ID, "short, medium, long", "6 domains, 503 items")
    stdout.print(table)
