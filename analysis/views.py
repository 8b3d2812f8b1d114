"""Declared views over the scored table (``analysis.table``): accuracy with cost per group of any
fields, paired comparisons with a baseline over the samples both have, the samples every
configuration of a cell completed, and each benchmark's official table. The end-of-run summary,
``laserkv report`` and the quality studies are these views with their own group-by fields.

Every interval and p-value comes from ``analysis.stats``: accuracies of right/wrong outcomes get
Wilson intervals, graded scores a bootstrap stratified by (task, length); paired differences of
right/wrong outcomes the exact McNemar test with its consistent interval, of graded scores the
stratified paired bootstrap. A table of comparisons is one family: its p-values are also given
Holm-adjusted, and its verdicts (higher / lower / equivalent within the margin / not shown) use
the adjusted p and the TOST interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.stats import EQUIVALENCE_MARGIN, holm, mean_interval, paired_comparison, verdict
from analysis.table import BASELINE, ScoredTable
from evals.benchmarks import get_benchmark

SAMPLE_KEY = ("dataset", "dataset_revision", "sample_id", "model", "temperature", "max_new_tokens", "seed")
"""Rows with equal values here answered the same prompt the same way (they pair)."""
STRATA = ("task", "length")
"""The strata of pooled bootstraps: a pooled estimate resamples within each (task, length)."""
COSTS = {
    "budget": "budget",
    "kept": "kept_tokens_final",
    "context": "context_tokens",
    "seconds": "seconds_total",
    "seconds_forward": "seconds_forward",
    "seconds_decode": "seconds_decode",
    "peak_bytes": "peak_memory_bytes",
}
"""Cost columns of ``accuracy``: the mean over a group's ``ok`` rows of each result column."""
FAILED_OUTPUT = "<no output: the unit failed>"
"""The response a failed unit shows the official tables (not empty, so LongBench v2 counts it)."""


def _strata(frame: pd.DataFrame) -> list[tuple[object, ...]] | None:
    """The rows' (task, length), or None when they are all one stratum."""
    strata = list(zip(*(frame[column] for column in STRATA), strict=True))
    return strata if len(set(strata)) > 1 else None


def _mean(values: pd.Series) -> float | None:
    present = values.dropna()
    return None if present.empty else float(present.astype(float).mean())


def accuracy(table: ScoredTable, by: Sequence[str], value: str = "score") -> pd.DataFrame:
    """Per group of ``by``: rows (``n``), rows counted (``n_scored``), failures (``errors``), the
    mean ``value`` of the counted rows in percent with its 95% interval (``accuracy``, ``low``,
    ``high``; None when nothing counted), the protocol, and the mean of each of ``COSTS``."""
    records = []
    for keys, members in table.frame.groupby(list(by), sort=True, dropna=False):
        counted = members[members["counts"]]
        interval = (
            mean_interval(counted[value].astype(float).tolist(), _strata(counted)) if len(counted) else None
        )
        ok = members[~members["failed"]]
        records.append(
            {
                **dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True)),
                "protocol": members["protocol"].dropna().iloc[0]
                if members["protocol"].notna().any()
                else None,
                "n": len(members),
                "n_scored": len(counted),
                "errors": int(members["failed"].sum()),
                "accuracy": None if interval is None else interval.estimate,
                "low": None if interval is None else interval.low,
                "high": None if interval is None else interval.high,
                **{name: _mean(ok[column]) for name, column in COSTS.items()},
            }
        )
    return pd.DataFrame.from_records(records)


def complete_samples(
    table: ScoredTable, within: Sequence[str] = ("model", "dataset", "task", "length"), member: str = "config"
) -> tuple[ScoredTable, pd.DataFrame]:
    """The rows of samples that every ``member`` of their group (``within``) has a row for, and per
    group the coverage: ``members``, ``complete`` (samples under every member), ``seen`` (samples)."""
    frame = table.frame
    members = frame.groupby(list(within), dropna=False)[member].transform("nunique")
    per_sample = frame.groupby([*within, "sample_id"], dropna=False)[member].transform("nunique")
    complete = per_sample.eq(members)
    flagged = frame.assign(_complete=complete)
    coverage = (
        flagged.groupby(list(within), dropna=False)
        .agg(
            members=(member, "nunique"),
            seen=("sample_id", "nunique"),
            complete=("sample_id", lambda ids: ids[flagged.loc[ids.index, "_complete"]].nunique()),
        )
        .reset_index()
    )
    return table.where(frame[complete].reset_index(drop=True)), coverage


def pairs(
    table: ScoredTable, baseline: str, member: str = "config", match: Sequence[str] = ()
) -> pd.DataFrame:
    """Every counted row of a ``member`` other than ``baseline`` beside the baseline's row for the
    same sample (``SAMPLE_KEY``, plus the ``match`` columns): its columns, and the baseline's
    ``score``, ``correct`` and ``kept_tokens_final`` as ``base_*``. Only samples both have, in
    sample order (so seeded resamples do not depend on how rows were sharded)."""
    frame = table.frame[table.frame["counts"]]
    keys = [*SAMPLE_KEY, *match]
    base = frame[frame[member] == baseline].drop_duplicates(keys, keep="last")
    base = base[[*keys, "score", "correct", "kept_tokens_final", "failed"]].rename(
        columns={"score": "base_score", "correct": "base_correct", "kept_tokens_final": "base_kept",
                 "failed": "base_failed"}
    )  # fmt: skip
    paired = frame[frame[member] != baseline].merge(base, on=keys, how="inner")
    return paired.sort_values(["sample_id", *keys], kind="stable").reset_index(drop=True)  # not shard order


def compare(
    table: ScoredTable,
    by: Sequence[str],
    baseline: str = BASELINE,
    member: str = "config",
    match: Sequence[str] = (),
    value: str = "score",
    margin: float = EQUIVALENCE_MARGIN,
) -> pd.DataFrame:
    """Each ``member`` against ``baseline`` per group of ``by``, paired on the samples both have
    (``pairs``; ``match``: columns that must also agree, e.g. the kept fraction). One row per
    comparison: ``pairs``, the difference in pp with its 95% interval (``difference``, ``low``,
    ``high``), the TOST interval (``eq_low``, ``eq_high``), the test, raw and Holm-adjusted ``p``
    over the whole table (one family), the discordant counts, both realised kept means, and the
    verdict at ``margin``."""
    paired = pairs(table, baseline, member, match)
    records = []
    for keys, members in paired.groupby([*by, member], sort=True, dropna=False):
        ours, theirs = members[value].astype(float).tolist(), members[f"base_{value}"].astype(float).tolist()
        result = paired_comparison(ours, theirs, strata=_strata(members))
        records.append(
            {
                **dict(zip([*by, member], keys, strict=True)),
                "baseline": baseline,
                "pairs": len(members),
                "difference": result.difference.estimate,
                "low": result.difference.low,
                "high": result.difference.high,
                "eq_low": result.equivalence_interval.low,
                "eq_high": result.equivalence_interval.high,
                "test": result.test,
                "p": result.p_value,
                "only_member": result.method_only,
                "only_baseline": result.baseline_only,
                "kept": _mean(members.loc[~members["failed"], "kept_tokens_final"]),
                "base_kept": _mean(members.loc[~members["base_failed"], "base_kept"]),
                "_result": result,
            }
        )
    found = pd.DataFrame.from_records(records)
    if found.empty:
        return found
    found["p_holm"] = holm(found["p"].tolist())
    found["verdict"] = [
        verdict(result, adjusted, margin)
        for result, adjusted in zip(found["_result"], found["p_holm"], strict=True)
    ]
    return found.drop(columns=["_result"])


def official(table: ScoredTable) -> dict[str, dict[str, object]]:
    """Per dataset and configuration label: the benchmark's official result
    (``Benchmark.official_table``) from the rows' scored values."""
    frame = table.frame.assign(
        response=table.frame["raw_output"]
        .fillna("")
        .astype(str)
        .where(~table.frame["failed"], FAILED_OUTPUT),
        answer=table.frame["target"],
    )
    found: dict[str, dict[str, object]] = {}
    for (dataset, label), members in frame.groupby(["dataset", "config"], sort=True):
        records = members.to_dict("records")
        found.setdefault(str(dataset), {})[str(label)] = get_benchmark(str(dataset)).official_table(records)
    return found


CELL = ("dataset", "model", "method", "method_hash", "config", "task", "length")
"""What a result cell is: a configuration (dataset, model, method name and config hash; its label)
on one task at one length."""


def cells(table: ScoredTable, by: Sequence[str] = CELL) -> pd.DataFrame:
    """Accuracy and cost per group of ``by`` (``accuracy``) beside the paired comparison with
    ``full`` on the same samples (``compare``: ``delta_vs_full`` with ``delta_low`` /
    ``delta_high``, ``p``, ``p_holm``, ``test``, ``verdict``, ``n_paired``; empty where ``full``
    did not run or for ``full`` itself). The end-of-run summary, and with other ``by`` the report."""
    found = accuracy(table, by)
    versus = compare(table, [name for name in by if name != "config"], BASELINE, "config")
    columns = {"difference": "delta_vs_full", "low": "delta_low", "high": "delta_high", "pairs": "n_paired"}
    if versus.empty:
        return found.assign(**{name: None for name in (*columns.values(), "p", "p_holm", "test", "verdict")})
    versus = versus.rename(columns=columns)
    keep = [*by, *columns.values(), "p", "p_holm", "test", "verdict"]
    return found.merge(versus[keep], on=list(by), how="left")
