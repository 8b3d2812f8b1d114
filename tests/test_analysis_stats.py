"""analysis.stats against scipy/statsmodels reference values, hand-checked examples and the
properties issue 34 asks for (interval excludes 0 <=> exact McNemar rejects; TOST; strata)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis.stats import (
    _clopper_pearson,
    _stratified_indices,
    holm,
    mcnemar_exact,
    mean_interval,
    paired_binary,
    paired_comparison,
    paired_graded,
    proportion_interval,
    retention_interval,
    verdict,
)


def _pairs(method_only: int, baseline_only: int, n: int) -> tuple[list[int], list[int]]:
    """n paired 0/1 outcomes with the given discordant counts (the rest both right or both wrong)."""
    concordant = n - method_only - baseline_only
    method = [1] * method_only + [0] * baseline_only + [1, 0] * (concordant // 2) + [1] * (concordant % 2)
    baseline = [0] * method_only + [1] * baseline_only + [1, 0] * (concordant // 2) + [1] * (concordant % 2)
    return method, baseline


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(0, 10, 0.95), (3, 10, 0.95), (30, 100, 0.9), (7, 7, 0.99)]
)
def test_proportion_interval_is_wilson(successes: int, n: int, confidence: float) -> None:
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    got = proportion_interval(successes, n, confidence)
    assert (got.estimate, got.n) == (pytest.approx(100 * successes / n), n)
    assert (got.low, got.high) == pytest.approx((100 * low, 100 * high))


def test_mean_interval_of_binary_scores_is_wilson() -> None:
    scores = [1] * 30 + [0] * 70
    assert mean_interval(scores) == proportion_interval(30, 100)
    assert mean_interval(scores, strata=["a", "b"] * 50) == proportion_interval(30, 100)


def test_mean_interval_of_graded_scores_is_the_percentile_bootstrap() -> None:
    scores = [0.1, 0.5, 0.25, 0.9, 0.6, 0.3, 0.75]
    got = mean_interval(scores, n_resamples=400, seed=5)
    draws = np.random.default_rng(5).integers(0, 7, size=(400, 7))  # the plain bootstrap's draws
    means = [np.mean([scores[i] for i in draw]) for draw in draws]
    assert (got.estimate, got.n) == (pytest.approx(100 * np.mean(scores)), 7)
    assert (got.low, got.high) == pytest.approx(tuple(100 * np.percentile(means, [2.5, 97.5])))
    assert mean_interval(scores, n_resamples=400, seed=5) == got  # seeded


@pytest.mark.parametrize(
    ("count", "nobs", "confidence"), [(0, 5, 0.95), (4, 4, 0.95), (4, 50, 0.9), (13, 27, 0.99)]
)
def test_clopper_pearson_pieces(count: int, nobs: int, confidence: float) -> None:
    lows, highs = _clopper_pearson([count, 0], [nobs, 0], confidence)
    low, high = proportion_confint(count, nobs, alpha=1 - confidence, method="beta")
    assert (lows[0], highs[0]) == pytest.approx((low, high))
    assert (lows[1], highs[1]) == (0.0, 1.0)  # no trials: the whole range


@pytest.mark.parametrize(
    ("method_only", "baseline_only", "n"), [(4, 0, 50), (7, 3, 40), (2, 9, 11), (0, 0, 20)]
)
def test_paired_binary_interval_is_the_widened_exact_conditional_one(
    method_only: int, baseline_only: int, n: int
) -> None:
    comparison = paired_binary(*_pairs(method_only, baseline_only, n))
    discordant = method_only + baseline_only
    theta = proportion_confint(method_only, discordant, 0.05, "beta") if discordant else (0.0, 1.0)
    rate_low, rate_high = proportion_confint(discordant, n, 0.05, "beta")
    low_sign, high_sign = 2 * theta[0] - 1, 2 * theta[1] - 1
    low = (rate_high if low_sign < 0 else rate_low) * low_sign
    high = (rate_high if high_sign > 0 else rate_low) * high_sign
    assert comparison.difference.estimate == pytest.approx(100 * (method_only - baseline_only) / n)
    assert (comparison.difference.low, comparison.difference.high) == pytest.approx((100 * low, 100 * high))
    assert (comparison.method_only, comparison.baseline_only, comparison.difference.n) == (
        method_only,
        baseline_only,
        n,
    )
    assert comparison.test == "McNemar exact"


@pytest.mark.parametrize(
    ("method_only", "baseline_only", "p_value"),
    [(0, 0, 1.0), (5, 0, 2 / 32), (0, 5, 2 / 32), (3, 1, 2 * (1 + 4) / 16), (10, 10, 1.0), (4, 0, 0.125)],
)
def test_mcnemar_exact_hand_values(method_only: int, baseline_only: int, p_value: float) -> None:
    assert mcnemar_exact(method_only, baseline_only) == pytest.approx(p_value)


def test_mcnemar_exact_equals_statsmodels_over_a_grid() -> None:
    for method_only in range(31):
        for baseline_only in range(31):
            got = mcnemar_exact(method_only, baseline_only)
            assert got == mcnemar([[3, method_only], [baseline_only, 5]], exact=True).pvalue
            if method_only + baseline_only:
                n = method_only + baseline_only
                assert got == pytest.approx(binomtest(method_only, n, 0.5).pvalue, rel=1e-12)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 2)


def test_holm() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; step-down max -> 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
    rng = np.random.default_rng(0)
    for size in (2, 40):
        p_values = np.round(rng.uniform(0, 0.3, size=size), 2)  # rounded: ties too
        assert holm(list(p_values)) == pytest.approx(list(multipletests(p_values, method="holm")[1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def test_the_issue_case_4_vs_0_of_50_is_not_significant() -> None:
    comparison = paired_binary(*_pairs(4, 0, 50))
    assert comparison.p_value == 0.125
    assert comparison.difference.estimate == 8.0
    assert comparison.difference.low < 0 < comparison.difference.high
    assert verdict(comparison) == "not shown"
    clear = paired_binary(*_pairs(10, 0, 50))
    assert clear.p_value == pytest.approx(2 / 2**10)
    assert clear.difference.low > 0
    assert verdict(clear) == "higher"
    assert verdict(paired_binary(*_pairs(0, 10, 50))) == "lower"


def test_interval_excludes_zero_exactly_when_mcnemar_rejects() -> None:
    """At 95% (difference) and at 90% (the TOST interval): strict p < 1 - confidence."""
    disagreements = []
    for method_only in range(26):
        for baseline_only in range(26):
            for concordant in (0, 10, 50):
                n = method_only + baseline_only + concordant
                if n == 0:
                    continue  # no pairs: nothing to compare
                comparison = paired_binary(*_pairs(method_only, baseline_only, n))
                for interval, level in (
                    (comparison.difference, 0.95),
                    (comparison.equivalence_interval, 0.9),
                ):
                    excludes_zero = interval.low > 0 or interval.high < 0
                    if excludes_zero != (comparison.p_value < 1 - level):
                        disagreements.append((method_only, baseline_only, n, level))
    assert disagreements == []


def test_at_a_tie_the_closed_interval_includes_zero() -> None:
    # 4 vs 0: p = 0.125 exactly; at confidence 0.875 theta's lower bound is 0.0625 ** (1/4) = 1/2
    comparison = paired_binary(*_pairs(4, 0, 50), confidence=0.875)
    assert comparison.p_value == 0.125
    assert comparison.difference.low == 0.0


def test_equivalence_needs_a_narrow_interval() -> None:
    many = paired_binary([1] * 250 + [0] * 250, [1] * 250 + [0] * 250)
    assert many.p_value == 1.0
    assert -1 < many.equivalence_interval.low < 0 < many.equivalence_interval.high < 1
    assert verdict(many) == "equivalent (±5 pp)"
    assert verdict(many, margin=1) == "equivalent (±1 pp)"
    assert verdict(many, margin=0.5) == "not shown"
    few = paired_binary([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert few.equivalence_interval.high > 40  # 0 discordant of 5 says little
    assert verdict(few) == "not shown"


def test_verdict_uses_the_adjusted_p_when_given() -> None:
    clear = paired_binary(*_pairs(10, 0, 50))
    assert verdict(clear, adjusted_p=0.01) == "higher"
    assert verdict(clear, adjusted_p=0.2) == "not shown"  # the 90% interval reaches past +5 pp


def test_stratified_indices_keep_each_stratum_size() -> None:
    sizes = (3, 5, 2)
    indices = _stratified_indices(sizes, 300, 4)
    starts = np.cumsum(sizes) - np.asarray(sizes)
    stratum_of = np.repeat(np.arange(3), sizes)
    assert indices.shape == (300, 10) and not indices.flags.writeable
    assert np.array_equal(stratum_of[indices], np.broadcast_to(stratum_of, (300, 10)))
    for stratum, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        drawn = indices[:, stratum_of == stratum]
        assert set(np.unique(drawn)) == set(range(start, start + size))  # every member can be drawn


def test_stratified_bootstrap_is_narrower_where_strata_differ() -> None:
    rng = np.random.default_rng(1)
    strata = ["hard", "easy"] * 30
    scores = np.where(np.array(strata) == "easy", rng.uniform(0.8, 1.0, 60), rng.uniform(0.0, 0.2, 60))
    stratified = mean_interval(list(scores), strata=strata)
    pooled = mean_interval(list(scores))
    assert stratified.estimate == pooled.estimate
    assert stratified.high - stratified.low < (pooled.high - pooled.low) / 3
    # values constant within each stratum: every stratified resample has the observed mean
    constant = [0.25 if label == "hard" else 0.75 for label in strata]
    fixed = mean_interval(constant, strata=strata)
    assert fixed.low == pytest.approx(50.0) and fixed.high == pytest.approx(50.0)
    assert mean_interval(constant).high - mean_interval(constant).low > 10


def test_paired_graded_stratified_by_task() -> None:
    strata = [("qa", 8000), ("qa", 16000), ("sum", 8000)] * 20
    baseline = [0.5] * 60
    method = [0.9 if task == "qa" else 0.3 for task, _ in strata]  # +40 pp on qa, -20 pp on sum
    stratified = paired_graded(method, baseline, strata=strata)
    pooled = paired_graded(method, baseline)
    assert stratified.difference.estimate == pytest.approx(20.0)
    assert stratified.difference.low == pytest.approx(20.0) and stratified.difference.high == pytest.approx(
        20.0
    )
    assert pooled.difference.high - pooled.difference.low > 10
    assert (stratified.method_only, stratified.baseline_only) == (40, 20)
    assert stratified.test == "stratified paired bootstrap"


def test_paired_graded_constant_and_zero_differences() -> None:
    baseline = [0.25, 0.5, 0.125, 0.375, 0.0]  # dyadic: each difference is exactly 0.25
    constant = paired_graded([score + 0.25 for score in baseline], baseline)
    assert constant.difference.low == constant.difference.high == constant.difference.estimate == 25.0
    assert constant.p_value == 2 / (10_000 + 1)  # (0 + 1) / (R + 1), doubled: never 0
    assert verdict(constant) == "higher"
    same = paired_graded([0.9, 0.2, 0.4, 0.5], [0.2, 0.9, 0.5, 0.4])
    assert same.difference.estimate == 0.0 and same.p_value == 1.0
    # differences 0.75, 0.125, -0.25, -0.25, -0.25, -0.125: mean 0, but most resampled means are < 0
    skewed = paired_graded([1.0, 0.375, 0.0, 0.0, 0.0, 0.125], [0.25] * 6)
    assert skewed.difference.estimate == 0.0 and skewed.p_value == 1.0
    noisy = np.random.default_rng(2).uniform(0, 1, 400)
    equal = paired_graded(list(noisy), list(noisy[::-1]))
    assert equal.p_value > 0.5 and verdict(equal) == "equivalent (±5 pp)"


def test_paired_comparison_dispatches_on_the_scores() -> None:
    assert paired_comparison(*_pairs(4, 0, 50)).test == "McNemar exact"
    assert paired_comparison(*_pairs(4, 0, 50)) == paired_binary(*_pairs(4, 0, 50))
    graded = paired_comparison([1, 0.5, 0], [1, 0, 0], strata=["a", "a", "b"], n_resamples=100)
    assert graded == paired_graded([1, 0.5, 0], [1, 0, 0], strata=["a", "a", "b"], n_resamples=100)
    assert graded.test == "stratified paired bootstrap"


def test_retention_interval_equals_a_brute_force_paired_bootstrap() -> None:
    method = [1, 0, 1, 1, 0, 1, 0, 1]
    baseline = [1, 1, 1, 1, 0, 1, 1, 0]
    got = retention_interval(method, baseline, n_resamples=500, seed=3)
    assert got is not None and got.n == 8
    assert got.estimate == pytest.approx(100 * (5 / 8) / (6 / 8))
    ratios = []
    for draw in np.random.default_rng(3).integers(0, 8, size=(500, 8)):  # resample the pairs
        theirs = sum(baseline[i] for i in draw)
        if theirs > 0:
            ratios.append(sum(method[i] for i in draw) / theirs)
    assert (got.low, got.high) == pytest.approx(tuple(100 * np.percentile(ratios, [2.5, 97.5])))
    same = retention_interval(baseline, baseline, strata=["a", "b"] * 4)
    assert same is not None and (same.estimate, same.low, same.high) == (100.0, 100.0, 100.0)
    assert retention_interval([1, 0], [0, 0]) is None


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])
    with pytest.raises(ValueError, match="non-empty"):
        paired_comparison([], [])
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        paired_binary([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="differ in length"):
        paired_graded([0.5], [0.5, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        retention_interval([1], [1, 0])
    with pytest.raises(ValueError, match="strata has 1 labels for 2 samples"):
        paired_comparison([1, 0], [1, 1], strata=["a"])
    with pytest.raises(ValueError, match="not percent"):
        mean_interval([50.0, 75.0])
    with pytest.raises(ValueError, match="n > 0"):
        proportion_interval(0, 0)
    with pytest.raises(ValueError, match="alpha"):
        paired_binary([1], [0], alpha=0.5)


def test_import_leaves_statsmodels_and_scipy_for_later() -> None:
    code = "import sys, analysis.stats; print(sorted({'statsmodels', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_math_comb_reference_for_mcnemar() -> None:
    n, k = 17, 4
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    assert mcnemar_exact(k, n - k) == pytest.approx(2 * tail) == pytest.approx(mcnemar_exact(n - k, k))


def test_the_task_average_weighs_every_task_alike() -> None:
    """Unequal tasks: the estimate is the mean of the task means; equal tasks: it is
    ``paired_graded`` stratified by task, draw for draw."""
    from analysis.stats import paired_graded, paired_task_average

    method = [1.0, 1.0, 1.0, 0.0, 0.5, 1.0]
    baseline = [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]
    tasks = ["a", "a", "a", "a", "b", "b"]  # task a: +0.75, task b: +0.5
    found = paired_task_average(method, baseline, tasks)
    assert found.difference.estimate == pytest.approx(100 * (0.75 + 0.5) / 2)
    assert found.difference.low <= found.difference.estimate <= found.difference.high
    equal = ["a", "a", "a", "b", "b", "b"]
    ours, theirs = paired_task_average(method, baseline, equal), paired_graded(method, baseline, equal)
    assert ours.difference == theirs.difference and ours.p_value == theirs.p_value
    assert ours.equivalence_interval == theirs.equivalence_interval


def test_a_contrast_of_task_means() -> None:
    """Δ(A) − Δ(B) with each task resampled on its own: the estimate is the difference of the task
    means; with weights 1/T it is the task average (``paired_task_average``'s estimate)."""
    from analysis.stats import paired_task_average, stratum_contrast

    values = [1.0, 0.0, 1.0, -1.0, 0.0]
    tasks = ["A", "A", "A", "B", "B"]
    found = stratum_contrast(values, tasks, {"A": 1.0, "B": -1.0})
    assert found.difference.estimate == pytest.approx(100 * (2 / 3 - (-0.5)))
    assert found.difference.low <= found.difference.estimate <= found.difference.high
    average = stratum_contrast(values, tasks, {"A": 0.5, "B": 0.5})
    method, baseline = [1, 0, 1, 0, 0.5], [0, 0, 0, 1, 0.5]
    assert average.difference.estimate == pytest.approx(
        paired_task_average(method, baseline, tasks).difference.estimate
    )
    with pytest.raises(ValueError, match="no weight"):
        stratum_contrast(values, tasks, {"A": 1.0})
