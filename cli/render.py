"""Rich consoles and the error line every command uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

stdout = Console()
stderr = Console(stderr=True)


@contextmanager
def laserkv_errors() -> Iterator[None]:
    """Turn a ``LaserKVError``, ``ValueError`` or ``OSError`` (a bad path) into one red line on
    stderr and exit code 2."""
    from laserkv.errors import LaserKVError

    try:
        yield
    except (LaserKVError, ValueError, OSError) as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)  # one line
        raise typer.Exit(code=2) from error
