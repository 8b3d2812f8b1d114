"""One progress display for a run, fed by the driver: a rich bar on a terminal, plain lines
otherwise, nothing with ``--quiet``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.render import stdout


@contextmanager
def run_progress(quiet: bool) -> Iterator[Callable[[Any], None]]:
    """A callback for ``cluster.run_eval(progress=...)``."""
    if quiet:
        yield lambda progress: None
        return
    if not stdout.is_terminal:
        last = [-1]

        def plain(progress: Any) -> None:
            if progress.done != last[0]:
                last[0] = progress.done
                print(progress.line(), flush=True)

        yield plain
        return
    columns = (
        TextColumn("[bold]units"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stdout) as bar:
        task = bar.add_task("run", total=None, errors=0, rate="")

        def update(progress: Any) -> None:
            rate = progress.done / progress.elapsed_s * 3600 if progress.elapsed_s > 0 else 0.0
            bar.update(
                task,
                completed=progress.done,
                total=progress.total,
                errors=progress.errors,
                rate=f"{rate:.0f}/h",
            )

        yield update
