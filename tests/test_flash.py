"""The flash backend's scores (SDPA output + streamed log-sum-exp on the side) against the eager
reference and a plain loop: on random tensors, and inside the engine on the tiny models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from laserkv import GenerationConfig, MethodConfig, answer_ids, get_method, hooks
from laserkv.backends import ScoreRequest
from laserkv.engine import forward_block
from laserkv.prompting import encode_context, encode_question
from laserkv.scorers.exact import attention_probabilities, causal_allowed, streamed_row_mass
from laserkv.state import CompressedKV
from tests.tiny import sentence


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (4, 4), (6, 1)])
@pytest.mark.parametrize("chunk", [3, 7, 1000])
@pytest.mark.parametrize("masked", [False, True])
def test_streamed_mass_equals_the_materialised_probabilities(
    heads: int, kv_heads: int, chunk: int, masked: bool
) -> None:
    generator = torch.Generator().manual_seed(heads + chunk)
    n_rows, n_keys = 5, 23
    queries = torch.randn(1, heads, n_rows, 8, generator=generator)
    keys = torch.randn(1, kv_heads, n_keys, 8, generator=generator)
    allowed = causal_allowed(n_rows, n_keys, torch.device("cpu"))
    if masked:
        allowed = allowed & (torch.rand(n_rows, n_keys, generator=generator) > 0.3)
        allowed[:, -n_rows:] |= torch.eye(n_rows, dtype=torch.bool)  # every row sees itself
    probabilities = attention_probabilities(queries, keys, 8**-0.5, allowed if masked else None)
    mass = streamed_row_mass(queries, keys, 8**-0.5, allowed if masked else None, 4, 12, chunk=chunk)
    torch.testing.assert_close(mass, probabilities[0, :, :, 4:16].sum(1), rtol=1e-5, atol=1e-6)


def test_window_normalisation_is_a_softmax_over_the_window_only() -> None:
    generator = torch.Generator().manual_seed(0)
    queries, keys = (
        torch.randn(1, 2, 3, 4, generator=generator),
        torch.randn(1, 2, 10, 4, generator=generator),
    )
    mass = streamed_row_mass(queries, keys, 0.5, None, 2, 5, normalise_over="window", chunk=2)
    for head in range(2):
        expected = [0.0] * 5
        for row in range(3):
            logits = [0.5 * float(queries[0, head, row] @ keys[0, head, key]) for key in range(2, 7)]
            total = sum(math.exp(value) for value in logits)
            for index, value in enumerate(logits):
                expected[index] += math.exp(value) / total
        torch.testing.assert_close(mass[head], torch.tensor(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prefix_len", [0, 40], ids=["first-block", "over-a-cache"])
def test_flash_scores_equal_eager_scores_in_a_forward(tiny: Any, prefix_len: int) -> None:
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(96, 3))
    question = encode_question(tokenizer, sentence(6, 4))
    prefix = CompressedKV.empty()
    if prefix_len:
        with torch.no_grad(), hooks.laserkv_attention(model):
            prefix = forward_block(model, prefix, torch.tensor(context[:prefix_len]), 0, None, None)
    totals = {}
    for backend in ("eager", "flash"):
        request = ScoreRequest(backend, len(question), 5, torch.zeros(2, 2, prefix_len + 32 - 5))
        with torch.no_grad(), hooks.laserkv_attention(model):
            step = forward_block(
                model,
                prefix,
                torch.tensor(context[prefix_len : prefix_len + 32]),
                prefix_len,
                (torch.tensor(question), 96),
                request,
            )
        totals[backend] = (request.totals, step)
    torch.testing.assert_close(totals["flash"][0], totals["eager"][0], rtol=1e-5, atol=1e-6)
    for eager_keys, flash_keys in zip(totals["eager"][1].keys, totals["flash"][1].keys, strict=True):
        torch.testing.assert_close(flash_keys, eager_keys, rtol=1e-5, atol=1e-5)  # same KV either way


@pytest.mark.parametrize(
    "method",
    [
        MethodConfig(budget=32, block_size=32),
        MethodConfig(budget=32, block_size=32, compression_mode="recursive"),
        MethodConfig(budget=32, block_size=32, granularity="head"),
        MethodConfig(budget=40, block_size=48, query_source="window", observation_window=8, score_pooling=3),
        MethodConfig(selector="hybrid", lsh_mode="magicpig_baseline", lsh_bits=3, budget=32, block_size=32),
    ],
    ids=["accumulate", "recursive", "per-head", "query-agnostic", "hybrid"],
)
def test_flash_keeps_what_eager_keeps(tiny: Any, method: MethodConfig) -> None:
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(150, 5))
    question = encode_question(tokenizer, sentence(6, 6))
    runs = [
        answer_ids(
            model,
            tokenizer,
            context,
            question,
            method.replace(backend=backend),
            GenerationConfig(max_new_tokens=4),
        )
        for backend in ("eager", "flash")
    ]
    assert torch.equal(runs[0].kept_positions, runs[1].kept_positions)
    assert runs[0].token_ids == runs[1].token_ids
    torch.testing.assert_close(runs[0].first_token_logits, runs[1].first_token_logits, rtol=1e-4, atol=1e-4)


def test_window_normalisation_changes_the_scores_and_is_recorded(tiny: Any) -> None:
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(150, 5))
    question = encode_question(tokenizer, sentence(6, 6))
    method = get_method("exact", budget=32, block_size=32, backend="flash")
    kept = [
        answer_ids(
            model,
            tokenizer,
            context,
            question,
            method.replace(score_norm=norm),
            GenerationConfig(max_new_tokens=1),
        ).kept_positions
        for norm in ("all", "window")
    ]
    assert not torch.equal(kept[0], kept[1])
    with pytest.raises(ValueError, match="score_norm='window' is not allowed: 'all' unless backend='flash'"):
        MethodConfig(score_norm="window")
