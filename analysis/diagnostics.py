"""Views that explain results (the rows' ``diagnostics``, ``cluster.diagnostics``): accuracy split
by whether the final cache kept the answer ("evicted or ignored?"), one row per needle with its
depth and whether the output found it, the depth x length grid of the field's heatmaps, and the
attention recall per layer. Every accuracy interval comes from ``analysis.stats``. Rows that
recorded nothing (failed units, samples whose benchmark locates no answer, runs without the recall
flag) are left out of each view, so a view is empty where the data does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.stats import proportion_interval
from analysis.table import ANSWER_KEPT_CLASSES, ScoredTable, diagnostics_of
from analysis.views import accuracy
from evals.babilong import length_order
from evals.scoring import score_output

DEPTH_BINS = 10
"""Needle depths are grouped into this many equal bins of 0-100%."""


def answer_kept_split(table: ScoredTable, by: Sequence[str] = ("dataset", "config")) -> pd.DataFrame:
    """Per group of ``by`` and answer-kept class (``all`` / ``partial`` / ``none``, in that order):
    ``accuracy``'s columns plus ``misses`` (rows not judged correct)."""
    frame = table.frame[table.frame["answer_kept_class"].notna() & ~table.frame["failed"]]
    if frame.empty:
        return pd.DataFrame()
    group = [*by, "answer_kept_class"]
    view = accuracy(table.where(frame), group)
    misses = frame.groupby(group, dropna=False)["correct"].agg(lambda values: int((~values).sum()))
    view = view.merge(misses.rename("misses").reset_index(), on=group)
    order = view["answer_kept_class"].map(ANSWER_KEPT_CLASSES.index)
    return (
        view.assign(_order=order).sort_values([*by, "_order"]).drop(columns="_order").reset_index(drop=True)
    )


def misses_by_kept(table: ScoredTable, by: Sequence[str] = ("dataset", "config")) -> pd.DataFrame:
    """Per group of ``by``: rows with a located answer (``n``), ``misses``, and how many misses had
    the answer evicted (``evicted``: no token kept), partly kept (``partial``) or kept whole
    (``ignored``: the model had it and did not use it)."""
    return misses_of(answer_kept_split(table, by), by)


def misses_of(split: pd.DataFrame, by: Sequence[str] = ("dataset", "config")) -> pd.DataFrame:
    """``misses_by_kept`` from an ``answer_kept_split`` already computed (grouped by ``by``)."""
    if split.empty:
        return split
    wide = split.pivot_table(
        index=list(by), columns="answer_kept_class", values="misses", aggfunc="sum", fill_value=0
    )
    totals = split.groupby(list(by))[["n", "misses"]].sum()
    names = {"none": "evicted", "partial": "partial", "all": "ignored"}
    found = totals.join(wide.reindex(columns=list(names), fill_value=0).rename(columns=names))
    return found.reset_index()


def needles(table: ScoredTable) -> pd.DataFrame:
    """One row per located answer (needle) of every ``ok`` row that recorded them: ``dataset``,
    ``config``, ``task``, ``length``, ``context_tokens``, ``depth`` (% of the context), ``kept``
    (share of its tokens kept) and ``found``: the benchmark's own metric gives the output full
    credit against this needle's target alone."""
    columns = (
        "dataset",
        "config",
        "task",
        "length",
        "context_tokens",
        "raw_output",
        "question",
        "diagnostics",
    )
    frame = table.frame[~table.frame["failed"] & table.frame["answer_kept"].notna()]
    records = []
    for row in frame[list(columns)].itertuples(index=False):
        for answer in diagnostics_of(row.diagnostics).get("answers", []):
            scored = score_output(row.dataset, answer["target"], row.raw_output, row.question or "", row.task)
            records.append(
                {
                    "dataset": row.dataset,
                    "config": row.config,
                    "task": row.task,
                    "length": row.length,
                    "context_tokens": row.context_tokens,
                    "depth": float(answer["depth"]),
                    "kept": float(answer["kept"]),
                    "found": scored.score >= 1.0,
                }
            )
    return pd.DataFrame.from_records(records)


def depth_bin(depth: float, bins: int = DEPTH_BINS) -> str:
    """The bin of a depth in percent: ``0-10%`` ... ``90-100%``."""
    width = 100 / bins
    index = min(int(depth // width), bins - 1)
    return f"{index * width:.0f}-{(index + 1) * width:.0f}%"


def depth_grid(table: ScoredTable, bins: int = DEPTH_BINS) -> pd.DataFrame:
    """Per (dataset, config, length, depth bin): needles (``n``), the share found in percent with
    its Wilson interval (``found``, ``low``, ``high``) and the mean share of their tokens kept
    (``kept``, %). Ordered by length, then depth."""
    found = needles(table)
    if found.empty:
        return found
    found = found.assign(depth_bin=found["depth"].map(lambda depth: depth_bin(depth, bins)))
    found["_bin"] = found["depth"].map(lambda depth: min(int(depth // (100 / bins)), bins - 1))
    records = []
    for (dataset, config, length, label, index), members in found.groupby(
        ["dataset", "config", "length", "depth_bin", "_bin"]
    ):
        interval = proportion_interval(int(members["found"].sum()), len(members))
        records.append(
            {
                "dataset": dataset,
                "config": config,
                "length": length,
                "depth_bin": label,
                "bin": index,
                "n": len(members),
                "found": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "kept": 100 * float(members["kept"].mean()),
            }
        )
    grid = pd.DataFrame.from_records(records)
    order = grid["length"].map(length_order)
    return (
        grid.assign(_length=order)
        .sort_values(["dataset", "config", "_length", "bin"])
        .drop(columns="_length")
    )


def recall_by_layer(table: ScoredTable) -> pd.DataFrame:
    """Per (dataset, config, layer): rows that recorded the attention recall (``n``) and its mean
    in percent (``recall``)."""
    frame = table.frame[~table.frame["failed"] & table.frame["attention_recall"].notna()]
    records = [
        {"dataset": dataset, "config": config, "layer": layer, "recall": 100 * float(value)}
        for dataset, config, blob in frame[["dataset", "config", "diagnostics"]].itertuples(index=False)
        for layer, value in enumerate(diagnostics_of(blob)["attention_recall_by_layer"])
    ]
    if not records:
        return pd.DataFrame()
    per_layer = pd.DataFrame.from_records(records).groupby(["dataset", "config", "layer"])["recall"]
    return per_layer.agg(n="size", recall="mean").reset_index()
