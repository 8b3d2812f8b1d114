"""Budget split: table-driven, plus the values that must be refused."""

from __future__ import annotations

import math

import pytest

from laserkv import MethodConfig, build_method
from laserkv.budget import budget_from_ratio, split_budget
from laserkv.errors import ConfigError
from laserkv.methods import with_params
from laserkv.modes import plan_block


@pytest.mark.parametrize(
    ("budget", "divisor", "anchors", "local", "global_"),
    [
        (1024, 4, 256, 256, 512),
        (4096, 4, 1024, 1024, 2048),
        (5953, 4, 1488, 1488, 2977),  # reference section 2.1, r=0.75 at 128k
        (1630, 4, 407, 407, 816),
        (10, 3, 3, 3, 4),
        (7, 5, 1, 1, 5),
        (2, 3, 0, 0, 2),
        (1, 4, 0, 0, 1),
    ],
)
def test_split(budget: int, divisor: int, anchors: int, local: int, global_: int) -> None:
    split = split_budget(budget, divisor)
    assert (split.anchors, split.local, split.global_) == (anchors, local, global_)
    assert split.anchors + split.local + split.global_ == budget


@pytest.mark.parametrize(
    ("budget", "divisor", "field"),
    [(0, 4, "budget"), (-5, 4, "budget"), (1024, 2, "protection_divisor"), (1024, 1, "protection_divisor")],
)
def test_refused(budget: int, divisor: int, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        split_budget(budget, divisor)
    assert error.value.field == field
    assert field in str(error.value)


def realised_final_length(method: MethodConfig, context_tokens: int) -> int:
    """Final cache length of ``method`` on a context, from the engine's own block plans."""
    split = method.split_for(context_tokens)
    assert split is not None
    state = tail = 0
    for start in range(0, context_tokens, method.engine.block_size):
        block_len = min(method.engine.block_size, context_tokens - start)
        anchors = min(state, split.anchors)
        plan = plan_block(method.engine, split, state, anchors, tail, start, block_len)
        kept = min(plan.n_select, int(plan.candidate_slots.numel()))
        state, tail = int(plan.fixed_slots.numel()) + kept, int(plan.tail_slots.numel())
    return state + tail


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.25, 0.125, 0.3, 0.1])
@pytest.mark.parametrize("context_tokens", [1000, 4096, 16000, 64000, 128000, 131072, 999_999])
@pytest.mark.parametrize("block_size", [4096, 1024, 3000])
def test_accumulate_ratio_formula_is_the_originals_for_n4(
    ratio: float, context_tokens: int, block_size: int
) -> None:
    original = int(2 * ratio * block_size * context_tokens / (block_size + context_tokens))
    assert budget_from_ratio(ratio, context_tokens, "accumulate", block_size, 4) == original


def test_worked_values_of_the_reference() -> None:
    assert budget_from_ratio(0.75, 128_000, "accumulate", 4096, 4) == 5953
    assert budget_from_ratio(0.25, 16_000, "accumulate", 4096, 4) == 1630
    assert budget_from_ratio(0.125, 64_000, "accumulate", 4096, 4) == 962
    assert budget_from_ratio(0.125, 64_000, "recursive", 4096, 4) == 8000


@pytest.mark.parametrize("divisor", [3, 4, 5, 8])
@pytest.mark.parametrize("ratio", [0.75, 0.25, 0.1])
@pytest.mark.parametrize(
    ("context_tokens", "block_size"), [(8192, 1024), (20000, 2048), (5000, 512), (700, 256)]
)
def test_accumulate_keeps_about_the_ratio_for_any_divisor(
    divisor: int, ratio: float, context_tokens: int, block_size: int
) -> None:
    """The final cache of the engine's accumulate plans is r*S within one block's global part
    (the formula treats S/b as a real number of blocks) and the budget's rounding."""
    method = build_method(
        budget=None, compression_ratio=ratio, block_size=block_size, protection_divisor=divisor
    )
    split = method.split_for(context_tokens)
    assert split is not None
    final = realised_final_length(method, context_tokens)
    assert abs(final - ratio * context_tokens) <= split.global_ + context_tokens / block_size + divisor


@pytest.mark.parametrize("ratio", [0.75, 0.25, 0.1])
def test_recursive_keeps_the_ratio(ratio: float) -> None:
    method = build_method(budget=None, compression_ratio=ratio, compression_mode="recursive", block_size=1024)
    assert realised_final_length(method, 10_000) == math.floor(ratio * 10_000)


def test_too_small_a_ratio_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"compression_ratio=0.001 .*10-token context \(it gives B=0\)"):
        budget_from_ratio(0.001, 10, "accumulate", 4096, 4)


@pytest.mark.parametrize(
    ("anchor_tokens", "local_tokens", "local_fraction"), [(4, 0, 0.0), (0, 64, 0.0), (4, 0, 0.25)]
)
@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.1])
@pytest.mark.parametrize(("context_tokens", "block_size"), [(8192, 1024), (20000, 2048), (5000, 512)])
def test_accumulate_keeps_about_the_ratio_with_fixed_slots(
    anchor_tokens: int,
    local_tokens: int,
    local_fraction: float,
    ratio: float,
    context_tokens: int,
    block_size: int,
) -> None:
    """A method's own fixed slots (``protection_divisor=None``): the same closeness to r*S."""
    method = build_method(
        budget=None, compression_ratio=ratio, block_size=block_size, protection_divisor=None,
        anchor_tokens=anchor_tokens, local_tokens=local_tokens, local_fraction=local_fraction,
    )  # fmt: skip
    split = method.split_for(context_tokens)
    assert split is not None and split.anchors == anchor_tokens
    final = realised_final_length(method, context_tokens)
    assert abs(final - ratio * context_tokens) <= split.global_ + context_tokens / block_size + 2
    recursive = with_params(method, compression_mode="recursive")
    assert recursive.budget_for(context_tokens) == math.floor(ratio * context_tokens)
