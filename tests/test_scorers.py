"""Exact attention mass against a plain softmax loop (GQA expanded, masked, fp32)."""

from __future__ import annotations

import math

import pytest
import torch

from laserkv.scorers.exact import add_attention_mass, attention_probabilities, causal_allowed


def brute_force_mass(queries: torch.Tensor, keys: torch.Tensor, scaling: float, n_rows: int) -> list[float]:
    """Sum over heads and the last ``n_rows`` rows of the causal softmax probability of each key."""
    _, heads, q_len, _ = queries.shape
    kv_heads, k_len = keys.shape[1], keys.shape[2]
    mass = [0.0] * k_len
    for head in range(heads):
        kv_head = head // (heads // kv_heads)
        for row in range(q_len - n_rows, q_len):
            visible = range(k_len - q_len + row + 1)
            logits = [scaling * float(queries[0, head, row] @ keys[0, kv_head, key]) for key in visible]
            top = max(logits)
            denominator = sum(math.exp(value - top) for value in logits)
            for key, value in zip(visible, logits, strict=True):
                mass[key] += math.exp(value - top) / denominator
    return mass


@pytest.mark.parametrize(
    ("heads", "kv_heads", "q_len", "k_len", "n_rows"), [(4, 2, 6, 10, 3), (2, 2, 5, 5, 5), (6, 1, 4, 9, 1)]
)
def test_mass_matches_brute_force(heads: int, kv_heads: int, q_len: int, k_len: int, n_rows: int) -> None:
    generator = torch.Generator().manual_seed(heads * 100 + k_len)
    queries = torch.randn(1, heads, q_len, 8, generator=generator)
    keys = torch.randn(1, kv_heads, k_len, 8, generator=generator)
    probabilities = attention_probabilities(queries, keys, 8**-0.5, None)
    totals = torch.zeros(1, 1, k_len - 2)
    add_attention_mass(totals, probabilities[..., -n_rows:, :], window_start=2, layer_index=0)
    expected = brute_force_mass(queries, keys, 8**-0.5, n_rows)[2:]
    torch.testing.assert_close(totals[0, 0], torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert probabilities.dtype == torch.float32


def test_causal_pattern_is_bottom_right_aligned() -> None:
    assert causal_allowed(2, 4, torch.device("cpu")).tolist() == [[True, True, True, False], [True] * 4]
