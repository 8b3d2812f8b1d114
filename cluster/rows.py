"""The result row: one per work unit, declared column by column (``COLUMNS``), with a
``schema_version``; readers accept every earlier version (``upgrade_table``).

Columns (all nullable unless noted):

- identity: ``unit_id`` (not null), ``schema_version`` (not null), ``run_id``, ``attempt``,
  ``status`` (not null: ``ok``, ``error``, ``oom``, ``timeout``), ``error``, ``worker``;
- dataset: ``dataset``, ``dataset_revision``, ``sample_id``, ``task``, ``length``,
  ``difficulty``, ``domain``, ``sub_domain``, ``question``, ``target``;
- method: ``method`` (name), ``method_hash``, ``method_kind`` (the selector's kind),
  ``method_params`` (JSON of the flat parameters, ``MethodConfig.params()``; rows upgraded from
  version 1 hold every field of the then flat config, also those their selector ignored) and
  ``method_protocol`` (``query-aware``: the question's rows may score the context, or
  ``query-agnostic``);
  ``block_size_used`` (after an OOM retry with a smaller block);
- model and prompt: ``model``, ``prompt_hash`` (sha256 of the chat-templated prompt),
  ``context_tokens``, ``question_tokens``, ``temperature``, ``max_new_tokens``, ``seed``;
- compression: ``budget`` (B used; derived from r when the method gives a ratio),
  ``kept_tokens_final``, ``kept_tokens_max``, ``cache_length_per_block``;
- answer: ``raw_output`` (decoded, unstripped), ``prediction`` (the official parse),
  ``correct``;
- cost: ``seconds_forward``, ``seconds_score``, ``seconds_select``, ``seconds_gather``,
  ``seconds_decode``, ``seconds_total``, ``peak_memory_bytes``.

Versions: 1 (the first release) stored one ``m_<field>`` column per field of the then flat
``MethodConfig`` instead of ``method_kind`` / ``method_params``; 2 added those two; 3 added
``method_protocol`` (derived when older rows are read: their selectors were query-aware exactly
when they scored with the question). This module imports neither torch nor laserkv's engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from laserkv.protocol import QUERY_AGNOSTIC, QUERY_AWARE

SCHEMA_VERSION = 3
UNSCORED_KINDS = ("recency", "none")
PHASES = ("forward", "score", "select", "gather", "decode")
V1_METHOD_PREFIX = "m_"


@dataclass(frozen=True)
class Column:
    """One declared result column: its Arrow type and the schema version that added it."""

    name: str
    type: pa.DataType
    nullable: bool = True
    since: int = 1


def _strings(*names: str, since: int = 1) -> tuple[Column, ...]:
    return tuple(Column(name, pa.string(), since=since) for name in names)


COLUMNS: tuple[Column, ...] = (
    Column("unit_id", pa.string(), nullable=False),
    Column("schema_version", pa.int64(), nullable=False, since=2),
    Column("run_id", pa.string()),
    Column("attempt", pa.int64()),
    Column("status", pa.string(), nullable=False),
    *_strings("error", "worker", "dataset", "dataset_revision", "sample_id", "task", "length"),
    *_strings("difficulty", "domain", "sub_domain", "question", "target", "method", "method_hash"),
    *_strings("method_kind", "method_params", since=2),
    *_strings("method_protocol", since=3),
    Column("block_size_used", pa.int64()),
    *_strings("model", "prompt_hash"),
    *(Column(name, pa.int64()) for name in ("context_tokens", "question_tokens")),
    Column("temperature", pa.float64()),
    *(Column(name, pa.int64()) for name in ("max_new_tokens", "seed", "budget")),
    *(Column(name, pa.int64()) for name in ("kept_tokens_final", "kept_tokens_max")),
    Column("cache_length_per_block", pa.list_(pa.int64())),
    *_strings("raw_output", "prediction"),
    Column("correct", pa.bool_()),
    *(Column(f"seconds_{phase}", pa.float64()) for phase in (*PHASES, "total")),
    Column("peak_memory_bytes", pa.int64()),
)

RESULT_SCHEMA = pa.schema(
    [pa.field(column.name, column.type, nullable=column.nullable) for column in COLUMNS]
)
"""The schema every result table has once read (older shards are upgraded to it)."""


class SchemaError(ValueError):
    """A table lacks columns that every laserkv result shard of its version has."""


def _v1_method_columns(table: pa.Table) -> pa.Table:
    """Version 1 -> 2: ``method_kind`` from ``m_selector``, ``method_params`` from every
    ``m_<field>`` column but ``m_name`` (the label, already in ``method``)."""
    fields = [name for name in table.column_names if name.startswith(V1_METHOD_PREFIX) and name != "m_name"]
    if "m_selector" not in fields:
        raise SchemaError("m_selector (a version 1 shard's method columns)")
    per_row = table.select(fields).to_pylist()
    params = [
        json.dumps({name[len(V1_METHOD_PREFIX) :]: value for name, value in row.items()}, sort_keys=True)
        for row in per_row
    ]
    table = table.append_column("method_params", pa.array(params, pa.string()))
    return table.append_column("method_kind", table.column("m_selector").cast(pa.string()))


def legacy_protocol(kind: str | None, params: dict[str, Any]) -> str:
    """The protocol of a version 1 or 2 row: its selectors (exact, lsh, hybrid of those) scored
    with the question exactly when ``query_source`` was ``question``; recency and the full cache
    score nothing."""
    if kind in UNSCORED_KINDS or params.get("query_source", "question") != "question":
        return QUERY_AGNOSTIC
    return QUERY_AWARE


def _v2_protocol_column(table: pa.Table) -> pa.Table:
    """Version 2 -> 3: ``method_protocol`` from ``method_kind`` and ``method_params``."""
    kinds = table.column("method_kind").to_pylist()
    params = table.column("method_params").to_pylist()
    protocols = [
        legacy_protocol(kind, json.loads(blob) if blob else {})
        for kind, blob in zip(kinds, params, strict=True)
    ]
    return table.append_column("method_protocol", pa.array(protocols, pa.string()))


def stored_version(table: pa.Table) -> int:
    """The schema version a stored table was written with (from the columns it has)."""
    if "schema_version" not in table.column_names:
        return 1
    return 3 if "method_protocol" in table.column_names else 2


def upgrade_table(table: pa.Table) -> pa.Table:
    """Any stored version's rows in ``RESULT_SCHEMA`` (columns of later versions are kept out).

    Raises:
        SchemaError: a column its version must have is missing (the message names it).
    """
    version = stored_version(table)
    missing = [
        column.name for column in COLUMNS if column.since <= version and column.name not in table.column_names
    ]
    if missing:
        raise SchemaError(", ".join(missing[:5]) + ("..." if len(missing) > 5 else ""))
    if version == 1:
        table = _v1_method_columns(table)
        table = table.append_column("schema_version", pa.array([1] * table.num_rows, pa.int64()))
    if version <= 2:
        table = _v2_protocol_column(table)
    return table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)


def method_params(row: dict[str, Any]) -> dict[str, Any]:
    """A row's flat method parameters (``MethodConfig.params()`` as stored)."""
    return dict(json.loads(row["method_params"])) if row.get("method_params") else {}


def blank_row() -> dict[str, Any]:
    """A row of this schema version with every other column empty."""
    return {**dict.fromkeys(RESULT_SCHEMA.names), "schema_version": SCHEMA_VERSION}


def base_row(unit: Any, run_id: str, attempt: int, worker: str) -> dict[str, Any]:
    """The columns known before running: identity, dataset fields, method, model, generation."""
    sample, method = unit.sample, unit.method
    row = blank_row()
    row.update(
        unit_id=unit.unit_id,
        run_id=run_id,
        attempt=attempt,
        worker=worker,
        dataset=sample.dataset,
        dataset_revision=unit.dataset_revision,
        sample_id=sample.sample_id,
        task=sample.task,
        length=sample.length,
        difficulty=sample.fields.get("difficulty"),
        domain=sample.fields.get("domain"),
        sub_domain=sample.fields.get("sub_domain"),
        question=sample.fields.get("question"),
        target=sample.target,
        method=method.name,
        method_hash=method.config_hash,
        method_kind=method.kind,
        method_params=json.dumps(method.params(), sort_keys=True),
        method_protocol=method.selector.protocol,
        model=unit.model,
        temperature=float(sample.generation.temperature),
        max_new_tokens=sample.generation.max_new_tokens,
        seed=unit.seed,
    )
    return row


def error_row(unit: Any, run_id: str, attempt: int, worker: str, status: str, error: str) -> dict[str, Any]:
    """A row recording a unit that produced no answer."""
    return {**base_row(unit, run_id, attempt, worker), "status": status, "error": error}
