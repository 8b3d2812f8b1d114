"""``laserkv eval`` and ``laserkv sweep``: options -> RunConfig -> cluster.run_eval -> summary.

Their run options are not written here: ``typer_parameters`` derives them from the declarations
in ``cluster.options`` (name, type, default, help, panel), so both commands, the job's flags and
the YAML run file always take the same options under the same names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cli.render import laserkv_errors, stdout
from cluster.options import EVAL, SWEEP, Declared, for_command

app = typer.Typer()

KEYWORD = inspect.Parameter.KEYWORD_ONLY
COMMAND_PARAMETERS = (
    inspect.Parameter(
        "run_file",
        KEYWORD,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                help="A YAML run file with any of these options (flags given here override it).",
                rich_help_panel="Output",
            ),
        ],
    ),
    inspect.Parameter(
        "quiet",
        KEYWORD,
        default=False,
        annotation=Annotated[bool, typer.Option(help="No progress display.", rich_help_panel="Output")],
    ),
    inspect.Parameter(
        "verbose",
        KEYWORD,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                help="Also show Ray's own log lines (its start, notices).", rich_help_panel="Output"
            ),
        ],
    ),
)
"""What the commands take beyond the run options: where options come from, and the display."""


def typer_parameter(declared: Declared) -> inspect.Parameter:
    """A declared run option as a Typer option that is None unless given: a list option is a
    repeated flag (``--method``) or one comma-separated value (``--lengths 4k,8k``); a boolean
    is ``--x/--no-x`` unless it declares its one flag (``--allow-remote-address``)."""
    kind: Any = declared.type
    if kind is tuple:
        kind = list[str] if declared.option.repeat else str
    decls = (declared.flag,) if declared.option.flag else ()
    info = typer.Option(*decls, help=declared.help, rich_help_panel=declared.option.panel)
    return inspect.Parameter(declared.name, KEYWORD, default=None, annotation=Annotated[kind | None, info])


def typer_parameters(command: str) -> list[inspect.Parameter]:
    """The parameters of ``laserkv <command>``: its declared run options, then ``COMMAND_PARAMETERS``."""
    return [*(typer_parameter(declared) for declared in for_command(command)), *COMMAND_PARAMETERS]


def _launch(config: object, quiet: bool, verbose: bool = False) -> None:
    from cli.progress import run_progress
    from cli.summary import summary_table
    from cluster.driver import run_eval
    from cluster.reduce import reduce_results

    with run_progress(quiet) as progress:
        output = run_eval(config, progress=progress, ray_logs=verbose)  # type: ignore[arg-type]
    summary = reduce_results(output)
    table = summary_table(summary["cells"], f"laserkv eval: {output}")
    stdout.print(table)
    stdout.print(f"results, summary: {output}  (laserkv report {output})")


def run_command(command: str, doc: str) -> Callable[..., None]:
    """``laserkv <command>``: the given options (by their declared names) -> ``build_run_config``
    -> the run; Typer reads its parameters from ``__signature__`` (``typer_parameters``)."""

    def run(*, run_file: str | None = None, quiet: bool = False, verbose: bool = False, **flags: Any) -> None:
        with laserkv_errors():
            from cluster.run_options import build_run_config

            _launch(build_run_config(flags, run_file, sweep=command == SWEEP), quiet, verbose)

    run.__signature__ = inspect.Signature(typer_parameters(command))  # type: ignore[attr-defined]
    run.__doc__ = doc
    run.__name__ = f"{command}_command"
    return run


eval_command = app.command(EVAL)(
    run_command(
        EVAL,
        """Run methods on a benchmark, sharded over Ray workers.

    With no dataset and no model: the offline demo set's needle task at 2k tokens with
    SmolLM2-135M-Instruct, methods full, laser and streaming at a 512-token budget.
    """,
    )
)
sweep_command = app.command(SWEEP)(
    run_command(SWEEP, """Run a grid of methods as one job (every worker loads its model once).""")
)
