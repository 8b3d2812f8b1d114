"""Speed and peak memory per method of a results directory (e.g. ``laserkv sweep --grid rivals``),
as a Markdown table: one row per method (its latest attempt of each unit), means over its units,
and ratios to ``full`` in the same run::

    python -m benchmarks.rivals_cost results/rivals-32k [--length 8k] [--run 20261201T2018]

Prefill = the forward, score, select and gather phases (the block engine's loop, or the kvpress
bridge's one forward and its bookkeeping); decode = the question and the answer tokens.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

from cluster.reduce import BASELINE, latest_rows, mean_of
from cluster.writer import read_results

PREFILL_PHASES = ("forward", "score", "select", "gather")
HEADER = (
    "method", "protocol", "units", "errors", "context tokens", "kept tokens", "prefill s", "decode s",
    "total s", "total vs full", "peak GiB", "peak vs full",
)  # fmt: skip


def method_costs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: units, errors, and the means of its ok units' costs."""
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    costs = []
    for method, members in by_method.items():
        ok = [row for row in members if row["status"] == "ok"]
        peak = mean_of([row["peak_memory_bytes"] for row in ok])
        costs.append(
            {
                "method": method,
                "protocol": members[0]["method_protocol"] or "-",
                "units": len(members),
                "errors": len(members) - len(ok),
                "context": mean_of([row["context_tokens"] for row in ok]),
                "kept": mean_of([row["kept_tokens_final"] for row in ok]),
                "prefill": mean_of([sum(row[f"seconds_{phase}"] for phase in PREFILL_PHASES) for row in ok]),
                "decode": mean_of([row["seconds_decode"] for row in ok]),
                "total": mean_of([row["seconds_total"] for row in ok]),
                "peak_gib": None if peak is None else peak / 2**30,
                "error_text": next((row["error"] for row in members if row["status"] != "ok"), None),
            }
        )
    return costs


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


def markdown_table(costs: list[dict[str, Any]]) -> str:
    """The costs as a Markdown table, ``full`` first, then in the run's method order."""
    full = next((cost for cost in costs if cost["method"] == BASELINE), None)
    ordered = sorted(costs, key=lambda cost: cost["method"] != BASELINE)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for cost in ordered:
        full_total = None if full is None else full["total"]
        full_peak = None if full is None else full["peak_gib"]
        cells = (
            cost["method"], cost["protocol"], str(cost["units"]), str(cost["errors"]),
            _cell(cost["context"], 0), _cell(cost["kept"], 0), _cell(cost["prefill"]),
            _cell(cost["decode"]), _cell(cost["total"]), _ratio(cost["total"], full_total),
            _cell(cost["peak_gib"]), _ratio(cost["peak_gib"], full_peak),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    failed = [cost for cost in ordered if cost["error_text"]]
    lines += [f"\n{cost['method']}: {cost['error_text']}" for cost in failed]
    return "\n".join(lines) + "\n"


def selected(rows: list[dict[str, Any]], length: str | None, run: str | None) -> list[dict[str, Any]]:
    """The rows of one length and of the runs whose id starts with ``run`` (None: all)."""
    return [
        row
        for row in rows
        if (length is None or row["length"] == length) and (run is None or row["run_id"].startswith(run))
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a results directory (laserkv eval / sweep --output)")
    parser.add_argument("--length", default=None, help="only this length's rows (e.g. 8k)")
    parser.add_argument("--run", default=None, help="only the rows of runs whose id starts with this")
    args = parser.parse_args(argv)
    rows = selected(latest_rows(read_results(args.results)), args.length, args.run)
    if not rows:
        parser.error(f"no rows in {args.results} match --length {args.length} --run {args.run}")
    print(markdown_table(method_costs(rows)))


if __name__ == "__main__":
    main()
