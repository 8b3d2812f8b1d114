"""Per-call statistics: realised cache lengths, peak device memory, seconds per phase."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

PHASES = ("forward", "score", "select", "gather", "decode")


@dataclass
class CallStats:
    """What one engine call did.

    Attributes:
        context_tokens: T, the context length in tokens.
        question_tokens: q, the chat-templated question length.
        budget: the budget B this sample ran with (derived from ``compression_ratio`` when the
            method gives a ratio); under ``budget_rule="exact"`` the target, the exact number of
            tokens the final cache holds (B or ``floor(r T)``); None for the full cache.
        compression_ratio: the method's ratio r, or None when it gives B directly.
        cache_length_per_block: kept tokens (state + held tail) after each block.
        compression_rounds: how many times the cache was compressed: the block engine's blocks
            whose step dropped context tokens (a selection, or candidates dropped whole); a
            kvpress press's one compression of the whole context (0 when it kept everything).
        one_shot: the whole context was prefilled in one forward (the block engine with
            ``block_size >= T``; every kvpress press); False for an empty context.
        final_cache_length: tokens the question and the answer were decoded over.
        generated_tokens: answer length in tokens (EOS excluded).
        peak_memory_bytes: peak allocated device memory during the call (CUDA), else None.
        seconds: wall seconds per phase (see ``PHASES``); the eager backend's score
            computation happens inside the attention, so it is counted in ``forward``.
    """

    context_tokens: int = 0
    question_tokens: int = 0
    budget: int | None = None
    compression_ratio: float | None = None
    cache_length_per_block: list[int] = field(default_factory=list)
    compression_rounds: int = 0
    one_shot: bool = False
    final_cache_length: int = 0
    generated_tokens: int = 0
    peak_memory_bytes: int | None = None
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @property
    def max_cache_length(self) -> int:
        """The largest realised cache length over all blocks and the final cache."""
        return max([*self.cache_length_per_block, self.final_cache_length])


class PhaseTimer:
    """Adds wall time to ``stats.seconds[phase]``; synchronises CUDA so GPU work is counted."""

    def __init__(self, stats: CallStats, device: torch.device) -> None:
        self.stats = stats
        self.sync = device.type == "cuda"
        self.device = device

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name``."""
        if self.sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                torch.cuda.synchronize(self.device)
            self.stats.seconds[name] += time.perf_counter() - start


@contextmanager
def track_peak_memory(stats: CallStats, device: torch.device) -> Iterator[None]:
    """Record the peak allocated CUDA memory of the enclosed block (None elsewhere)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        stats.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
