"""The result row: one per work unit, declared column by column (``COLUMNS``), with a
``schema_version``; readers accept every earlier version (``upgrade_table``).

Columns (all nullable unless noted):

- identity: ``unit_id`` (not null), ``schema_version`` (not null), ``run_id``, ``attempt``,
  ``status`` (not null: ``ok``, ``error``, ``oom``, ``timeout``), ``error``, ``worker``;
- dataset: ``dataset``, ``dataset_revision``, ``sample_id``, ``task``, ``length``,
  ``question``, ``target``, and ``breakdown``: JSON of the sample fields its benchmark declares
  (``Benchmark.breakdown_fields``: LongBench v2's difficulty / domain / sub_domain, a needle's
  depth, ...), so a new breakdown needs no new column; ``difficulty``, ``domain`` and
  ``sub_domain`` are version 1-3's LongBench columns (empty in later rows);
- method: ``method`` (name), ``method_hash``, ``method_kind`` (the selector's kind),
  ``method_params`` (JSON of the flat parameters, ``MethodConfig.params()``; rows upgraded from
  version 1 hold every field of the then flat config, also those their selector ignored) and
  ``method_protocol`` (``query-aware``: the question's rows may score the context, or
  ``query-agnostic``);
  ``block_size_used`` (after an OOM retry with a smaller block);
- model and prompt: ``model``, ``prompt_hash`` (sha256 of the chat-templated prompt),
  ``context_tokens``, ``question_tokens``, ``temperature``, ``max_new_tokens``, ``seed``;
- compression: ``budget`` (B used; derived from r when the method gives a ratio),
  ``kept_tokens_final``, ``kept_tokens_max``, ``cache_length_per_block``, ``prefill_regime``
  and ``compression_rounds`` (how the context was prefilled and compressed: ``prefill_regime``);
- answer: ``raw_output`` (decoded, unstripped): the single source of every score
  (``evals.scoring.score_output``, applied when rows are read); ``prediction`` and ``correct``
  are what versions 1-3 stored at run time (empty in later rows, never read);
- cost: ``seconds_forward``, ``seconds_score``, ``seconds_select``, ``seconds_gather``,
  ``seconds_decode``, ``seconds_total``, ``peak_memory_bytes``;
- diagnostics: ``diagnostics``, JSON of what the unit's answer tokens and (opt-in) attention
  recall say: which answer tokens the final cache kept, each needle's depth, the recall per layer
  (``cluster.diagnostics``); null where there is nothing to record.

Versions: 1 (the first release) stored one ``m_<field>`` column per field of the then flat
``MethodConfig`` instead of ``method_kind`` / ``method_params``; 2 added those two; 3 added
``method_protocol`` (derived when older rows are read: their selectors were query-aware exactly
when they scored with the question); 4 added ``breakdown`` (derived from version 1-3's LongBench
columns) and stopped storing ``prediction`` / ``correct``; 5 added ``prefill_regime`` and
``compression_rounds`` (``prefill_regime``; derived for older rows from their method and block
lengths, ``unknown`` where a failed row lacks them); 6 added ``diagnostics`` (null in older
rows: nothing was recorded). This module imports neither torch nor laserkv's engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import pyarrow as pa

from evals.benchmarks import get_benchmark
from evals.sample import EvalSample
from laserkv.protocol import QUERY_AGNOSTIC, QUERY_AWARE

SCHEMA_VERSION = 6
LEGACY_BREAKDOWN = ("difficulty", "domain", "sub_domain")
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
    *_strings("breakdown", since=4),
    *_strings("prefill_regime", since=5),
    Column("compression_rounds", pa.int64(), since=5),
    *_strings("diagnostics", since=6),
)


class ResultRow(TypedDict):
    """One result row as Python values, column by column as ``COLUMNS`` declares them (a test
    checks that the two agree)."""

    unit_id: str
    schema_version: int
    run_id: str | None
    attempt: int | None
    status: str
    error: str | None
    worker: str | None
    dataset: str | None
    dataset_revision: str | None
    sample_id: str | None
    task: str | None
    length: str | None
    difficulty: str | None
    domain: str | None
    sub_domain: str | None
    question: str | None
    target: str | None
    method: str | None
    method_hash: str | None
    method_kind: str | None
    method_params: str | None
    method_protocol: str | None
    block_size_used: int | None
    model: str | None
    prompt_hash: str | None
    context_tokens: int | None
    question_tokens: int | None
    temperature: float | None
    max_new_tokens: int | None
    seed: int | None
    budget: int | None
    kept_tokens_final: int | None
    kept_tokens_max: int | None
    cache_length_per_block: list[int] | None
    raw_output: str | None
    prediction: str | None
    correct: bool | None
    seconds_forward: float | None
    seconds_score: float | None
    seconds_select: float | None
    seconds_gather: float | None
    seconds_decode: float | None
    seconds_total: float | None
    peak_memory_bytes: int | None
    breakdown: str | None
    prefill_regime: str | None
    compression_rounds: int | None
    diagnostics: str | None


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


def legacy_protocol(kind: str | None, params: Mapping[str, object]) -> str:
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


def _v3_breakdown_column(table: pa.Table) -> pa.Table:
    """Version 3 -> 4: ``breakdown`` from the LongBench columns a row has filled."""
    columns = table.select(LEGACY_BREAKDOWN).to_pylist()
    blobs = [
        json.dumps({name: value for name, value in row.items() if value is not None}, sort_keys=True)
        if any(value is not None for value in row.values())
        else None
        for row in columns
    ]
    return table.append_column("breakdown", pa.array(blobs, pa.string()))


UNCOMPRESSED = "uncompressed"
ONE_SHOT = "one-shot"
ONE_SHOT_FIRST_UNCOMPRESSED = "one-shot, first token uncompressed"
BLOCKS = "blocks"
UNKNOWN = "unknown"
PREFILL_REGIMES = (UNCOMPRESSED, ONE_SHOT, ONE_SHOT_FIRST_UNCOMPRESSED, BLOCKS, UNKNOWN)


def prefill_regime(
    kind: str | None,
    params: Mapping[str, object],
    block_size: int | None,
    context_tokens: int | None,
    cache_length_per_block: Sequence[int] | None,
) -> tuple[str, int | None]:
    """How a unit's context was prefilled and compressed, and in how many compression rounds:

    - ``uncompressed``: the full cache (0 rounds);
    - ``one-shot``: the whole context in one forward, compressed once (kvpress's presses, or a
      native method whose block holds the whole context); a query-aware kvpress press is
      ``one-shot, first token uncompressed``: it compresses context and question together, and
      the first answer token comes from that uncompressed forward;
    - ``blocks``: block by block over the compressed cache, one round per block (the rounds
      are the blocks that ran, ``cache_length_per_block``, else ceil(context / block size));
    - ``unknown``: a failed unit whose row lacks what this needs.
    """
    if kind == "none":
        return UNCOMPRESSED, 0
    if kind == "kvpress":
        return (ONE_SHOT_FIRST_UNCOMPRESSED if params.get("query_aware") else ONE_SHOT), 1
    if cache_length_per_block:
        rounds = len(cache_length_per_block)
    elif block_size and context_tokens:
        rounds = -(-context_tokens // block_size)
    else:
        return UNKNOWN, None
    return (ONE_SHOT if rounds == 1 else BLOCKS), rounds


def _v4_regime_columns(table: pa.Table) -> pa.Table:
    """Version 4 -> 5: ``prefill_regime`` and ``compression_rounds`` from what the row recorded."""
    columns = ("method_kind", "method_params", "block_size_used", "context_tokens", "cache_length_per_block")
    found = [
        prefill_regime(row["method_kind"], method_params(row), row["block_size_used"], row["context_tokens"],
                       row["cache_length_per_block"])
        for row in table.select(columns).to_pylist()
    ]  # fmt: skip
    table = table.append_column("prefill_regime", pa.array([regime for regime, _ in found], pa.string()))
    return table.append_column("compression_rounds", pa.array([rounds for _, rounds in found], pa.int64()))


def stored_version(table: pa.Table) -> int:
    """The schema version a stored table was written with (from the columns it has)."""
    if "schema_version" not in table.column_names:
        return 1
    if "diagnostics" in table.column_names:
        return 6
    if "prefill_regime" in table.column_names:
        return 5
    if "breakdown" in table.column_names:
        return 4
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
    if version <= 3:
        table = _v3_breakdown_column(table)
    if version <= 4:
        table = _v4_regime_columns(table)
    if version <= 5:
        table = table.append_column("diagnostics", pa.nulls(table.num_rows, pa.string()))
    return table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)


def method_params(row: Mapping[str, object]) -> dict[str, object]:
    """A row's flat method parameters (``MethodConfig.params()`` as stored)."""
    blob = row.get("method_params")
    return dict(json.loads(blob)) if isinstance(blob, str) and blob else {}


def blank_row() -> ResultRow:
    """A row of this schema version with every other column empty (None, until filled)."""
    return cast(ResultRow, {**dict.fromkeys(RESULT_SCHEMA.names), "schema_version": SCHEMA_VERSION})


def breakdown_of(sample: EvalSample) -> str | None:
    """The ``breakdown`` column of a sample: JSON of the fields its benchmark declares (None when
    it declares none)."""
    fields = get_benchmark(sample.dataset).breakdown_fields
    if not fields:
        return None
    return json.dumps({name: sample.fields.get(name) for name in fields}, sort_keys=True)


def base_row(unit: Any, run_id: str, attempt: int, worker: str) -> ResultRow:
    """The columns known before running: identity, dataset fields, method, model, generation."""
    sample, method = unit.sample, unit.method
    row = blank_row()
    row.update(
        {
            "unit_id": unit.unit_id,
            "run_id": run_id,
            "attempt": attempt,
            "worker": worker,
            "dataset": sample.dataset,
            "dataset_revision": unit.dataset_revision,
            "sample_id": sample.sample_id,
            "task": sample.task,
            "length": sample.length,
            "breakdown": breakdown_of(sample),
            "question": sample.question,
            "target": sample.target,
            "method": method.name,
            "method_hash": method.config_hash,
            "method_kind": method.kind,
            "method_params": json.dumps(method.params(), sort_keys=True),
            "method_protocol": method.selector.protocol,
            "model": unit.model,
            "temperature": float(sample.generation.temperature),
            "max_new_tokens": sample.generation.max_new_tokens,
            "seed": unit.seed,
        }
    )
    return row


def error_row(unit: Any, run_id: str, attempt: int, worker: str, status: str, error: str) -> ResultRow:
    """A row recording a unit that produced no answer."""
    row = base_row(unit, run_id, attempt, worker)
    row.update({"status": status, "error": error})
    return row
