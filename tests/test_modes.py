"""Mode arithmetic on hand-built index sequences (method.md section 2, reference section 3)."""

from __future__ import annotations

import pytest
import torch

from laserkv import MethodConfig, build_method
from laserkv.methods import with_params
from laserkv.modes import BlockPlan, block_roles
from laserkv.modes import plan_block as plan_with_split


def positions(*ranges: tuple[int, int]) -> torch.Tensor:
    return torch.cat([torch.arange(a, b) for a, b in ranges])


def plan_block(
    method: MethodConfig, state: torch.Tensor, tail_len: int, block_start: int, block_len: int
) -> BlockPlan:
    """Plan with the method's fixed budget, counting the state's anchors from its positions."""
    split = method.split_for(1000)
    anchors = int((state < split.anchors).sum()) if split is not None else 0
    return plan_with_split(
        method.engine, split, int(state.numel()), anchors, tail_len, block_start, block_len
    )


def test_block_roles() -> None:
    split = build_method(budget=32).split_for(100)  # anchors 8, local 8, global 16
    assert split is not None
    assert block_roles(0, 32, split) == (8, 24)  # anchors 0-7, local 24-31
    assert block_roles(0, 12, split) == (8, 8)  # local never overlaps anchors
    assert block_roles(4, 32, split) == (4, 24)
    assert block_roles(32, 5, split) == (0, 0)  # a short block is all local


def test_accumulate_with_smoothing() -> None:
    method = build_method(budget=32, block_size=32)
    state = positions((0, 8), (10, 20))  # 8 anchors + 10 kept
    plan = plan_block(method, state, tail_len=8, block_start=32, block_len=32)
    assert plan.prefix_has_tail
    assert plan.fixed_slots.tolist() == list(range(18))  # the state is never rescored
    assert plan.candidate_slots.tolist() == list(range(18, 26)) + list(range(26, 26 + 24))
    assert plan.tail_slots.tolist() == list(range(26 + 24, 26 + 32))
    assert plan.n_select == 16


def test_accumulate_without_smoothing_drops_the_tail() -> None:
    method = build_method(budget=32, block_size=32, boundary_smoothing=False)
    plan = plan_block(method, positions((0, 18)), tail_len=8, block_start=32, block_len=32)
    assert not plan.prefix_has_tail
    assert plan.candidate_slots.tolist() == list(range(18, 18 + 24))
    assert plan.tail_slots.tolist() == list(range(18 + 24, 18 + 32))


def test_recursive_rescoring_all_history() -> None:
    method = build_method(budget=32, block_size=32, compression_mode="recursive")
    state = positions((0, 8), (12, 20), (24, 40))  # 8 anchors + 24 history
    plan = plan_block(method, state, tail_len=0, block_start=40, block_len=32)
    assert plan.fixed_slots.tolist() == list(range(8)) + list(range(32 + 24, 32 + 32))
    assert plan.candidate_slots.tolist() == list(range(8, 32)) + list(range(32, 32 + 24))
    assert plan.tail_slots.numel() == 0
    assert plan.n_select == 16


def test_recursive_fills_the_budget_on_a_short_block() -> None:
    state = positions((0, 8), (12, 36))
    filled = plan_block(build_method(budget=32, compression_mode="recursive"), state, 0, 40, 3)
    assert filled.n_select == 32 - 8 - 3
    faithful = build_method(budget=32, compression_mode="recursive", faithful_recursive_budget=True)
    assert plan_block(faithful, state, 0, 40, 3).n_select == 16


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
def test_empty_candidate_block(mode: str) -> None:
    state = positions((0, 8), (12, 36)) if mode == "recursive" else positions((0, 20))
    tail = 8 if mode == "accumulate" else 0
    fixed = build_method(budget=32, compression_mode=mode)
    plan = plan_block(fixed, state, tail, block_start=40, block_len=5)  # block <= local window
    assert plan.candidate_slots.numel() > 0 and plan.n_select >= 8  # history / tail still compete
    faithful = with_params(fixed, faithful_empty_block=True)
    assert plan_block(faithful, state, tail, block_start=40, block_len=5).n_select == 0


def test_full_cache_keeps_everything() -> None:
    plan = plan_block(build_method(selector="none", budget=None), positions((0, 40)), 0, 40, 16)
    assert plan.fixed_slots.tolist() == list(range(56)) and plan.candidate_slots.numel() == 0
