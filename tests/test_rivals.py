"""The native rivals against brute force, and against kvpress.

Brute force: each rival's published rule computed directly from the model's eager attention
probabilities (``tests.reference.eager_forward``). Cross-checks: with the whole context in one
block, each native rival and its kvpress press with the same settings keep the same positions per
layer and KV head and generate the same tokens; where the settings cannot agree (query-aware
kvpress compresses the question too; the block engine compresses after every block), the tests
pin the difference down.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from laserkv import GenerationConfig, answer_ids, get_method
from laserkv.methods import with_params
from laserkv.prompting import encode_context, encode_question
from tests.reference import eager_forward
from tests.tiny import sentence

pytest.importorskip("kvpress")

GENERATION = GenerationConfig(max_new_tokens=6)
T, Q = 96, 10


def sample(tokenizer: Any, seed: int = 31) -> tuple[list[int], list[int]]:
    context = encode_context(tokenizer, sentence(T, seed))
    return context, encode_question(tokenizer, sentence(Q - 4, seed + 1))


def kv_head_mass(attentions: Any, rows: slice, keys: slice, n_kv_heads: int) -> Tensor:
    """(layers, kv_heads, keys) attention mass of ``rows`` summed over rows and each KV head's
    query heads, in float64."""
    per_layer = []
    for layer in attentions:
        mass = layer[0, :, rows, keys].double().sum(1)  # (heads, keys)
        per_layer.append(mass.reshape(n_kv_heads, -1, mass.shape[-1]).sum(1))
    return torch.stack(per_layer)


def top_sorted(scores: Tensor, k: int, offset: int = 0) -> Tensor:
    """Ascending indices (plus ``offset``) of the ``k`` highest scores along the last dimension."""
    return torch.sort(torch.topk(scores, k, dim=-1).indices, dim=-1).values + offset


def avg_pool(scores: Tensor, kernel: int) -> Tensor:
    """Brute-force zero-padded average over ``kernel`` neighbours (divided by ``kernel``)."""
    n, half = scores.shape[-1], kernel // 2
    pooled = torch.zeros_like(scores)
    for j in range(n):
        pooled[..., j] = scores[..., max(0, j - half) : j + half + 1].sum(-1) / kernel
    return pooled


def run(model: Any, tokenizer: Any, name: str, **params: object) -> Any:
    context, question = sample(tokenizer)
    return answer_ids(model, tokenizer, context, question, get_method(name, **params), GENERATION)


def one_block(budget: int) -> dict[str, object]:
    return {"budget": budget, "block_size": 4096}


def test_snapkv_keeps_the_pooled_top_of_the_questions_attention(tiny: Any, tiny_model_dir: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    kept = run(model, tokenizer, "snapkv", **one_block(40)).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, question, len(context))[0].attentions
    rows = slice(len(context) + len(question) - min(32, len(question)), None)  # the last 32 prompt rows
    mass = kv_head_mass(attentions, rows, slice(0, len(context)), kept.shape[1])
    assert torch.equal(kept, top_sorted(avg_pool(mass, 5), 40))


def test_snapkv_agnostic_keeps_its_window_and_the_pooled_top_before_it(
    tiny: Any, tiny_model_dir: Any
) -> None:
    model, tokenizer = tiny
    context, _ = sample(tokenizer)
    kept = run(model, tokenizer, "snapkv_agnostic", **one_block(48)).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, None, len(context))[0].attentions
    n, window = len(context), 32
    mass = kv_head_mass(attentions, slice(n - window, n), slice(0, n - window), kept.shape[1])
    expected = top_sorted(avg_pool(mass, 5), 48 - window)
    recent = torch.arange(n - window, n).expand(*expected.shape[:2], window)
    assert torch.equal(kept, torch.cat([expected, recent], dim=-1))


def test_h2o_keeps_the_heavy_hitters_of_all_rows_and_a_recent_half(tiny: Any, tiny_model_dir: Any) -> None:
    model, tokenizer = tiny
    context, _ = sample(tokenizer)
    kept = run(model, tokenizer, "h2o", **one_block(40)).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, None, len(context))[0].attentions
    n, recent = len(context), 20
    mass = kv_head_mass(attentions, slice(None), slice(0, n - recent), kept.shape[1])
    heavy = top_sorted(mass, 40 - recent)
    window = torch.arange(n - recent, n).expand(*heavy.shape[:2], recent)
    assert torch.equal(kept, torch.cat([heavy, window], dim=-1))


def test_h2o_carries_its_scores_from_block_to_block(tiny: Any, tiny_model_dir: Any) -> None:
    """Two blocks: a token kept from the first block competes in the second with the attention
    it received in both; the brute force forwards the second block over the first's kept KV."""
    model, tokenizer = tiny
    context, _ = sample(tokenizer)
    budget, half, recent = 24, T // 2, 12
    kept = run(model, tokenizer, "h2o", budget=budget, block_size=half).kept_positions
    first_out, first_cache = eager_forward(tiny_model_dir, context[:half], 0, None, T)
    kv_heads = kept.shape[1]
    first = kv_head_mass(first_out.attentions, slice(None), slice(None), kv_heads)  # (L, H, half)
    first_kept = torch.cat(
        [top_sorted(first[..., : half - recent], budget - recent), torch.arange(half - recent, half).expand(
            *first.shape[:2], recent)], dim=-1,
    )  # fmt: skip
    prefix = _gather_cache(first_cache, first_kept)
    second_out, _ = eager_forward(tiny_model_dir, context[half:], half, None, T, prefix_kv=prefix)
    second = kv_head_mass(second_out.attentions, slice(None), slice(None), kv_heads)  # (L, H, 24 + 48)
    carried = second.clone()
    carried[..., :budget] += torch.gather(first, -1, first_kept)
    candidates = carried[..., : budget + half - recent]
    slots = top_sorted(candidates, budget - recent)
    positions = torch.cat([first_kept, torch.arange(half, T).expand(*first.shape[:2], half)], dim=-1)
    chosen = torch.gather(positions, -1, slots)
    expected = torch.cat([chosen, torch.arange(T - recent, T).expand(*first.shape[:2], recent)], dim=-1)
    assert torch.equal(kept, expected)


class _PerHeadKV:
    """A cache's per-layer keys and values gathered per KV head (``eager_forward``'s prefix)."""

    def __init__(self, keys: list[Tensor], values: list[Tensor]) -> None:
        self.keys, self.values = keys, values


def _gather_cache(cache: Any, slots: Tensor) -> _PerHeadKV:
    keys, values = [], []
    for layer, layer_slots in zip(cache.layers, slots, strict=True):
        index = layer_slots[None, :, :, None].expand(1, -1, -1, layer.keys.shape[-1])
        keys.append(torch.gather(layer.keys, 2, index))
        values.append(torch.gather(layer.values, 2, index))
    return _PerHeadKV(keys, values)


def test_tova_keeps_what_the_questions_last_token_attends_to_per_layer(
    tiny: Any, tiny_model_dir: Any
) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    kept = run(model, tokenizer, "tova", **one_block(40)).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, question, len(context))[0].attentions
    mass = kv_head_mass(attentions, slice(-1, None), slice(0, len(context)), 1)  # all heads summed
    expected = top_sorted(mass, 40).expand(-1, kept.shape[1], -1)
    assert torch.equal(kept, expected)


def test_tova_agnostic_scores_with_the_blocks_last_token_and_keeps_it(tiny: Any, tiny_model_dir: Any) -> None:
    model, tokenizer = tiny
    context, _ = sample(tokenizer)
    kept = run(model, tokenizer, "tova_agnostic", **one_block(40)).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, None, len(context))[0].attentions
    n = len(context)
    mass = kv_head_mass(attentions, slice(-1, None), slice(0, n - 1), 1)
    expected = torch.cat([top_sorted(mass, 39), torch.full((mass.shape[0], 1, 1), n - 1)], dim=-1)
    assert torch.equal(kept, expected.expand(-1, kept.shape[1], -1))


def test_streaming_keeps_four_sinks_and_the_most_recent_tokens(tiny: Any) -> None:
    model, tokenizer = tiny
    result = run(model, tokenizer, "streaming", budget=32, block_size=32)
    assert result.kept_positions.tolist() == [0, 1, 2, 3, *range(T - 28, T)]
    assert result.stats.cache_length_per_block == [32, 32, 32]


CROSS_CHECKS = [
    # (native method, its overrides, kvpress method, the press's overrides)
    (
        "snapkv_agnostic",
        {"observation_window": 16, "local_tokens": 16},
        "kvpress:snapkv",
        {"press.window_size": 16},
    ),
    ("streaming", {}, "kvpress:streaming_llm", {}),
    ("tova_agnostic", {}, "kvpress:tova", {}),
    ("h2o", {"average_by_row_count": True, "local_fraction": 0.0}, "kvpress:observed_attention", {}),
]


@pytest.mark.parametrize(
    ("native", "settings", "press", "press_settings"), CROSS_CHECKS, ids=[c[0] for c in CROSS_CHECKS]
)
def test_a_native_rival_and_its_kvpress_press_keep_the_same_positions_and_tokens(
    tiny: Any, native: str, settings: dict[str, object], press: str, press_settings: dict[str, object]
) -> None:
    model, tokenizer = tiny
    ours = run(model, tokenizer, native, **one_block(40), **settings)
    theirs = run(model, tokenizer, press, budget=40, **press_settings)
    positions = ours.kept_positions
    positions = positions.expand(2, 2, -1) if positions.dim() == 1 else positions  # one set for all heads
    assert positions.shape == theirs.kept_positions.shape == (2, 2, 40)
    assert torch.equal(positions, theirs.kept_positions)
    assert ours.token_ids == theirs.token_ids
    torch.testing.assert_close(ours.first_token_logits, theirs.first_token_logits, rtol=1e-4, atol=1e-4)
    assert ours.stats.final_cache_length == theirs.stats.final_cache_length == 40
    for stats in (ours.stats, theirs.stats):  # both the single-prefill form: one compression
        assert (stats.one_shot, stats.compression_rounds) == (True, 1)


@pytest.mark.parametrize(
    ("native", "settings", "press", "press_settings"), CROSS_CHECKS, ids=[c[0] for c in CROSS_CHECKS]
)
def test_one_shot_at_a_ratio_keeps_the_presses_count_and_positions(
    tiny: Any, native: str, settings: dict[str, object], press: str, press_settings: dict[str, object]
) -> None:
    """Equal tokens at a ratio: the native method one-shot (``block_size >= T``) under the exact
    rule keeps floor(r T), as the press does, the same positions and the same first logits."""
    model, tokenizer = tiny
    ratio, n_kept = 0.4, int(0.4 * T)  # 38 of 96
    ours = run(
        model, tokenizer, native, compression_ratio=ratio, block_size=T, budget_rule="exact", **settings
    )
    theirs = run(model, tokenizer, press, compression_ratio=ratio, **press_settings)
    positions = ours.kept_positions
    positions = positions.expand(2, 2, -1) if positions.dim() == 1 else positions
    assert positions.shape == theirs.kept_positions.shape == (2, 2, n_kept)
    assert torch.equal(positions, theirs.kept_positions)
    torch.testing.assert_close(ours.first_token_logits, theirs.first_token_logits, rtol=1e-4, atol=1e-4)
    assert ours.stats.final_cache_length == theirs.stats.final_cache_length == ours.stats.budget == n_kept
    assert ours.stats.one_shot and ours.stats.compression_rounds == 1


def test_pyramidkv_keeps_what_the_other_presses_keep_at_every_length() -> None:
    """PyramidKV rounds its layer budgets (their mean is ``n (1 - ratio)``; short contexts fall
    back to ``round(n (1 - ratio))``) where the other presses truncate ``int(n (1 - ratio))``: aimed
    half a token above B like them it kept B + 1 on about half of the lengths; aimed at B, the
    kept count (the layers' mean, rounded, as the bridge records it) is B at every length, for
    short and long contexts, few and many layers (PyramidKV's default beta 20; a much steeper
    pyramid, beta 2, can still move its own rounded layer budgets' mean by half a token). The
    truncating presses' ratio is unchanged."""
    from types import SimpleNamespace

    from kvpress import PyramidKVPress

    from laserkv.kvpress_bridge import press_ratio
    from laserkv.selectors.kvpress import PRESSES

    def kept(ratio: float, n_tokens: int, n_layers: int, window: int) -> int:
        press = PyramidKVPress(compression_ratio=ratio, window_size=window)
        config = SimpleNamespace(num_hidden_layers=n_layers)
        budgets = [
            press.get_layer_budget(SimpleNamespace(config=config, layer_idx=layer), n_tokens)  # type: ignore[arg-type]
            for layer in range(n_layers)
        ]
        return round(sum(budgets) / n_layers)

    assert [name for name, spec in PRESSES.items() if spec.rounds] == ["pyramidkv"]
    off_by_one = 0
    for n_layers, window in [(2, 2), (32, 64), (28, 8)]:
        for ratio in (0.25, 0.1):
            for n_tokens in [*range(200, 400), *range(16000, 16050)]:
                n_keep = int(ratio * n_tokens)
                assert kept(press_ratio(n_keep, n_tokens, rounds=True), n_tokens, n_layers, window) == n_keep
                assert int(n_tokens * (1 - press_ratio(n_keep, n_tokens))) == n_keep  # the truncating presses
                off_by_one += kept(press_ratio(n_keep, n_tokens), n_tokens, n_layers, window) != n_keep
    assert off_by_one > 0  # the old aim: B + 1 on some lengths


def test_pyramidkv_keeps_b_on_a_model_at_consecutive_lengths(tiny: Any) -> None:
    model, tokenizer = tiny
    question = encode_question(tokenizer, sentence(Q - 4, 2))
    for n_tokens in range(202, 208):  # B = 50, 51 (the old aim kept 52 from 204 on); B / 20 >= window
        context = encode_context(tokenizer, sentence(n_tokens, n_tokens))
        pyramid = {"press.window_size": 2}  # the pyramid, not its fallback
        for name, params in [("kvpress:pyramidkv", pyramid), ("kvpress:snapkv", {"press.window_size": 8})]:
            method = get_method(name, compression_ratio=0.25, **params)
            result = answer_ids(
                model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=1)
            )
            assert result.stats.final_cache_length == n_tokens // 4, (name, n_tokens)
            assert (result.stats.one_shot, result.stats.compression_rounds) == (True, 1)


def test_query_aware_snapkv_matches_kvpress_on_the_context_it_keeps(tiny: Any) -> None:
    """kvpress's query-aware run compresses ``[context | question]`` with the question as the
    window, so it keeps the same context positions. Its question is compressed without the chat
    template's generation prompt, which then follows over the compressed cache; where that suffix
    is unknown (0 tokens) the whole question is compressed and the first logits come from a
    forward that saw the whole context, i.e. they are the full cache's."""
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    ours = run(model, tokenizer, "snapkv", **one_block(40))
    press = get_method("kvpress:snapkv_query_aware", budget=40, **{"press.window_size": len(question)})
    whole = answer_ids(model, tokenizer, context, question, press, GENERATION)
    assert torch.equal(ours.kept_positions, whole.kept_positions)
    full = run(model, tokenizer, "full")
    torch.testing.assert_close(whole.first_token_logits, full.first_token_logits, rtol=1e-4, atol=1e-4)
    suffix = 1  # the tiny template's generation prompt, <|assistant|>
    body_window = with_params(press, **{"press.window_size": len(question) - suffix})
    split = answer_ids(model, tokenizer, context, question, body_window, GENERATION, suffix)
    assert split.stats.final_cache_length == 40
    assert not torch.allclose(split.first_token_logits, full.first_token_logits, rtol=1e-4, atol=1e-4)


def test_chunked_prefill_keeps_the_cache_within_the_budget_where_kvpress_holds_the_whole_context(
    tiny: Any,
) -> None:
    """The block engine compresses after every block (its cache never exceeds B between blocks),
    kvpress once after the whole context: with one block they agree (above), with three they do not."""
    model, tokenizer = tiny
    chunked = run(
        model, tokenizer, "snapkv_agnostic", budget=40, block_size=32, observation_window=16, local_tokens=16
    )
    whole = run(model, tokenizer, "kvpress:snapkv", budget=40, **{"press.window_size": 16})
    assert chunked.stats.cache_length_per_block == [32, 40, 40]
    assert whole.stats.cache_length_per_block == [40]
    assert not torch.equal(chunked.kept_positions, whole.kept_positions)


def test_the_rivals_grid_runs_laser_against_every_rival_at_one_budget() -> None:
    from cluster.presets import sweep_methods
    from laserkv.methods import RIVALS

    methods = sweep_methods("rivals", {"budget": 512})
    names = [method.name for method in methods]
    assert names[:3] == ["full", "laser", "laser_recursive"] and set(RIVALS) <= set(names)
    presses = {name for name in names if name.startswith("kvpress:")}
    assert {f"kvpress:{press}" for press in ("snapkv", "pyramidkv", "adakv_snapkv", "knorm")} <= presses
    assert {name + "_query_aware" for name in presses if not name.endswith("_query_aware")} <= presses
    assert {method.engine.budget for method in methods if method.name != "full"} == {512}
    assert {method.selector.protocol for method in methods} == {"query-aware", "query-agnostic"}


def test_the_quality_v2_grid_keeps_the_same_fractions_for_every_method() -> None:
    from cluster.presets import sweep_methods
    from laserkv.methods import RIVALS

    methods = sweep_methods("quality-v2", {})
    names = [method.name for method in methods]
    assert names[0] == "full" and len(names) == len(set(names)) == 1 + 2 * (2 + 2 + len(RIVALS) + 4 + 1)
    assert {"laser[compression_ratio=0.25]", "laser[compression_ratio=0.125,score_pooling=7]"} <= set(names)
    presses = ("kvpress:snapkv", "kvpress:pyramidkv", "kvpress:expected_attention", "kvpress:tova")
    for rival in ("exact", "lsh_magicpig", "laser_recursive", *RIVALS, *presses):
        assert f"{rival}[compression_ratio=0.125]" in names
    ratios = {method.engine.compression_ratio for method in methods if method.name != "full"}
    assert ratios == {0.25, 0.125}
    assert {method.selector.protocol for method in methods} == {"query-aware", "query-agnostic"}


def _cudnn_flags_while_answering(model: Any, tokenizer: Any, name: str, **params: object) -> list[bool]:
    """Whether SDPA's cuDNN backend was enabled at each forward of the first layer (the prefill's,
    then the question's and every decoding step's)."""
    seen: list[bool] = []
    layer = model.model.layers[0]
    handle = layer.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    try:
        run(model, tokenizer, name, **params)
    finally:
        handle.remove()
    return seen


def test_uneven_layers_decode_without_cudnn_sdpa_and_even_ones_keep_it(tiny: Any) -> None:
    """PyramidKV's layers keep different numbers of keys, so every layer meets a new SDPA shape at
    every step: its question and answer forwards run without cuDNN SDPA (which builds a plan per
    shape). Its prefill, and presses whose layers keep equally many, keep the default backends."""
    model, tokenizer = tiny
    pyramid = {"budget": 48, "press.window_size": 2}
    lengths = run(model, tokenizer, "kvpress:pyramidkv", **pyramid).kept_positions
    assert int((lengths[0] >= 0).sum()) != int((lengths[1] >= 0).sum())  # layers keep different numbers
    flags = _cudnn_flags_while_answering(model, tokenizer, "kvpress:pyramidkv", **pyramid)
    assert flags[0] and len(flags) > 2 and not any(flags[1:])
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored afterwards
    even = _cudnn_flags_while_answering(model, tokenizer, "kvpress:snapkv", budget=48)
    assert len(even) > 2 and all(even)


def kvpress_own_answer(
    model: Any, tokenizer: Any, name: str, **params: object
) -> tuple[list[int], Tensor, Any]:
    """The reference for ragged caches, independent of the bridge's bookkeeping: the press's own
    prefill (over the context, plus the question when query-aware) leaves kvpress's cache and its
    ``masked_key_indices``; the rest of the question (none when query-aware) and the answer then
    go one token at a time under kvpress's patched SDPA, which overwrites the masked keys with a
    fake key at every forward; greedy. Returns the tokens, the first logits and the cache."""
    from transformers import DynamicCache

    from laserkv import hooks
    from laserkv.kvpress_bridge import press_attention, press_ratio

    context, question = sample(tokenizer)
    method = get_method(name, **params)
    query_aware = "query_aware" in name
    sequence = context + question if query_aware else context
    n_keep = method.split_for(len(context)).total + (len(question) if query_aware else 0)
    press = method.selector.build(press_ratio(n_keep, len(sequence), method.selector.rounds))
    cache = DynamicCache(config=model.config)
    with press_attention(model, method), torch.inference_mode():
        with hooks.cache_position_restored(model), press(model):
            ids, positions = torch.tensor([sequence]), torch.arange(len(sequence))[None]
            states = hooks.forward_body(model, ids, positions, cache)
        position = len(sequence)
        for token in [] if query_aware else question:
            states = hooks.forward_body(model, torch.tensor([[token]]), torch.tensor([[position]]), cache)
            position += 1
        first = logits = hooks.next_token_logits(model, states[:, -1])[0]
        masks = hooks.module_attribute(model, "masked_key_indices")
        answer: list[int] = []
        while len(answer) < GENERATION.max_new_tokens:
            answer.append(int(logits.argmax()))
            states = hooks.forward_body(
                model, torch.tensor([[answer[-1]]]), torch.tensor([[position]]), cache
            )
            logits, position = hooks.next_token_logits(model, states[:, -1])[0], position + 1
    return answer, first, (cache, masks)


RAGGED_PRESSES = [
    ("kvpress:expected_attention", {"budget": 40}),  # AdaKV: keys masked per head
    ("kvpress:adakv_snapkv", {"budget": 40}),
    ("kvpress:pyramidkv", {"budget": 40, "press.window_size": 2}),  # layers keep different numbers
]


@pytest.mark.parametrize(
    ("name", "params"),
    [*RAGGED_PRESSES, *((name + "_query_aware", params) for name, params in RAGGED_PRESSES)],
)
def test_a_ragged_cache_answers_as_kvpress_own_masking_does(
    tiny: Any, name: str, params: dict[str, object]
) -> None:
    """The bridge answers a ragged cache with the question in one forward under its ragged
    attention (masked keys get no weight, causal per layer): the same first logits and tokens as
    kvpress's own prefill and fake-key masking, one token at a time (query-aware: the question
    compressed with the context, only the answer decoded over it)."""
    model, tokenizer = tiny
    result = run(model, tokenizer, name, **params)
    expected_tokens, expected_logits, (cache, masks) = kvpress_own_answer(model, tokenizer, name, **params)
    if name.startswith("kvpress:pyramidkv"):
        assert len({int(layer.keys.shape[2]) for layer in cache.layers}) > 1  # uneven layers
    else:
        assert all(mask is not None and mask[0].numel() > 0 for mask in masks)  # every layer masks keys
    eos = tokenizer.eos_token_id
    cut = expected_tokens.index(eos) if eos in expected_tokens else len(expected_tokens)
    assert result.token_ids == expected_tokens[:cut]
    torch.testing.assert_close(result.first_token_logits, expected_logits, atol=1e-4, rtol=1e-4)


def test_equal_keys_at_several_positions_match_in_order() -> None:
    """Brute force: each kept fingerprint maps to a distinct prefill position holding the same
    fingerprint, copies in order (a zero embedding gives equal keys at every position it sits)."""
    from laserkv.kvpress_bridge import copy_index, match_positions

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        full = torch.randint(0, 6, (2, 30), generator=generator)  # many equal fingerprints
        keep = torch.stack([torch.randperm(30, generator=generator)[:12] for _ in range(2)])
        kept = torch.gather(full, -1, keep)
        found = match_positions(full, kept)
        for head in range(2):
            assert torch.equal(full[head, found[head]], kept[head])
            assert len(set(found[head].tolist())) == 12
            for value in set(kept[head].tolist()):  # the j-th kept copy takes the j-th position
                copies = found[head][kept[head] == value].tolist()
                assert copies == sorted((full[head] == value).nonzero().flatten().tolist())[: len(copies)]
        assert [row.tolist() for row in copy_index(torch.tensor([[5, 3, 5, 5, 3, 1]]))] == [
            [0, 0, 1, 2, 1, 0]
        ]
    with pytest.raises(RuntimeError, match="did not produce"):
        match_positions(torch.tensor([[7, 0, 3]]), torch.tensor([[3, 3]]))  # kept more often than made


def test_the_bridges_gather_checks_and_moves_to_the_host_once() -> None:
    """``matched_positions`` reports (does not raise) a key the prefill did not produce;
    ``_to_host`` returns every tensor's values and shape from one concatenated transfer;
    ``_trimmed`` drops only the -1 columns that every head has."""
    from laserkv.kvpress_bridge import _to_host, _trimmed, _visible_positions, matched_positions

    full = torch.tensor([[7, 0, 3, 5]])
    positions, found = matched_positions(full, torch.tensor([[3, 7]]))
    assert positions.tolist() == [[2, 0]] and bool(found)
    assert not bool(matched_positions(full, torch.tensor([[3, 4]]))[1])  # 4 was never produced
    assert not bool(matched_positions(full, torch.tensor([[3, 3]]))[1])  # nor 3 twice
    tensors = [torch.arange(6).reshape(2, 3), torch.tensor([True, False]), torch.tensor(5), torch.empty(0, 4)]
    back = _to_host([tensor.long() if tensor.dtype != torch.bool else tensor for tensor in tensors])
    assert [tuple(item.shape) for item in back] == [(2, 3), (2,), (), (0, 4)]
    assert back[0].tolist() == [[0, 1, 2], [3, 4, 5]] and back[1].tolist() == [1, 0] and int(back[2]) == 5
    assert all(item.dtype == torch.int64 for item in back)
    masked = torch.tensor([[False, True, False, False], [False, False, False, False]])
    keyed, counts = _visible_positions(torch.tensor([[0, 2, 5, 9], [1, 3, 4, 6]]), masked, 6)
    assert counts.tolist() == [2, 3]  # head 0: slot 1 masked, position 9 past the context; head 1: 6 is
    assert _trimmed(keyed, counts).tolist() == [[-1, 0, 5], [1, 3, 4]]
    one_head = _visible_positions(torch.tensor([[0, 7, 8]]), torch.zeros(1, 3, dtype=torch.bool), 6)
    assert _trimmed(*one_head).tolist() == [[0]]
