"""LSH, hybrid, per-layer / per-head and query-agnostic selection inside the engine, against
brute force on the tiny models: the model's own eager attention probabilities and last-layer
keys from a plain forward, ranked by hand or by the pure selectors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from laserkv import GenerationConfig, MethodConfig, answer_ids, build_method, hooks
from laserkv.engine import prefill_compressed
from laserkv.methods import with_params
from laserkv.prompting import encode_context, encode_question
from laserkv.scorers.exact import pool_scores
from laserkv.scorers.lsh import hyperplanes, select_frequency_rank, select_magicpig
from laserkv.state import CompressedKV
from laserkv.stats import CallStats, PhaseTimer
from tests.reference import eager_forward
from tests.tiny import sentence

ONE_TOKEN = GenerationConfig(max_new_tokens=1)


def sample(tokenizer: Any, n_tokens: int = 32, seed: int = 21) -> tuple[list[int], list[int]]:
    return encode_context(tokenizer, sentence(n_tokens, seed)), encode_question(
        tokenizer, sentence(6, seed + 1)
    )


def plain_forward(model_dir: Any, block: list[int], question: list[int] | None, context_len: int) -> Any:
    """The model's own eager forward of ``[block | question]`` from position 0 (no cache)."""
    return eager_forward(model_dir, block, 0, question, context_len)


def per_kv_head_mass(attentions: tuple[torch.Tensor, ...], n_rows: int) -> torch.Tensor:
    """(layers, kv_heads=2, keys) mass of the last ``n_rows`` rows; query heads 2h, 2h+1 -> h."""
    per_layer = []
    for layer in attentions:  # (1, 4 heads, rows, keys)
        mass = layer[0, :, -n_rows:, :].double().sum(1)  # (4, keys)
        per_layer.append(torch.stack([mass[0] + mass[1], mass[2] + mass[3]]))
    return torch.stack(per_layer)


def top_positions(scores: list[float], first: int, k: int) -> list[int]:
    """Positions ``first + i`` of the k highest scores, earlier on ties, ascending."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(first + i for i in order[:k])


# one block of 32 tokens, budget 24: anchors 0-5, local 26-31, 12 of the 20 candidates 6-25
FIXED = (list(range(6)), list(range(26, 32)))


@pytest.mark.parametrize("granularity", ["layer", "head"])
def test_per_layer_and_per_head_selection_equals_brute_force(
    tiny: Any, tiny_model_dir: Any, granularity: str
) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(budget=24, block_size=32, granularity=granularity)
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    out, _ = plain_forward(tiny_model_dir, context, question, 32)
    mass = per_kv_head_mass(out.attentions, len(question))[..., 6:26]  # (2 layers, 2 kv heads, 20)
    if granularity == "layer":
        mass = mass.sum(1, keepdim=True).expand(2, 2, 20)
    assert result.kept_positions.shape == (2, 2, 24)
    for layer in range(2):
        for head in range(2):
            top = top_positions(mass[layer, head].tolist(), 6, 12)
            assert result.kept_positions[layer, head].tolist() == FIXED[0] + top + FIXED[1]
    rows = {tuple(row) for row in result.kept_positions.reshape(4, 24).tolist()}
    assert len(rows) == (2 if granularity == "layer" else 4), "each layer / head must choose its own set"


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
def test_per_head_caches_are_rectangular_and_hold_the_right_keys(
    tiny: Any, tiny_model_dir: Any, mode: str
) -> None:
    """Over 5 blocks: every layer's cache is (1, kv_heads, n, d) and each head's keys are the
    model's own keys of the positions it says it kept."""
    model, tokenizer = tiny
    context, question = sample(tokenizer, 150)
    method = build_method(budget=32, block_size=32, granularity="head", compression_mode=mode)
    stats = CallStats()
    with torch.no_grad(), hooks.laserkv_attention(model):
        state = prefill_compressed(
            model,
            torch.tensor(context),
            torch.tensor(question),
            method,
            method.split_for(150),
            PhaseTimer(stats, torch.device("cpu")),
        )
    expected = 96 if mode == "accumulate" else 32
    assert state.positions.shape == (2, 2, expected)
    _, full_cache = plain_forward(tiny_model_dir, context, None, 150)
    full_keys, full_values = hooks.kv_from_cache(full_cache)
    for layer in range(2):
        assert state.keys[layer].shape == (1, 2, expected, 8)
        for head in range(2):
            positions = state.positions[layer, head]
            # compressed blocks see less history, so only the first block's keys are exact
            first_block = positions < 32
            kept = state.keys[layer][0, head][first_block]
            torch.testing.assert_close(kept, full_keys[layer][0, head, positions[first_block]])
            torch.testing.assert_close(
                state.values[layer][0, head][first_block], full_values[layer][0, head, positions[first_block]]
            )


@pytest.mark.parametrize("pooling", [1, 3])
def test_query_agnostic_window_scores_equal_brute_force(tiny: Any, tiny_model_dir: Any, pooling: int) -> None:
    """Scores from the block's own last 4 tokens (no question in the forward), optionally pooled."""
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(
        budget=24, block_size=32, query_source="window", observation_window=4, score_pooling=pooling
    )
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    out, _ = plain_forward(tiny_model_dir, context, None, 32)
    scores = pool_scores(per_kv_head_mass(out.attentions, 4).sum((0, 1))[6:26].float(), pooling)
    assert result.kept_positions.tolist() == FIXED[0] + top_positions(scores.tolist(), 6, 12) + FIXED[1]


def test_observation_window_never_reaches_into_the_candidates(tiny: Any) -> None:
    """A window longer than the local window (6 tokens here) is cut to it, as SnapKV always keeps
    its window: scoring rows never score themselves among the candidates."""
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    kept = [
        answer_ids(
            model,
            tokenizer,
            context,
            question,
            build_method(budget=24, block_size=32, query_source="window", observation_window=window),
            ONE_TOKEN,
        ).kept_positions
        for window in (6, 16)
    ]
    assert torch.equal(kept[0], kept[1])


@pytest.mark.parametrize("lsh_mode", ["frequency_rank", "magicpig_baseline"])
def test_lsh_selection_hashes_the_last_layer_head_mean_keys(
    tiny: Any, tiny_model_dir: Any, lsh_mode: str
) -> None:
    """Question vs candidate keys of the last layer (post-RoPE, question at T..), KV-head mean."""
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(selector="lsh", lsh_mode=lsh_mode, lsh_bits=3, lsh_seed=4, budget=24, block_size=32)
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    _, cache = plain_forward(tiny_model_dir, context, question, 32)
    last = hooks.kv_from_cache(cache)[0][-1][0].mean(0)  # (32 + q, 8)
    planes = hyperplanes(8, 3, 8, seed=4)
    queries, candidates = last[32:], last[6:26]
    if lsh_mode == "magicpig_baseline":
        chosen = select_magicpig(queries, candidates, 12, planes, 3)
    else:
        chosen = select_frequency_rank(queries, candidates, 12, planes, 3, "l2")
    assert result.kept_positions.tolist() == FIXED[0] + (6 + chosen).tolist() + FIXED[1]


def run(tiny: Any, method: MethodConfig, seed: int = 31) -> Any:
    model, tokenizer = tiny
    context, question = sample(tokenizer, 150, seed)
    return answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=4))


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
def test_hybrid_at_rho_1_and_0_equals_its_parents_end_to_end(tiny: Any, mode: str) -> None:
    base = dict(budget=32, block_size=32, compression_mode=mode, lsh_bits=3, lsh_mode="magicpig_baseline")
    engine_only = {k: v for k, v in base.items() if not k.startswith("lsh_")}
    exact = run(tiny, build_method(selector="exact", **engine_only))  # type: ignore[arg-type]
    lsh = run(tiny, build_method(selector="lsh", **base))  # type: ignore[arg-type]
    at_one = run(tiny, build_method(selector="hybrid", hybrid_ratio=1.0, **base))  # type: ignore[arg-type]
    at_zero = run(tiny, build_method(selector="hybrid", hybrid_ratio=0.0, **base))  # type: ignore[arg-type]
    half = run(tiny, build_method(selector="hybrid", hybrid_ratio=0.5, **base))  # type: ignore[arg-type]
    assert torch.equal(at_one.kept_positions, exact.kept_positions)
    assert torch.equal(at_zero.kept_positions, lsh.kept_positions)
    assert not torch.equal(exact.kept_positions, lsh.kept_positions), "parents must differ to mean anything"
    assert not torch.equal(half.kept_positions, exact.kept_positions)
    assert not torch.equal(half.kept_positions, lsh.kept_positions)


@pytest.mark.parametrize("name", ["lsh_magicpig", "hybrid_frequency_rank_0.5_recursive"])
def test_runs_are_bit_identical_under_one_seed_and_differ_under_another(tiny: Any, name: str) -> None:
    from laserkv import get_method

    method = get_method(name, budget=32, block_size=32, lsh_bits=3)
    first, again = run(tiny, method), run(tiny, method)
    other = run(tiny, with_params(method, lsh_seed=1))
    assert torch.equal(first.kept_positions, again.kept_positions)
    assert (
        torch.equal(first.first_token_logits, again.first_token_logits) and first.token_ids == again.token_ids
    )
    assert not torch.equal(first.kept_positions, other.kept_positions)


@pytest.mark.parametrize(("mode", "ratio"), [("accumulate", 0.5), ("recursive", 0.5), ("accumulate", 0.25)])
def test_compression_ratio_sets_the_budget_from_the_sample(tiny: Any, mode: str, ratio: float) -> None:
    method = build_method(budget=None, compression_ratio=ratio, compression_mode=mode, block_size=32)
    result = run(tiny, method)
    budget = {("accumulate", 0.5): 26, ("recursive", 0.5): 75, ("accumulate", 0.25): 13}[(mode, ratio)]
    # floor(2 r b S / (b + S)) with b = 32, S = 150: 2 * 0.5 * 32 * 150 / 182 = 26.37; r = 0.25: 13.19
    assert (result.stats.budget, result.stats.compression_ratio) == (budget, ratio)
    if mode == "recursive":
        assert budget == 75 and result.stats.final_cache_length == 75
    else:
        global_part = budget - 2 * (budget // 4)
        assert abs(result.stats.final_cache_length - ratio * 150) <= global_part


def forward_over(
    model_dir: Any, prefix: Any, block: list[int], start: int, question: list[int], context_len: int
) -> Any:
    """The model's own eager forward of ``[block | question]`` over a cache holding ``prefix``."""
    return eager_forward(model_dir, block, start, question, context_len, prefix_kv=prefix)


def brute_force_prefix(cache: Any, kept_slots: torch.Tensor) -> CompressedKV:
    """Block one's kept slots (positions = slots: the block starts at 0) gathered from the
    plain forward's cache: (n,) for every head or (layers, kv_heads, n) per head."""
    keys, values = hooks.kv_from_cache(cache)

    def pick(layer: int, tensor: torch.Tensor) -> torch.Tensor:
        if kept_slots.dim() == 1:
            return tensor[:, :, kept_slots]
        heads = range(tensor.shape[1])
        return torch.stack([tensor[0, head, kept_slots[layer, head]] for head in heads])[None]

    picked_keys = tuple(pick(layer, tensor) for layer, tensor in enumerate(keys))
    picked_values = tuple(pick(layer, tensor) for layer, tensor in enumerate(values))
    return CompressedKV(picked_keys, picked_values, kept_slots)


def lsh_choice(lsh_mode: str, queries: torch.Tensor, candidates: torch.Tensor, n_keep: int) -> torch.Tensor:
    planes = hyperplanes(8, 3, 8, seed=0)
    if lsh_mode == "magicpig_baseline":
        return select_magicpig(queries, candidates, n_keep, planes, 3)
    return select_frequency_rank(queries, candidates, n_keep, planes, 3, "l2")


def test_second_block_per_head_recursive_equals_brute_force(tiny: Any, tiny_model_dir: Any) -> None:
    """Block 2 of a recursive per-head run rescoring each head's own history: 6 anchors + 18
    history slots + 26 block candidates compete for 12 places per layer and KV head."""
    model, tokenizer = tiny
    context, question = sample(tokenizer, 64, seed=41)
    method = build_method(budget=24, block_size=32, compression_mode="recursive", granularity="head")
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    out1, cache1 = plain_forward(tiny_model_dir, context[:32], question, 64)  # block one, question at T=64
    mass1 = per_kv_head_mass(out1.attentions, len(question))[..., 6:26]
    kept1 = [
        [FIXED[0] + top_positions(mass1[layer, head].tolist(), 6, 12) + FIXED[1] for head in range(2)]
        for layer in range(2)
    ]
    prefix = brute_force_prefix(cache1, torch.tensor(kept1))
    assert prefix.positions.shape == (2, 2, 24)
    out, _ = forward_over(tiny_model_dir, prefix, context[32:], 32, question, 64)
    mass = per_kv_head_mass(out.attentions, len(question))  # (2, 2, 24 + 32 + q)
    candidates = list(range(6, 24)) + list(range(24, 24 + 26))
    for layer in range(2):
        for head in range(2):
            slot_positions = prefix.positions[layer, head].tolist() + list(range(32, 64))
            scores = [float(mass[layer, head, slot]) for slot in candidates]
            chosen = [candidates[i] for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:12]]
            kept = sorted(slot_positions[slot] for slot in [*range(6), *chosen, *range(24 + 26, 24 + 32)])
            assert result.kept_positions[layer, head].tolist() == kept


@pytest.mark.parametrize("lsh_mode", ["frequency_rank", "magicpig_baseline"])
def test_second_block_lsh_accumulate_ranks_tail_and_block_equals_brute_force(
    tiny: Any, tiny_model_dir: Any, lsh_mode: str
) -> None:
    """Block 2 of an accumulate LSH run: the held tail (6 slots) and 26 block candidates compete for
    12 places by hashing the last layer's head-mean keys of the forward over state + tail."""
    model, tokenizer = tiny
    context, question = sample(tokenizer, 64, seed=43)
    method = build_method(selector="lsh", lsh_mode=lsh_mode, lsh_bits=3, budget=24, block_size=32)
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    _, cache1 = plain_forward(tiny_model_dir, context[:32], question, 64)  # block one, question at T=64
    last1 = hooks.kv_from_cache(cache1)[0][-1][0].mean(0)
    chosen1 = 6 + lsh_choice(lsh_mode, last1[32:], last1[6:26], 12)
    prefix = brute_force_prefix(cache1, torch.cat([torch.arange(6), chosen1, torch.arange(26, 32)]))
    _, cache = forward_over(tiny_model_dir, prefix, context[32:], 32, question, 64)
    last = hooks.kv_from_cache(cache)[0][-1][0].mean(0)  # (24 + 32 + q, 8)
    candidates = torch.tensor(list(range(18, 24)) + list(range(24, 24 + 26)))
    chosen = lsh_choice(lsh_mode, last[24 + 32 :], last[candidates], 12)
    slot_positions = torch.cat([prefix.positions, torch.arange(32, 64)])
    expected = sorted(prefix.positions[:18].tolist() + slot_positions[candidates[chosen]].tolist())
    assert result.kept_positions.tolist() == expected + list(range(58, 64))
