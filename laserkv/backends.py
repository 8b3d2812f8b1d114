"""Backends: how a layer's attention output and the question rows' attention mass are computed
during a block forward. Called from the attention function registered in ``hooks.py``.

``eager`` materialises the full probability matrix of the layer (the reference; memory
O(h * rows * keys)); its output equals standard eager attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from laserkv.scorers.exact import add_attention_mass, attention_probabilities


@dataclass
class ScoreRequest:
    """Per-forward request: add the attention mass of the last ``n_question_rows`` query rows
    to keys ``[window_start, window_start + totals.numel())`` in every layer.

    Attributes:
        backend: name of the backend that computes it.
        n_question_rows: the question rows, at the end of the forward's queries.
        window_start: first scored key slot of the forward cache.
        totals: (window,) fp32 running sum over layers, heads and question rows.
    """

    backend: str
    n_question_rows: int
    window_start: int
    totals: Tensor


def _bool_allowed(attention_mask: Tensor | None) -> Tensor | None:
    """transformers' 4-D mask (bool True = attend, or additive float) as a bool mask."""
    if attention_mask is None or attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def eager_attention_scored(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    request: ScoreRequest,
) -> Tensor:
    """Eager attention of one layer plus the question rows' attention mass.

    Args:
        query: (b, h, q, d); key, value: (b, kv_h, k, d); attention_mask: 4-D or None (causal).

    Returns:
        (b, q, h, d) attention output, as transformers' attention functions return it.
    """
    allowed = _bool_allowed(attention_mask)
    if allowed is not None:
        allowed = allowed[..., : key.shape[-2]]
    probabilities = attention_probabilities(query, key, scaling, allowed)  # (b, h, q, k) fp32
    question_rows = probabilities[..., -request.n_question_rows :, :]
    add_attention_mass(request.totals, question_rows, request.window_start)
    value_expanded = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    output = torch.matmul(probabilities.to(value.dtype), value_expanded)  # (b, h, q, d)
    return output.transpose(1, 2).contiguous()


ScoredAttention = Callable[[Tensor, Tensor, Tensor, Tensor | None, float, ScoreRequest], Tensor]

SCORED_ATTENTION: dict[str, ScoredAttention] = {"eager": eager_attention_scored}
