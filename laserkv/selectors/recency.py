"""``recency``: the most recent candidates (StreamingLLM's rule for the global part)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.selectors.base import BlockEvidence, Selector
from laserkv.topk import recency_part


@dataclass(frozen=True)
class RecencySelector(Selector):
    """Keeps the latest candidates; needs no scores, so blocks are forwarded without scoring rows."""

    kind = "recency"
    description = "the most recent candidates"
    source = "StreamingLLM, Xiao et al. 2024 (arXiv:2309.17453)"

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        return recency_part(subset, n_keep)
