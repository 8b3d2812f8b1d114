"""The cells of the quality benchmark (pure): one per (model, task, length, method, budget), with
accuracy, retention against ``full`` and the paired comparison on the same samples."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.labels import base_name
from cluster.reduce import BASELINE, baseline_key, latest_per_key, mean_of, paired_scores, reduce_and_score
from cluster.rows import method_params
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


def cell_key(row: dict[str, Any]) -> tuple[str, str, str, str, int | None]:
    """(model, task, length, method or variant, budget) of a scored row; ``full`` has no budget."""
    method = method_variant(row["method"])
    configured = method_params(row).get("budget")
    budget = None if method == BASELINE or configured is None else int(configured)
    return row["model"], row["task"], row["length"], method, budget


def unique_units(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (unit id, method label) across results directories: the same unit run twice
    (e.g. ``full`` in the grid and beside a variant) counts once. The label is part of the key
    because the unit id hashes a method's settings, not its name (two labels with the same
    settings are two cells). As the reducer's ``latest_rows``: an ``ok`` row if there is one,
    the last one read, else the last row."""
    return latest_per_key(rows, lambda row: (row["unit_id"], row["method"]))


def study_rows(results: list[Path]) -> list[dict[str, Any]]:
    """The scored rows of every results directory (each reduced in place), a unit run in two
    directories (e.g. ``full`` beside variants) once (``unique_units``)."""
    rows: list[dict[str, Any]] = []
    for directory in results:
        rows += reduce_and_score(directory)[1]
    return unique_units(rows)


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
    full = {baseline_key(row): row for row in rows if method_variant(row["method"]) == BASELINE}
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
