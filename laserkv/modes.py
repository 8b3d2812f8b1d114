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

from laserkv.budget import BudgetSplit, share_out
from laserkv.config import EngineConfig
from laserkv.errors import ConfigError


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
    n_global: int | None = None,
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
        n_global: accumulate mode: the candidates to keep instead of the split's global part
            (the exact rule's share of this block, ``block_globals``, which already says whether
            the faithful empty-block skip drops them).

    The exact rule (``split.target`` set): in recursive mode every block fills ``target - fixed
    slots`` and the faithful empty-block skip is not applied, whatever ``faithful_recursive_budget``
    and ``faithful_empty_block`` say (both would leave the cache short of the target: unused slots,
    or all non-anchor history dropped, which no later block can make up for); in accumulate mode
    ``n_global`` already says whether the skip drops a block's candidates (a share of 0).
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
    n_select = split.global_ if n_global is None else n_global
    recursive = engine.compression_mode == "recursive"
    exact = split.target is not None
    if recursive and (not engine.faithful_recursive_budget or exact):
        total = split.total if split.target is None else split.target
        n_select = total - int(fixed.numel())  # unused anchor/local slots go to the global part
    if engine.faithful_empty_block and block_candidates.numel() == 0 and not exact:  # exact: see above
        n_select = 0  # the original skipped selection entirely, dropping tail / history
    return BlockPlan(prefix_has_tail, fixed, candidates, tail, n_select, block_len - local_start)


def block_spans(block_size: int, context_len: int) -> list[tuple[int, int]]:
    """``(block_start, block_len)`` of every block of a ``context_len``-token context."""
    return [(start, min(block_size, context_len - start)) for start in range(0, context_len, block_size)]


def block_globals(engine: EngineConfig, split: BudgetSplit | None, context_len: int) -> list[int] | None:
    """The exact rule's global part of each block in accumulate mode, or None (the split's
    ``global_`` for every block: the original rule, recursive mode, the full cache).

    The final cache holds the anchors, each block's kept candidates and the last block's local
    tail, so the blocks share ``target - anchors - last tail`` in proportion to their candidates
    (the held tail and the block's own tokens between its anchors and its local window), largest
    remainder first (``budget.share_out``). A block that the faithful empty-block skip applies to
    (no candidates of its own) gets none, its held tail dropped as the original drops it, unless
    the other blocks cannot make up for it: then the skip is not applied. The shares sum to that
    remainder whenever ``T > target`` and boundary smoothing is on (off, the held tails the next
    block does not see are dropped and the cache may end below the target).

    Raises:
        ConfigError: the target is below the anchors plus the last local tail.
    """
    if split is None or split.target is None or engine.compression_mode != "accumulate":
        return None
    capacities: list[int] = []
    skipped: list[bool] = []
    fixed = tail_len = 0
    for block_start, block_len in block_spans(engine.block_size, context_len):
        plan = plan_block(engine, split, 0, 0, tail_len, block_start, block_len, n_global=0)
        n_anchors, local_start = block_roles(block_start, block_len, split)
        skipped.append(engine.faithful_empty_block and local_start == n_anchors)
        capacities.append(int(plan.candidate_slots.numel()))
        fixed += int(plan.fixed_slots.numel())  # with no state: the block's anchors
        tail_len = int(plan.tail_slots.numel())
    rest = split.target - fixed - tail_len
    if rest < 0:
        raise ConfigError(
            "budget_rule",
            "exact",
            f"'original' for this {context_len}-token context: its target of {split.target} tokens is "
            f"below the {fixed} anchors plus the {tail_len}-token local tail",
        )
    faithful = [0 if skip else capacity for skip, capacity in zip(skipped, capacities, strict=True)]
    return share_out(rest, faithful if sum(faithful) >= rest else capacities)


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
    spans = block_spans(engine.block_size, context_len)
    shares = block_globals(engine, split, context_len)
    for index, (block_start, block_len) in enumerate(spans):
        state_anchors = min(split.anchors, block_start) if split is not None else 0
        plan = plan_block(
            engine, split, state_len, min(state_anchors, state_len), tail_len, block_start, block_len,
            None if shares is None else shares[index],
        )  # fmt: skip
        prefix = state_len + (tail_len if plan.prefix_has_tail else 0)
        most = max(most, prefix + block_len + question_rows)
        state_len, tail_len = kept_after(plan)
    return most, state_len + tail_len
