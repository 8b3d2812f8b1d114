"""``laserkv report DIR``: the results directory's report as Markdown or HTML, with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.render import laserkv_errors, stdout

app = typer.Typer()


@app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(help="A results directory written by laserkv eval / sweep.")],
    format: Annotated[str, typer.Option("--format", help="md or html.", rich_help_panel="Output")] = "md",
    plots: Annotated[
        bool, typer.Option(help="Write PNG plots (and embed them).", rich_help_panel="Output")
    ] = True,
) -> None:
    """Write a report of a results directory (Markdown or HTML, with plots).

    Tables per method x dataset x length with CIs and deltas vs full, official breakdowns,
    published numbers for the model, and PNG plots.
    """
    with laserkv_errors():
        from cluster.report import FORMATS, write_report

        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not allowed: one of {', '.join(FORMATS)}")
        if not directory.is_dir():
            raise ValueError(f"{directory} is not a directory: give the --output of a laserkv eval run")
        path = write_report(directory, format, plots)
    stdout.print(f"report: {path}")
