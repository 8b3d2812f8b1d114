"""The v3 plan's sample-size formulas (``benchmarks.quality_v3_power``) against statsmodels' power
solvers on a hand example, and the within-task SD on a small hand-computed set."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from statsmodels.stats.power import NormalIndPower, TTestPower

from benchmarks.quality_v3_power import (
    Design,
    pairs_for_difference,
    pairs_for_equivalence,
    power_at,
    sizes,
    within_task_sd,
)

SIGMA, MARGIN = 0.3, 0.05  # a paired-difference SD of 0.3, a 5 pp difference / margin


def test_difference_pairs_match_statsmodels() -> None:
    """(i): ((z_{1 - 0.05/6} + z_{0.8}) * 0.3 / 0.05)^2 = (3.2356 * 6)^2 = 376.9 pairs, as the
    one-sample z solver gives; the t solver asks for a few more."""
    found = pairs_for_difference(SIGMA, MARGIN, 0.05 / 3, 0.8)
    assert found == pytest.approx((3.2356 * 6) ** 2, rel=1e-4)
    normal = NormalIndPower().solve_power(MARGIN / SIGMA, None, 0.05 / 3, 0.8, ratio=0)
    assert found == pytest.approx(normal, rel=1e-6)
    assert 0 < TTestPower().solve_power(MARGIN / SIGMA, None, 0.05 / 3, 0.8) - found < 4


def test_equivalence_pairs_match_statsmodels() -> None:
    """(ii): TOST power at a true 0 is 2 * Phi(.) - 1, so 80% is the one-sided 90% of statsmodels'
    solver: ((z_{0.95} + z_{0.9}) * 6)^2 = 308.3 pairs."""
    found = pairs_for_equivalence(SIGMA, MARGIN, 0.05, 0.8)
    assert found == pytest.approx((2.9264 * 6) ** 2, rel=1e-4)
    one_sided = NormalIndPower().solve_power(MARGIN / SIGMA, None, 0.05, 0.9, ratio=0, alternative="larger")
    assert found == pytest.approx(one_sided, rel=1e-6)


def test_sizes_per_task_and_power_round_trip() -> None:
    """13 tasks share the pairs (ceil(376.9 / 13) = 29, ceil(308.3 / 13) = 24); at those sizes the
    power reaches the target, one fewer falls short."""
    design = Design()
    assert sizes(SIGMA, design) == (29, 24)
    assert sizes(0.0, design) == (0, 0)
    assert power_at(29, SIGMA, design)[0] >= 0.8 > power_at(28, SIGMA, design)[0]
    assert power_at(24, SIGMA, design)[1] >= 0.8 > power_at(23, SIGMA, design)[1]


def test_within_task_sd_pools_task_variances() -> None:
    """Task a: 0, 1 (SS 0.5); task b: 0, 0, 1 (SS 2/3): sqrt((0.5 + 2/3) / (5 - 2))."""
    differences = pd.Series([0.0, 1.0, 0.0, 0.0, 1.0])
    tasks = pd.Series(["a", "a", "b", "b", "b"])
    assert within_task_sd(differences, tasks) == pytest.approx(math.sqrt((0.5 + 2 / 3) / 3))
    assert math.isnan(within_task_sd(pd.Series([1.0]), pd.Series(["a"])))
