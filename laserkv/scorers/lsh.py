"""LSH selection over key vectors (reference section 5), as pure tensor functions.

SimHash with ``n_bits`` (K) bits x ``n_tables`` (L) tables on vectors centred by the mean of
the candidates; hyperplanes come from a seeded generator and bits are computed in fp32.
Both selectors return kept candidate indices, sorted ascending.
"""

from __future__ import annotations

import torch
from torch import Tensor

from laserkv.topk import select_top

TIE_BREAKS = ("l2", "max_sim", "mahalanobis", "partitioned_centroid", "none")


def hyperplanes(dim: int, n_bits: int, n_tables: int, seed: int) -> Tensor:
    """A (dim, n_tables * n_bits) fp32 Gaussian matrix drawn from ``seed`` on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dim, n_tables * n_bits, generator=generator, dtype=torch.float32)


def sign_bits(vectors: Tensor, planes: Tensor) -> Tensor:
    """(n, d) vectors -> (n, L*K) bool sign bits, computed in fp32."""
    return (vectors.float() @ planes.to(vectors.device)) > 0


def bucket_ids(bits: Tensor, n_bits: int) -> Tensor:
    """(n, L*K) bits -> (n, L) bucket ids; table t's ids are offset by ``t * 2**K``."""
    n_tables = bits.shape[-1] // n_bits
    weights = 2 ** torch.arange(n_bits, device=bits.device)
    ids = (bits.view(-1, n_tables, n_bits).long() * weights).sum(-1)
    return ids + torch.arange(n_tables, device=bits.device) * 2**n_bits


def collision_counts(query_buckets: Tensor, candidate_buckets: Tensor) -> Tensor:
    """Per candidate, the number of tables whose bucket holds at least one question token.

    Args:
        query_buckets: (q, L); candidate_buckets: (n, L), ids offset per table.
    """
    hit = torch.isin(candidate_buckets, query_buckets.flatten())
    return hit.sum(-1)


def _centred(query_vectors: Tensor, candidate_vectors: Tensor) -> tuple[Tensor, Tensor]:
    centre = candidate_vectors.float().mean(0, keepdim=True)
    return query_vectors.float() - centre, candidate_vectors.float() - centre


def _keep_all_or_none(n_candidates: int, n_keep: int, device: torch.device) -> Tensor | None:
    """The answer when no ranking is needed (keep all, or keep none); else None."""
    if n_keep >= n_candidates:
        return torch.arange(n_candidates, device=device)
    if n_keep <= 0:
        return torch.empty(0, dtype=torch.long, device=device)
    return None


def tie_break_distance(queries: Tensor, candidates: Tensor, mode: str) -> Tensor:
    """(n,) distance of each centred candidate to the centred question (smaller wins)."""
    if mode == "l2":
        return torch.linalg.vector_norm(candidates - queries.mean(0), dim=-1)
    if mode == "max_sim":
        return torch.cdist(candidates, queries).min(-1).values
    if mode == "mahalanobis":
        variance = queries.var(0, unbiased=False) + 1e-8
        return (((candidates - queries.mean(0)) ** 2) / variance).sum(-1).sqrt()
    if mode == "partitioned_centroid":
        n_chunks = min(max(queries.shape[0] // 16, 1), 8)
        centroids = torch.stack([chunk.mean(0) for chunk in torch.tensor_split(queries, n_chunks)])
        return torch.cdist(candidates, centroids).min(-1).values
    if mode == "none":
        return torch.zeros(candidates.shape[0], device=candidates.device)
    raise ValueError(f"tie_break={mode!r} is not allowed: one of {', '.join(TIE_BREAKS)}")


def select_frequency_rank(
    query_vectors: Tensor, candidate_vectors: Tensor, n_keep: int, planes: Tensor, n_bits: int, tie_break: str
) -> Tensor:
    """Keep the candidates that collide with the question in the most tables.

    Ties are broken by ``tie_break`` distance (smaller first), then by index (earlier first).

    Args:
        query_vectors: (q, d); candidate_vectors: (n, d); planes: (d, L*K).
    """
    trivial = _keep_all_or_none(candidate_vectors.shape[0], n_keep, candidate_vectors.device)
    if trivial is not None:
        return trivial
    queries, candidates = _centred(query_vectors, candidate_vectors)
    counts = collision_counts(
        bucket_ids(sign_bits(queries, planes), n_bits), bucket_ids(sign_bits(candidates, planes), n_bits)
    )
    by_distance = torch.sort(tie_break_distance(queries, candidates, tie_break), stable=True).indices
    by_count = by_distance[torch.sort(counts[by_distance], descending=True, stable=True).indices]
    return torch.sort(by_count[:n_keep]).values


def magicpig_probability(agreement: Tensor, n_bits: int, n_tables: int) -> Tensor:
    """u = 1 - (1-p^K)^L - L p^K (1-p^K)^(L-1): the chance of at least two table collisions."""
    pk = agreement**n_bits
    return 1 - (1 - pk) ** n_tables - n_tables * pk * (1 - pk) ** (n_tables - 1)


def select_magicpig(
    query_vectors: Tensor, candidate_vectors: Tensor, n_keep: int, planes: Tensor, n_bits: int
) -> Tensor:
    """MagicPIG-style ranking as the reference does it (deterministic, not sampling).

    Candidates colliding in >= 2 tables survive and are ranked by the max over question tokens
    of ``magicpig_probability`` of their sign-bit agreement; no survivor -> the ``n_keep`` most
    recent candidates; fewer survivors than ``n_keep`` -> all of them plus the most recent others.
    """
    n = candidate_vectors.shape[0]
    device = candidate_vectors.device
    trivial = _keep_all_or_none(n, n_keep, device)
    if trivial is not None:
        return trivial
    queries, candidates = _centred(query_vectors, candidate_vectors)
    query_bits, candidate_bits = sign_bits(queries, planes), sign_bits(candidates, planes)
    counts = collision_counts(bucket_ids(query_bits, n_bits), bucket_ids(candidate_bits, n_bits))
    survivors = torch.nonzero(counts >= 2).flatten()
    if survivors.numel() == 0:
        return torch.arange(n - n_keep, n, device=device)
    total_bits = planes.shape[-1]
    # the share of equal sign bits, via a +-1 dot product: (dot + LK) / 2 = count, so no (s, q, LK) tensor
    signs_survivors = candidate_bits[survivors].float() * 2 - 1
    signs_queries = query_bits.float() * 2 - 1
    agreement = (signs_survivors @ signs_queries.T + total_bits) / (2 * total_bits)  # (s, q)
    n_tables = total_bits // n_bits
    scores = magicpig_probability(agreement, n_bits, n_tables).max(-1).values
    if survivors.numel() > n_keep:
        return survivors[select_top(scores, n_keep)]  # survivors ascend, so the result does too
    others = torch.ones(n, dtype=torch.bool, device=device)
    others[survivors] = False
    other_indices = torch.nonzero(others).flatten()
    fill = other_indices[other_indices.numel() - (n_keep - survivors.numel()) :]  # the most recent others
    return torch.sort(torch.cat([survivors, fill])).values
