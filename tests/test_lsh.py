"""LSH scorers against plain Python loops (reference section 5)."""

from __future__ import annotations

import pytest
import torch

from laserkv.scorers.lsh import (
    TIE_BREAKS,
    hyperplanes,
    magicpig_probability,
    select_frequency_rank,
    select_magicpig,
    sign_bits,
    tie_break_distance,
)

K, L = 3, 4  # few bits so that collisions are common


def vectors(seed: int, q: int = 5, n: int = 30, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=generator), torch.randn(n, d, generator=generator)


def centred_bits(queries: torch.Tensor, candidates: torch.Tensor, planes: torch.Tensor) -> tuple[list, list]:
    centre = candidates.mean(0)
    return sign_bits(queries - centre, planes).tolist(), sign_bits(candidates - centre, planes).tolist()


def loop_counts(query_bits: list, candidate_bits: list) -> list[int]:
    counts = []
    for bits in candidate_bits:
        count = 0
        for table in range(L):
            span = slice(table * K, (table + 1) * K)
            if any(other[span] == bits[span] for other in query_bits):
                count += 1
        counts.append(count)
    return counts


def loop_u(p: float) -> float:
    pk = p**K
    return 1 - (1 - pk) ** L - L * pk * (1 - pk) ** (L - 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tie_break", TIE_BREAKS)
def test_frequency_rank_matches_loops(seed: int, tie_break: str) -> None:
    queries, candidates = vectors(seed, q=20 if tie_break == "partitioned_centroid" else 5)
    planes = hyperplanes(8, K, L, seed=seed)
    query_bits, candidate_bits = centred_bits(queries, candidates, planes)
    counts = loop_counts(query_bits, candidate_bits)
    centre = candidates.mean(0)
    distance = tie_break_distance(queries - centre, candidates - centre, tie_break).tolist()
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], distance[i], i))
    kept = select_frequency_rank(queries, candidates, 10, planes, K, tie_break)
    assert kept.tolist() == sorted(order[:10])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_keep", [3, 12, 25])
def test_magicpig_matches_loops(seed: int, n_keep: int) -> None:
    queries, candidates = vectors(seed)
    planes = hyperplanes(8, K, L, seed=seed + 100)
    query_bits, candidate_bits = centred_bits(queries, candidates, planes)
    counts = loop_counts(query_bits, candidate_bits)
    survivors = [i for i, count in enumerate(counts) if count >= 2]
    score = {}
    for i in survivors:
        agreements = [
            sum(a == b for a, b in zip(candidate_bits[i], bits, strict=True)) / (K * L) for bits in query_bits
        ]
        score[i] = max(loop_u(p) for p in agreements)
    if not survivors:
        expected = list(range(30 - n_keep, 30))
    elif len(survivors) > n_keep:
        expected = sorted(sorted(survivors, key=lambda i: (-score[i], i))[:n_keep])
    else:
        others = [i for i in range(30) if i not in survivors]
        expected = sorted(survivors + others[len(others) - (n_keep - len(survivors)) :])
    kept = select_magicpig(queries, candidates, n_keep, planes, K)
    assert kept.tolist() == expected


def test_u_formula() -> None:
    p = torch.tensor([0.0, 0.5, 0.9, 1.0])
    torch.testing.assert_close(magicpig_probability(p, K, L), torch.tensor([loop_u(v) for v in p.tolist()]))


def test_seeded_hyperplanes() -> None:
    assert torch.equal(hyperplanes(8, K, L, seed=3), hyperplanes(8, K, L, seed=3))
    assert not torch.equal(hyperplanes(8, K, L, seed=3), hyperplanes(8, K, L, seed=4))
    queries, candidates = vectors(0, n=60)
    picks = {
        tuple(select_magicpig(queries, candidates, 10, hyperplanes(8, K, L, seed=s), K).tolist())
        for s in range(4)
    }
    assert len(picks) > 1, "different seeds must be able to select differently"


def test_edge_budgets() -> None:
    queries, candidates = vectors(1)
    planes = hyperplanes(8, K, L, seed=0)
    for select in (
        lambda n: select_magicpig(queries, candidates, n, planes, K),
        lambda n: select_frequency_rank(queries, candidates, n, planes, K, "l2"),
    ):
        assert select(0).numel() == 0 and select(30).tolist() == list(range(30)) and select(40).numel() == 30


def test_unknown_tie_break() -> None:
    with pytest.raises(ValueError, match="tie_break='cosine' is not allowed: one of l2, max_sim"):
        tie_break_distance(torch.zeros(2, 3), torch.zeros(4, 3), "cosine")


def test_magicpig_without_survivors_keeps_the_most_recent() -> None:
    queries, candidates = vectors(2)
    planes = hyperplanes(8, 16, 2, seed=0)  # 16-bit buckets: two-table collisions are (almost) impossible
    centre = candidates.mean(0)
    query_bits = sign_bits(queries - centre, planes).tolist()
    candidate_bits = sign_bits(candidates - centre, planes).tolist()
    both_tables = [
        all(any(q[t * 16 : (t + 1) * 16] == c[t * 16 : (t + 1) * 16] for q in query_bits) for t in range(2))
        for c in candidate_bits
    ]
    assert not any(both_tables), "this case must have no survivor"
    assert select_magicpig(queries, candidates, 7, planes, 16).tolist() == list(range(23, 30))
