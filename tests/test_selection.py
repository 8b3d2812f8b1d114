"""Selection on small CPU tensors against plain loops: hybrid (rho 1 and 0 equal their parents,
reallocation on/off), per-layer / per-head exact top-k, pooling, recency, per-head mass."""

from __future__ import annotations

import math

import pytest
import torch

from laserkv.scorers.exact import add_attention_mass, attention_probabilities, pool_scores
from laserkv.scorers.lsh import hyperplanes, select_frequency_rank, select_magicpig
from laserkv.selectors import BlockEvidence, ForwardNeeds, MissingEvidenceError
from laserkv.selectors.exact import ExactSelector
from laserkv.selectors.hybrid import HybridSelector
from laserkv.selectors.lsh import LshSelector
from laserkv.topk import hybrid_select, recency_part

N, D = 40, 8


def evidence(seed: int = 0, n: int = N) -> BlockEvidence:
    generator = torch.Generator().manual_seed(seed)
    return BlockEvidence(
        n_candidates=n,
        cache_shape=(2, 2),
        window_mass=torch.rand(1, 1, n, generator=generator),
        candidate_offsets=torch.arange(n),
        query_keys=torch.randn(6, D, generator=generator),
        candidate_keys=torch.randn(n, D, generator=generator),
    )


def attention(found: BlockEvidence) -> list[float]:
    return found.attention_mass()[0].flatten().tolist()


def hybrid_method(lsh_mode: str, ratio: float, seed: int) -> HybridSelector:
    return HybridSelector(ExactSelector(), LshSelector(lsh_mode=lsh_mode, lsh_bits=3, lsh_seed=seed), ratio)


def top_by_loop(scores: list[float], k: int) -> list[int]:
    """Highest scores first, earlier index on ties; returned ascending."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


@pytest.mark.parametrize("lsh_mode", ["frequency_rank", "magicpig_baseline"])
@pytest.mark.parametrize("n_select", [1, 7, 20, 39])
def test_hybrid_at_rho_1_and_0_equals_its_parents(lsh_mode: str, n_select: int) -> None:
    found = evidence(n_select)
    planes = hyperplanes(D, 3, 8, seed=5)
    exact_only = ExactSelector().select(found, n_select)
    lsh_only = LshSelector(lsh_mode=lsh_mode, lsh_bits=3, lsh_seed=5).select(found, n_select)
    at_one = hybrid_method(lsh_mode, 1.0, 5).select(found, n_select)
    at_zero = hybrid_method(lsh_mode, 0.0, 5).select(found, n_select)
    assert at_one.tolist() == exact_only.tolist() == top_by_loop(attention(found), n_select)
    assert at_zero.tolist() == lsh_only.tolist()
    queries, keys = found.query_keys, found.candidate_keys
    if lsh_mode == "magicpig_baseline":
        direct = select_magicpig(queries, keys, n_select, planes, 3)  # type: ignore[arg-type]
    else:
        direct = select_frequency_rank(queries, keys, n_select, planes, 3, "l2")  # type: ignore[arg-type]
    assert lsh_only.tolist() == direct.tolist()


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_hybrid_splits_the_budget_and_secondary_sees_only_the_rest(ratio: float) -> None:
    found = evidence(3)
    planes = hyperplanes(D, 3, 8, seed=1)
    method = hybrid_method("magicpig_baseline", ratio, 1)
    n_select = 17
    kept = method.select(found, n_select)
    primary = top_by_loop(attention(found), math.floor(n_select * ratio))
    rest = [i for i in range(N) if i not in primary]
    # the secondary ranks the remaining candidates alone (their keys centred by their own mean)
    secondary_local = select_magicpig(
        found.query_keys,  # type: ignore[arg-type]
        found.candidate_keys[rest],  # type: ignore[index]
        n_select - len(primary),
        planes,
        3,
    )
    secondary = [rest[i] for i in secondary_local.tolist()]
    assert kept.tolist() == sorted(primary + secondary)
    assert len(set(kept.tolist())) == n_select


def test_unused_primary_slots_go_to_the_secondary_unless_faithful() -> None:
    """A primary that returns fewer than its share (as the original's exact selector did when its
    scores were missing): reallocation hands the gap to the secondary; faithful leaves it empty."""

    def primary_keeping_three(subset: torch.Tensor, n_keep: int) -> torch.Tensor:
        return subset[: min(3, n_keep)]

    reallocated = hybrid_select(primary_keeping_three, recency_part, N, 10, 0.75, reallocate=True)
    faithful = hybrid_select(primary_keeping_three, recency_part, N, 10, 0.75, reallocate=False)
    assert reallocated.tolist() == [0, 1, 2, *range(N - 7, N)]  # primary share 7, used 3
    assert faithful.tolist() == [0, 1, 2, *range(N - 3, N)]  # secondary keeps its own 3


def test_frequency_rank_part_on_a_subset_equals_the_selector_on_that_subset() -> None:
    found = evidence(4)
    planes = hyperplanes(D, 3, 8, seed=2)
    subset = torch.tensor([1, 4, 5, 9, 20, 33, 38])
    method = LshSelector(lsh_bits=3, tie_break="max_sim", lsh_seed=2)
    direct = select_frequency_rank(found.query_keys, found.candidate_keys[subset], 3, planes, 3, "max_sim")  # type: ignore[arg-type,index]
    assert method.select_within(found, subset, 3).tolist() == subset[direct].tolist()


def test_exact_part_and_recency_part_on_subsets() -> None:
    found = evidence(5)
    subset = torch.tensor([2, 3, 10, 11, 30])
    scores = attention(found)
    expected = sorted(sorted(subset.tolist(), key=lambda i: (-scores[i], i))[:2])
    assert ExactSelector().select_within(found, subset, 2).tolist() == expected
    assert recency_part(subset, 2).tolist() == [11, 30]
    assert recency_part(subset, 0).tolist() == [] and recency_part(subset, 9).tolist() == subset.tolist()


@pytest.mark.parametrize(("layers", "heads"), [(3, 1), (3, 2), (1, 1)])
def test_exact_select_per_layer_and_head_is_a_top_k_per_row(layers: int, heads: int) -> None:
    scores = torch.rand(layers, heads, 12, generator=torch.Generator().manual_seed(layers * 10 + heads))
    found = BlockEvidence(12, (3, 2), window_mass=scores, candidate_offsets=torch.arange(12))
    kept = ExactSelector(granularity="head" if heads > 1 else "layer").select(found, 5)
    if layers == heads == 1:
        assert kept.tolist() == top_by_loop(scores.flatten().tolist(), 5)
        return
    assert kept.shape == (3, 2, 5)
    for layer in range(3):
        for head in range(2):
            row = scores[layer if layers > 1 else 0, head if heads > 1 else 0].tolist()
            assert kept[layer, head].tolist() == top_by_loop(row, 5)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_pooling_is_a_zero_padded_moving_average(kernel: int) -> None:
    scores = torch.rand(2, 3, 11, generator=torch.Generator().manual_seed(kernel))
    pooled = pool_scores(scores, kernel)
    half = kernel // 2
    for index in torch.cartesian_prod(torch.arange(2), torch.arange(3)).tolist():
        row = scores[index[0], index[1]].tolist()
        expected = [
            sum(row[j] for j in range(i - half, i + half + 1) if 0 <= j < 11) / kernel for i in range(11)
        ]
        torch.testing.assert_close(pooled[index[0], index[1]], torch.tensor(expected))


@pytest.mark.parametrize(("rows", "heads"), [(3, 1), (3, 2), (1, 2), (1, 1)])
def test_attention_mass_per_layer_and_kv_head(rows: int, heads: int) -> None:
    """Query heads 0-1 share KV head 0 and 2-3 share KV head 1 (GQA); the mass of a layer goes
    to its own row, or is summed over layers / heads where the buffer has one row."""
    generator = torch.Generator().manual_seed(rows + heads)
    queries = torch.randn(1, 4, 5, 8, generator=generator)
    keys = torch.randn(1, 2, 9, 8, generator=generator)
    probabilities = attention_probabilities(queries, keys, 8**-0.5, None)[..., -2:, :]  # 2 scoring rows
    totals = torch.zeros(rows, heads, 7)
    add_attention_mass(totals, probabilities, window_start=2, layer_index=rows - 1)
    per_query_head = probabilities[0, :, :, 2:].sum(1)  # (4, 7)
    per_kv_head = torch.stack([per_query_head[0] + per_query_head[1], per_query_head[2] + per_query_head[3]])
    expected = per_kv_head if heads == 2 else per_kv_head.sum(0, keepdim=True)
    torch.testing.assert_close(totals[rows - 1], expected)
    assert totals[: rows - 1].abs().sum() == 0


def test_evidence_a_selector_did_not_declare_is_an_error() -> None:
    bare = BlockEvidence(n_candidates=5)
    with pytest.raises(MissingEvidenceError, match="needs"):
        ExactSelector().select(bare, 2)
    with pytest.raises(MissingEvidenceError, match="needs"):
        LshSelector().select(bare, 2)


def test_needs_are_declared_and_a_hybrid_merges_its_parts() -> None:
    assert ExactSelector(granularity="head").needs() == ForwardNeeds("question", 64, attention="head")
    assert LshSelector(query_source="window", observation_window=8).needs() == ForwardNeeds(
        "window", 8, last_layer_keys=True
    )
    merged = hybrid_method("magicpig_baseline", 0.75, 0).needs()
    assert merged == ForwardNeeds("question", 64, attention="token", last_layer_keys=True)
