"""The ``laserkv`` Typer app: one command file each, added unnamed so commands stay top-level."""

from __future__ import annotations

import typer

from cli import eval_cmd, list_cmd, report_cmd, run_cmd

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", help="LASER-KV / BMRT KV-cache compression.")
app.add_typer(eval_cmd.app)
app.add_typer(report_cmd.app)
app.add_typer(run_cmd.app)
app.add_typer(list_cmd.app)

if __name__ == "__main__":
    app()
