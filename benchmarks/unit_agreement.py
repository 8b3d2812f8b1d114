"""Two results directories that ran the same units, compared unit by unit: did a code change (a
new kernel, a new bridge path) change what the units answer?

Usage::

    python -m benchmarks.unit_agreement docs/quality/runs/q05_ruler results/q05_ragged8k \\
        --length 8k --method kvpress:expected_attention --method kvpress:pyramidkv

Units are matched by unit id and method label (a unit id hashes the method's settings, the
sample, the model and the run settings, so equal ids are the same work). Per (method, task,
length), and per method over its tasks: how many units both directories hold, the share whose
answer text is identical, the accuracy of each (official right/wrong, recomputed from the
stored outputs as ``laserkv report`` does; a failed unit counts as wrong), the paired
difference second − first with a bootstrap 95% CI, the discordant pairs and McNemar's exact p,
and the mean kept tokens of each. Units only one directory holds are counted, not compared.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.quality_text import interval_text, markdown_table, number_text
from cluster.reduce import mean_of, scored_rows
from cluster.writer import ResultsError, read_results
from evals.stats import PairedComparison, paired_comparison

UnitKey = tuple[str, str]  # (unit id, method label)
HEADER = (
    "method", "task", "length", "units", "identical answers %", "accuracy first %",
    "accuracy second %", "second − first, pp [95% CI]", "only first / only second right",
    "McNemar p", "kept tokens first / second",
)  # fmt: skip


@dataclass(frozen=True)
class Agreement:
    """One group of matched units: ``task`` and ``length`` are ``all`` for a method's pool."""

    method: str
    task: str
    length: str
    units: int
    identical: float
    accuracy_first: float
    accuracy_second: float
    comparison: PairedComparison
    kept_first: float | None
    kept_second: float | None


def by_unit(rows: list[dict[str, Any]]) -> dict[UnitKey, dict[str, Any]]:
    """Scored rows keyed by (unit id, method label); ``scored_rows`` already kept one per unit."""
    return {(row["unit_id"], row["method"]): row for row in rows}


def matched_pairs(
    first: dict[UnitKey, dict[str, Any]], second: dict[UnitKey, dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(first row, second row) of every unit both hold, in a fixed order."""
    return [(first[key], second[key]) for key in sorted(first.keys() & second.keys())]


def agreement(
    method: str, task: str, length: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> Agreement:
    """The agreement of one group of matched units (at least one)."""
    first_right = [float(a["correct"]) for a, _ in pairs]
    second_right = [float(b["correct"]) for _, b in pairs]
    identical = sum(a["response"] == b["response"] for a, b in pairs)
    return Agreement(
        method=method,
        task=task,
        length=length,
        units=len(pairs),
        identical=100 * identical / len(pairs),
        accuracy_first=100 * sum(first_right) / len(pairs),
        accuracy_second=100 * sum(second_right) / len(pairs),
        comparison=paired_comparison(second_right, first_right),  # second - first
        kept_first=mean_of([a["kept_tokens_final"] for a, _ in pairs if a["status"] == "ok"]),
        kept_second=mean_of([b["kept_tokens_final"] for _, b in pairs if b["status"] == "ok"]),
    )


def agreements(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[Agreement]:
    """Per (method, task, length), then per method over all its matched units when it has more
    than one group."""
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for a, b in pairs:
        groups[(a["method"], a["task"], a["length"])].append((a, b))
    result = []
    for method in sorted({method for method, _, _ in groups}):
        keys = sorted(key for key in groups if key[0] == method)
        result += [agreement(*key, groups[key]) for key in keys]
        if len(keys) > 1:
            result.append(agreement(method, "all", "all", [pair for key in keys for pair in groups[key]]))
    return result


def agreement_table(rows: list[Agreement]) -> list[str]:
    """The agreements as Markdown table lines."""
    return markdown_table(
        HEADER,
        [
            (
                row.method,
                row.task,
                row.length,
                str(row.units),
                f"{row.identical:.1f}",
                f"{row.accuracy_first:.1f}",
                f"{row.accuracy_second:.1f}",
                interval_text(row.comparison.difference, "+"),
                f"{row.comparison.baseline_only} / {row.comparison.method_only}",
                f"{row.comparison.mcnemar_p:.3g}",
                f"{number_text(row.kept_first)} / {number_text(row.kept_second)}",
            )
            for row in rows
        ],
    )


def selected(
    rows: list[dict[str, Any]], length: str | None, methods: list[str] | None
) -> list[dict[str, Any]]:
    """The rows of one length (None: all) whose method label starts with one of ``methods``
    (None: every method)."""
    return [
        row
        for row in rows
        if (length is None or row["length"] == length)
        and (methods is None or row["method"].startswith(tuple(methods)))
    ]


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
    keyed = []
    for path in (args.first, args.second):
        try:
            table = read_results(path)
        except ResultsError as error:
            parser.error(str(error))
        if table.num_rows == 0:
            parser.error(f"{path} holds no result shards (results/*.parquet)")
        keyed.append(by_unit(selected(scored_rows(table), args.length, args.method)))
    first, second = keyed
    pairs = matched_pairs(first, second)
    if not pairs:
        filters = ([f"--length {args.length}"] if args.length else []) + [
            f"--method {m}" for m in args.method or []
        ]
        parser.error(
            f"{args.first} and {args.second} share no unit"
            + (f" under {' '.join(filters)}" if filters else "")
        )
    print("\n".join(agreement_table(agreements(pairs))))
    print(
        f"{len(pairs)} units in both; {len(first.keys() - second.keys())} only in {args.first}, "
        f"{len(second.keys() - first.keys())} only in {args.second} (not compared)"
    )


if __name__ == "__main__":
    main()
