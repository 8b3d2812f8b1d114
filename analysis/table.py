"""The one scored table: result directories read as one typed pandas frame, one row per unit,
scored once from its raw output (``evals.scoring.score_output``), with its configuration's label
and its benchmark's breakdown fields as columns. Every view (``analysis.views``) reads this.

A unit found in several directories (or written twice) counts once: its ``ok`` row if there is
one, else the last row read. Rows are keyed by (unit id, method label): the unit id hashes a
method's settings, not its name, so two labels with the same settings stay two configurations.
A failed unit (error, OOM, timeout) is scored as wrong and counted (``evals.scoring.FAILED``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cluster.rows import BLOCKS, LEGACY_BREAKDOWN, RESULT_SCHEMA, UNKNOWN
from cluster.writer import ResultsError, read_shard, shard_paths
from evals.scoring import FAILED, score_output

BASELINE = "full"
SCORED_COLUMNS = ("prediction", "correct", "score", "counts")
"""What scoring adds to a row (``evals.benchmark.Scored``); the stored ``prediction`` / ``correct``
of rows written before schema 4 are replaced, never read."""
DIAGNOSTIC_COLUMNS = ("answer_kept", "answer_kept_class", "attention_recall")
"""What a row's ``diagnostics`` JSON (``cluster.diagnostics``) adds as columns: the share of the
answer's tokens the final cache kept, that share as a class (``ANSWER_KEPT_CLASSES``), and the
attention recall's mean over layers; missing (NaN / None) where the row recorded none."""
ANSWER_KEPT_CLASSES = ("all", "partial", "none")
"""``all``: every layer and head kept every answer token; ``none``: none kept any; else ``partial``."""
LABEL_COLUMNS = ("config", "protocol", "failed", "regime")
"""``config``: the configuration's label (the method name, ``#<hash>`` where one name ran with
several configs, `` @ <model>`` where several models are present); ``protocol``: the method's
(``method_protocol``); ``failed``: the unit produced no answer; ``regime``: its prefill regime as
comparisons match it (``blocks of 4096``, ``one-shot``, ...)."""


@dataclass(frozen=True)
class ScoredTable:
    """Scored result rows and what describes them.

    Attributes:
        frame: one row per unit: every result column (``cluster.rows``) but ``breakdown`` and the
            stored answer columns, the scored values (``SCORED_COLUMNS``), ``LABEL_COLUMNS``,
            ``DIAGNOSTIC_COLUMNS`` and one column per breakdown field.
        breakdown_fields: the breakdown fields present, in first-seen order.
        directories: where the rows came from.
    """

    frame: pd.DataFrame
    breakdown_fields: tuple[str, ...]
    directories: tuple[Path, ...]

    def where(self, frame: pd.DataFrame) -> ScoredTable:
        """The same table over a subset (or a derived frame) of its rows."""
        return ScoredTable(frame, self.breakdown_fields, self.directories)


REQUIRED_COLUMNS = ("unit_id", "status", "dataset", "task", "length", "method", "model")
"""What every row names (a worker writes them before it runs a unit); an ``ok`` row also has its
``target``, which it is scored against."""


def check_rows(path: Path, table: pa.Table) -> None:
    """A shard's rows name what every row names (``REQUIRED_COLUMNS``), and a breakdown and
    diagnostics are JSON objects.

    Raises:
        ResultsError: the first field missing or malformed, with the shard's path.
    """
    ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False)
    for name in (*REQUIRED_COLUMNS, "target"):
        column = table.column(name) if name != "target" else table.column(name).filter(ok)
        if column.null_count:
            rows = "ok rows" if name == "target" else "rows"
            raise ResultsError(
                f"{path}: {column.null_count} of {len(column)} {rows} have no {name!r} (null), which laserkv "
                f"writes in every one of its {rows}; move the shard out of the results dir"
            )
    for column in ("breakdown", "diagnostics"):
        for blob in table.column(column).drop_null().to_pylist():
            try:
                fields = json.loads(blob) if blob else {}
            except json.JSONDecodeError:
                fields = None
            if not isinstance(fields, dict):
                raise ResultsError(
                    f"{path}: a row's {column!r} is not a JSON object ({blob[:40]!r}); "
                    "move the shard out of the results dir"
                )


def read_checked_shard(path: Path) -> pa.Table:
    """One shard (``cluster.writer.read_shard``), its column types and rows checked (``check_rows``).

    Raises:
        ResultsError: not laserkv's shard, a column of another type or null where it may not be,
            or a row without a field every row has; the message names the shard and the column.
    """
    table = read_shard(path)
    check_rows(path, table)
    return table


def read_rows(directories: Sequence[Path]) -> pa.Table:
    """Every result shard of the directories as one Arrow table (``RESULT_SCHEMA``), each shard
    checked (``read_checked_shard``).

    Raises:
        ResultsError: none of them holds a result shard, or a shard is not laserkv's or holds a
            malformed row (the message names the shard).
    """
    tables = [read_checked_shard(path) for directory in directories for path in shard_paths(Path(directory))]
    table = pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()
    if table.num_rows == 0:
        names = ", ".join(str(directory) for directory in directories)
        verb = "holds" if len(directories) == 1 else "hold"
        raise ResultsError(f"{names} {verb} no result shards (results/*.parquet); run `laserkv eval` first")
    return table


def latest_units(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (unit id, method label): the last ``ok`` row if any, else the last row."""
    order = frame.assign(_ok=frame["status"].eq("ok"), _read=range(len(frame)))
    chosen = order.sort_values(["_ok", "_read"], kind="stable").drop_duplicates(
        ["unit_id", "method"], keep="last"
    )
    return chosen.sort_values("_read").drop(columns=["_ok", "_read"]).reset_index(drop=True)


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    """``SCORED_COLUMNS`` of every row, from its raw output (failed units: ``FAILED``)."""
    columns = ("status", "dataset", "target", "raw_output", "question", "task")
    values = [
        FAILED if status != "ok" else score_output(dataset, target, raw_output, question or "", task)
        for status, dataset, target, raw_output, question, task in zip(
            *(frame[column] for column in columns), strict=True
        )
    ]
    return pd.DataFrame(
        {
            "prediction": pd.Series([value.prediction for value in values], dtype=object),
            "correct": pd.Series([value.correct for value in values], dtype=bool),
            "score": pd.Series([value.score for value in values], dtype=float),
            "counts": pd.Series([value.counts for value in values], dtype=bool),
        },
        index=frame.index,
    )


def config_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's configuration label (see ``LABEL_COLUMNS``)."""
    labels = frame["method"].astype(str)
    hashes = frame.groupby("method")["method_hash"].transform("nunique")
    short = frame["method_hash"].fillna("").astype(str).str[:8]
    labels = labels.where(hashes <= 1, labels + " #" + short)
    if frame["model"].nunique(dropna=False) > 1:
        labels = labels + " @ " + frame["model"].astype(str)
    return labels


def regime_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's prefill regime as compared (``cluster.rows.prefill_regime``): ``blocks of
    <block size>`` for block-wise prefill, else the regime's name."""
    sizes = frame["block_size_used"].map(lambda size: "?" if pd.isna(size) else str(int(size)))
    blocks = frame["prefill_regime"].eq(BLOCKS)
    return frame["prefill_regime"].fillna(UNKNOWN).where(~blocks, "blocks of " + sizes)


def _breakdown(frame: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The ``breakdown`` JSON as one column per field (missing: None).

    Raises:
        ResultsError: a field is named like a result column.
    """
    parsed = [json.loads(blob) if isinstance(blob, str) and blob else {} for blob in frame["breakdown"]]
    fields = tuple(dict.fromkeys(name for values in parsed for name in values))
    reserved = (*SCORED_COLUMNS, *LABEL_COLUMNS, *DIAGNOSTIC_COLUMNS)
    clash = [name for name in fields if name in frame.columns or name in reserved]
    if clash:
        raise ResultsError(f"breakdown field {clash[0]!r} is named like a result column: rename it")
    columns = {name: pd.Series([values.get(name) for values in parsed], index=frame.index, dtype=object)
               for name in fields}  # fmt: skip
    return pd.DataFrame(columns, index=frame.index), fields


def diagnostics_of(blob: object) -> dict[str, Any]:
    """A row's ``diagnostics`` JSON as a dict (empty where it recorded none)."""
    return dict(json.loads(blob)) if isinstance(blob, str) and blob else {}


def kept_class(share: float | None) -> str | None:
    """``ANSWER_KEPT_CLASSES`` of an answer-kept share (None: not recorded), for rows that stored the
    share without its class (the class stored beside it is decided on exact counts)."""
    if share is None:
        return None
    return "all" if share >= 1.0 else "none" if share <= 0.0 else "partial"


def _diagnostics(frame: pd.DataFrame) -> pd.DataFrame:
    """``DIAGNOSTIC_COLUMNS`` from each row's ``diagnostics``."""
    parsed = [diagnostics_of(blob) for blob in frame["diagnostics"]]
    shares = [found.get("answer_kept") for found in parsed]
    classes = [found.get("answer_kept_class") or kept_class(found.get("answer_kept")) for found in parsed]
    recalls = [found.get("attention_recall_by_layer") for found in parsed]
    return pd.DataFrame(
        {
            "answer_kept": pd.Series(shares, index=frame.index, dtype=float),
            "answer_kept_class": pd.Series(classes, index=frame.index, dtype=object),
            "attention_recall": pd.Series(
                [sum(values) / len(values) if values else None for values in recalls],
                index=frame.index,
                dtype=float,
            ),
        },
        index=frame.index,
    )


def scored_frame(table: pa.Table, directories: Sequence[Path] = ()) -> ScoredTable:
    """Result rows (``RESULT_SCHEMA``) as the scored table."""
    frame = latest_units(table.to_pandas(types_mapper=None))
    frame = frame.drop(columns=["prediction", "correct", *LEGACY_BREAKDOWN])  # scored / in breakdown
    breakdown, fields = _breakdown(frame)
    frame = pd.concat(
        [frame.drop(columns=["breakdown"]), _scored(frame), _diagnostics(frame), breakdown], axis=1
    )
    frame["config"] = config_labels(frame)
    frame["protocol"] = frame["method_protocol"]
    frame["failed"] = frame["status"].ne("ok")
    frame["regime"] = regime_labels(frame)
    return ScoredTable(frame, fields, tuple(Path(directory) for directory in directories))


def scored_table(directories: Sequence[Path]) -> ScoredTable:
    """The scored table of one or more results directories (read only; nothing is written).

    Raises:
        ResultsError: no result shards, or a shard that is not laserkv's.
    """
    return scored_frame(read_rows(directories), directories)
