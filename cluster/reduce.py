"""The reducer: reads result shards only, scores them with ``evals`` (the official metric of
each benchmark, recomputed from the raw outputs), and writes ``summary.parquet`` and
``summary.json``: accuracy per configuration x task x length with bootstrap 95% CIs, each
benchmark's official tables, a paired comparison with ``full`` on the same samples when it ran,
and mean cost per configuration.

Everything is keyed by what a result is: (dataset, model, method name, method config hash);
a configuration's label (``config``) is the method name, with ``#<hash>`` where one name ran
with several configs and ``@ <model>`` where several models are present.

Missing outputs: an ``ok`` row whose raw output is None or NaN is scored as the empty string
(``evals.benchmark.output_text``: BABILong's metric judges it wrong, LongBench v2 skips it as
pred.py skips ''); a failed unit (error, OOM, timeout) counts as wrong for every benchmark. The
normalisation happens once, in ``scored_rows``, which every table and the report use."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.writer import ResultsError, read_results
from evals.benchmark import output_text
from evals.benchmarks import get_benchmark
from evals.stats import bootstrap_ci, paired_comparison

BASELINE = "full"
COST_COLUMNS = (
    "seconds_total",
    "seconds_forward",
    "seconds_decode",
    "peak_memory_bytes",
    "kept_tokens_final",
)


FAILED_OUTPUT = "<no output: the unit failed>"


def latest_per_key(
    rows: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    """One row per ``key(row)``: the last ``ok`` row if there is one, else the last row."""
    chosen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        previous = chosen.get(key(row))
        if previous is None or row["status"] == "ok" or previous["status"] != "ok":
            chosen[key(row)] = row
    return list(chosen.values())


def latest_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One row per unit id: an ``ok`` row if there is one, else the last written."""
    return latest_per_key(table.to_pylist(), lambda row: row["unit_id"])


def scored_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One row per unit with ``correct`` and ``score`` (the official per-sample score, a fraction;
    1/0 where the metric is right/wrong) recomputed from ``raw_output`` by the official metric.

    A failed unit (error, OOM, timeout) counts as wrong everywhere, for every dataset, so a
    method cannot gain by failing on hard samples; LongBench v2's skip of empty outputs applies
    to real empty outputs only. Failures are also counted in ``errors``.
    """
    rows = latest_rows(table)
    for row in rows:
        failed = row["status"] != "ok"
        benchmark = get_benchmark(row["dataset"])
        row["response"] = FAILED_OUTPUT if failed else output_text(row["raw_output"])
        row["answer"] = row["target"]
        row["counts"] = benchmark.counts(row["response"])
        fields = (row["target"], row["response"], row["question"] or "", row["task"])
        row["correct"] = False if failed else benchmark.score(*fields)[1]
        row["score"] = 0.0 if failed else benchmark.graded(*fields)
    label_configs(rows)
    return rows


def config_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """What a result is: (dataset, model, method name, method config hash)."""
    return row["dataset"], row["model"], row["method"], row["method_hash"]


def label_configs(rows: list[dict[str, Any]]) -> None:
    """Give every row its configuration's label, ``config`` (see the module docstring)."""
    models = {row["model"] for row in rows}
    hashes: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        hashes[row["method"]].add(row["method_hash"])
    for row in rows:
        label = row["method"]
        if len(hashes[label]) > 1:
            label += f" #{(row['method_hash'] or '')[:8]}"
        if len(models) > 1:
            label += f" @ {row['model']}"
        row["config"] = label


def baseline_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Rows that answer the same prompt the same way (for pairing with ``full``)."""
    return (
        row["dataset"],
        row["dataset_revision"],
        row["sample_id"],
        row["model"],
        row["temperature"],
        row["max_new_tokens"],
        row["seed"],
    )


def mean_of(values: list[Any]) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    present = [float(value) for value in values if value is not None]
    return sum(present) / len(present) if present else None


def paired_scores(
    members: list[dict[str, Any]], baseline: dict[tuple[Any, ...], dict[str, Any]]
) -> tuple[list[float], list[float]]:
    """``correct`` of each member that has a baseline row for the same prompt (``baseline_key``),
    and of that baseline row, in the same order."""
    pairs = [(row, baseline[baseline_key(row)]) for row in members if baseline_key(row) in baseline]
    return [float(row["score"]) for row, _ in pairs], [float(base["score"]) for _, base in pairs]


def cell_summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per configuration (``config_key``) x task x length."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:  # a method name rerun with another config, or another model, is another cell
        cell = (*config_key(row), row["task"], row["length"])
        cells[cell].append(row)
    baseline = {baseline_key(row): row for row in rows if row["method"] == BASELINE}
    summaries = []
    for (dataset, model, method, method_hash, task, length), members in sorted(
        cells.items(), key=lambda item: tuple(str(part) for part in item[0])
    ):
        scored = [row for row in members if row["counts"]]
        accuracy = bootstrap_ci([float(row["score"]) for row in scored]) if scored else None
        summary: dict[str, Any] = {
            "dataset": dataset,
            "model": model,
            "method": method,
            "config": members[0]["config"],
            "protocol": members[0]["method_protocol"],
            "task": task,
            "length": length,
            "method_hash": method_hash,
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
        ours, theirs = paired_scores(members, baseline)
        if method != BASELINE and ours:
            comparison = paired_comparison(ours, theirs)
            summary.update(
                delta_vs_full=comparison.difference.estimate,
                delta_ci_low=comparison.difference.low,
                delta_ci_high=comparison.difference.high,
                paired_bootstrap_p=comparison.bootstrap_p,
                mcnemar_p=comparison.mcnemar_p,
                n_paired=len(ours),
            )
        for column in COST_COLUMNS:
            summary[f"mean_{column}"] = mean_of([row[column] for row in members if row["status"] == "ok"])
        summaries.append(summary)
    return summaries


def official_tables(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and configuration label: the benchmark's official result
    (``Benchmark.official_table``, from each row's official judgement)."""
    by_config: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_config[(row["dataset"], row["config"])].append(row)
    tables: dict[str, Any] = defaultdict(dict)
    for (dataset, label), members in sorted(by_config.items()):
        tables[dataset][label] = get_benchmark(dataset).official_table(members)
    return dict(tables)


def reduce_results(output_dir: Path) -> dict[str, Any]:
    """Score a results directory and write ``summary.parquet`` and ``summary.json`` into it.

    Raises:
        ResultsError: no result shards, or a shard that is not laserkv's.
    """
    return reduce_and_score(output_dir)[0]


def score_directories(directories: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary and the scored rows of several results directories together: their shards
    are read as one table, so a unit found in several directories counts once (its ``ok`` row
    if any). Nothing is written.

    Raises:
        ResultsError: no directory holds a result shard.
    """
    tables = [read_results(Path(directory)) for directory in directories]
    table = pa.concat_tables(tables)
    if table.num_rows == 0:
        names = ", ".join(str(directory) for directory in directories)
        raise ResultsError(f"{names} hold no result shards (results/*.parquet); run `laserkv eval` first")
    rows = scored_rows(table)
    return {"cells": cell_summaries(rows), "official": official_tables(rows), "rows": len(rows)}, rows


def reduce_and_score(output_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``reduce_results`` plus the scored rows it computed (the report needs both; the shards
    are read and scored once)."""
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
    return summary, rows


def _publish(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)
