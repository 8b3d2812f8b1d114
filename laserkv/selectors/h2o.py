"""``h2o``: Heavy-Hitter Oracle, the candidates with the most accumulated attention, per KV head.

Source: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
Language Models" (NeurIPS 2023, arXiv:2306.14048); reference code github.com/FMInference/H2O
(``h2o_hf/utils_real_drop/modify_llama.py``: a token's score is the attention it received from
every query so far, summed; the cache keeps the heavy hitters plus a recent window of the same
size). Here every token of every block is a query, and a kept token carries its score into the
next block, so with one block it is H2O's prefill selection. ``average_by_row_count`` divides by
the number of queries that saw the token instead, as kvpress's ``ObservedAttentionPress`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.checks import check_bool
from laserkv.selectors.base import BlockEvidence, ForwardNeeds, Selector
from laserkv.topk import select_top


@dataclass(frozen=True)
class H2OSelector(Selector):
    """Top-k accumulated attention (all context tokens as queries), per layer and KV head.

    Attributes:
        average_by_row_count: divide each score by the number of queries that attended to the
            token (kvpress's observed attention); False = H2O's sum.
    """

    kind = "h2o"
    description = "H2O: accumulated attention heavy hitters, per KV head"
    source = "Zhang et al. 2023 (arXiv:2306.14048); FMInference/H2O h2o_hf"

    average_by_row_count: bool = False

    def __post_init__(self) -> None:
        check_bool("average_by_row_count", self.average_by_row_count)

    def needs(self) -> ForwardNeeds:
        return ForwardNeeds("block", attention="head", carry_scores=True)

    @property
    def selects_one_set(self) -> bool:
        return False

    def scores(self, evidence: BlockEvidence) -> Tensor:
        """(layers, kv_heads, n) accumulated mass of each candidate (averaged if asked)."""
        window_mass, offsets = evidence.attention_mass()
        scores = window_mass[..., offsets.to(window_mass.device)]
        if not self.average_by_row_count:
            return scores
        positions = evidence.candidate_positions
        assert positions is not None, "block evidence carries the candidates' positions"
        seen_by = (evidence.rows_end - positions).to(scores.device, scores.dtype)  # queries at p .. end
        return scores / seen_by.expand_as(scores)

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        return select_top(self.scores(evidence), n_select).cpu()
