"""Equal tokens on demand (``budget_rule="exact"``) and one-shot forms (``block_size >= T``).

- the exact rule's arithmetic (``share_out``, ``budget_for_target``) and, from the engine's own
  block plans, a final cache of exactly ``floor(r T)`` (or B) for every registered block-engine
  method, both modes, 200 consecutive context lengths for LASER-KV;
- the engine on a tiny model: every native selector kind keeps exactly ``floor(r T)``, in
  accumulate and recursive mode, over several blocks and in one block; its stats say how many
  times it compressed and whether the prefill was one-shot;
- LASER-KV one-shot: the original rule keeps ``floor(2 r b T / (b + T))`` (up to twice r T),
  the exact rule ``floor(r T)`` with LASER-KV's own split of it;
- the original rule is untouched (every registered method's hash, the values it kept before).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from laserkv import GenerationConfig, answer_ids, build_method, get_method
from laserkv.budget import budget_for_target, share_out
from laserkv.config import HASH_V1_DEFAULTS, params_hash
from laserkv.errors import ConfigError
from laserkv.methods import METHODS, with_params
from laserkv.modeling import load_model_and_tokenizer
from laserkv.modes import block_globals, forward_slots_needed
from laserkv.prompting import encode_context, encode_question
from tests.tiny import sentence

ONE_TOKEN = GenerationConfig(max_new_tokens=1)


def block_methods() -> list[str]:
    """Every registered method the block engine runs with a budget."""
    names = []
    for name, factory in METHODS.items():
        if name.startswith("kvpress:"):
            continue
        method = factory()
        if method.selector.evicts and method.selector.prefill == "blocks":
            names.append(name)
    return names


def planned_final(name: str, context_len: int, **params: object) -> int:
    """The final cache length the engine's block plans give."""
    method = get_method(name, **params)
    return forward_slots_needed(method.engine, method.split_for(context_len), context_len, 0)[1]


# --- arithmetic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "capacities", "shares"),
    [
        (10, [5, 5], [5, 5]),
        (7, [10, 10, 10], [3, 2, 2]),  # ties of the remainder go to the earlier part
        (7, [4, 10, 3], [2, 4, 1]),
        (0, [4, 3], [0, 0]),
        (20, [4, 3], [4, 3]),  # more than the parts hold: all of them
        (5, [0, 9, 0, 1], [0, 5, 0, 0]),
    ],
)
def test_share_out_is_proportional_largest_remainder_and_capped(
    total: int, capacities: list[int], shares: list[int]
) -> None:
    assert share_out(total, capacities) == shares


def test_share_out_sums_exactly_over_many_cases() -> None:
    for total in range(0, 60, 7):
        for capacities in ([13, 13, 13, 2], [1, 2, 3, 4, 5, 6], [40], [0, 0, 31]):
            shares = share_out(total, capacities)
            assert sum(shares) == min(total, sum(capacities))
            assert all(0 <= share <= capacity for share, capacity in zip(shares, capacities, strict=True))


def test_the_split_budget_of_a_target() -> None:
    # one block (b >= T) or recursive: the target itself
    assert budget_for_target(3991, 15965, "accumulate", 131072, 4) == 3991
    assert budget_for_target(3991, 15965, "recursive", 4096, 4) == 3991
    # four blocks, n = 4: floor(4 N / (2 + 4 * 2)); n = 3: floor(3 N / (2 + 4))
    assert budget_for_target(3991, 15965, "accumulate", 4096, 4) == 3991 * 4 // 10
    assert budget_for_target(3991, 15965, "accumulate", 4096, 3) == 3991 * 3 // 6
    # fixed slots (4 anchors, 32 local): (N + 3 * 36) / 4
    assert budget_for_target(3991, 15965, "accumulate", 4096, None, (4, 32, 0.0)) == (3991 + 3 * 36) // 4
    assert budget_for_target(3, 15965, "accumulate", 64, 4) == 1  # never below one token


# --- the plans: exactly floor(r T) -------------------------------------------------------------


@pytest.mark.parametrize(("block_size", "ratio"), [(64, 0.25), (100, 0.1), (4096, 0.25), (37, 0.5)])
@pytest.mark.parametrize("name", ["laser", "laser_recursive"])
def test_laser_plans_keep_exactly_floor_rt_over_200_lengths(name: str, block_size: int, ratio: float) -> None:
    for context_len in range(300, 500):
        exact = planned_final(
            name, context_len, compression_ratio=ratio, block_size=block_size, budget_rule="exact"
        )
        assert exact == math.floor(ratio * context_len), (context_len, exact)


def test_the_original_accumulate_rule_keeps_more_than_the_ratio() -> None:
    """The issue's finding, kept as the default: at 15,965 tokens, r = 0.25, b = 4096, LASER-KV
    keeps 4,074 where the rivals keep 3,991; one-shot (b >= T) it keeps floor(2 r b T / (b + T))."""
    assert planned_final("laser", 15965, compression_ratio=0.25) == 4074
    assert planned_final("snapkv", 15965, compression_ratio=0.25) == 3991
    one_shot = planned_final("laser", 15965, compression_ratio=0.25, block_size=131072)
    assert one_shot == math.floor(2 * 0.25 * 131072 * 15965 / (131072 + 15965)) == 7115
    assert planned_final("laser", 15965, compression_ratio=0.25, budget_rule="exact") == 3991
    assert (
        planned_final("laser", 15965, compression_ratio=0.25, block_size=131072, budget_rule="exact") == 3991
    )


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
@pytest.mark.parametrize("name", block_methods())
def test_every_block_method_plans_exactly_the_target(name: str, mode: str) -> None:
    for context_len, block_size in [(1000, 64), (4097, 4096), (3000, 4096), (777, 100), (1500, 256)]:
        for ratio in (0.25, 0.1):
            params = {"compression_ratio": ratio, "block_size": block_size, "compression_mode": mode}
            try:
                get_method(name, **params).split_for(context_len)
            except ConfigError:  # the rule the rival publishes cannot split this budget: same for both
                with pytest.raises(ConfigError):
                    get_method(name, **params, budget_rule="exact").split_for(context_len)
                continue
            exact = planned_final(name, context_len, **params, budget_rule="exact")
            assert exact == math.floor(ratio * context_len), (context_len, block_size, ratio)
        budget = planned_final(
            name, 1000, budget=90, block_size=64, compression_mode=mode, budget_rule="exact"
        )
        assert budget == 90


def test_the_exact_rule_with_the_originals_flags_still_keeps_the_target() -> None:
    """Faithful empty blocks (a last block shorter than the local window drops the held tail) and
    the faithful recursive budget (a fixed global part) do not stop the exact count."""
    for context_len in range(1000, 1100):
        for mode in ("accumulate", "recursive"):
            final = planned_final(
                "laser", context_len, compression_ratio=0.25, block_size=64, compression_mode=mode,
                faithful_empty_block=True, faithful_recursive_budget=True, budget_rule="exact",
            )  # fmt: skip
            assert final == math.floor(0.25 * context_len), (mode, context_len)


def test_a_target_below_the_fixed_slots_is_refused() -> None:
    """The split of ``budget_for_target`` always leaves room (a budget below the fixed slots is
    refused first); a split made by hand may not."""
    method = build_method(budget=None, compression_ratio=0.5, block_size=64, budget_rule="exact")
    split = dataclasses.replace(method.split_for(100), anchors=4, local=20, target=10)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"budget_rule='exact'.*below the 4 anchors plus the 20-token local tail"
    ):
        block_globals(method.engine, split, 100)


# --- the original rule is untouched ------------------------------------------------------------


def test_the_default_rule_changes_no_hash_and_the_exact_one_does() -> None:
    assert get_method("laser").config_hash == "b81fe6ba5f1a9672"
    for name, factory in METHODS.items():
        try:
            method = factory()
        except Exception:  # kvpress not installed: nothing to hash
            continue
        params = method.params()
        assert params["budget_rule"] == "original"
        without = {key: value for key, value in params.items() if key != "budget_rule"}
        assert method.config_hash == params_hash(without, method.param_defaults()), name
    assert "budget_rule" not in HASH_V1_DEFAULTS
    exact = get_method("laser", compression_ratio=0.25, budget_rule="exact")
    assert exact.config_hash != get_method("laser", compression_ratio=0.25).config_hash
    assert with_params(exact, budget_rule="original") == get_method("laser", compression_ratio=0.25)


def test_the_rule_is_an_override_like_any_engine_field() -> None:
    from cluster.presets import sweep_methods

    method = get_method("laser", compression_ratio=0.25, budget_rule="exact")
    assert method.engine.budget_rule == "exact" and method.params()["budget_rule"] == "exact"
    assert build_method(budget=64, budget_rule="exact").split_for(1000).target == 64  # type: ignore[union-attr]
    assert get_method("laser").split_for(1000).target is None  # type: ignore[union-attr]
    methods = sweep_methods("rivals", {"budget": 512, "budget_rule": "exact"})
    assert {m.engine.budget_rule for m in methods if m.selector.evicts} == {"exact"}
    with pytest.raises(ConfigError, match="budget_rule='equal' is not allowed: one of original, exact"):
        get_method("laser", budget_rule="equal")


# --- the engine on a tiny model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Any) -> Any:
    return load_model_and_tokenizer(str(tiny_llama_dir), device="cpu", dtype="float32")


def run(llama: Any, n_context: int, method: Any, seed: int = 5) -> Any:
    model, tokenizer = llama
    context = encode_context(tokenizer, sentence(n_context, seed))
    question = encode_question(tokenizer, sentence(6, seed + 1))
    assert len(context) == n_context
    return answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)


KINDS = ["laser", "exact", "lsh_magicpig", "snapkv", "snapkv_agnostic", "h2o", "tova", "streaming"]
"""One registered method per native selector kind (hybrid, exact, lsh, snapkv query-aware and
agnostic, h2o, tova, recency)."""


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
@pytest.mark.parametrize("name", KINDS)
def test_every_native_selector_keeps_exactly_floor_rt(llama: Any, name: str, mode: str) -> None:
    for n_context, block_size, ratio in [(150, 32, 0.3), (257, 64, 0.25), (100, 4096, 0.4)]:
        method = get_method(
            name, compression_ratio=ratio, block_size=block_size, compression_mode=mode, budget_rule="exact"
        )
        result = run(llama, n_context, method)
        target = math.floor(ratio * n_context)
        assert result.stats.final_cache_length == result.stats.budget == target, (n_context, block_size)
        kept = result.kept_positions
        assert kept.shape[-1] == target and bool((kept >= 0).all())
        n_blocks = -(-n_context // block_size)
        assert result.stats.one_shot == (n_blocks == 1)
        assert 1 <= result.stats.compression_rounds <= n_blocks


def test_a_budget_is_kept_exactly_in_accumulate_mode_too(llama: Any) -> None:
    original = run(llama, 200, get_method("laser", budget=40, block_size=32))
    exact = run(llama, 200, get_method("laser", budget=40, block_size=32, budget_rule="exact"))
    assert original.stats.final_cache_length > 40  # accumulate: each block adds its global part
    assert exact.stats.final_cache_length == exact.stats.budget == 40
    assert exact.stats.cache_length_per_block[-1] == 40 and len(exact.stats.cache_length_per_block) == 7


def test_laser_one_shot_keeps_floor_rt_with_its_own_split(llama: Any) -> None:
    """One block: one forward of ``[context | question]``, one selection. The original rule keeps
    B = floor(2 r b T / (b + T)) (48 of 100 at r = 0.25); the exact rule floor(r T) = 25, split as
    LASER-KV splits a budget: 6 anchors, the last 6 tokens, 13 chosen."""
    original = run(llama, 100, get_method("laser", compression_ratio=0.25))
    assert original.stats.final_cache_length == original.stats.budget == 48
    result = run(llama, 100, get_method("laser", compression_ratio=0.25, budget_rule="exact"))
    assert result.stats.final_cache_length == 25 and result.stats.cache_length_per_block == [25]
    assert (result.stats.one_shot, result.stats.compression_rounds) == (True, 1)
    kept = result.kept_positions.tolist()
    assert kept[:6] == list(range(6)) and kept[-6:] == list(range(94, 100))
    assert len(kept) == 25 and kept == sorted(set(kept))


def test_stats_count_the_compression_rounds(llama: Any) -> None:
    blocks = run(llama, 150, get_method("laser", budget=40, block_size=32))
    assert (blocks.stats.one_shot, blocks.stats.compression_rounds) == (False, 4)  # the first block fits
    full = run(llama, 150, get_method("full"))
    assert (full.stats.one_shot, full.stats.compression_rounds) == (True, 0)
    fits = run(llama, 150, get_method("laser", budget=200))
    assert (fits.stats.one_shot, fits.stats.compression_rounds) == (True, 0)


def test_the_faithful_empty_block_skip_still_drops_what_the_original_drops() -> None:
    """Accumulate mode: a last block shorter than the local window has no candidates of its own,
    so ``faithful_empty_block`` drops the held tail there (share 0) and the earlier blocks make
    up for it; without the flag that block shares in the target like the others."""
    params = {"compression_ratio": 0.25, "block_size": 64, "budget_rule": "exact"}
    faithful = get_method("laser", faithful_empty_block=True, **params)
    fixed = get_method("laser", **params)
    context_len = 64 * 10 + 3  # B = floor(4 * 160 / 24) = 26: local 6 > 3
    shares = block_globals(faithful.engine, faithful.split_for(context_len), context_len)
    assert shares is not None and shares[-1] == 0
    assert block_globals(fixed.engine, fixed.split_for(context_len), context_len)[-1] > 0  # type: ignore[index]
    assert planned_final("laser", context_len, faithful_empty_block=True, **params) == context_len // 4
