"""The result row: one per work unit, with a fixed, documented Parquet schema.

Columns (all nullable unless noted):

- identity: ``unit_id`` (not null), ``run_id``, ``attempt``, ``status`` (not null: ``ok``,
  ``error``, ``oom``, ``timeout``), ``error``, ``worker``;
- dataset: ``dataset``, ``dataset_revision``, ``sample_id``, ``task``, ``length``,
  ``difficulty``, ``domain``, ``sub_domain``, ``question``, ``target``;
- method: ``method`` (name), ``method_hash`` and one ``m_<field>`` column per ``MethodConfig``
  field (``m_budget``, ``m_compression_ratio``, ``m_lsh_seed``, ...); ``block_size_used`` (after
  an OOM retry with a smaller block);
- model and prompt: ``model``, ``prompt_hash`` (sha256 of the chat-templated prompt),
  ``context_tokens``, ``question_tokens``, ``temperature``, ``max_new_tokens``, ``seed``;
- compression: ``budget`` (B used; derived from r when the method gives a ratio),
  ``kept_tokens_final``, ``kept_tokens_max``, ``cache_length_per_block``;
- answer: ``raw_output`` (decoded, unstripped), ``prediction`` (the official parse),
  ``correct``;
- cost: ``seconds_forward``, ``seconds_score``, ``seconds_select``, ``seconds_gather``,
  ``seconds_decode``, ``seconds_total``, ``peak_memory_bytes``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

from laserkv.config import MethodConfig

_ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "int | None": pa.int64(),
    "float": pa.float64(),
    "float | None": pa.float64(),
    "bool": pa.bool_(),
}
METHOD_COLUMNS = tuple(f"m_{field.name}" for field in dataclasses.fields(MethodConfig))
PHASES = ("forward", "score", "select", "gather", "decode")


def _method_fields() -> list[pa.Field]:
    return [
        pa.field(f"m_{field.name}", _ARROW_TYPES[str(field.type)])
        for field in dataclasses.fields(MethodConfig)
    ]


RESULT_SCHEMA = pa.schema(
    [
        pa.field("unit_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("attempt", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("worker", pa.string()),
        *[
            pa.field(name, pa.string())
            for name in (
                "dataset",
                "dataset_revision",
                "sample_id",
                "task",
                "length",
                "difficulty",
                "domain",
                "sub_domain",
                "question",
                "target",
                "method",
                "method_hash",
            )
        ],
        *_method_fields(),
        pa.field("block_size_used", pa.int64()),
        pa.field("model", pa.string()),
        pa.field("prompt_hash", pa.string()),
        pa.field("context_tokens", pa.int64()),
        pa.field("question_tokens", pa.int64()),
        pa.field("temperature", pa.float64()),
        pa.field("max_new_tokens", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("budget", pa.int64()),
        pa.field("kept_tokens_final", pa.int64()),
        pa.field("kept_tokens_max", pa.int64()),
        pa.field("cache_length_per_block", pa.list_(pa.int64())),
        pa.field("raw_output", pa.string()),
        pa.field("prediction", pa.string()),
        pa.field("correct", pa.bool_()),
        *[pa.field(f"seconds_{phase}", pa.float64()) for phase in PHASES],
        pa.field("seconds_total", pa.float64()),
        pa.field("peak_memory_bytes", pa.int64()),
    ]
)
"""The schema every result shard has (checked when shards are read)."""


def base_row(unit: Any, run_id: str, attempt: int, worker: str) -> dict[str, Any]:
    """The columns known before running: identity, dataset fields, method, model, generation."""
    sample, method = unit.sample, unit.method
    row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA.names)
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
        model=unit.model,
        temperature=float(sample.generation.temperature),
        max_new_tokens=sample.generation.max_new_tokens,
        seed=unit.seed,
    )
    row.update({f"m_{name}": value for name, value in method.to_dict().items()})
    return row


def error_row(unit: Any, run_id: str, attempt: int, worker: str, status: str, error: str) -> dict[str, Any]:
    """A row recording a unit that produced no answer."""
    return {**base_row(unit, run_id, attempt, worker), "status": status, "error": error}
