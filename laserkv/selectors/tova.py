"""``tova``: Token Omission Via Attention, the candidates the last token attends to most, one
kept set per layer (the attention averaged over all its heads).

Source: Oren et al., "Transformers are Multi-State RNNs" (EMNLP 2024, arXiv:2401.06104);
reference code github.com/schwartz-lab-NLP/TOVA (``src/tova_cache.py``). As kvpress's
``TOVAPress`` does (kvpress 0.5.5, ``presses/tova_press.py``), the scoring token itself is always
kept: the query-agnostic registration keeps the block's last token as its local window.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.checks import check_choice
from laserkv.scorers.exact import candidate_attention_mass
from laserkv.selectors.base import BlockEvidence, ForwardNeeds, Selector
from laserkv.topk import select_top


@dataclass(frozen=True)
class TovaSelector(Selector):
    """Top-k of the last token's attention, heads averaged, per layer.

    Attributes:
        query_source: ``question``: the last token of the prompt (the question's last token);
            ``window``: the block's last token (query-agnostic).
    """

    kind = "tova"
    description = "TOVA: the last token's attention, heads averaged, per layer"
    source = "Oren et al. 2024 (arXiv:2401.06104); schwartz-lab-NLP/TOVA"

    query_source: str = "question"

    def __post_init__(self) -> None:
        check_choice("query_source", self.query_source, ("question", "window"))

    def needs(self) -> ForwardNeeds:
        return ForwardNeeds(self.query_source, 1, attention="layer", question_rows=1)

    @property
    def selects_one_set(self) -> bool:
        return False

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        window_mass, offsets = evidence.attention_mass()  # (layers, 1, w): summed over all heads
        kept = select_top(candidate_attention_mass(window_mass, offsets, 1), n_select).cpu()
        n_layers, n_kv_heads = evidence.cache_shape
        return kept.expand(n_layers, n_kv_heads, kept.shape[-1])

    def summary(self) -> str:
        row = "question's last token" if self.query_source == "question" else "block's last token"
        return f"tova {row}"
