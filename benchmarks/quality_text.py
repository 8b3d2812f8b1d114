"""What the quality studies (``benchmarks.quality``, ``benchmarks.quality_v2``) share: Markdown
cells and tables, the comparisons of one table as one family, and their command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.stats import EQUIVALENCE_MARGIN
from analysis.table import ScoredTable
from analysis.views import compare
from cluster.writer import ResultsError
from evals.babilong import length_tokens
from reports.tables import interval_text, p_text


def length_order(length: str) -> int:
    """A length label's nominal tokens (``4k`` before ``16k``), to sort by."""
    return length_tokens(length)


def family_text(comparisons: int, mismatched: int = 0) -> str:
    """What a table's p-values are adjusted over and what its verdicts mean (``mismatched``: the
    comparisons left out of the family, ``analysis.views.compare``)."""
    plural = "" if comparisons == 1 else "s"
    outside = (
        f"; the {mismatched} mismatched (protocol, prefill regime or kept tokens > 2% apart) are "
        "outside it, with no verdict"
        if mismatched
        else ""
    )
    which = " matched" if mismatched else ""
    return (
        f"family: the {comparisons}{which} comparison{plural} of this table, Holm-adjusted; "
        f"verdict: Holm p < 0.05, else equivalence within ±{EQUIVALENCE_MARGIN:g} pp (TOST){outside}"
    )


def family_of(found: pd.DataFrame) -> str:
    """``family_text`` of a table of ``compare`` rows."""
    if found.empty:
        return family_text(0)
    inside = int(found["p_holm"].notna().sum())
    return family_text(inside, len(found) - inside)


def markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A Markdown table's lines, a blank line after it."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def compare_per_table(
    table: ScoredTable,
    tables: Sequence[str],
    by: Sequence[str],
    baseline: str,
    member: str,
    match: Sequence[str] = (),
) -> pd.DataFrame:
    """``analysis.views.compare`` of right/wrong outcomes (``correct``) once per group of ``tables``
    (each group one printed table, so one family of Holm-adjusted p-values), concatenated."""
    groups = (
        [members for _, members in table.frame.groupby(list(tables), sort=False, dropna=False)]
        if tables
        else [table.frame]
    )
    found = [compare(table.where(members), (*tables, *by), baseline, member, match, value="correct")
             for members in groups]  # fmt: skip
    found = [frame for frame in found if not frame.empty]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def comparison_text(row: pd.Series, low: str = "low", high: str = "high") -> tuple[str, str, str, str]:
    """A comparison row's difference with its 95% interval (columns ``low`` and ``high``), p, Holm p
    and verdict."""
    return (
        interval_text(row["difference"], row[low], row[high], "+"),
        p_text(row["p"]),
        p_text(row["p_holm"]),
        str(row["verdict"]),
    )


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
