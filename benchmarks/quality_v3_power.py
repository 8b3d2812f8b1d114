"""The sample size of issue 36's quality v3 study, from quality v2's rows (``docs/quality/v3-plan.md``)::

    python -m benchmarks.quality_v3_power docs/quality/runs/q05_ruler docs/quality/runs/q15_ruler

For LASER-KV (``laser[compression_ratio=r]``, r = 0.25 and 0.125) against query-aware native SnapKV
(``snapkv[...]``, same r) and against ``full``, per model and length of v2's RULER rows, over the
samples both ran (``analysis.views.pairs``): the pairs, the mean difference (pp), the discordance
rate psi (the share of pairs whose right/wrong outcome differs), the SD of the per-pair
graded-score difference (``sd`` over all pairs; ``sd_w`` within task, the pooled within-task SD,
which is what a bootstrap stratified by task sees), and the samples per task that the 13-task
pooled endpoint needs. Normal approximation; z_q is the standard normal quantile, sigma the SD of
a paired difference, delta = margin = 5 pp, power 1 - beta = 0.8:

- (i) a two-sided difference test at alpha = 0.05 / 3 (the first, strictest Holm step of the
  3-comparison primary family) with power 0.8 at a true difference of 5 pp:
  N = ((z_{1 - alpha/2} + z_{1 - beta}) * sigma / delta)^2;
- (ii) TOST at +/-5 pp (alpha = 0.05 each side: the 90% interval) with power 0.8 at a true
  difference of 0: N = ((z_{1 - alpha} + z_{1 - beta/2}) * sigma / margin)^2, since its power is
  2 * Phi(margin * sqrt(N) / sigma - z_{1 - alpha}) - 1.

N counts the pairs of the pooled endpoint; with equal samples per task the 13-task average has
standard error sigma / sqrt(N), so each task needs ceil(N / 13) (``n_i``, ``n_ii`` from ``sd_w``).
``n_i_bin`` and ``n_ii_bin`` put sigma = sqrt(psi), the SD of a right/wrong paired difference when
there is no difference (the discordance-rate form; it overstates sigma where the true difference
is large, as against ``full``). (i) equals statsmodels' ``NormalIndPower`` with ``ratio=0`` (one
sample); the t-based ``TTestPower`` asks for about 3 more pairs (printed as a cross-check).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.table import BASELINE, ScoredTable, scored_table
from analysis.views import pairs
from cluster.writer import ResultsError

RATIOS = (0.25, 0.125)
RIVAL = "snapkv"
"""Query-aware native SnapKV: the rival v2 ran with the question, in the same 4096-token blocks."""
TASKS_POOLED = 13
"""RULER's tasks in the primary endpoint's average."""
MARGIN = 0.05
"""The equivalence margin and the difference to detect, as a fraction (5 pp)."""
FAMILY = 3
"""Comparisons in the primary Holm family (LASER-KV vs each query-aware rival)."""
ALPHA = 0.05
POWER = 0.8
PLAN_SD = 0.35
"""The planning SD: above the largest pooled within-task SD of LASER-KV vs SnapKV in v2 (0.316),
since v2 ran 5 of the 13 tasks (``docs/quality/v3-plan.md``, "Sample size")."""
PLAN_N = 50
"""The chosen samples per task."""


@dataclass(frozen=True)
class Design:
    """What a sample size is computed for: the margin (also the difference to detect), the
    family-wise alpha and the size of the Holm family, the power, and the tasks pooled."""

    margin: float = MARGIN
    alpha: float = ALPHA
    family: int = FAMILY
    power: float = POWER
    tasks: int = TASKS_POOLED


def pairs_for_difference(sigma: float, delta: float, alpha: float, power: float) -> float:
    """Pairs a two-sided paired z test at ``alpha`` needs to detect a true mean difference
    ``delta`` with ``power``, for per-pair differences of SD ``sigma`` (normal approximation):
    ((z_{1-alpha/2} + z_{power}) * sigma / delta)^2, not rounded."""
    return float(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sigma / delta) ** 2)


def pairs_for_equivalence(sigma: float, margin: float, alpha: float, power: float) -> float:
    """Pairs TOST at +/-``margin`` (each one-sided test at ``alpha``: the 1 - 2*alpha interval)
    needs to show equivalence with ``power`` when the true difference is 0 (normal approximation):
    ((z_{1-alpha} + z_{1-(1-power)/2}) * sigma / margin)^2, not rounded."""
    return float(((norm.ppf(1 - alpha) + norm.ppf(1 - (1 - power) / 2)) * sigma / margin) ** 2)


def per_task(pairs_needed: float, tasks: int) -> int:
    """Samples per task when ``pairs_needed`` pairs are spread evenly over ``tasks`` tasks."""
    return math.ceil(pairs_needed / tasks)


def sizes(sigma: float, design: Design) -> tuple[int, int]:
    """Samples per task for (i) and (ii) at SD ``sigma`` (0, 0 when sigma is 0)."""
    if sigma <= 0:
        return 0, 0
    difference = pairs_for_difference(sigma, design.margin, design.alpha / design.family, design.power)
    equivalence = pairs_for_equivalence(sigma, design.margin, design.alpha, design.power)
    return per_task(difference, design.tasks), per_task(equivalence, design.tasks)


def power_at(per_task_n: int, sigma: float, design: Design) -> tuple[float, float]:
    """Power of (i) at a true difference of ``design.margin`` and of (ii) at a true difference of 0,
    with ``per_task_n`` samples in each of ``design.tasks`` tasks (normal approximation; (i) leaves
    out the far rejection tail)."""
    standard_error = sigma / math.sqrt(per_task_n * design.tasks)
    z_i = norm.ppf(1 - design.alpha / design.family / 2)
    difference = float(norm.cdf(design.margin / standard_error - z_i))
    equivalence = float(2 * norm.cdf(design.margin / standard_error - norm.ppf(1 - design.alpha)) - 1)
    return difference, max(equivalence, 0.0)


def within_task_sd(differences: pd.Series, tasks: pd.Series) -> float:
    """The pooled within-task SD of per-pair differences, sqrt(sum_t (n_t - 1) var_t / (N - T));
    NaN when no task has two pairs."""
    grouped = differences.groupby(tasks)
    dof = int((grouped.size() - 1).clip(lower=0).sum())
    if dof == 0:
        return float("nan")
    squares = float(grouped.apply(lambda values: float(((values - values.mean()) ** 2).sum())).sum())
    return float(np.sqrt(squares / dof))


def summary(paired: pd.DataFrame, design: Design) -> dict[str, object]:
    """One comparison's pairs (``analysis.views.pairs`` rows) as the power table's columns;
    differences are method - baseline."""
    differences = paired["score"].astype(float) - paired["base_score"].astype(float)
    psi = float((paired["correct"] != paired["base_correct"]).mean())
    sigma = within_task_sd(differences, paired["task"])
    n_i, n_ii = sizes(sigma, design)
    n_i_bin, n_ii_bin = sizes(math.sqrt(psi), design)
    return {
        "tasks": paired["task"].nunique(),
        "pairs": len(paired),
        "diff_pp": round(100 * float(differences.mean()), 1) + 0.0,
        "psi": round(psi, 3),
        "sd": round(float(differences.std(ddof=1)), 3),
        "sd_w": round(sigma, 3),
        "n_i": n_i,
        "n_ii": n_ii,
        "n_i_bin": n_i_bin,
        "n_ii_bin": n_ii_bin,
    }


def v2_table(directories: Sequence[Path]) -> ScoredTable:
    """v2's RULER rows, labelled without the `` @ model`` suffix (rows pair within a model anyway).

    Raises:
        ResultsError: no result shards in the directories.
    """
    table = scored_table(directories)
    frame = table.frame[table.frame["dataset"] == "ruler"]
    frame = frame.assign(config=frame["config"].str.replace(r" @ .*$", "", regex=True))
    return table.where(frame.reset_index(drop=True))


def power_table(table: ScoredTable, design: Design, by_task: bool = False) -> pd.DataFrame:
    """Per model, length, r and baseline (``snapkv`` at the same r, then ``full``), and per task
    when ``by_task``: ``summary`` of LASER-KV's pairs. Per-task rows still size all
    ``design.tasks`` tasks as if each had that task's spread."""
    keys = ["model", "length", "task"] if by_task else ["model", "length"]
    records = []
    for ratio in RATIOS:
        laser = f"laser[compression_ratio={ratio}]"
        for baseline in (f"{RIVAL}[compression_ratio={ratio}]", BASELINE):
            paired = pairs(table, baseline, "config", match=("task", "length"))
            for group, members in paired[paired["config"] == laser].groupby(keys, sort=True):
                names = dict(zip(keys, group, strict=True))
                records.append(
                    {**names, "r": ratio, "vs": baseline.split("[")[0], **summary(members, design)}
                )
    found = pd.DataFrame.from_records(records)
    if found.empty:
        return found
    found["model"] = found["model"].str.replace("qwen2.5-coder-", "", regex=False)
    found["_length"] = found["length"].str.rstrip("k").astype(int)
    order = ["model", "_length", *(["task"] if by_task else []), "r", "vs"]
    ascending = [True, True, *([True] if by_task else []), False, False]
    return found.sort_values(order, ascending=ascending).drop(columns="_length").reset_index(drop=True)


def cross_check(sigma: float, design: Design) -> str:
    """The pooled pairs N of (i) and (ii) at ``sigma`` beside statsmodels' power solvers: (i)
    against ``NormalIndPower`` with ``ratio=0`` (one-sample z test; equal) and ``TTestPower`` (t
    test; slightly more); (ii) against the one-sided ``NormalIndPower`` at power (1 + power) / 2,
    which is TOST's power 2 * Phi(.) - 1 solved for Phi(.)."""
    from statsmodels.stats.power import NormalIndPower, TTestPower

    effect, alpha_i = design.margin / sigma, design.alpha / design.family
    normal_i = NormalIndPower().solve_power(effect, None, alpha_i, design.power, 0)
    t_i = TTestPower().solve_power(effect, None, alpha_i, design.power)
    normal_ii = NormalIndPower().solve_power(effect, None, design.alpha, (1 + design.power) / 2, 0, "larger")
    return (
        f"cross-check at sd = {sigma:.3f}: (i) formula N = "
        f"{pairs_for_difference(sigma, design.margin, alpha_i, design.power):.1f}, statsmodels "
        f"NormalIndPower(ratio=0) {normal_i:.1f}, TTestPower {t_i:.1f}; (ii) formula N = "
        f"{pairs_for_equivalence(sigma, design.margin, design.alpha, design.power):.1f}, "
        f"NormalIndPower one-sided at power (1 + power) / 2 {normal_ii:.1f}"
    )


def report(table: ScoredTable, design: Design, plan_sd: float, plan_n: int) -> str:
    """The formulas, the power table pooled over each (model, length)'s tasks and per task, the
    largest per-task sizes of LASER-KV vs SnapKV at 16k and 8k, the statsmodels cross-check, and
    the sizes and power at the planning SD and the chosen n."""
    z_i = norm.ppf(1 - design.alpha / design.family / 2) + norm.ppf(design.power)
    z_ii = norm.ppf(1 - design.alpha) + norm.ppf(1 - (1 - design.power) / 2)
    pooled, per_task_rows = power_table(table, design), power_table(table, design, by_task=True)
    lines = [
        f"(i)  difference, two-sided alpha = {design.alpha:g}/{design.family}, power {design.power:g} at "
        f"{100 * design.margin:g} pp: N = ({z_i:.4f} * sd / {design.margin:g})^2",
        f"(ii) TOST +/-{100 * design.margin:g} pp, alpha = {design.alpha:g}, power {design.power:g} at 0: "
        f"N = ({z_ii:.4f} * sd / {design.margin:g})^2",
        f"n_* = ceil(N / {design.tasks}) per task; n_i, n_ii from sd_w; n_*_bin from sqrt(psi)",
        "",
        "Pooled over each (model, length)'s tasks:",
        pooled.to_string(index=False),
        "",
        "Per task:",
        per_task_rows.to_string(index=False),
        "",
    ]
    rival = pooled[pooled["vs"] == RIVAL]
    for length in ("16k", "8k"):
        rows = rival[rival["length"] == length]
        if not rows.empty:
            lines.append(
                f"LASER-KV vs {RIVAL} at {length}, largest per-task n: (i) {rows['n_i'].max()}, "
                f"(ii) {rows['n_ii'].max()}; from psi: (i) {rows['n_i_bin'].max()}, "
                f"(ii) {rows['n_ii_bin'].max()}"
            )
    largest = float(rival["sd_w"].max())
    lines.append(cross_check(largest, design))
    planned = sizes(plan_sd, design)
    lines.append(f"planning sd {plan_sd:g}: n per task (i) {planned[0]}, (ii) {planned[1]}")
    for sigma in sorted({largest, plan_sd, 0.4}):
        difference, equivalence = power_at(plan_n, sigma, design)
        lines.append(
            f"n = {plan_n} per task at sd {sigma:.3f}: power (i) {difference:.3f}, (ii) {equivalence:.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.quality_v3_power RESULTS...``: print ``report``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_v3_power", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("results", nargs="+", type=Path, help="quality v2 results directories")
    parser.add_argument(
        "--plan-sd", type=float, default=PLAN_SD, help="the planning SD of a paired difference"
    )
    parser.add_argument("--n", type=int, default=PLAN_N, help="the chosen samples per task")
    args = parser.parse_args(argv)
    try:
        table = v2_table(args.results)
    except ResultsError as error:
        parser.error(str(error))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(report(table, Design(), args.plan_sd, args.n))


if __name__ == "__main__":
    main()
