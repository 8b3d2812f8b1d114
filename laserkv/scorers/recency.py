"""Recency scores (StreamingLLM's window): later slots score higher."""

from __future__ import annotations

from torch import Tensor


def candidate_recency(block_scores: Tensor | None, candidate_slots: Tensor) -> Tensor:
    """Score each candidate by its slot index (slot order is position order).

    Args:
        block_scores: unused (recency needs no attention).
        candidate_slots: (n_candidates,) int64 slot indices.
    """
    return candidate_slots.float()
