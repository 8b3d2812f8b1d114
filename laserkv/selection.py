"""Selection of the global part: (method, evidence of one block forward, how many to keep) ->
kept candidate indices. Tensor code over the forward's KV: no model, no transformers.

Basic selectors (method.md sections 3-5):
- ``exact``: top-k attention mass, one set for every layer and head (``token``) or one per
  layer / per layer and KV head (``layer`` / ``head``, always the same count, so caches stay
  rectangular);
- ``lsh``: ``frequency_rank`` or ``magicpig_baseline`` over last-layer head-mean keys;
- ``recency``: the most recent candidates.
``hybrid`` runs a primary basic selector on all candidates and a secondary on the rest
(``selectors.hybrid_select``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from laserkv.config import MethodConfig
from laserkv.scorers.exact import candidate_attention_mass
from laserkv.scorers.lsh import hyperplanes, select_frequency_rank, select_magicpig
from laserkv.selectors import PartSelector, hybrid_select, recency_part, select_top
from laserkv.state import CompressedKV


@dataclass(frozen=True)
class BlockEvidence:
    """What one block forward tells the selectors about its ``n_candidates`` candidates.

    Attributes:
        n_candidates: how many candidates compete.
        attention: (layers or 1, kv_heads or 1, n) fp32 exact scores (pooled if asked), or None.
        query_keys: (rows, d) last-layer head-mean keys of the scoring rows, or None.
        candidate_keys: (n, d) last-layer head-mean keys of the candidates, or None.
    """

    n_candidates: int
    attention: Tensor | None = None
    query_keys: Tensor | None = None
    candidate_keys: Tensor | None = None


def head_mean_keys(layer_keys: Tensor, slots: Tensor) -> Tensor:
    """(1, kv_heads, n, d) keys of one layer at ``slots`` -> (len(slots), d) fp32 head means."""
    return layer_keys[0, :, slots.to(layer_keys.device)].float().mean(0)


def block_evidence(
    method: MethodConfig,
    step: CompressedKV,
    candidate_slots: Tensor,
    n_scoring_rows: int,
    attention_totals: Tensor | None,
    window_start: int,
) -> BlockEvidence:
    """Collect what ``method`` selects by from one block forward.

    Args:
        step: the KV of every slot of the forward (prefix, block, question if appended); the
            scoring rows are its last ``n_scoring_rows`` slots.
        candidate_slots: (n,) slots of the candidates.
        attention_totals: the forward's exact attention mass over slots from ``window_start``.
    """
    attention = query_keys = candidate_keys = None
    if method.uses_attention_scores:
        assert attention_totals is not None, "exact scores need a score request in the forward"
        attention = candidate_attention_mass(
            attention_totals, candidate_slots - window_start, method.score_pooling
        )
    if method.uses_lsh:
        last_layer = step.keys[-1]
        query_slots = torch.arange(step.length - n_scoring_rows, step.length)
        query_keys = head_mean_keys(last_layer, query_slots)
        candidate_keys = head_mean_keys(last_layer, candidate_slots)
    return BlockEvidence(int(candidate_slots.numel()), attention, query_keys, candidate_keys)


def exact_part(evidence: BlockEvidence) -> PartSelector:
    """Top attention mass within the subset (token granularity)."""
    assert evidence.attention is not None
    scores = evidence.attention.reshape(-1)

    def select(subset: Tensor, n_keep: int) -> Tensor:
        return subset[select_top(scores[subset.to(scores.device)], n_keep).cpu()]

    return select


def lsh_part(method: MethodConfig, evidence: BlockEvidence, planes: Tensor) -> PartSelector:
    """``method.lsh_mode`` within the subset; the subset's keys are centred by their own mean."""
    query_keys, candidate_keys = evidence.query_keys, evidence.candidate_keys
    assert query_keys is not None and candidate_keys is not None

    def select(subset: Tensor, n_keep: int) -> Tensor:
        keys = candidate_keys[subset.to(candidate_keys.device)]
        if method.lsh_mode == "magicpig_baseline":
            kept = select_magicpig(query_keys, keys, n_keep, planes, method.lsh_bits)
        else:
            kept = select_frequency_rank(query_keys, keys, n_keep, planes, method.lsh_bits, method.tie_break)
        return subset[kept.cpu()]

    return select


def part_selector(
    kind: str, method: MethodConfig, evidence: BlockEvidence, planes: Tensor | None
) -> PartSelector:
    """The basic selector ``kind`` (``exact``, ``lsh``, ``recency``) over this block's evidence."""
    if kind == "exact":
        return exact_part(evidence)
    if kind == "lsh":
        assert planes is not None, "lsh selection needs hyperplanes"
        return lsh_part(method, evidence, planes)
    return recency_part


def exact_select(attention: Tensor, n_select: int, n_layers: int, n_kv_heads: int) -> Tensor:
    """Top-k attention mass at the granularity of ``attention``'s leading dimensions.

    Returns:
        (k,) indices for one set; (n_layers, n_kv_heads, k) for per-layer / per-head sets.
    """
    kept = select_top(attention, n_select).cpu()  # (layers or 1, kv_heads or 1, k)
    if kept.shape[0] == 1 and kept.shape[1] == 1:
        return kept.reshape(-1)
    return kept.expand(n_layers, n_kv_heads, kept.shape[-1])


def select_candidates(
    method: MethodConfig,
    evidence: BlockEvidence,
    n_select: int,
    planes: Tensor | None,
    cache_shape: tuple[int, int],
) -> Tensor:
    """The candidates ``method`` keeps, as indices into the candidate list (CPU int64).

    Args:
        n_select: how many to keep (fewer than ``evidence.n_candidates``).
        planes: LSH hyperplanes of the call (``lsh_planes``), or None without LSH.
        cache_shape: (layers, kv_heads) of the cache, for per-layer / per-head sets.

    Returns:
        (n_select,) ascending, or (layers, kv_heads, n_select) ascending along the last dimension.
    """
    if method.selector == "exact":
        assert evidence.attention is not None
        return exact_select(evidence.attention, n_select, *cache_shape)
    if method.selector == "hybrid":
        primary = part_selector(method.hybrid_primary, method, evidence, planes)
        secondary = part_selector(method.hybrid_secondary, method, evidence, planes)
        return hybrid_select(
            primary,
            secondary,
            evidence.n_candidates,
            n_select,
            method.hybrid_ratio,
            not method.faithful_hybrid,
        )
    return part_selector(method.selector, method, evidence, planes)(
        torch.arange(evidence.n_candidates), n_select
    )


def lsh_planes(method: MethodConfig, head_dim: int, device: torch.device) -> Tensor | None:
    """The call's SimHash hyperplanes (drawn once from ``method.lsh_seed``), or None without LSH."""
    if not method.uses_lsh:
        return None
    return hyperplanes(head_dim, method.lsh_bits, method.lsh_tables, method.lsh_seed).to(device)
