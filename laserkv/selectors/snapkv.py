"""``snapkv``: SnapKV's pooled observation-window attention, one kept set per layer and KV head.

Source: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation" (NeurIPS 2024,
arXiv:2404.14469); reference code github.com/FasterDecoding/SnapKV at e216ddc
(``snapkv/monkeypatch/snapkv_utils.py``: window 32, kernel 5, ``avgpool``; its LongBench configs
use kernel 7 with ``maxpool``). Grouped-query heads are averaged within their KV head, as kvpress's
``SnapKVPress`` does (kvpress 0.5.5, ``presses/snapkv_press.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from laserkv.checks import check_choice, check_odd_kernel
from laserkv.scorers.exact import POOLINGS, candidate_attention_mass
from laserkv.selectors.base import BlockEvidence, ForwardNeeds, Selector, rows_params
from laserkv.topk import select_top


@dataclass(frozen=True)
class SnapKVSelector(Selector):
    """Top-k of the observation window's attention mass, pooled along the slots, per KV head.

    Attributes:
        query_source: ``question``: the window is the end of the prompt, i.e. the question's last
            ``observation_window`` tokens (published SnapKV: the prompt's last 32 tokens, which
            hold the question); ``window``: the block's own last tokens (query-agnostic, as
            kvpress runs it with the question outside the compressed context).
        observation_window: window rows (SnapKV's ``window_size``).
        kernel_size: odd pooling kernel (1 = none).
        pooling: ``avgpool`` or ``maxpool``.
    """

    kind = "snapkv"
    description = "SnapKV: pooled observation-window attention, per KV head"
    source = "Li et al. 2024 (arXiv:2404.14469); FasterDecoding/SnapKV@e216ddc"

    query_source: str = "question"
    observation_window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"

    def __post_init__(self) -> None:
        rows_params(self.query_source, self.observation_window)
        check_odd_kernel("kernel_size", self.kernel_size)
        check_choice("pooling", self.pooling, POOLINGS)

    def needs(self) -> ForwardNeeds:
        question_rows = self.observation_window if self.query_source == "question" else None
        return ForwardNeeds(
            self.query_source, self.observation_window, attention="head", question_rows=question_rows
        )

    @property
    def selects_one_set(self) -> bool:
        return False

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        window_mass, offsets = evidence.attention_mass()
        scores = candidate_attention_mass(window_mass, offsets, self.kernel_size, self.pooling)
        return select_top(scores, n_select).cpu()  # (layers, kv_heads, k)

    def summary(self) -> str:
        rows = "question" if self.query_source == "question" else "block window"
        return f"snapkv {rows} {self.observation_window}, {self.pooling} {self.kernel_size}"
