"""The reducer: reads result shards only, scores them with ``evals`` (the official metric of
each dataset, recomputed from the raw outputs), and writes ``summary.parquet`` and
``summary.json``: accuracy per method x task x length with bootstrap 95% CIs, the official
tables (BABILong qa1-qa5 headline, LongBench v2 overall/easy/hard/short/medium/long), a paired
comparison with ``full`` on the same samples when it ran, and mean cost per method."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.writer import ResultsError, read_results
from evals import babilong, longbench_v2
from evals.scoring import score_fields
from evals.stats import bootstrap_ci, paired_comparison

BASELINE = "full"
COST_COLUMNS = (
    "seconds_total",
    "seconds_forward",
    "seconds_decode",
    "peak_memory_bytes",
    "kept_tokens_final",
)


def scored_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Every row with ``correct`` recomputed from ``raw_output`` by the official metric (a failed
    unit has no output: wrong for BABILong, skipped for LongBench v2 as an empty output)."""
    rows = table.to_pylist()
    for row in rows:
        raw = row["raw_output"] if row["status"] == "ok" else None
        row["response"] = raw
        row["answer"] = row["target"]
        row["correct"] = score_fields(
            row["dataset"], row["target"], raw or "", row["question"] or "", row["task"]
        )[1]
    return rows


def _mean(values: list[Any]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return sum(present) / len(present) if present else None


def cell_summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (dataset, method, task, length)."""
    cells: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        cells[(row["dataset"], row["method"], row["task"], row["length"])].append(row)
    baseline = {
        (row["dataset"], row["sample_id"]): row
        for row in rows
        if row["method"] == BASELINE and row["status"] == "ok"
    }
    summaries = []
    for (dataset, method, task, length), members in sorted(cells.items()):
        scored = [row for row in members if not (dataset == longbench_v2.DATASET and not row["response"])]
        accuracy = bootstrap_ci([float(row["correct"]) for row in scored]) if scored else None
        summary: dict[str, Any] = {
            "dataset": dataset,
            "method": method,
            "task": task,
            "length": length,
            "n": len(members),
            "n_scored": len(scored),
            "errors": sum(row["status"] != "ok" for row in members),
            "accuracy": None if accuracy is None else accuracy.estimate,
            "ci_low": None if accuracy is None else accuracy.low,
            "ci_high": None if accuracy is None else accuracy.high,
            "delta_vs_full": None,
            "delta_ci_low": None,
            "delta_ci_high": None,
            "paired_bootstrap_p": None,
            "mcnemar_p": None,
            "n_paired": 0,
        }
        pairs = [
            (row, baseline[(dataset, row["sample_id"])])
            for row in members
            if (dataset, row["sample_id"]) in baseline
        ]
        if method != BASELINE and pairs:
            comparison = paired_comparison(
                [float(row["correct"]) for row, _ in pairs], [float(base["correct"]) for _, base in pairs]
            )
            summary.update(
                delta_vs_full=comparison.difference.estimate,
                delta_ci_low=comparison.difference.low,
                delta_ci_high=comparison.difference.high,
                paired_bootstrap_p=comparison.bootstrap_p,
                mcnemar_p=comparison.mcnemar_p,
                n_paired=len(pairs),
            )
        for column in COST_COLUMNS:
            summary[f"mean_{column}"] = _mean([row[column] for row in members if row["status"] == "ok"])
        summaries.append(summary)
    return summaries


def official_tables(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and method: BABILong's per task x length table and qa1-qa5 headline, or
    LongBench v2's result.py row."""
    by_dataset_method: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_dataset_method[(row["dataset"], row["method"])].append(row)
    tables: dict[str, Any] = defaultdict(dict)
    for (dataset, method), members in sorted(by_dataset_method.items()):
        if dataset == longbench_v2.DATASET:
            tables[dataset][method] = vars(longbench_v2.aggregate(members))
        else:
            records = [{**row, "output": row["response"]} for row in members]
            table = babilong.accuracy_table(records)
            tables[dataset][method] = {
                "accuracy": {f"{task}/{length}": value for (task, length), value in sorted(table.items())},
                "headline_qa1_qa5": babilong.headline(table),
            }
    return dict(tables)


def reduce_results(output_dir: Path) -> dict[str, Any]:
    """Score a results directory and write ``summary.parquet`` and ``summary.json`` into it.

    Raises:
        ResultsError: no result shards, or a shard that is not laserkv's.
    """
    output = Path(output_dir)
    table = read_results(output)
    if table.num_rows == 0:
        raise ResultsError(f"{output} holds no result shards (results/*.parquet); run `laserkv eval` first")
    rows = scored_rows(table)
    summary = {"cells": cell_summaries(rows), "official": official_tables(rows), "rows": table.num_rows}
    _publish(
        output / "summary.parquet", lambda path: pq.write_table(pa.Table.from_pylist(summary["cells"]), path)
    )
    _publish(
        output / "summary.json",
        lambda path: Path(path).write_text(json.dumps(summary, indent=1, sort_keys=True)),
    )
    return summary


def _publish(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)
