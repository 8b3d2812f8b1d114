"""``EvalWorker``: loads the model and tokenizer once, then runs many work units and returns
plain row dicts. The driver wraps it in a Ray actor (one GPU each, or CPU only)."""

from __future__ import annotations

import json
import os
import socket

import ray
import torch

from cluster.plan import WorkUnit
from cluster.rows import ResultRow, base_row, error_row, prefill_regime
from cluster.unit import run_unit
from laserkv import hooks, load_model_and_tokenizer
from laserkv.config import MethodConfig
from laserkv.methods import with_params


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA (or other accelerator) out-of-memory, however torch raised it."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class EvalWorker:
    """Runs work units on one loaded model.

    Args:
        model: local directory, HF id or packaged model name.
        device / dtype: passed to ``laserkv.load_model_and_tokenizer``.
        run_id: recorded in every row.
        attention_recall: each unit also records its attention recall (a full-cache forward).
    """

    def __init__(
        self, model: str, device: str | None, dtype: str | None, run_id: str, attention_recall: bool = False
    ) -> None:
        self.model_id = model
        self.run_id = run_id
        self.attention_recall = attention_recall
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.problem: str | None = None
        try:
            self.model, self.tokenizer = load_model_and_tokenizer(model, device=device, dtype=dtype)
        except Exception as error:  # reported by start_error(), so the driver names the cause
            self.problem = f"{type(error).__name__}: {error}"

    def start_error(self) -> str | None:
        """Why this worker cannot run units (its model did not load), or None when it can."""
        return self.problem

    def engine_path(self) -> dict[str, object]:
        """This worker's host and process, and the engine path its model takes
        (``laserkv.hooks.engine_path``: block kernel, fused modules)."""
        path: dict[str, object] = {"worker": self.name}
        if self.problem is None:
            path.update(hooks.engine_path(self.model))
        return path

    def pid(self) -> int:
        """This worker's process id (fault-injection tests kill it)."""
        return os.getpid()

    def run(self, unit: WorkUnit, attempt: int = 1) -> ResultRow:
        """One unit -> one row. Out of memory is retried once with half the block size, then
        recorded as an ``oom`` row; any other exception becomes an ``error`` row."""
        if self.problem is not None:  # a replacement whose model did not load: die, so the
            ray.actor.exit_actor()  # dispatcher re-queues the unit (with backoff, up to max_retries)
        method = unit.method
        for try_index in range(2):
            try:
                return self.answer(unit, method, attempt)
            except Exception as error:  # every failure becomes a row; the run goes on
                if is_out_of_memory(error) and try_index == 0 and method.engine.block_size > 1:
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    method = with_params(method, block_size=max(1, method.engine.block_size // 2))
                    continue
                status = "oom" if is_out_of_memory(error) else "error"
                row = error_row(
                    unit, self.run_id, attempt, self.name, status, f"{type(error).__name__}: {error}"
                )
                row["block_size_used"] = method.engine.block_size
                return row
        raise AssertionError("unreachable: the loop returns on its second try")

    def answer(self, unit: WorkUnit, method: MethodConfig, attempt: int) -> ResultRow:
        """Run the unit (``cluster.unit.run_unit``) and build its row."""
        outcome = run_unit(self.model, self.tokenizer, unit.sample, method, unit.seed, self.attention_recall)
        result, stats = outcome.result, outcome.result.stats
        row = base_row(unit, self.run_id, attempt, self.name)
        row.update(
            {
                "status": "ok",
                "block_size_used": method.engine.block_size,
                "prompt_hash": outcome.prompt_hash,
                "context_tokens": stats.context_tokens,
                "question_tokens": stats.question_tokens,
                "budget": stats.budget,
                "kept_tokens_final": stats.final_cache_length,
                "kept_tokens_max": stats.max_cache_length,
                "cache_length_per_block": list(stats.cache_length_per_block),
                "raw_output": result.raw_text,
                "peak_memory_bytes": stats.peak_memory_bytes,
                "seconds_total": outcome.seconds,
                "seconds_forward": stats.seconds["forward"],
                "seconds_score": stats.seconds["score"],
                "seconds_select": stats.seconds["select"],
                "seconds_gather": stats.seconds["gather"],
                "seconds_decode": stats.seconds["decode"],
                "diagnostics": None if outcome.diagnostics is None else json.dumps(outcome.diagnostics),
            }
        )
        row["prefill_regime"], row["compression_rounds"] = prefill_regime(
            method.kind, method.params(), method.engine.block_size, stats.context_tokens,
            list(stats.cache_length_per_block),
        )  # fmt: skip
        return row
