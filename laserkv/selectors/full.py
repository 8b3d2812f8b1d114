"""``none``: no eviction, the whole context stays in the cache (the full-cache baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.selectors.base import BlockEvidence, Selector


@dataclass(frozen=True)
class FullSelector(Selector):
    """Keeps everything; a method with it has no budget."""

    kind = "none"
    description = "no eviction (the full cache)"
    evicts = False

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        return subset
