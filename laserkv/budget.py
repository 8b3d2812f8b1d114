"""Budget arithmetic: split a total token budget into anchors, local window and global part.

Two split rules, chosen by the method:

- LASER-KV's (method.md section 2), a protection divisor n >= 3: ``anchors = local = floor(B / n)``
  and the global part takes the rest, ``global = B - 2 * floor(B / n)``, so it absorbs the rounding;
- fixed slots (a rival's published split, e.g. StreamingLLM's 4 sink tokens): ``anchors = a``
  tokens, ``local = l + floor(f * B)`` tokens, the global part the rest (possibly none).

Two budget rules (``EngineConfig.budget_rule``) say how many tokens the final cache holds:

- ``original``: each block keeps the split's global part (accumulate mode: the original's
  ``B = floor(2 r b S / (b + S))``, which counts ``S / b`` blocks where ``ceil(S / b)`` run, so
  the cache ends a little above ``r S``); recursive mode: at most B;
- ``exact``: the final cache holds exactly the target N (``floor(r S)`` for a ratio, B for a
  budget) whenever the context is longer. The split comes from the budget that keeps about N
  over the ``ceil(S / b)`` blocks that really run (``budget_for_target``; N itself in recursive
  mode and for one block), and in accumulate mode ``N - anchors - last local tail`` is shared
  over those blocks in proportion to their candidates (``share_out``), so the sum is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from laserkv.errors import ConfigError

BUDGET_RULES = ("original", "exact")


@dataclass(frozen=True)
class BudgetSplit:
    """How a total budget of ``total`` tokens is shared out."""

    total: int
    anchors: int
    local: int
    global_: int
    target: int | None = None
    """The exact final cache length (``budget_rule="exact"``), or None (the original rule)."""


def split_budget(budget_tokens: int, protection_divisor: int) -> BudgetSplit:
    """Split ``budget_tokens`` by ``protection_divisor`` (n >= 3).

    Raises:
        ConfigError: budget <= 0 or divisor <= 2. (With n >= 3 and B >= 1 the global part is
            at least ceil(B/3) > 0, so it cannot be empty.)
    """
    if budget_tokens <= 0:
        raise ConfigError("budget", budget_tokens, "a positive number of tokens")
    if protection_divisor <= 2:
        raise ConfigError("protection_divisor", protection_divisor, "an integer >= 3")
    share = budget_tokens // protection_divisor
    global_part = budget_tokens - 2 * share
    assert global_part > 0, (budget_tokens, protection_divisor)
    return BudgetSplit(total=budget_tokens, anchors=share, local=share, global_=global_part)


def split_fixed(
    budget_tokens: int, anchor_tokens: int, local_tokens: int, local_fraction: float
) -> BudgetSplit:
    """Split ``budget_tokens`` into ``anchor_tokens`` anchors, a local window of
    ``local_tokens + floor(local_fraction * B)`` tokens and the rest as the global part.

    Raises:
        ConfigError: budget <= 0, or a budget smaller than the anchors plus the local window.
    """
    if budget_tokens <= 0:
        raise ConfigError("budget", budget_tokens, "a positive number of tokens")
    local = local_tokens + math.floor(local_fraction * budget_tokens)
    if anchor_tokens + local > budget_tokens:
        raise ConfigError(
            "budget",
            budget_tokens,
            f"at least the fixed slots: {anchor_tokens} anchors + {local} local tokens",
        )
    return BudgetSplit(budget_tokens, anchor_tokens, local, budget_tokens - anchor_tokens - local)


def budget_from_ratio_fixed(
    ratio: float, context_tokens: int, mode: str, block_size: int, fixed: tuple[int, int, float]
) -> int:
    """``budget_from_ratio`` for a fixed-slot split ``(anchor_tokens, local_tokens, local_fraction)``.

    ``recursive``: ``B = floor(r S)``. ``accumulate``: the final cache holds the anchors, the last
    local tail and the global part ``B - A - L`` of each of the ``S / b`` blocks, with
    ``A + L = c0 + f B`` (``c0 = anchor_tokens + local_tokens``); setting that equal to ``r S``
    gives ``B = floor((r S - c0 (1 - S / b)) / (f + (1 - f) S / b))``.

    Raises:
        ConfigError: the ratio gives B < 1 for this context.
    """
    if mode == "recursive":
        budget = math.floor(ratio * context_tokens)
    else:
        fixed_tokens, fraction = fixed[0] + fixed[1], fixed[2]
        blocks = context_tokens / block_size
        budget = math.floor(
            (ratio * context_tokens - fixed_tokens * (1 - blocks)) / (fraction + (1 - fraction) * blocks)
        )
    return _at_least_one(budget, ratio, context_tokens)


def budget_from_ratio(ratio: float, context_tokens: int, mode: str, block_size: int, divisor: int) -> int:
    """The budget B that keeps about ``ratio`` of a ``context_tokens``-token context (S tokens).

    ``recursive``: the cache is bounded by B, so ``B = floor(r * S)``.

    ``accumulate``: the final cache holds the anchors (B/n), the last local tail (B/n) and the
    global part ``G = B (n - 2) / n`` of each of the ``S / b`` blocks, so its size is about
    ``B (2 / n + (n - 2) S / (n b))``. Setting that equal to ``r S`` gives

        B = floor(r S n b / (2 b + (n - 2) S)),

    which for n = 4 is the original's ``floor(2 r b S / (b + S))``, computed here in the same
    floating-point order so that both agree bit for bit.

    Raises:
        ConfigError: the ratio gives B < 1 for this context.
    """
    if mode == "recursive":
        budget = math.floor(ratio * context_tokens)
    else:
        denominator = 2 * (2 * block_size + (divisor - 2) * context_tokens)
        budget = math.floor(2 * ratio * block_size * context_tokens * divisor / denominator)
    return _at_least_one(budget, ratio, context_tokens)


def _at_least_one(budget: int, ratio: float, context_tokens: int) -> int:
    if budget < 1:
        raise ConfigError(
            "compression_ratio",
            ratio,
            f"a ratio keeping at least 1 token of this {context_tokens}-token context (it gives B={budget})",
        )
    return budget


def exact_target(budget: int | None, ratio: float | None, context_tokens: int) -> int | None:
    """The final cache length the ``exact`` rule aims at: B for a budget, ``floor(r S)`` for a
    ratio (as the rivals keep), None for the full cache.

    Raises:
        ConfigError: the ratio gives no token for this context.
    """
    if budget is not None:
        return budget
    if ratio is None:
        return None
    return _at_least_one(math.floor(ratio * context_tokens), ratio, context_tokens)


def budget_for_target(
    target: int,
    context_tokens: int,
    mode: str,
    block_size: int,
    divisor: int | None,
    fixed: tuple[int, int, float] = (0, 0, 0.0),
) -> int:
    """The split budget B of the exact rule for a target of N kept tokens.

    ``recursive``: the cache is bounded by B, so ``B = N``. ``accumulate``: ``budget_from_ratio``'s
    derivation with the ``k = ceil(S / b)`` blocks that run in place of ``S / b``: with divisor
    n, ``B = floor(N n / (2 + k (n - 2)))``; with fixed slots (``c0 = anchor_tokens +
    local_tokens``, f the local fraction), ``B = floor((N + (k - 1) c0) / (f + (1 - f) k))``. One
    block (``b >= S``) gives ``B = N``: LASER-KV's one-shot split of N. At least 1 (the exact
    rule's shares, not B, set the kept count).
    """
    blocks = max(1, -(-context_tokens // block_size))
    if mode == "recursive" or blocks == 1:
        return target
    if divisor is not None:
        budget = target * divisor // (2 + blocks * (divisor - 2))
    else:
        fixed_tokens, fraction = fixed[0] + fixed[1], fixed[2]
        budget = math.floor((target + (blocks - 1) * fixed_tokens) / (fraction + (1 - fraction) * blocks))
    return max(1, budget)


def share_out(total: int, capacities: list[int]) -> list[int]:
    """``total`` slots shared over parts of ``capacities`` in proportion to them, by largest
    remainder (ties to the earlier part): the shares sum to ``min(total, sum(capacities))`` and
    none exceeds its capacity.

    Raises:
        ValueError: a negative total or capacity.
    """
    if total < 0 or any(capacity < 0 for capacity in capacities):
        raise ValueError(f"share_out needs non-negative numbers, got {total} over {capacities}")
    whole = sum(capacities)
    if total >= whole:
        return list(capacities)
    shares = [total * capacity // whole for capacity in capacities]
    remainders = [total * capacity % whole for capacity in capacities]
    order = sorted(range(len(capacities)), key=lambda part: (-remainders[part], part))
    for part in order[: total - sum(shares)]:
        shares[part] += 1
    return shares
