"""Two results directories that ran the same units, compared unit by unit: did a code change (a
new kernel, a new bridge path) change what the units answer?

Usage::

    python -m benchmarks.unit_agreement docs/quality/runs/q05_ruler results/q05_ragged8k \\
        --length 8k --method kvpress:expected_attention --method kvpress:pyramidkv

Units are matched by unit id and method label (a unit id hashes the method's settings, the
sample, the model and the run settings, so equal ids are the same work). Per (method, task,
length), and per method over its tasks: how many units both directories hold, the share whose
answer text is identical, the accuracy of each (official right/wrong, scored from the stored
outputs by ``analysis.table`` as ``laserkv report`` does; a failed unit counts as wrong), the
paired difference second − first (``analysis.views.compare``: exact McNemar p and the interval
consistent with it), the discordant pairs, Holm-adjusted p over the table (one family) with the
verdict (±5 pp equivalence), and the mean kept tokens of each. Units only one directory holds
are counted, not compared.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.table import ScoredTable, scored_table
from analysis.views import compare
from benchmarks.quality_text import comparison_text, family_text, markdown_table
from cluster.writer import ResultsError
from evals.benchmark import output_text
from reports.tables import number_text

UNIT = ("unit_id", "method")
"""What matches a unit across the two directories."""
GROUP = ("method", "task", "length")
"""One row of the table; a method's pool has ``all`` for task and length."""
FIRST, SECOND = "first", "second"
HEADER = (
    "method", "task", "length", "units", "identical answers %", "accuracy first %",
    "accuracy second %", "second − first, pp [95% CI]", "only first / only second right",
    "p", "Holm p", "verdict", "kept tokens first / second",
)  # fmt: skip
FAILED_ANSWER = "<no output: the unit failed>"


def selected(frame: pd.DataFrame, length: str | None, methods: Sequence[str] | None) -> pd.DataFrame:
    """The rows of one length (None: all) whose method label starts with one of ``methods``
    (None: every method)."""
    keep = pd.Series(True, index=frame.index)
    if length is not None:
        keep &= frame["length"] == length
    if methods is not None:
        keep &= frame["method"].astype(str).str.startswith(tuple(methods))
    return frame[keep]


def matched(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Both directories' rows of the units both hold, stacked, ``side`` ``first`` or ``second``,
    with the answer text (``answer``) and each method's pool: the rows once more with ``task``
    and ``length`` ``all`` where the method has more than one group."""
    shared = first[list(UNIT)].merge(second[list(UNIT)], on=list(UNIT))
    stacked = pd.concat(
        [
            side.merge(shared, on=list(UNIT)).assign(side=name)
            for side, name in ((first, FIRST), (second, SECOND))
        ],
        ignore_index=True,
    )
    answers = stacked["raw_output"].map(output_text)
    stacked = stacked.assign(answer=answers.where(~stacked["failed"], FAILED_ANSWER))
    several = (
        stacked.drop_duplicates(list(GROUP))
        .groupby("method")["task"]
        .size()
        .loc[lambda sizes: sizes > 1]
        .index
    )
    pooled = stacked[stacked["method"].isin(several)].assign(task="all", length="all")
    return pd.concat([stacked, pooled], ignore_index=True)


def agreements(stacked: pd.DataFrame, table: ScoredTable) -> pd.DataFrame:
    """Per group (``GROUP``, pools included): ``units``, ``identical`` %, both accuracies and
    the comparison second − first (``analysis.views.compare``, the whole frame one family)."""
    # the same configuration under two code paths: a kept-token change is a finding here, not a mismatch
    pair_on = (*UNIT, "task", "length")
    found = compare(table.where(stacked), GROUP, FIRST, "side", pair_on, value="correct", mismatched=True)
    sides = stacked.pivot_table(index=[*GROUP, "unit_id"], columns="side", values="answer", aggfunc="first")
    identical = (sides[FIRST] == sides[SECOND]).groupby(list(GROUP)).mean().mul(100).rename("identical")
    right = stacked.pivot_table(index=[*GROUP, "unit_id"], columns="side", values="correct", aggfunc="first")
    accuracy = right.astype(float).groupby(list(GROUP)).mean().mul(100)
    accuracy = accuracy.rename(columns={FIRST: "accuracy_first", SECOND: "accuracy_second"})
    found = found.merge(identical.reset_index(), on=list(GROUP)).merge(accuracy.reset_index(), on=list(GROUP))
    order = found.assign(_pool=found["task"] == "all")
    return order.sort_values(["method", "_pool", "task", "length"], kind="stable").drop(columns=["_pool"])


def agreement_table(found: pd.DataFrame) -> list[str]:
    """The agreements as Markdown table lines, the family they are adjusted over first."""
    rows = [
        (
            str(row["method"]), str(row["task"]), str(row["length"]), str(row["pairs"]),
            f"{row['identical']:.1f}", f"{row['accuracy_first']:.1f}", f"{row['accuracy_second']:.1f}",
            comparison_text(row)[0], f"{row['only_baseline']} / {row['only_member']}",
            *comparison_text(row)[1:],
            f"{number_text(row['base_kept'])} / {number_text(row['kept'])}",
        )
        for _, row in found.iterrows()
    ]  # fmt: skip
    return [f"Second − first ({family_text(len(rows))}):", "", *markdown_table(HEADER, rows)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.unit_agreement",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("first", type=Path, help="a results directory (e.g. the older code's rows)")
    parser.add_argument(
        "second", type=Path, help="a results directory of the same units (e.g. the newer code's)"
    )
    parser.add_argument("--length", default=None, help="only this length's units (e.g. 8k)")
    parser.add_argument(
        "--method",
        action="append",
        default=None,
        help="only methods whose label starts with this (repeatable)",
    )
    args = parser.parse_args(argv)
    tables = []
    for path in (args.first, args.second):
        try:
            tables.append(scored_table([path]))
        except ResultsError as error:
            parser.error(str(error))
    first, second = (selected(table.frame, args.length, args.method) for table in tables)
    stacked = matched(first, second)
    units = stacked[stacked["side"] == FIRST]
    if units.empty:
        filters = ([f"--length {args.length}"] if args.length else []) + [
            f"--method {m}" for m in args.method or []
        ]
        parser.error(
            f"{args.first} and {args.second} share no unit"
            + (f" under {' '.join(filters)}" if filters else "")
        )
    print("\n".join(agreement_table(agreements(stacked, tables[0]))))
    both = len(units[units["task"] != "all"])
    print(
        f"{both} units in both; {len(first) - both} only in {args.first}, "
        f"{len(second) - both} only in {args.second} (not compared)"
    )


if __name__ == "__main__":
    main()
