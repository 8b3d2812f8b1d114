"""Backends: how a layer's attention output and the scoring rows' attention mass are computed
during a block forward. Called from the attention function registered in ``hooks.py``.

- ``eager`` materialises the full probability matrix of the layer (the reference; memory
  O(h * rows * keys)); its output equals standard eager attention.
- ``flash``: the output and every row's log-sum-exp come from one fast kernel call
  (``kernels.block_attention``, run by ``hooks.py``); the scoring rows' mass is one pass of
  their queries over the scored window's keys, normalised by that log-sum-exp, so it equals
  eager's: one Triton kernel on CUDA (``scorers.window_mass_triton``: no logits matrix written),
  the torch reference ``scorers.exact.window_row_mass`` elsewhere (memory O(h * q * chunk)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from laserkv.errors import LaserKVError
from laserkv.scorers import window_mass_triton
from laserkv.scorers.exact import (
    add_attention_mass,
    add_head_mass,
    attention_probabilities,
    streamed_row_mass,
    window_row_mass,
)


@dataclass
class ScoreRequest:
    """Per-forward request: add the attention mass of the last ``n_scoring_rows`` query rows
    to keys ``[window_start, window_start + w)`` in every layer.

    Attributes:
        backend: name of the backend that computes it.
        n_scoring_rows: the scoring rows (question or observation window), last in the forward.
        window_start: first scored key slot of the forward cache.
        totals: (layers or 1, kv_heads or 1, w) fp32 running sums over scoring rows (and over
            layers / heads where that dimension is 1); see ``scorers.exact.add_attention_mass``.
        normalise_span: None = each row normalised over all its keys (eager semantics); else the
            key slots ``[start, stop)`` the original flash scorer normalised over (flash backend).
        reported_layers: the layers whose scores were added (filled during the forward).
    """

    backend: str
    n_scoring_rows: int
    window_start: int
    totals: Tensor
    normalise_span: tuple[int, int] | None = None
    reported_layers: set[int] = field(default_factory=set)

    def check_reported(self, n_layers: int) -> None:
        """Every layer added its scores exactly once during the forward.

        Raises:
            ScoreChannelError: some layer never saw the request (e.g. a transformers version that
                no longer passes attention kwargs through to the attention function).
        """
        missing = sorted(set(range(n_layers)) - self.reported_layers)
        if missing:
            raise ScoreChannelError(
                f"attention scores were requested from {n_layers} layers but layers {missing[:8]} "
                "never reported: the laserkv attention function did not receive the score request "
                "(does this transformers version still pass attention kwargs to attention functions?)"
            )


class ScoreChannelError(LaserKVError):
    """A forward asked for scores and some layer did not report them."""


def eager_attention_scored(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    scaling: float,
    request: ScoreRequest,
    layer_index: int,
) -> Tensor:
    """Eager attention of one layer (bottom-right causal, the engine's mask) plus the scoring
    rows' attention mass.

    Args:
        query: (b, h, q, d); key, value: (b, kv_h, k, d).
        layer_index: index of this layer (where its mass goes in ``request.totals``).

    Returns:
        (b, q, h, d) attention output, as transformers' attention functions return it.
    """
    probabilities = attention_probabilities(query, key, scaling, None)  # (b, h, q, k) fp32
    scoring_rows = probabilities[..., -request.n_scoring_rows :, :]
    add_attention_mass(request.totals, scoring_rows, request.window_start, layer_index)
    value_expanded = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    output = torch.matmul(probabilities.to(value.dtype), value_expanded)  # (b, h, q, d)
    return output.transpose(1, 2).contiguous()


def flash_row_scores(
    query: Tensor,
    key: Tensor,
    lse: Tensor,
    scaling: float,
    request: ScoreRequest,
    layer_index: int,
) -> None:
    """Add the scoring rows' attention mass of one layer to ``request.totals`` from the attention
    kernel's log-sum-exp: one pass over the scored window's keys (bottom-right causal).

    With ``request.normalise_span`` (the original flash scorer's normalisation over its window
    only) the rows' log-sum-exp over that span is streamed instead.

    Args:
        query: (1, h, q, d); key: (1, kv_h, k, d); lse: (h, q) fp32, the kernel's log-sum-exp of
            every row over all the keys it sees.
    """
    rows = request.n_scoring_rows
    assert query.shape[0] == 1, "the engine runs one sequence at a time"
    window = request.totals.shape[-1]
    if request.normalise_span is not None:
        mass = streamed_row_mass(
            query[..., -rows:, :], key, scaling, None, request.window_start, window, request.normalise_span
        )
    elif window_mass_triton.available(query):
        mass = window_mass_triton.window_mass(
            query[..., -rows:, :], key, lse[:, -rows:], scaling, request.window_start, window, block_m=32
        )  # (kv_heads, window): already summed within each group
    else:
        mass = window_row_mass(
            query[..., -rows:, :], key, lse[:, -rows:], scaling, request.window_start, window
        )
    add_head_mass(request.totals, mass, layer_index)


ScoredAttention = Callable[[Tensor, Tensor, Tensor, float, ScoreRequest, int], Tensor]
RowScores = Callable[[Tensor, Tensor, Tensor, float, ScoreRequest, int], None]

SCORED_ATTENTION: dict[str, ScoredAttention] = {"eager": eager_attention_scored}
"""Backends that compute the attention output and the scores together."""
ROW_SCORES: dict[str, RowScores] = {"flash": flash_row_scores}
"""Backends that score on the side of a fast attention kernel."""
