"""Uncertainty of accuracies and of paired comparisons (pure functions): the statistics every
results view uses.

- One accuracy: the Wilson score interval for 0/1 scores, a percentile bootstrap of the mean
  (stratified when strata are given) for graded scores.
- A method against a baseline on the same samples: binary outcomes get the exact McNemar test and
  an exact conditional interval that excludes 0 exactly when that test rejects; graded scores get
  a paired bootstrap stratified by, e.g., (task, length).
- A table of comparisons: Holm-adjusted p-values beside the raw ones, and "no difference" only
  through an equivalence test (TOST) at a stated margin.

Scores are per-sample values in [0, 1] (1 = correct). Estimates and intervals are in percent
(percentage points for differences). Resampling is seeded, so reports are reproducible.
statsmodels and scipy take about a second to import, so they are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

N_RESAMPLES = 10_000
ALPHA = 0.05
EQUIVALENCE_MARGIN = 5.0  # percentage points: the default TOST margin


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval, in percent (pp for differences), over n samples."""

    estimate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedComparison:
    """Method minus baseline on the same samples, in percentage points.

    Attributes:
        difference: mean(method) - mean(baseline) with its interval at the requested confidence.
        equivalence_interval: the same difference at 1 - 2*alpha (90%): the TOST interval.
        p_value: two-sided p of ``test``.
        test: "McNemar exact" (binary outcomes) or "stratified paired bootstrap" (graded scores).
        method_only: pairs where the method scores higher (binary: only the method is right).
        baseline_only: pairs where the baseline scores higher.
    """

    difference: Interval
    equivalence_interval: Interval
    p_value: float
    test: str
    method_only: int
    baseline_only: int


def _as_array(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("scores must be a non-empty 1-D sequence")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"scores must lie in [0, 1], not percent; got {values.min()} .. {values.max()}")
    return values


def _paired_arrays(method: Sequence[float], baseline: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    ours, theirs = _as_array(method), _as_array(baseline)
    if ours.size != theirs.size:
        raise ValueError(f"paired scores differ in length: {ours.size} vs {theirs.size}")
    return ours, theirs


def _check_level(name: str, value: float, upper: float) -> None:
    if not 0 < value < upper:
        raise ValueError(f"{name} must lie in (0, {upper:g}); got {value}")


def _stratum_codes(strata: Sequence[Hashable] | None, size: int) -> np.ndarray:
    """Each sample's stratum as an integer, numbered by first appearance; one stratum when None."""
    if strata is None:
        return np.zeros(size, dtype=np.intp)
    if len(strata) != size:
        raise ValueError(f"strata has {len(strata)} labels for {size} samples")
    numbering: dict[Hashable, int] = {}
    return np.array([numbering.setdefault(label, len(numbering)) for label in strata], dtype=np.intp)


@lru_cache(maxsize=2)
def _stratified_indices(stratum_sizes: tuple[int, ...], n_resamples: int, seed: int) -> np.ndarray:
    """Seeded stratified bootstrap draws, read-only: ``n_resamples`` rows of indices into samples laid
    out stratum after stratum. Column j draws with replacement from its own stratum's block, so every
    resample keeps each stratum's size; one stratum gives the plain bootstrap. A report draws the same
    ones for every comparison of one layout, so the last two layouts' are kept (80 KB per sample at
    10,000 resamples)."""
    sizes = np.asarray(stratum_sizes)
    column_sizes = np.repeat(sizes, sizes)  # (n_samples,): the size of each column's stratum
    column_starts = np.repeat(np.cumsum(sizes) - sizes, sizes)  # (n_samples,): where that stratum begins
    draws = np.random.default_rng(seed).integers(0, column_sizes, size=(n_resamples, column_sizes.size))
    indices: np.ndarray = column_starts + draws  # (n_resamples, n_samples)
    indices.flags.writeable = False
    return indices


def _resampled_means(
    columns: tuple[np.ndarray, ...], codes: np.ndarray, n_resamples: int, seed: int
) -> tuple[np.ndarray, ...]:
    """The mean of each column over the same stratified resamples of its samples: (n_resamples,) each."""
    order = np.argsort(codes, kind="stable")  # samples stratum after stratum
    indices = _stratified_indices(tuple(np.bincount(codes).tolist()), n_resamples, seed)
    return tuple(column[order][indices].mean(axis=1) for column in columns)


def _percentile_bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the resampled statistics (percentile bootstrap)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _percentile_interval(observed: float, resampled: np.ndarray, confidence: float, n: int) -> Interval:
    low, high = _percentile_bounds(resampled, confidence)
    return Interval(100 * observed, 100 * low, 100 * high, n)


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Accuracy in percent with the Wilson score interval (Wilson 1927), as statsmodels
    ``proportion_confint(method="wilson")`` computes it.

    Raises:
        ValueError: n is not positive, or successes is outside [0, n].
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0; got successes={successes}, n={n}")
    _check_level("confidence", confidence, 1)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    estimate = 100 * successes / n  # the bounds are clamped around it (float noise at 0 or n)
    return Interval(estimate, min(100 * float(low), estimate), max(100 * float(high), estimate), n)


def mean_interval(
    scores: Sequence[float],
    strata: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The accuracy of one cell or a pooled set, in percent, with its interval.

    All scores 0 or 1: the Wilson interval of the pooled proportion (strata play no part). Graded
    scores: a percentile bootstrap of the mean (Efron & Tibshirani 1993), resampling within each
    stratum when strata are given (the stratified bootstrap: every stratum keeps its size).

    Args:
        scores: (n,) per-sample scores in [0, 1].
        strata: (n,) each sample's stratum label, e.g. (task, length); None for one stratum.

    Raises:
        ValueError: scores are empty or outside [0, 1], or strata differ in length.
    """
    values = _as_array(scores)
    codes = _stratum_codes(strata, values.size)
    if np.all((values == 0) | (values == 1)):
        return proportion_interval(int(values.sum()), int(values.size), confidence)
    _check_level("confidence", confidence, 1)
    (means,) = _resampled_means((values,), codes, n_resamples, seed)
    return _percentile_interval(float(values.mean()), means, confidence, int(values.size))


def mcnemar_exact(method_only: int, baseline_only: int) -> float:
    """Two-sided exact McNemar p-value (McNemar 1947): the binomial(b + c, 1/2) test on the
    discordant pairs, as statsmodels ``mcnemar(table, exact=True)`` computes it (1 without any).

    Raises:
        ValueError: a count is negative.
    """
    if method_only < 0 or baseline_only < 0:
        raise ValueError(f"discordant counts must be >= 0; got {method_only}, {baseline_only}")
    from statsmodels.stats.contingency_tables import mcnemar

    return float(mcnemar([[0, method_only], [baseline_only, 0]], exact=True).pvalue)


def _clopper_pearson(
    counts: Sequence[int], trials: Sequence[int], confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson (1934) exact intervals of binomial proportions (lows, highs), as statsmodels
    ``proportion_confint(method="beta")``; [0, 1] where there are no trials."""
    from statsmodels.stats.proportion import proportion_confint

    successes, attempts = np.asarray(counts), np.asarray(trials)
    low, high = proportion_confint(successes, np.maximum(attempts, 1), alpha=1 - confidence, method="beta")
    return np.where(attempts == 0, 0.0, low), np.where(attempts == 0, 1.0, high)


def _exact_difference(method_only: int, baseline_only: int, n: int, confidence: float) -> Interval:
    """The paired difference (b - c) / N in pp with its interval: exact conditional, widened for the
    discordance rate.

    The difference is d * (2 theta - 1) with theta = b / (b + c) and d = (b + c) / N. Its bounds
    are the extremes of that product over the box of the two Clopper-Pearson intervals, both at
    ``confidence``. The sign of each bound is the sign of 2 theta - 1 at theta's bound, and theta's
    interval inverts the same binomial test as the exact McNemar test, so the interval excludes 0
    exactly when McNemar's p < 1 - confidence. At a tie (p == 1 - confidence, possible only at
    dyadic levels) theta's bound is 1/2, a bound is 0 and the closed interval includes 0. The box
    makes it conservative: about 99% coverage at 95% in simulations (N = 30..500).
    """
    discordant = method_only + baseline_only
    lows, highs = _clopper_pearson([method_only, discordant], [discordant, n], confidence)
    (theta_low, rate_low), (theta_high, rate_high) = lows.tolist(), highs.tolist()
    low_sign, high_sign = 2 * theta_low - 1, 2 * theta_high - 1
    low = (rate_high if low_sign < 0 else rate_low) * low_sign
    high = (rate_high if high_sign > 0 else rate_low) * high_sign
    return Interval(100 * (method_only - baseline_only) / n, 100 * low, 100 * high, n)


def paired_binary(
    method: Sequence[float], baseline: Sequence[float], confidence: float = 0.95, alpha: float = ALPHA
) -> PairedComparison:
    """Compare binary outcomes of a method and a baseline on the same samples, in the same order
    (values > 0.5 count as right): exact McNemar p and the exact conditional interval of the
    difference (see ``_exact_difference``), at ``confidence`` and at 1 - 2*alpha for TOST.

    Raises:
        ValueError: the two score lists differ in length or are empty.
    """
    _check_level("confidence", confidence, 1)
    _check_level("alpha", alpha, 0.5)
    ours, theirs = _paired_arrays(method, baseline)
    right_ours, right_theirs = ours > 0.5, theirs > 0.5
    method_only = int(np.sum(right_ours & ~right_theirs))
    baseline_only = int(np.sum(~right_ours & right_theirs))
    n = int(ours.size)
    return PairedComparison(
        difference=_exact_difference(method_only, baseline_only, n, confidence),
        equivalence_interval=_exact_difference(method_only, baseline_only, n, 1 - 2 * alpha),
        p_value=mcnemar_exact(method_only, baseline_only),
        test="McNemar exact",
        method_only=method_only,
        baseline_only=baseline_only,
    )


def _bootstrap_p(observed: float, resampled: np.ndarray) -> float:
    """Two-sided bootstrap p: the resampled statistics on the other side of 0, counted as
    ``(k + 1) / (R + 1)`` (Davison & Hinkley 1997, eq. 4.11, so never 0 from a finite resample),
    doubled, at most 1; 1 when the observed statistic is 0."""
    if observed == 0:
        return 1.0
    other_side = np.sum(resampled <= 0) if observed > 0 else np.sum(resampled >= 0)
    return min(1.0, 2 * (float(other_side) + 1) / (resampled.size + 1))


def _bootstrap_comparison(
    values: np.ndarray,
    differences: np.ndarray,
    codes: np.ndarray,
    test: str,
    confidence: float,
    alpha: float,
    n_resamples: int,
    seed: int,
) -> PairedComparison:
    """A comparison whose statistic is the mean of ``values`` (per-sample, already weighted), with
    the stratified percentile bootstrap of that mean (strata ``codes``) and its two-sided p; the
    unweighted per-sample ``differences`` give the counts of pairs on each side of 0."""
    (means,) = _resampled_means((values,), codes, n_resamples, seed)
    observed, n = float(values.mean()), int(values.size)
    return PairedComparison(
        difference=_percentile_interval(observed, means, confidence, n),
        equivalence_interval=_percentile_interval(observed, means, 1 - 2 * alpha, n),
        p_value=_bootstrap_p(observed, means),
        test=test,
        method_only=int(np.sum(differences > 0)),
        baseline_only=int(np.sum(differences < 0)),
    )


def paired_graded(
    method: Sequence[float],
    baseline: Sequence[float],
    strata: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare graded scores of a method and a baseline on the same samples, in the same order:
    a paired percentile bootstrap of the mean difference, resampling pairs within each stratum
    (stratified bootstrap, Davison & Hinkley 1997, sec. 3.7), with its two-sided bootstrap p.

    Args:
        method, baseline: (n,) per-sample scores in [0, 1].
        strata: (n,) each pair's stratum label, e.g. (task, length); None for one stratum.

    Raises:
        ValueError: the score lists differ in length or are empty, or strata differ in length.
    """
    _check_level("confidence", confidence, 1)
    _check_level("alpha", alpha, 0.5)
    ours, theirs = _paired_arrays(method, baseline)
    differences = ours - theirs
    codes = _stratum_codes(strata, ours.size)
    test = "stratified paired bootstrap"
    return _bootstrap_comparison(differences, differences, codes, test, confidence, alpha, n_resamples, seed)


def paired_task_average(
    method: Sequence[float],
    baseline: Sequence[float],
    tasks: Sequence[Hashable],
    confidence: float = 0.95,
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Method minus baseline as RULER averages: the unweighted mean over tasks of each task's mean
    paired difference, with a paired percentile bootstrap that resamples pairs within each task
    (every task keeps its size) and its two-sided bootstrap p. With the same number of pairs in
    every task it is ``paired_graded`` with the tasks as strata, draw for draw.

    Args:
        method, baseline: (n,) per-sample scores in [0, 1], paired by position.
        tasks: (n,) each pair's task.

    Raises:
        ValueError: the score lists differ in length or are empty, or tasks differ in length.
    """
    _check_level("confidence", confidence, 1)
    _check_level("alpha", alpha, 0.5)
    ours, theirs = _paired_arrays(method, baseline)
    codes = _stratum_codes(tasks, ours.size)
    counts = np.bincount(codes)
    weights = ours.size / (counts.size * counts[codes])  # a task's pairs weigh 1 / (tasks x its size)
    differences = ours - theirs
    test = "paired bootstrap of the task average, stratified by task"
    return _bootstrap_comparison(
        differences * weights, differences, codes, test, confidence, alpha, n_resamples, seed
    )


def stratum_contrast(
    values: Sequence[float],
    strata: Sequence[Hashable],
    weights: Mapping[Any, float],
    confidence: float = 0.95,
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """A weighted sum of stratum means of per-sample paired values (differences, or differences of
    differences, in [-2, 2]): sum over strata s of ``weights[s]`` times the mean of s's values, e.g.
    {A: 1, B: -1} for "the difference on task A minus the difference on task B", or 1/T each for the
    task average. Its interval and two-sided p come from a percentile bootstrap that resamples
    within each stratum independently (every stratum keeps its size).

    Raises:
        ValueError: values empty or outside [-2, 2], strata of another length, or a stratum
            without a weight.
    """
    _check_level("confidence", confidence, 1)
    _check_level("alpha", alpha, 0.5)
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0 or not np.all(np.abs(data) <= 2):
        raise ValueError("values must be a non-empty 1-D sequence in [-2, 2]")
    codes = _stratum_codes(strata, data.size)
    labels = list(dict.fromkeys(strata))
    missing = [label for label in labels if label not in weights]
    if missing:
        raise ValueError(f"no weight for strata {missing}")
    counts = np.bincount(codes)
    multipliers = np.array([weights[label] for label in labels])[codes] * data.size / counts[codes]
    test = "bootstrap of a contrast of stratum means, stratified"
    return _bootstrap_comparison(data * multipliers, data, codes, test, confidence, alpha, n_resamples, seed)


def paired_comparison(
    method: Sequence[float],
    baseline: Sequence[float],
    strata: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """``paired_binary`` when every score of both is 0 or 1 (strata, n_resamples and seed then play
    no part), else ``paired_graded``.

    Raises:
        ValueError: the score lists differ in length or are empty, or strata differ in length.
    """
    ours, theirs = _paired_arrays(method, baseline)
    if np.all(np.isin(ours, (0, 1))) and np.all(np.isin(theirs, (0, 1))):
        _stratum_codes(strata, ours.size)  # checks the labels' length
        return paired_binary(method, baseline, confidence, alpha)
    return paired_graded(method, baseline, strata, confidence, alpha, n_resamples, seed)


def retention_interval(
    method: Sequence[float],
    baseline: Sequence[float],
    strata: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Retention = mean(method) / mean(baseline) in percent, with a paired percentile bootstrap CI
    (the same resampled pairs for both, within each stratum; resamples where the baseline scores 0
    are left out).

    Returns:
        None when the baseline never scores (retention is undefined).

    Raises:
        ValueError: the score lists differ in length or are empty, or strata differ in length.
    """
    _check_level("confidence", confidence, 1)
    ours, theirs = _paired_arrays(method, baseline)
    codes = _stratum_codes(strata, ours.size)
    if theirs.mean() == 0:
        return None
    numerators, denominators = _resampled_means((ours, theirs), codes, n_resamples, seed)
    defined = denominators > 0
    ratios = numerators[defined] / denominators[defined]
    return _percentile_interval(float(ours.mean() / theirs.mean()), ratios, confidence, int(ours.size))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the input order; the family is the whole sequence.

    The i-th smallest p (from 0) times m - i, running maximum, capped at 1: the values of statsmodels
    ``multipletests(method="holm")[1]``, which is not called because it runs ``gc.collect()`` on
    every call (20 ms in a report process, 200 ms beside torch).

    Raises:
        ValueError: a p-value is outside [0, 1].
    """
    values = np.asarray(p_values, dtype=np.float64)
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"p-values must lie in [0, 1]; got {list(p_values)}")
    order = np.argsort(values, kind="stable")
    stepped = np.maximum.accumulate(values[order] * np.arange(values.size, 0, -1))
    adjusted = np.empty_like(values)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(p) for p in adjusted]


def verdict(
    comparison: PairedComparison,
    adjusted_p: float | None = None,
    margin: float = EQUIVALENCE_MARGIN,
    alpha: float = ALPHA,
) -> str:
    """What a comparison shows: "higher" or "lower" when p (the Holm-adjusted one if given) < alpha;
    else "equivalent (±margin pp)" when the two one-sided tests (TOST) reject at alpha, i.e. when the
    1 - 2*alpha interval lies strictly inside (-margin, +margin) (Schuirmann 1987); else "not shown".
    The equivalence interval is the comparison's own, so pass the alpha it was computed with.
    """
    p_value = comparison.p_value if adjusted_p is None else adjusted_p
    estimate = comparison.difference.estimate
    if p_value < alpha and estimate != 0:
        return "higher" if estimate > 0 else "lower"
    tost = comparison.equivalence_interval
    if -margin < tost.low and tost.high < margin:
        return f"equivalent (±{margin:g} pp)"
    return "not shown"
