"""The engine against simple references on tiny real models (fp32, CPU).

- budget >= context: full-cache logits and the model's own greedy ``generate`` tokens;
- exact scores: the model's own eager attention probabilities, summed by hand;
- cache lengths after each block: the values section 2 of method.md predicts;
- anchors and local window always kept; bit-identical reruns; a clean state on every call.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import DynamicCache

from laserkv import GenerationConfig, MethodConfig, answer_ids, build_method, get_method, hooks
from laserkv.backends import ScoreRequest
from laserkv.engine import forward_block
from laserkv.prompting import encode_context, encode_question
from laserkv.state import CompressedKV
from tests.reference import eager_forward
from tests.tiny import sentence

LOGIT_TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # fp32, different block split of the same sums


def sample(tokenizer: Any, n_words: int = 150, seed: int = 1) -> tuple[list[int], list[int]]:
    return encode_context(tokenizer, sentence(n_words, seed)), encode_question(
        tokenizer, sentence(6, seed + 1)
    )


def reference_run(
    model: Any, context: list[int], question: list[int], n_new: int
) -> tuple[torch.Tensor, list[int]]:
    """The model's own full-cache forward and greedy generate on [context | question]."""
    ids = torch.tensor([context + question])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
        generated = model.generate(ids, max_new_tokens=n_new, do_sample=False, eos_token_id=2, pad_token_id=0)
    new = generated[0, ids.shape[1] :].tolist()
    return logits, new[: new.index(2)] if 2 in new else new


FULL_CACHE_METHODS = [
    pytest.param(build_method(budget=150, block_size=32), id="accumulate"),
    pytest.param(build_method(budget=150, block_size=32, compression_mode="recursive"), id="recursive"),
    pytest.param(build_method(budget=200, block_size=50, protection_divisor=3), id="accumulate-n3"),
    pytest.param(
        build_method(budget=151, block_size=7, compression_mode="recursive", protection_divisor=5),
        id="recursive-b7-n5",
    ),
    pytest.param(build_method(selector="none", budget=None, block_size=40), id="full"),
    pytest.param(
        build_method(selector="recency", budget=150, block_size=64, compression_mode="recursive"),
        id="streaming",
    ),
]
"""Methods whose budget covers the 150-token context (also run on fused layers: test_fused_layers)."""


@pytest.mark.parametrize("method", FULL_CACHE_METHODS)
def test_budget_at_least_context_reproduces_full_cache(tiny: Any, method: MethodConfig) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    assert len(context) == 150 and len(context) > 2 * method.engine.block_size
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=12))
    logits, tokens = reference_run(model, context, question, 12)
    assert result.kept_positions.tolist() == list(range(150))
    torch.testing.assert_close(result.first_token_logits, logits, **LOGIT_TOLERANCE)
    assert result.token_ids == tokens
    assert len(set(tokens)) > 2, "the tiny model must produce varied tokens for this test to mean something"


def test_empty_context_answers_from_the_question_alone(tiny: Any) -> None:
    model, tokenizer = tiny
    _, question = sample(tokenizer)
    result = answer_ids(
        model, tokenizer, [], question, build_method(budget=32), GenerationConfig(max_new_tokens=6)
    )
    logits, tokens = reference_run(model, [], question, 6)
    torch.testing.assert_close(result.first_token_logits, logits, **LOGIT_TOLERANCE)
    assert result.token_ids == tokens and result.stats.cache_length_per_block == []


def eager_question_mass(
    model_dir: str, prefix_ids: list[int], block: list[int], question: list[int], start: int, context_len: int
) -> torch.Tensor:
    """Brute force: the model's own eager attention probabilities of the question rows, summed."""
    out, _ = eager_forward(model_dir, block, start, question, context_len, prefix_ids=prefix_ids)
    mass = torch.zeros(out.attentions[0].shape[-1])
    for layer in out.attentions:  # (1, heads, rows, keys)
        for head in range(layer.shape[1]):
            for row in range(layer.shape[2] - len(question), layer.shape[2]):
                mass += layer[0, head, row].double().float()
    return mass


@pytest.mark.parametrize("prefix_len", [0, 40], ids=["first-block", "over-a-cache"])
def test_exact_scores_equal_brute_force(tiny: Any, tiny_model_dir: Any, prefix_len: int) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer, 96)
    prefix_ids, block = context[:prefix_len], context[prefix_len : prefix_len + 32]
    prefix = CompressedKV.empty()
    if prefix_ids:
        with torch.no_grad():
            cache = DynamicCache(config=model.config)
            model.model(input_ids=torch.tensor([prefix_ids]), past_key_values=cache, use_cache=True)
        keys, values = hooks.kv_from_cache(cache)
        prefix = CompressedKV(tuple(keys), tuple(values), torch.arange(prefix_len))
    request = ScoreRequest("eager", len(question), 5, torch.zeros(1, 1, prefix_len + 32 - 5))
    with torch.no_grad(), hooks.laserkv_attention(model):
        step = forward_block(
            model, prefix, torch.tensor(block), prefix_len, (torch.tensor(question), 96), request
        )
    assert step.length == prefix_len + 32 + len(question)
    expected = eager_question_mass(str(tiny_model_dir), prefix_ids, block, question, prefix_len, 96)
    torch.testing.assert_close(request.totals[0, 0], expected[5 : prefix_len + 32], rtol=1e-4, atol=1e-5)
    assert model.config._attn_implementation == "sdpa", "the attention implementation is restored"


@pytest.mark.parametrize(
    ("method", "lengths", "final"),
    [
        # anchors 8, local 8, global 16; blocks of 32 over T = 150 (the last has 22 tokens).
        # accumulate: block 1 keeps 8 anchors + 16 of its 16 candidates + holds 8; every later
        # block adds 16 chosen (out of tail 8 + 24, or 8 + 14 in the last) and holds a new tail.
        (build_method(budget=32, block_size=32), [32, 48, 64, 80, 96], 96),
        (build_method(budget=32, block_size=32, compression_mode="recursive"), [32, 32, 32, 32, 32], 32),
        # no smoothing: the held tail is dropped; the last block's 14 candidates are all kept
        (build_method(budget=32, block_size=32, boundary_smoothing=False), [32, 48, 64, 80, 94], 94),
        (
            build_method(selector="recency", budget=32, block_size=32, compression_mode="recursive"),
            [32] * 5,
            32,
        ),
        (build_method(selector="none", budget=None, block_size=32), [32, 64, 96, 128, 150], 150),
    ],
    ids=["accumulate", "recursive", "no-smoothing", "streaming", "full"],
)
def test_cache_length_after_each_block(
    tiny: Any, method: MethodConfig, lengths: list[int], final: int
) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=2))
    assert result.stats.cache_length_per_block == lengths
    assert result.stats.final_cache_length == final == result.kept_positions.numel()


@pytest.mark.parametrize("name", ["exact", "exact_recursive", "streaming_laser_split"])
def test_anchors_and_local_window_always_kept(tiny: Any, name: str) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = get_method(name, budget=40, block_size=32)  # anchors 10, local 10
    kept = answer_ids(
        model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=1)
    ).kept_positions
    assert set(range(10)) <= set(kept.tolist())
    assert set(range(140, 150)) <= set(kept.tolist())
    assert kept.tolist() == sorted(kept.tolist())
    if name == "streaming_laser_split":
        assert kept.tolist() == list(range(10)) + list(range(120, 150))


def test_compression_changes_the_answer_path_and_reruns_are_identical(tiny: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(budget=32, block_size=32)
    first = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=8))
    other = answer_ids(
        model, tokenizer, *sample(tokenizer, seed=7), method, GenerationConfig(max_new_tokens=8)
    )
    again = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=8))
    assert torch.equal(first.first_token_logits, again.first_token_logits)  # clean state per call
    assert first.token_ids == again.token_ids and torch.equal(first.kept_positions, again.kept_positions)
    assert not torch.equal(first.kept_positions, other.kept_positions)
    full_logits, _ = reference_run(model, context, question, 1)
    assert not torch.allclose(first.first_token_logits, full_logits, **LOGIT_TOLERANCE)


def test_exact_selection_keeps_the_highest_scoring_candidates(tiny: Any) -> None:
    """One block step (budget 24: anchors 6, local 6, global 12 of 20 candidates): the kept
    candidates are the top 12 of the scores, which equal the brute force above."""
    model, tokenizer = tiny
    context, question = sample(tokenizer, 32)
    method = build_method(budget=24, block_size=32)
    kept = answer_ids(
        model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=1)
    ).kept_positions
    request = ScoreRequest("eager", len(question), 6, torch.zeros(1, 1, 20))
    with torch.no_grad(), hooks.laserkv_attention(model):
        forward_block(
            model, CompressedKV.empty(), torch.tensor(context), 0, (torch.tensor(question), 32), request
        )
    top = sorted((6 + torch.sort(request.totals[0, 0], descending=True, stable=True).indices[:12]).tolist())
    assert kept.tolist() == list(range(6)) + top + list(range(26, 32))
    assert top != list(range(6, 18)) and top != list(range(14, 26)), "scores must pick neither end"


def test_stops_at_any_eos_id_and_uses_no_full_logits_in_prefill(tiny: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(budget=64, block_size=32)
    plain = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=10))
    assert len(plain.token_ids) >= 4
    rows_seen: list[int] = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _o: rows_seen.append(args[0].shape[-2]))
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [2, plain.token_ids[3]]
    try:
        stopped = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=10))
    finally:
        model.generation_config.eos_token_id = original
        handle.remove()
    assert stopped.token_ids == plain.token_ids[: plain.token_ids.index(plain.token_ids[3])]
    assert rows_seen == [1] * (len(stopped.token_ids) + 1)  # one row per LM-head call


def test_stats_are_recorded(tiny: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    result = answer_ids(
        model,
        tokenizer,
        context,
        question,
        build_method(budget=32, block_size=32),
        GenerationConfig(max_new_tokens=3),
    )
    stats = result.stats
    assert (stats.context_tokens, stats.question_tokens) == (150, len(question))
    assert stats.generated_tokens == len(result.token_ids)
    assert all(stats.seconds[phase] > 0 for phase in ("forward", "score", "select", "gather", "decode"))
    assert stats.peak_memory_bytes is None  # CPU: no device allocator to read
    assert stats.max_cache_length == max(stats.cache_length_per_block)


def test_sampled_decoding_is_seeded(tiny: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(budget=32, block_size=32)

    def tokens(**settings: Any) -> list[int]:
        generation = GenerationConfig(max_new_tokens=12, **settings)
        return answer_ids(model, tokenizer, context, question, method, generation).token_ids

    greedy = tokens()
    assert tokens(temperature=1e-4, seed=3) == greedy  # a near-zero temperature is argmax
    hot = tokens(temperature=5.0, seed=3)
    assert hot == tokens(temperature=5.0, seed=3) and hot != greedy
    assert tokens(temperature=5.0, seed=4) != hot
    with pytest.raises(ValueError, match="temperature=-1 is not allowed"):
        GenerationConfig(temperature=-1)
