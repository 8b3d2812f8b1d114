"""Test-only workers for fault injection (shipped to Ray actors by value)."""

from __future__ import annotations

import time
from typing import Any

import torch

from cluster.worker import EvalWorker


class FaultyWorker(EvalWorker):
    """Raises for the test-only methods ``oom_probe`` (CUDA OOM on every try) and
    ``error_probe`` (a plain bug), hangs for ``slow_probe``; runs every other method normally."""

    def answer(self, unit: Any, method: Any, attempt: int) -> dict[str, Any]:
        if unit.method.name == "oom_probe":
            raise torch.OutOfMemoryError(f"CUDA out of memory (test, block {method.engine.block_size})")
        if unit.method.name == "error_probe":
            raise RuntimeError("a bug in the unit")
        if unit.method.name == "slow_probe":
            time.sleep(120)
        return super().answer(unit, method, attempt)
