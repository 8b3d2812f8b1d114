"""The cells of the quality benchmark (pure): one per (model, task, length, method, budget), with
accuracy, retention against ``full`` and the paired comparison on the same samples, as views
over the scored table (``analysis.table``, ``analysis.views``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.stats import retention_interval
from analysis.table import BASELINE, ScoredTable, scored_table
from analysis.views import accuracy, compare, pairs
from benchmarks.quality_text import compare_per_table, length_order
from cluster.labels import base_name

TARGET_BUDGET = 1024
"""Issue 8's targets are at B=1024; the ablation table and the length plot use it too."""
CELL = ("model", "task", "length", "variant", "B")
"""A cell: a method (or variant, ``method_variant``) at one budget B (NaN for ``full``) on one
model's task at one length."""
TABLE = ("model", "task", "length")
"""One table of cells (one family of comparisons with ``full``)."""

FIRST_NAMES = {"streaming_laser_split": "streaming", "snapkv_laser_split": "snapkv"}
"""Issue 8's rivals were registered as ``streaming`` and ``snapkv``; issue 17 renamed them (those
names now mean the published methods). Rows of either name are the same configs (same hashes),
so this study keeps calling them by their first names."""


def method_variant(label: str) -> str:
    """A sweep label without its budget: ``laser[budget=1024]`` -> ``laser``; settings other than
    B stay, ``laser[budget=1024,score_pooling=7]`` -> ``laser[score_pooling=7]`` (a variant)."""
    name = base_name(label)
    changes = [
        change
        for change in label[len(name) + 1 : -1].split(",")
        if change and not change.startswith("budget=")
    ]
    name = FIRST_NAMES.get(name, name)
    return f"{name}[{','.join(changes)}]" if changes else name


def _budget(params: object) -> float:
    """The configured budget in a ``method_params`` JSON blob (NaN without one)."""
    budget = json.loads(params).get("budget") if isinstance(params, str) and params else None
    return float("nan") if budget is None else float(budget)


def with_cells(table: ScoredTable) -> ScoredTable:
    """The table with each row's cell columns: ``variant`` (``method_variant`` of the stored label)
    and the configured budget ``B`` (NaN for ``full``).

    Raises:
        ValueError: a cell holds two rows for one sample (results of two configurations mixed).
    """
    frame = table.frame
    variant = frame["method"].astype(str).map(method_variant)
    budget = frame["method_params"].map(_budget).astype(float).where(variant != BASELINE)
    frame = frame.assign(variant=variant, B=budget)
    twice = frame[frame.duplicated([*CELL, "sample_id"], keep=False)]
    if len(twice):
        key = tuple(twice.iloc[0][list(CELL)])
        raise ValueError(
            f"cell {key} has two rows for one sample: pass results of one configuration "
            "(block size, data version) per model, task, length, method and budget"
        )
    return table.where(frame)


def study_table(results: Sequence[Path]) -> ScoredTable:
    """The scored rows of every results directory, a unit run in two directories (e.g. ``full``
    beside variants) once, with their cells (``with_cells``)."""
    return with_cells(scored_table(list(results)))


def _retention(table: ScoredTable) -> pd.DataFrame:
    """Per cell other than ``full``: retention of ``correct`` against ``full`` on the same samples."""
    paired = pairs(table, BASELINE, member="variant")
    columns = ["retention", "retention_low", "retention_high"]

    def interval(members: pd.DataFrame) -> pd.Series:
        found = retention_interval(members["correct"].astype(float).tolist(),
                                   members["base_correct"].astype(float).tolist())  # fmt: skip
        values = (None, None, None) if found is None else (found.estimate, found.low, found.high)
        return pd.Series(values, index=columns, dtype=float)

    if paired.empty:
        return pd.DataFrame(columns=[*CELL, *columns])
    return paired.groupby(list(CELL), sort=False, dropna=False).apply(interval).reset_index()


def quality_cells(table: ScoredTable) -> pd.DataFrame:
    """Every cell (``with_cells``): ``n``, ``errors``, accuracy of ``correct`` with its interval,
    mean ``kept`` and ``context`` tokens, retention, and the comparison with ``full`` on the same
    samples (``difference``, ``diff_low``, ``diff_high``, ``p``, ``p_holm``, ``verdict``; one
    family per (model, task, length)), sorted by model, task, length, variant and B."""
    found = accuracy(table, CELL, value="correct").merge(_retention(table), on=list(CELL), how="left")
    versus = compare_per_table(table, TABLE, ("B",), BASELINE, "variant")
    if versus.empty:
        versus = pd.DataFrame(columns=[*CELL, "difference", "low", "high", "p", "p_holm", "verdict"])
    versus = versus[[*CELL, "difference", "low", "high", "p", "p_holm", "verdict"]]
    found = found.merge(
        versus.rename(columns={"low": "diff_low", "high": "diff_high"}), on=list(CELL), how="left"
    )
    order = found.assign(_length=found["length"].map(length_order), _B=found["B"].fillna(0))
    order = order.sort_values(["model", "task", "_length", "variant", "_B"], kind="stable")
    return order.drop(columns=["_length", "_B"]).reset_index(drop=True)


def compare_cells(table: ScoredTable, ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Cell against cell on the samples both ran: ``ours`` and ``theirs`` name one cell each
    (``CELL`` columns) per ``comparison`` id. One row per comparison (``analysis.views.compare``
    of ``correct``, ours − theirs; the whole frame one family) with both accuracies on the shared
    samples (``ours_percent``, ``theirs_percent``)."""
    frame = table.frame
    sides = [
        frame.merge(keys[[*CELL, "comparison"]], on=list(CELL)).assign(role=role)
        for keys, role in ((ours, "ours"), (theirs, "theirs"))
    ]
    both = table.where(pd.concat(sides, ignore_index=True))
    found = compare(both, ("comparison",), "theirs", "role", ("comparison",), value="correct")
    if found.empty:
        return found
    shares = pairs(both, "theirs", "role", ("comparison",)).groupby("comparison")[["correct", "base_correct"]]
    percent = (
        shares.mean().mul(100).rename(columns={"correct": "ours_percent", "base_correct": "theirs_percent"})
    )
    return found.merge(percent.reset_index(), on="comparison")
