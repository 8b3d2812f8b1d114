"""The flash backend's scores (the kernel's log-sum-exp, or a streamed one over a span) against the
eager reference and a plain loop: on random tensors, and inside the engine on the tiny models."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from laserkv import GenerationConfig, MethodConfig, answer_ids, build_method, get_method, hooks
from laserkv.backends import ScoreRequest
from laserkv.engine import forward_block
from laserkv.methods import with_params
from laserkv.prompting import encode_context, encode_question
from laserkv.scorers.exact import attention_probabilities, causal_allowed, streamed_row_mass
from laserkv.state import CompressedKV
from tests.reference import eager_forward
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


def test_span_normalisation_is_a_softmax_over_the_span_only() -> None:
    """Mass on keys 2..6, each row normalised over keys 1..7 only (the original flash scorer)."""
    generator = torch.Generator().manual_seed(0)
    queries, keys = (
        torch.randn(1, 2, 3, 4, generator=generator),
        torch.randn(1, 2, 10, 4, generator=generator),
    )
    mass = streamed_row_mass(queries, keys, 0.5, None, 2, 5, normalise_span=(1, 8), chunk=2)
    for head in range(2):
        expected = [0.0] * 5
        for row in range(3):
            logits = {key: 0.5 * float(queries[0, head, row] @ keys[0, head, key]) for key in range(1, 8)}
            total = sum(math.exp(value) for value in logits.values())
            for index in range(5):
                expected[index] += math.exp(logits[2 + index]) / total
        torch.testing.assert_close(mass[head], torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_rows_that_see_nothing_add_nothing() -> None:
    queries, keys = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 6, 4)
    allowed = torch.ones(2, 6, dtype=torch.bool)
    allowed[0] = False  # row 0 sees no key at all
    mass = streamed_row_mass(queries, keys, 0.5, allowed, 0, 6)
    assert torch.isfinite(mass).all()
    probabilities = attention_probabilities(queries[..., 1:, :], keys, 0.5, allowed[1:])
    torch.testing.assert_close(mass, probabilities[0].sum(1))


@pytest.mark.parametrize(
    ("mode", "smoothing", "prefix_has_tail", "expected"),
    [
        ("accumulate", True, True, (40, 90)),  # held tail (slots 40-47) and the whole block
        ("accumulate", False, False, (32, 82)),  # no smoothing: still shifted back by the tail's 8
        ("recursive", True, False, (0, 82)),  # all history and the whole block
    ],
)
def test_original_flash_span(
    mode: str, smoothing: bool, prefix_has_tail: bool, expected: tuple[int, int]
) -> None:
    from laserkv.engine import original_flash_span
    from laserkv.modes import BlockPlan

    method = build_method(compression_mode=mode, boundary_smoothing=smoothing)
    empty = torch.empty(0, dtype=torch.long)
    plan = BlockPlan(prefix_has_tail, empty, empty, empty, 0, 8)
    block_end = 40 + (8 if prefix_has_tail else 0) + 42
    assert (
        original_flash_span(method.engine, state_len=40, tail_len=8, plan=plan, block_end=block_end)
        == expected
    )


def test_span_normalised_scores_equal_eager_probabilities_renormalised(
    tiny: Any, tiny_model_dir: Any
) -> None:
    """In a real forward over a cache: flash with a span equals the model's own eager
    probabilities of the question rows divided by their total over the span."""
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(72, 3))
    question = encode_question(tokenizer, sentence(6, 4))
    with torch.no_grad(), hooks.laserkv_attention(model):
        prefix = forward_block(model, CompressedKV.empty(), torch.tensor(context[:40]), 0, None, None)
        request = ScoreRequest("flash", len(question), 30, torch.zeros(1, 1, 42), normalise_span=(24, 72))
        forward_block(model, prefix, torch.tensor(context[40:72]), 40, (torch.tensor(question), 72), request)
    out, _ = eager_forward(tiny_model_dir, context[40:72], 40, question, 72, prefix_ids=context[:40])
    expected = torch.zeros(42)
    for layer in out.attentions:
        rows = layer[0, :, -len(question) :, :].double()  # (heads, q, keys)
        expected += (rows[..., 30:72] / rows[..., 24:72].sum(-1, keepdim=True)).sum((0, 1)).float()
    torch.testing.assert_close(request.totals[0, 0], expected, rtol=1e-4, atol=1e-5)


def test_a_forward_leaves_its_prefix_untouched(tiny: Any) -> None:
    """The cache hand-off does not copy the prefix: a forward (and a decode) must not change it."""
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(64, 8))
    with torch.no_grad(), hooks.laserkv_attention(model):
        prefix = forward_block(model, CompressedKV.empty(), torch.tensor(context[:32]), 0, None, None)
        before = [layer.clone() for layer in prefix.keys + prefix.values]
        step = forward_block(model, prefix, torch.tensor(context[32:]), 32, None, None)
    assert all(torch.equal(old, new) for old, new in zip(before, prefix.keys + prefix.values, strict=True))
    assert step.length == 64 and prefix.length == 32


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
        build_method(budget=32, block_size=32),
        build_method(budget=32, block_size=32, compression_mode="recursive"),
        build_method(budget=32, block_size=32, granularity="head"),
        build_method(budget=40, block_size=48, query_source="window", observation_window=8, score_pooling=3),
        build_method(selector="hybrid", lsh_mode="magicpig_baseline", lsh_bits=3, budget=32, block_size=32),
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
            with_params(method, backend=backend),
            GenerationConfig(max_new_tokens=4),
        )
        for backend in ("eager", "flash")
    ]
    assert torch.equal(runs[0].kept_positions, runs[1].kept_positions)
    assert runs[0].token_ids == runs[1].token_ids
    torch.testing.assert_close(runs[0].first_token_logits, runs[1].first_token_logits, rtol=1e-4, atol=1e-4)


def test_window_normalisation_changes_the_selection_and_the_hash(tiny: Any) -> None:
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
            with_params(method, score_norm=norm),
            GenerationConfig(max_new_tokens=1),
        ).kept_positions
        for norm in ("all", "window")
    ]
    assert not torch.equal(kept[0], kept[1])
    assert method.config_hash != with_params(method, score_norm="window").config_hash  # recorded with results
    with pytest.raises(ValueError, match="score_norm='window' is not allowed: 'all' unless backend='flash'"):
        build_method(score_norm="window", backend="eager")
