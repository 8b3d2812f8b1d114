"""Bootstrap CIs, the paired bootstrap and McNemar's exact test against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.stats import bootstrap_ci, mcnemar_exact, paired_comparison, retention_ci


def test_bootstrap_ci_of_an_accuracy() -> None:
    scores = [1] * 30 + [0] * 70
    interval = bootstrap_ci(scores, seed=3)
    assert (interval.estimate, interval.n) == (30.0, 100)
    assert interval.low < 30.0 < interval.high
    normal = 1.96 * math.sqrt(0.3 * 0.7 / 100) * 100  # about 9 points
    assert abs((interval.high - interval.low) / 2 - normal) < 1.5
    assert bootstrap_ci(scores, seed=3) == interval  # seeded
    assert bootstrap_ci([1, 1, 1]) == bootstrap_ci([1, 1, 1]) and bootstrap_ci([1, 1, 1]).low == 100.0


@pytest.mark.parametrize(
    ("method_only", "baseline_only", "p_value"),
    [
        (0, 0, 1.0),
        (5, 0, 2 / 32),  # all five discordant pairs favour the method: 2 * (1/2)^5
        (0, 5, 2 / 32),
        (3, 1, 2 * (1 + 4) / 16),  # 2 * P(X <= 1), X ~ Bin(4, 1/2) = 0.625
        (10, 10, 1.0),
    ],
)
def test_mcnemar_exact(method_only: int, baseline_only: int, p_value: float) -> None:
    assert mcnemar_exact(method_only, baseline_only) == pytest.approx(p_value)


def test_paired_comparison() -> None:
    baseline = [1, 1, 0, 0, 1, 0, 1, 0, 1, 1] * 5
    method = [1, 1, 1, 0, 1, 1, 1, 0, 1, 1] * 5  # right on 10 more samples, never worse
    comparison = paired_comparison(method, baseline, seed=1)
    assert comparison.difference.estimate == pytest.approx(20.0)
    assert (comparison.method_only, comparison.baseline_only) == (10, 0)
    assert comparison.mcnemar_p == pytest.approx(2 / 2**10)
    assert comparison.difference.low > 0 and comparison.bootstrap_p < 0.01
    same = paired_comparison(baseline, baseline)
    assert same.difference.estimate == 0 and same.bootstrap_p == 1.0 and same.mcnemar_p == 1.0
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        paired_comparison([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])


def test_retention_ci_equals_a_brute_force_paired_bootstrap() -> None:
    method = [1, 0, 1, 1, 0, 1, 0, 1]
    baseline = [1, 1, 1, 1, 0, 1, 1, 0]
    got = retention_ci(method, baseline, n_resamples=500, seed=3)
    assert got is not None and got.n == 8
    assert got.estimate == pytest.approx(100 * (5 / 8) / (6 / 8))
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 8, size=(500, 8))
    ratios = []
    for draw in draws:  # the plain loop: resample the pairs, keep defined ratios
        ours = sum(method[i] for i in draw) / 8
        theirs = sum(baseline[i] for i in draw) / 8
        if theirs > 0:
            ratios.append(ours / theirs)
    low, high = np.percentile(ratios, [2.5, 97.5])
    assert (got.low, got.high) == pytest.approx((100 * low, 100 * high))
    same = retention_ci(baseline, baseline)
    assert same is not None and (same.estimate, same.low, same.high) == (100.0, 100.0, 100.0)
    assert retention_ci([1, 0], [0, 0]) is None
    with pytest.raises(ValueError, match="differ in length"):
        retention_ci([1], [1, 0])
