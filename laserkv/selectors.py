"""Selection as pure functions: (scores, budget) -> kept indices, sorted ascending.

Ties go to the earlier position. Nothing here touches a model, a cache or a config.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
