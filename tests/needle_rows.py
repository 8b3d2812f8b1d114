"""Hand-built result rows for the quality studies' tests: one tiny model answering the demo
set's ``niah_single`` right or wrong, written as one result shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.rows import RESULT_SCHEMA, blank_row

TARGET = "1234567"
RIGHT, WRONG = f"The number is {TARGET}.", "The number is 7654321."


def needle_row(label: str, sample: int, right: bool, length: str, **fields: Any) -> dict[str, Any]:
    """The ``ok`` row of ``label`` on sample ``sample`` at ``length`` (1,000 context tokens),
    answered right or wrong; ``fields`` set the method's columns (kept tokens, params, ...)."""
    values: dict[str, Any] = blank_row()
    values.update(
        unit_id=f"{label}-{sample}", status="ok", dataset="babilong_demo", dataset_revision="r",
        sample_id=f"{length}/niah_single/{sample}", task="niah_single", length=length, question="Q?",
        target=TARGET, method=label, method_hash=label, model="tiny", temperature=0.0,
        max_new_tokens=128, seed=0, context_tokens=1000, raw_output=RIGHT if right else WRONG, **fields,
    )  # fmt: skip
    return values


def write_shard(directory: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as ``<directory>/results/part-x-00000.parquet``."""
    (directory / "results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), directory / "results" / "part-x-00000.parquet"
    )
