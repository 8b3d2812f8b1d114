"""The report's tables, each rendered from a view of the scored table (``analysis.views``): the
main table (tasks pooled per method x dataset x length, paired with ``full``), one table per
breakdown field, each benchmark's official tables and the published full-cache numbers."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from analysis.table import ScoredTable
from analysis.views import cells, official, versus
from evals.babilong import length_order
from evals.benchmark import percent_cell
from evals.benchmarks import get_benchmark

MAIN_GROUP = ("dataset", "model", "config", "length")


MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*"})
LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def markdown_text(text: object) -> str:
    """Text as one Markdown table cell or header value shows it literally: HTML's special characters
    as entities, ``|``, ``\\``, ``*`` and backticks backslash-escaped, ``](`` broken (no link or
    image), line breaks as spaces. Numbers (digits, ``.``, ``+``, ``-``, ``[ ]``, ``%``) are left
    as they are."""
    escaped = html.escape(LINE_BREAKS.sub(" ", str(text)), quote=False).translate(MARKDOWN_ESCAPES)
    return escaped.replace("](", "]\\(")


@dataclass(frozen=True)
class Table:
    """A titled table of strings."""

    title: str
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]


def _missing(value: object) -> bool:
    return value is None or bool(pd.isna(value))


def number_text(value: object, pattern: str = "{:.0f}") -> str:
    """A number as a table shows it (default: a mean rounded to a whole number, kept or context
    tokens), or ``-`` when missing; ``-0.0`` shows as ``0.0``."""
    return "-" if _missing(value) else pattern.format(float(value) + 0.0)  # type: ignore[arg-type]


def interval_text(estimate: object, low: object, high: object, sign: str = "") -> str:
    """``estimate [low, high]`` to one decimal (``sign="+"``: signed), or ``-``."""
    if _missing(estimate):
        return "-"
    pattern = f"{{:{sign}.1f}}"
    return f"{number_text(estimate, pattern)} [{number_text(low, pattern)}, {number_text(high, pattern)}]"


def p_text(value: object) -> str:
    """A p-value to three significant digits, or ``-``."""
    return number_text(value, "{:.3g}")


def ordered(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Rows by ``columns``, lengths by size (``4k`` before ``16k``)."""
    if frame.empty:
        return frame
    keys = {column: frame[column].map(lambda v: length_order(str(v))) if column == "length" else frame[column]
            for column in columns}  # fmt: skip
    order = pd.DataFrame(keys).sort_values(list(columns), kind="stable").index
    return frame.loc[order]


def main_table(table: ScoredTable) -> tuple[Table, pd.DataFrame]:
    """Accuracy per configuration x dataset x length, tasks pooled, paired with ``full``; and the
    view it renders (for the plots)."""
    view = ordered(cells(table, MAIN_GROUP), "dataset", "length", "config")
    family = int(view["p"].notna().sum()) if "p" in view else 0
    title = (
        "Accuracy per method x dataset x length (tasks pooled; 95% intervals: Wilson, or a bootstrap "
        "stratified by task for graded scores; each method vs full on the same samples, one family of "
        f"{family} comparisons, Holm-adjusted)"
    )
    header = (
        "dataset", "length", "method", "protocol", "n", "errors", "accuracy % [95% CI]",
        "delta vs full, pp [95% CI]", "test", "p", "Holm p", "verdict (±5 pp)", "budget B", "kept tokens",
        "context tokens", "seconds/sample", "peak GiB",
    )  # fmt: skip
    rows = [
        (
            str(cell["dataset"]), str(cell["length"]), str(cell["config"]), str(cell["protocol"] or "-"),
            str(cell["n"]), str(cell["errors"]), interval_text(cell["accuracy"], cell["low"], cell["high"]),
            interval_text(cell["delta_vs_full"], cell["delta_low"], cell["delta_high"], "+"),
            str(cell["test"] or "-") if isinstance(cell["test"], str) else "-",
            p_text(cell["p"]), p_text(cell["p_holm"]),
            str(cell["verdict"]) if isinstance(cell["verdict"], str) else "-",
            number_text(cell["budget"]), number_text(cell["kept"]), number_text(cell["context"]),
            number_text(cell["seconds"], "{:.2f}"),
            number_text(None if pd.isna(cell["peak_bytes"]) else cell["peak_bytes"] / 2**30, "{:.2f}"),
        )
        for cell in view.to_dict("records")
    ]  # fmt: skip
    return Table(title, header, rows), view


def versus_table(table: ScoredTable, method: str, mismatched: bool = False) -> Table | None:
    """``method`` against every other configuration at the same settings, tasks pooled per
    dataset x length (``analysis.views.versus``), each comparison labelled matched or with what
    differs; None when ``method`` did not run or has nothing to pair with."""
    view = versus(table, method, ("dataset", "model", "length"), mismatched=mismatched)
    if view.empty:
        return None
    view = ordered(view, "dataset", "length", "config")
    family = int(view["p_holm"].notna().sum())
    which = "every" if mismatched else "the matched"
    title = (
        f"{method} against each configuration at the same settings (tasks pooled; {method} − other, "
        f"pp; one family: {which} {family} comparisons, Holm-adjusted; a comparison that differs in "
        "protocol, prefill regime or kept tokens (> 2%) says so"
        + ("" if mismatched else " and gets no verdict")
        + ")"
    )
    header = (
        "dataset", "length", "other", "pairs", f"kept tokens ({method} / other)",
        f"{method} − other, pp [95% CI]", "test", "p", "Holm p", "comparison", "verdict (±5 pp)",
    )  # fmt: skip
    rows = [
        (
            str(row["dataset"]), str(row["length"]), str(row["config"]), str(row["pairs"]),
            f"{number_text(row['kept'])} / {number_text(row['base_kept'])}",
            interval_text(row["difference"], row["low"], row["high"], "+"), str(row["test"]),
            p_text(row["p"]), p_text(row["p_holm"]), str(row["matched"]), str(row["verdict"]),
        )
        for row in view.to_dict("records")
    ]  # fmt: skip
    return Table(title, header, rows)


def breakdown_tables(table: ScoredTable) -> list[Table]:
    """Per breakdown field a benchmark declares (difficulty, depth, ...): accuracy per
    configuration x dataset x value, paired with ``full``."""
    found = []
    for field in table.breakdown_fields:
        frame = table.frame[table.frame[field].notna()].copy()
        frame[field] = frame[field].astype(str)
        view = ordered(cells(table.where(frame), ("dataset", "config", field)), "dataset", field, "config")
        header = (
            "dataset",
            field,
            "method",
            "n",
            "accuracy % [95% CI]",
            "delta vs full, pp [95% CI]",
            "Holm p",
        )
        rows = [
            (str(cell["dataset"]), str(cell[field]), str(cell["config"]), str(cell["n"]),
             interval_text(cell["accuracy"], cell["low"], cell["high"]),
             interval_text(cell["delta_vs_full"], cell["delta_low"], cell["delta_high"], "+"),
             p_text(cell["p_holm"]))
            for cell in view.to_dict("records")
        ]  # fmt: skip
        found.append(Table(f"Accuracy by {field} (one family per table, Holm-adjusted)", header, rows))
    return found


def official_tables(table: ScoredTable) -> list[Table]:
    """Each benchmark's official tables, one row per configuration."""
    found = []
    for dataset, by_config in sorted(official(table).items()):
        for result in get_benchmark(dataset).official_tables(by_config):  # type: ignore[arg-type]
            found.append(Table(result.title, result.header, result.rows))
    return found


def published_tables(models: list[str], datasets: list[str]) -> list[Table]:
    """Published full-cache numbers for the run's models on its benchmarks, where known."""
    found = []
    for model in models:
        for dataset in datasets:
            match = get_benchmark(dataset).published(model)
            if match is None:
                continue
            name, values = match
            row = tuple(percent_cell(float(value)) for value in values.values())
            found.append(Table(f"Published full-cache numbers, {name}, {dataset} (%)", tuple(values), [row]))
    return found
