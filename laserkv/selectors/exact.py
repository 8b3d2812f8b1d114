"""``exact``: the top attention mass the scoring rows give each candidate (method.md section 3),
one kept set for every layer and head (``token``) or one per layer / per layer and KV head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.checks import check_choice, check_odd_kernel
from laserkv.scorers.exact import candidate_attention_mass
from laserkv.selectors.base import GRANULARITIES, BlockEvidence, ForwardNeeds, Selector, rows_params
from laserkv.topk import select_top


@dataclass(frozen=True)
class ExactSelector(Selector):
    """Top-k exact attention mass.

    Attributes:
        query_source: ``question`` (query-aware) or ``window`` (the block's last tokens).
        observation_window: scoring rows when ``query_source="window"``.
        granularity: ``token``, ``layer`` or ``head`` (see ``GRANULARITIES``).
        score_pooling: odd kernel of an average pooling of the scores over neighbouring slots
            (SnapKV's smoothing); 1 = none.
    """

    kind = "exact"
    description = "top-k exact attention mass of the scoring rows"
    source = "LASER-KV (spec/method.md section 3)"

    query_source: str = "question"
    observation_window: int = 64
    granularity: str = "token"
    score_pooling: int = 1

    def __post_init__(self) -> None:
        rows_params(self.query_source, self.observation_window)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_odd_kernel("score_pooling", self.score_pooling)

    def needs(self) -> ForwardNeeds:
        return ForwardNeeds(self.query_source, self.observation_window, attention=self.granularity)

    @property
    def selects_one_set(self) -> bool:
        return self.granularity == "token"

    def scores(self, evidence: BlockEvidence) -> Tensor:
        """(layers or 1, kv_heads or 1, n) fp32 candidate scores, pooled if asked."""
        window_mass, offsets = evidence.attention_mass()
        return candidate_attention_mass(window_mass, offsets, self.score_pooling)

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        scores = self.scores(evidence).reshape(-1)
        return subset[select_top(scores[subset.to(scores.device)], n_keep).cpu()]

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        kept = select_top(self.scores(evidence), n_select).cpu()  # (layers or 1, kv_heads or 1, k)
        if kept.shape[0] == 1 and kept.shape[1] == 1:
            return kept.reshape(-1)
        n_layers, n_kv_heads = evidence.cache_shape
        return kept.expand(n_layers, n_kv_heads, kept.shape[-1])
