"""Uncertainty of accuracies (pure functions): percentile bootstrap CIs of an accuracy, a paired
bootstrap of the difference between two methods on the same samples and of the retention (their
ratio), and McNemar's exact test.

Scores are per-sample values in [0, 1] (1 = correct). Resampling is seeded, so reports are
reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A point estimate in percent with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedComparison:
    """Method minus baseline on the same samples, in percentage points.

    Attributes:
        difference: mean(method) - mean(baseline) with its paired bootstrap CI.
        bootstrap_p: two-sided p-value of the paired bootstrap (share of resampled
            differences on the other side of 0, doubled, at most 1).
        method_only / baseline_only: samples only the method / only the baseline got right.
        mcnemar_p: McNemar's exact two-sided p-value on those discordant pairs.
    """

    difference: Interval
    bootstrap_p: float
    method_only: int
    baseline_only: int
    mcnemar_p: float


def _as_array(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("scores must be a non-empty 1-D sequence")
    return values


def _paired_arrays(method: Sequence[float], baseline: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    ours, theirs = _as_array(method), _as_array(baseline)
    if ours.size != theirs.size:
        raise ValueError(f"paired scores differ in length: {ours.size} vs {theirs.size}")
    return ours, theirs


@lru_cache(maxsize=2)
def _resample_indices(size: int, n_resamples: int, seed: int) -> np.ndarray:
    """Seeded bootstrap draws: ``n_resamples`` rows of ``size`` sample indices, read-only. A report
    draws the same ones for every comparison of one size, so the last two sizes' are kept (80 KB
    per sample at 10,000 resamples)."""
    indices = np.random.default_rng(seed).integers(0, size, size=(n_resamples, size))
    indices.flags.writeable = False
    return indices


def _resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    means: np.ndarray = values[_resample_indices(values.size, n_resamples, seed)].mean(axis=1)
    return means


def _percentile_bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the resampled statistics."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    scores: Sequence[float], confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> Interval:
    """Accuracy in percent with a percentile bootstrap CI (resampling samples with replacement)."""
    values = _as_array(scores)
    low, high = _percentile_bounds(_resampled_means(values, n_resamples, seed), confidence)
    return Interval(100 * float(values.mean()), 100 * low, 100 * high, int(values.size))


def mcnemar_exact(method_only: int, baseline_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial(n, 1/2) test on the discordant pairs."""
    n = method_only + baseline_only
    if n == 0:
        return 1.0
    k = min(method_only, baseline_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(
    method: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare a method with a baseline scored on the same samples, in the same order.

    Raises:
        ValueError: the two score lists differ in length or are empty.
    """
    ours, theirs = _paired_arrays(method, baseline)
    differences = ours - theirs
    means = _resampled_means(differences, n_resamples, seed)
    low, high = _percentile_bounds(means, confidence)
    observed = float(differences.mean())
    if observed == 0:
        p_value = 1.0
    else:
        other_side = float(np.mean(means <= 0)) if observed > 0 else float(np.mean(means >= 0))
        p_value = min(1.0, 2 * other_side)
    method_only = int(np.sum((ours > 0.5) & (theirs <= 0.5)))
    baseline_only = int(np.sum((ours <= 0.5) & (theirs > 0.5)))
    return PairedComparison(
        difference=Interval(100 * observed, 100 * low, 100 * high, int(ours.size)),
        bootstrap_p=p_value,
        method_only=method_only,
        baseline_only=baseline_only,
        mcnemar_p=mcnemar_exact(method_only, baseline_only),
    )


def retention_ci(
    method: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Retention = mean(method) / mean(baseline) in percent, with a paired percentile bootstrap
    CI (the same resampled samples for both; resamples where the baseline scores 0 are left out).

    Returns:
        None when the baseline never scores (retention is undefined).

    Raises:
        ValueError: the two score lists differ in length or are empty.
    """
    ours, theirs = _paired_arrays(method, baseline)
    if theirs.mean() == 0:
        return None
    indices = _resample_indices(ours.size, n_resamples, seed)
    numerators, denominators = ours[indices].mean(axis=1), theirs[indices].mean(axis=1)
    low, high = _percentile_bounds(numerators[denominators > 0] / denominators[denominators > 0], confidence)
    estimate = float(ours.mean() / theirs.mean())
    return Interval(100 * estimate, 100 * low, 100 * high, int(ours.size))
