"""The end-of-run summary of a results directory: the scored table (``analysis.table``) viewed per
configuration x task x length (``analysis.views.cells``: accuracy with its 95% interval, the paired
comparison with ``full``, mean cost) and each benchmark's official tables, written as
``summary.parquet`` and ``summary.json`` into the run's own directory. ``laserkv report`` reads
the same views and writes nothing into result directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from analysis.table import scored_table
from analysis.views import cells, official
from cluster.writer import publish

SUMMARY_FILES = ("summary.parquet", "summary.json")


def _plain(value: object) -> object:
    """A summary value as JSON has it (NaN and missing values are null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def summary_of(directory: Path) -> tuple[pd.DataFrame, dict[str, object]]:
    """The per-cell summary of one results directory and its JSON form (``cells``, ``official``,
    ``rows``).

    Raises:
        ResultsError: no result shards, or a shard that is not laserkv's.
    """
    table = scored_table([Path(directory)])
    found = cells(table)
    records = [{key: _plain(value) for key, value in record.items()} for record in found.to_dict("records")]
    return found, {"cells": records, "official": official(table), "rows": len(table.frame)}


def reduce_results(output_dir: Path) -> dict[str, object]:
    """Summarise a run's results directory and write ``summary.parquet`` / ``summary.json`` into it
    (each published by atomic rename).

    Raises:
        ResultsError: no result shards, or a shard that is not laserkv's.
    """
    output = Path(output_dir)
    found, summary = summary_of(output)
    publish(output / SUMMARY_FILES[0], lambda path: found.to_parquet(path, index=False))
    publish(
        output / SUMMARY_FILES[1], lambda path: path.write_text(json.dumps(summary, indent=1, sort_keys=True))
    )
    return summary
