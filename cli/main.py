"""The ``laserkv`` Typer app: one command file each, added unnamed so commands stay top-level."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from cli import eval_cmd, list_cmd, report_cmd, run_cmd
from cli.render import one_line, stderr


class OneLineErrors(TyperGroup):
    """The command group, whose usage errors (an unknown option, a value of the wrong type, a
    missing argument) are one red line and exit code 2, like every other error
    (``cli.render.laserkv_errors``), instead of a usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            stderr.print("Aborted!")
            sys.exit(1)
        except typer.TyperException as error:  # click's ClickException, as typer ships it
            if type(error).__name__ == "NoArgsIsHelpError":  # no arguments: typer printed the help
                sys.exit(getattr(error, "exit_code", 2))
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "laserkv"
            message = one_line(error.format_message())  # type: ignore[attr-defined]
            line = Text.assemble(("error:", "bold red"), f" {message} (see {command} --help)")
            stderr.print(line, highlight=False, soft_wrap=True)
            sys.exit(getattr(error, "exit_code", 2))
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="LASER-KV / BMRT KV-cache compression.",
)
app.add_typer(eval_cmd.app)
app.add_typer(report_cmd.app)
app.add_typer(run_cmd.app)
app.add_typer(list_cmd.app)

if __name__ == "__main__":
    app()
