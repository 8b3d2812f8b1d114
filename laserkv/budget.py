"""Budget arithmetic: split a total token budget into anchors, local window and global part.

Rounding rule (method.md section 2): ``anchors = local = floor(B / n)`` and the global part
takes the rest, ``global = B - 2 * floor(B / n)``, so it absorbs the rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from laserkv.errors import ConfigError


@dataclass(frozen=True)
class BudgetSplit:
    """How a total budget of ``total`` tokens is shared out."""

    total: int
    anchors: int
    local: int
    global_: int


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
