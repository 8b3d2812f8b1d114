"""Budget split: table-driven, plus the values that must be refused."""

from __future__ import annotations

import pytest

from laserkv.budget import split_budget
from laserkv.errors import ConfigError


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
