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
KEPT_TOLERANCE = 0.02
"""Two configurations keep matched tokens when their mean realised kept tokens differ by at most
2% (relative)."""
MATCHED = "matched"
REFERENCE = "reference (full cache)"
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
    ``score``, ``correct``, ``kept_tokens_final``, ``failed``, ``protocol`` and ``regime`` as
    ``base_*`` (``base_kept`` for the kept tokens). Only samples both have, in
    sample order (so seeded resamples do not depend on how rows were sharded)."""
    frame = table.frame[table.frame["counts"]]
    keys = [*SAMPLE_KEY, *match]
    base = frame[frame[member] == baseline].drop_duplicates(keys, keep="last")
    base = base[[*keys, "score", "correct", "kept_tokens_final", "failed", "protocol", "regime"]].rename(
        columns={"score": "base_score", "correct": "base_correct", "kept_tokens_final": "base_kept",
                 "failed": "base_failed", "protocol": "base_protocol", "regime": "base_regime"}
    )  # fmt: skip
    paired = frame[frame[member] != baseline].merge(base, on=keys, how="inner")
    return paired.sort_values(["sample_id", *keys], kind="stable").reset_index(drop=True)  # not shard order


def _values(column: pd.Series) -> str:
    """The distinct values of a column as text (``a / b`` when several)."""
    return " / ".join(sorted({str(value) for value in column.dropna()})) or "-"


def mismatches(members: pd.DataFrame, tolerance: float = KEPT_TOLERANCE) -> list[str]:
    """What differs between a member's rows and its baseline's rows (``pairs``): the protocol,
    the prefill regime, the realised kept tokens beyond ``tolerance`` (relative, e.g. 0.02)."""
    found = []
    for name, ours, theirs in (
        ("protocol", members["protocol"], members["base_protocol"]),
        ("prefill regime", members.loc[~members["failed"], "regime"],
         members.loc[~members["base_failed"], "base_regime"]),
    ):  # fmt: skip
        if _values(ours) != _values(theirs):
            found.append(f"{name} ({' vs '.join(sorted((_values(ours), _values(theirs))))})")
    kept = _mean(members.loc[~members["failed"], "kept_tokens_final"])
    base = _mean(members.loc[~members["base_failed"], "base_kept"])
    if kept is not None and base and abs(kept / base - 1) > tolerance:
        found.append(f"kept tokens (differ by {100 * abs(kept / base - 1):.1f}%)")
    return found


def compare(
    table: ScoredTable,
    by: Sequence[str],
    baseline: str = BASELINE,
    member: str = "config",
    match: Sequence[str] = (),
    value: str = "score",
    margin: float = EQUIVALENCE_MARGIN,
    mismatched: bool = False,
    tolerance: float = KEPT_TOLERANCE,
) -> pd.DataFrame:
    """Each ``member`` against ``baseline`` per group of ``by``, paired on the samples both have
    (``pairs``; ``match``: columns that must also agree, e.g. the kept fraction). One row per
    comparison: ``pairs``, the difference in pp with its 95% interval (``difference``, ``low``,
    ``high``), the TOST interval (``eq_low``, ``eq_high``), the test, raw and Holm-adjusted ``p``,
    the discordant counts, both realised kept means, ``matched`` and the verdict at ``margin``.

    ``matched`` says whether the two ran at the same protocol, prefill regime and kept tokens
    (within ``tolerance``), or names what differs (``mismatches``); against ``full`` it is
    ``reference (full cache)``. The Holm family is every matched or reference comparison of the
    returned table; a mismatched one gets its raw p but no adjusted p and the verdict
    ``mismatched``, unless ``mismatched`` asks for them too."""
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
                "matched": REFERENCE
                if baseline == BASELINE
                else _matched_text(mismatches(members, tolerance)),
                "_result": result,
            }
        )
    found = pd.DataFrame.from_records(records)
    if found.empty:
        return found
    family = found["matched"].isin((MATCHED, REFERENCE)) | mismatched
    found["p_holm"] = None
    found.loc[family, "p_holm"] = holm(found.loc[family, "p"].tolist())
    found["verdict"] = [
        verdict(result, adjusted, margin) if in_family else "mismatched"
        for result, adjusted, in_family in zip(found["_result"], found["p_holm"], family, strict=True)
    ]
    found["p_holm"] = found["p_holm"].astype(float)
    return found.drop(columns=["_result"])


def _matched_text(differences: list[str]) -> str:
    return MATCHED if not differences else "differs: " + "; ".join(differences)


def reversed_comparisons(found: pd.DataFrame) -> pd.DataFrame:
    """``compare``'s rows (member − baseline) as baseline − member: signs, bounds, discordant
    counts, kept means and verdicts swapped; p-values unchanged (both tests are symmetric)."""
    flipped = found.assign(
        difference=0.0 - found["difference"],
        low=0.0 - found["high"],
        high=0.0 - found["low"],
        eq_low=0.0 - found["eq_high"],
        eq_high=0.0 - found["eq_low"],
        only_member=found["only_baseline"],
        only_baseline=found["only_member"],
        kept=found["base_kept"],
        base_kept=found["kept"],
    )
    return flipped.assign(verdict=flipped["verdict"].replace({"higher": "lower", "lower": "higher"}))


def setting_of(label: str) -> str:
    """A configuration label's settings without its method: ``laser[compression_ratio=0.25]`` ->
    ``[compression_ratio=0.25]`` (``""`` for a bare method)."""
    return label[len(label.split("[")[0]) :]


def versus(
    table: ScoredTable,
    method: str,
    by: Sequence[str] = ("dataset", "model", "length"),
    value: str = "score",
    mismatched: bool = False,
) -> pd.DataFrame:
    """``method``'s configurations against every other configuration run at the same settings
    (``setting_of``: e.g. the same kept fraction), tasks pooled per group of ``by``: ``compare``'s
    rows as ``method`` − other (``reversed_comparisons``), ``config`` naming the other, each
    labelled matched or with what differs; ``full`` is left out (it is the reference)."""
    frame = table.frame[table.frame["method"].map(lambda label: label.split("[")[0]) != BASELINE]
    ours = frame["method"].map(lambda label: label.split("[")[0]) == method
    frame = frame.assign(setting=frame["method"].map(setting_of), side=frame["config"].where(~ours, VERSUS))
    found = compare(table.where(frame), by, VERSUS, "side", ("setting",), value, mismatched=mismatched)
    if found.empty:
        return found
    return reversed_comparisons(found).rename(columns={"side": "config"}).assign(versus=method)


VERSUS = "<versus>"
"""The side of the method a ``versus`` view compares the others with."""


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
