"""Rich consoles and the error line every command uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

stdout = Console()
stderr = Console(stderr=True)


@contextmanager
def laserkv_errors() -> Iterator[None]:
    """Turn a ``LaserKVError``, ``ValueError`` or ``OSError`` (a bad path) into one red line on
    stderr (``one_line``) and exit code 2."""
    from laserkv.errors import LaserKVError

    try:
        yield
    except (LaserKVError, ValueError, OSError) as error:
        line = Text.assemble(("error:", "bold red"), " ", one_line(error))  # the message is no markup
        stderr.print(line, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from error


MAX_ERROR_CHARS = 2000
"""The longest error line shown (a message quoting a huge input is cut, never pages long)."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (its whitespace runs, newlines included, as one space), at
    most ``MAX_ERROR_CHARS`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
