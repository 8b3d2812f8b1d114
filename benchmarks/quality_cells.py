"""The cells of the quality benchmark (pure): one per (model, task, length, method, budget), with
accuracy, retention against ``full`` and the paired comparison on the same samples."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cluster.presets import base_name
from cluster.reduce import BASELINE, baseline_key, mean_of, paired_scores
from evals.babilong import length_tokens
from evals.stats import Interval, PairedComparison, bootstrap_ci, paired_comparison, retention_ci

TARGET_BUDGET = 1024
"""Issue 8's targets are at B=1024; the ablation table and the length plot use it too."""


@dataclass(frozen=True)
class Cell:
    """One (model, task, length, method, budget) cell of the benchmark."""

    model: str
    task: str
    length: str
    method: str
    budget: int | None
    n: int
    errors: int
    accuracy: Interval
    kept: float | None
    context: float | None
    retention: Interval | None
    versus_full: PairedComparison | None


def length_order(length: str) -> int:
    return length_tokens(length)


def cell_key(row: dict[str, Any]) -> tuple[str, str, str, str, int | None]:
    """(model, task, length, base method, budget) of a scored row; ``full`` has no budget."""
    method = base_name(row["method"])
    budget = None if method == BASELINE or row["m_budget"] is None else int(row["m_budget"])
    return row["model"], row["task"], row["length"], method, budget


def quality_cells(rows: list[dict[str, Any]]) -> list[Cell]:
    """Every cell, with retention and the paired comparison against ``full`` on the same samples."""
    groups: dict[tuple[str, str, str, str, int | None], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[cell_key(row)].append(row)
    for key, members in groups.items():
        if len({row["sample_id"] for row in members}) < len(members):
            raise ValueError(
                f"cell {key} has two rows for one sample: pass results of one configuration "
                "(block size, data version) per model, task, length, method and budget"
            )
    full = {baseline_key(row): row for row in rows if base_name(row["method"]) == BASELINE}
    cells = []
    for (model, task, length, method, budget), members in groups.items():
        ok = [row for row in members if row["status"] == "ok"]
        retention = comparison = None
        ours, theirs = paired_scores(members, full)
        if method != BASELINE and ours:
            retention = retention_ci(ours, theirs)
            comparison = paired_comparison(ours, theirs)
        cells.append(
            Cell(
                model=model,
                task=task,
                length=length,
                method=method,
                budget=budget,
                n=len(members),
                errors=len(members) - len(ok),
                accuracy=bootstrap_ci([float(row["correct"]) for row in members]),
                kept=mean_of([row["kept_tokens_final"] for row in ok]),
                context=mean_of([row["context_tokens"] for row in ok]),
                retention=retention,
                versus_full=comparison,
            )
        )
    return sorted(cells, key=lambda c: (c.model, c.task, length_order(c.length), c.method, c.budget or 0))
