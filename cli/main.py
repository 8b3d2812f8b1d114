"""The ``laserkv`` Typer app: one command file each, added unnamed so commands stay top-level."""

from __future__ import annotations

import typer

from cli import run_cmd

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", help="LASER-KV / BMRT KV-cache compression.")
app.add_typer(run_cmd.app)

if __name__ == "__main__":
    app()
