"""What the quality studies (``benchmarks.quality``, ``benchmarks.quality_v2``) share: Markdown
cells and tables, and their command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from cluster.writer import ResultsError
from evals.stats import Interval


def interval_text(interval: Interval | None, sign: str = "") -> str:
    """``estimate [low, high]`` to one decimal (``sign="+"``: signed), or ``-``."""
    if interval is None:
        return "-"
    return f"{interval.estimate:{sign}.1f} [{interval.low:{sign}.1f}, {interval.high:{sign}.1f}]"


def number_text(value: float | None) -> str:
    """A mean rounded to a whole number (kept or context tokens), or ``-``."""
    return "-" if value is None else f"{value:.0f}"


def markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A Markdown table's lines, a blank line after it."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def study_main(
    prog: str,
    description: str | None,
    default_out: Path,
    report: Callable[[list[Path], Path], Path],
    argv: list[str] | None = None,
) -> None:
    """``prog RESULTS... [--out DIR]``: write a study's tables and plots with ``report`` and print
    the tables; a directory without shards, a foreign file or unusable rows is one error line."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("results", nargs="+", type=Path, help="results directories of the study's sweeps")
    parser.add_argument("--out", type=Path, default=default_out, help="where tables and plots go")
    args = parser.parse_args(argv)
    try:
        print(report(args.results, args.out).read_text())
    except (ResultsError, ValueError) as error:
        parser.error(str(error))
