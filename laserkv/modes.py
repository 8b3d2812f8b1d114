"""Compression modes as pure index arithmetic: which cache slots of one block step are fixed
(always kept), which are candidates for the global part, and which are held back as the tail.

Slot indices refer to the forward cache of the step, laid out in causal (= position) order as
``[state | held tail (accumulate + smoothing) | block]``; the question rows that follow the
block are never kept. See method.md section 2 and laserkv-reference.md section 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from laserkv.budget import BudgetSplit
from laserkv.config import EngineConfig


@dataclass(frozen=True)
class BlockPlan:
    """Slot roles of one block step (all 1-D int64 CPU tensors of slot indices).

    Attributes:
        prefix_has_tail: the held tail is forwarded between state and block.
        fixed_slots: kept in the new state whatever the scores.
        candidate_slots: compete for ``n_select`` places in the new state.
        tail_slots: held back for the next block (accumulate mode), not part of the state.
        n_select: how many candidates the selector keeps (all of them if fewer).
        local_len: tokens of this block's local window (its last tokens).
    """

    prefix_has_tail: bool
    fixed_slots: Tensor
    candidate_slots: Tensor
    tail_slots: Tensor
    n_select: int
    local_len: int


def _span(start: int, stop: int) -> Tensor:
    return torch.arange(start, max(start, stop), dtype=torch.long)


def block_roles(block_start: int, block_len: int, split: BudgetSplit) -> tuple[int, int]:
    """Anchors and local window inside one block.

    Returns:
        ``(n_anchors, local_start)``: the block's first ``n_anchors`` tokens are anchors (context
        positions below ``split.anchors``); tokens from ``local_start`` to the block end form the
        local window, which never overlaps the anchors.
    """
    n_anchors = min(max(split.anchors - block_start, 0), block_len)
    local_start = max(n_anchors, block_len - split.local)
    return n_anchors, local_start


def plan_block(
    engine: EngineConfig,
    split: BudgetSplit | None,
    state_len: int,
    state_anchors: int,
    tail_len: int,
    block_start: int,
    block_len: int,
) -> BlockPlan:
    """Plan one block step of a method (see module docstring for the slot layout).

    Args:
        engine: the method's engine settings (mode and flags).
        split: the budget split for this sample (``None``: the full cache).
        state_len: tokens in the persistent state (per layer and head).
        state_anchors: how many of them are anchors (context positions below ``split.anchors``).
        tail_len: length of the held-back tail of the previous block (accumulate mode).
        block_start: context position of the block's first token.
        block_len: number of tokens in the block.
    """
    empty = _span(0, 0)
    if split is None:  # full cache: keep everything, hold nothing back
        prefix = state_len + tail_len
        return BlockPlan(tail_len > 0, _span(0, prefix + block_len), empty, empty, 0, block_len)
    n_anchors, local_start = block_roles(block_start, block_len, split)
    if engine.compression_mode == "accumulate":
        prefix_has_tail = engine.boundary_smoothing and tail_len > 0
        block_base = state_len + (tail_len if prefix_has_tail else 0)
        held_tail = _span(state_len, block_base)
        block_candidates = block_base + _span(n_anchors, local_start)
        fixed = torch.cat([_span(0, state_len), block_base + _span(0, n_anchors)])
        candidates = torch.cat([held_tail, block_candidates])
        tail = block_base + _span(local_start, block_len)
    else:
        prefix_has_tail = False
        block_candidates = state_len + _span(n_anchors, local_start)
        fixed = torch.cat(
            [
                _span(0, state_anchors),
                state_len + _span(0, n_anchors),
                state_len + _span(local_start, block_len),
            ]
        )
        candidates = torch.cat([_span(state_anchors, state_len), block_candidates])
        tail = empty
    n_select = split.global_
    if engine.compression_mode == "recursive" and not engine.faithful_recursive_budget:
        n_select = split.total - int(fixed.numel())  # unused anchor/local slots go to the global part
    if engine.faithful_empty_block and block_candidates.numel() == 0:
        n_select = 0  # the original skipped selection entirely, dropping tail / history
    return BlockPlan(prefix_has_tail, fixed, candidates, tail, n_select, block_len - local_start)


def kept_after(plan: BlockPlan) -> tuple[int, int]:
    """``(state, tail)`` lengths a step of ``plan`` leaves (the engine keeps the fixed slots, then
    ``n_select`` candidates, all of them if fewer, or none when ``n_select`` is 0)."""
    n_candidates = int(plan.candidate_slots.numel())
    chosen = min(plan.n_select, n_candidates) if plan.n_select > 0 else 0
    return int(plan.fixed_slots.numel()) + chosen, int(plan.tail_slots.numel())


def forward_slots_needed(
    engine: EngineConfig, split: BudgetSplit | None, context_len: int, question_rows: int
) -> tuple[int, int]:
    """The cache slots one call's block prefill needs, from the plans alone (no scores).

    Args:
        question_rows: rows appended after a block that scores with the question (0 if none).

    Returns:
        ``(most, final)``: the most slots any block forward uses (prefix, block and question
        rows), and the slots the final cache keeps (state plus held tail).
    """
    state_len = tail_len = most = 0
    for block_start in range(0, context_len, engine.block_size):
        block_len = min(engine.block_size, context_len - block_start)
        state_anchors = min(split.anchors, block_start) if split is not None else 0
        plan = plan_block(
            engine, split, state_len, min(state_anchors, state_len), tail_len, block_start, block_len
        )
        prefix = state_len + (tail_len if plan.prefix_has_tail else 0)
        most = max(most, prefix + block_len + question_rows)
        state_len, tail_len = kept_after(plan)
    return most, state_len + tail_len
