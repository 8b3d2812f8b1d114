"""Evidence of one block forward for the selector: what its declared needs asked for, cut out of
the forward's KV and score buffer. Tensor code: no model, no transformers."""

from __future__ import annotations

import torch
from torch import Tensor

from laserkv.backends import ScoreRequest
from laserkv.selectors import BlockEvidence, ForwardNeeds
from laserkv.state import CompressedKV


def head_mean_keys(layer_keys: Tensor, slots: Tensor) -> Tensor:
    """(1, kv_heads, n, d) keys of one layer at ``slots`` -> (len(slots), d) fp32 head means."""
    return layer_keys[0, :, slots.to(layer_keys.device)].float().mean(0)


def block_evidence(
    needs: ForwardNeeds,
    step: CompressedKV,
    candidate_slots: Tensor,
    n_scoring_rows: int,
    request: ScoreRequest | None,
    cache_shape: tuple[int, int],
    rows_end: int = 0,
) -> BlockEvidence:
    """Collect what ``needs`` asks for from one block forward.

    Args:
        step: the KV of every slot of the forward (prefix, block, question if appended); the
            scoring rows are its last ``n_scoring_rows`` slots.
        candidate_slots: (n,) slots of the candidates.
        request: the forward's score request (its exact attention mass), when ``needs.attention``.
        cache_shape: (layers, kv_heads) of the cache.
        rows_end: the context position after the block (how far the rows reached).
    """
    window_mass = offsets = query_keys = candidate_keys = None
    if needs.attention is not None:
        assert request is not None, "the engine sends a score request when attention is needed"
        window_mass, offsets = request.totals, candidate_slots - request.window_start
        if needs.carry_scores:
            assert step.scores is not None, "the engine adds the carried mass to the step"
            window_mass = step.scores
    if needs.last_layer_keys:
        last_layer = step.keys[-1]
        query_slots = torch.arange(step.length - n_scoring_rows, step.length)
        query_keys = head_mean_keys(last_layer, query_slots)
        candidate_keys = head_mean_keys(last_layer, candidate_slots)
    return BlockEvidence(
        int(candidate_slots.numel()),
        cache_shape,
        window_mass,
        offsets,
        query_keys,
        candidate_keys,
        step.positions[..., candidate_slots],
        rows_end,
    )
