"""``laserkv report DIR``: the results directory's report as Markdown or HTML, with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.render import laserkv_errors, stdout

app = typer.Typer()


@app.command("report")
def report_command(
    directories: Annotated[
        list[Path], typer.Argument(help="Results directories written by laserkv eval / sweep (one or more).")
    ],
    format: Annotated[str, typer.Option("--format", help="md or html.", rich_help_panel="Output")] = "md",
    plots: Annotated[
        bool, typer.Option(help="Write PNG plots (and embed them).", rich_help_panel="Output")
    ] = True,
    versus: Annotated[
        str,
        typer.Option(
            help="Compare this method with every other configuration at the same settings ('' for none).",
            rich_help_panel="Comparisons",
        ),
    ] = "laser",
    mismatched: Annotated[
        bool,
        typer.Option(
            help="Also give verdicts (and Holm p) to comparisons that differ in protocol, prefill regime or "
            "kept tokens.",
            rich_help_panel="Comparisons",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write (default: the one directory; needed with several).", rich_help_panel="Output"
        ),
    ] = None,
) -> None:
    """Write a report of one or more results directories (Markdown or HTML, with plots).

    A header (models, datasets, runs, versions), tables per method x dataset x length with CIs
    and deltas vs full, official breakdowns, published numbers for the model, the plots the data
    supports, and (HTML) every sample with filters. Several directories are reported together,
    a unit found in more than one counted once.
    """
    with laserkv_errors():
        from reports.write import FORMATS, write_report

        if format not in FORMATS:
            raise ValueError(f"format={format!r} is not allowed: one of {', '.join(FORMATS)}")
        for directory in directories:
            if not directory.is_dir():
                raise ValueError(f"{directory} is not a directory: give the --output of a laserkv eval run")
        path = write_report(directories, format, plots, out, versus or None, mismatched)
    stdout.print(f"report: {path}")
