"""Top-k selection as pure functions: (scores, budget) -> kept indices, sorted ascending, and the
hybrid mixing of two selectors at a ratio.

Ties go to the earlier position. Nothing here touches a model, a cache or a config.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

PartSelector = Callable[[Tensor, int], Tensor]
"""(subset: ascending candidate indices, n_keep) -> the kept members of ``subset``, ascending."""


def select_top(scores: Tensor, n_keep: int) -> Tensor:
    """Indices of the ``n_keep`` highest scores along the last dimension.

    Args:
        scores: (..., n) scores; higher is more important.
        n_keep: how many to keep; all ``n`` if ``n_keep >= n``; none if ``n_keep <= 0``.

    Returns:
        (..., min(n_keep, n)) int64 indices, sorted ascending; equal scores prefer the
        earlier index.
    """
    n = scores.shape[-1]
    n_kept = max(0, min(n_keep, n))
    # a stable descending sort keeps equal scores in index order, so ties go to earlier slots
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    return torch.sort(order[..., :n_kept], dim=-1).values


def recency_part(subset: Tensor, n_keep: int) -> Tensor:
    """The ``n_keep`` most recent members of ``subset`` (slot order is position order)."""
    return subset[max(0, subset.numel() - max(0, n_keep)) :]


def hybrid_select(
    primary: PartSelector,
    secondary: PartSelector,
    n_candidates: int,
    n_select: int,
    ratio: float,
    reallocate: bool,
) -> Tensor:
    """Primary takes ``floor(n_select * ratio)`` of all candidates, secondary the rest of the
    budget from the candidates the primary left.

    Args:
        reallocate: give the secondary the slots the primary left unused (it returned fewer than
            its share); False keeps them empty, as the original does.

    Returns:
        (<= n_select,) kept candidate indices, ascending, no duplicates.
    """
    everything = torch.arange(n_candidates)
    primary_share = math.floor(n_select * ratio)
    first = primary(everything, primary_share)
    remaining = torch.ones(n_candidates, dtype=torch.bool)
    remaining[first] = False
    secondary_share = n_select - (int(first.numel()) if reallocate else primary_share)
    second = secondary(everything[remaining], secondary_share)
    return torch.sort(torch.cat([first, second])).values
