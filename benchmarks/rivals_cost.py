"""Speed and peak memory per method of a results directory (e.g. ``laserkv sweep --grid rivals``),
as a Markdown table: one row per method (its latest attempt of each unit), means over its units,
and ratios to ``full`` in the same run::

    python -m benchmarks.rivals_cost results/rivals-32k [--length 8k] [--run 20261201T2018]

Prefill = the forward, score, select and gather phases (the block engine's loop, or the kvpress
bridge's one forward and its bookkeeping); decode = the question and the answer tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analysis.table import BASELINE, latest_units
from cluster.writer import read_results

PREFILL_PHASES = ("forward", "score", "select", "gather")
HEADER = (
    "method", "protocol", "units", "errors", "context tokens", "kept tokens", "prefill s", "decode s",
    "total s", "total vs full", "peak GiB", "peak vs full",
)  # fmt: skip
MEANS = {
    "context": "context_tokens",
    "kept": "kept_tokens_final",
    "prefill": "seconds_prefill",
    "decode": "seconds_decode",
    "total": "seconds_total",
    "peak_gib": "peak_gib",
}
"""The columns of ``method_costs`` that are means over a method's ok units, and their sources."""


def method_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method, in the rows' order: protocol, units, errors, the means of its ok units' costs
    (``MEANS``) and the first failed unit's error (``error_text``)."""
    rows = rows.assign(
        ok=rows["status"] == "ok",
        seconds_prefill=rows[[f"seconds_{phase}" for phase in PREFILL_PHASES]].sum(axis=1, min_count=1),
        peak_gib=rows["peak_memory_bytes"] / 2**30,
    )
    grouped = rows.groupby("method", sort=False)
    found = pd.DataFrame(
        {
            "protocol": grouped["method_protocol"].first().fillna("-"),
            "units": grouped.size(),
            "errors": grouped["ok"].sum().rsub(grouped.size()),
        }
    )
    means = rows[rows["ok"]].groupby("method", sort=False)[list(MEANS.values())].mean()
    found = found.join(means.rename(columns={source: name for name, source in MEANS.items()}))
    errors = rows[~rows["ok"]].groupby("method", sort=False)["error"].first().rename("error_text")
    return found.join(errors).reset_index()


def _cell(value: object, digits: int = 2) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _ratio(value: object, reference: object) -> str:
    if pd.isna(value) or pd.isna(reference) or not reference:
        return "-"
    return f"{value / reference:.2f}x"  # type: ignore[operator]


def markdown_table(costs: pd.DataFrame) -> str:
    """The costs as a Markdown table, ``full`` first, then in the run's method order."""
    full = costs[costs["method"] == BASELINE]
    full_total = full["total"].iloc[0] if len(full) else None
    full_peak = full["peak_gib"].iloc[0] if len(full) else None
    ordered = costs.assign(_other=costs["method"] != BASELINE).sort_values("_other", kind="stable")
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for _, cost in ordered.iterrows():
        cells = (
            str(cost["method"]), str(cost["protocol"]), str(cost["units"]), str(cost["errors"]),
            _cell(cost["context"], 0), _cell(cost["kept"], 0), _cell(cost["prefill"]),
            _cell(cost["decode"]), _cell(cost["total"]), _ratio(cost["total"], full_total),
            _cell(cost["peak_gib"]), _ratio(cost["peak_gib"], full_peak),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    failed = ordered[ordered["error_text"].notna()]
    lines += [
        f"\n{method}: {error}" for method, error in zip(failed["method"], failed["error_text"], strict=True)
    ]
    return "\n".join(lines) + "\n"


def selected(rows: pd.DataFrame, length: str | None, run: str | None) -> pd.DataFrame:
    """The rows of one length and of the runs whose id starts with ``run`` (None: all)."""
    keep = pd.Series(True, index=rows.index)
    if length is not None:
        keep &= rows["length"] == length
    if run is not None:
        keep &= rows["run_id"].astype(str).str.startswith(run)
    return rows[keep]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a results directory (laserkv eval / sweep --output)")
    parser.add_argument("--length", default=None, help="only this length's rows (e.g. 8k)")
    parser.add_argument("--run", default=None, help="only the rows of runs whose id starts with this")
    args = parser.parse_args(argv)
    rows = selected(latest_units(read_results(args.results).to_pandas()), args.length, args.run)
    if rows.empty:
        parser.error(f"no rows in {args.results} match --length {args.length} --run {args.run}")
    print(markdown_table(method_costs(rows)))


if __name__ == "__main__":
    main()
