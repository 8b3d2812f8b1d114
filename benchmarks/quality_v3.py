"""Quality v3's registered analysis (docs/quality/v3-plan.md), the families it names, computed
from the committed rows through ``analysis.table`` and ``analysis.stats``:

- the primary family (P-a, P-b1, P-b2: LASER-KV at equal tokens against the three query-aware
  rivals, RULER's 13-task graded average at 16k, r = 0.25), S1 (the same at r = 0.125), S3 (at
  32k, over the tasks complete for every arm), and the pairwise secondary families S2 (against
  ``full``), S7 (as shipped), S8 (score pooling), S9 (query visibility) and S10 (the curve's r);
- S4: per task, each primary comparison's 13 differences (three families of 13);
- S5: the needle value-type contrasts C1, C2 of P-a (a family of 2); S6: LASER-KV (equal tokens) −
  SnapKV at blocks of 1,024, 4,096 and one-shot (a family of 3) and the contrasts of that gap
  between regimes (a family of 2).

Each comparison uses the samples every configuration of its family ran (complete samples), pairs
them by ``analysis.views.SAMPLE_KEY``, and gives Δ = arm − rival in pp as the unweighted mean of
the task means (``analysis.stats.paired_task_average``; S4: ``paired_comparison`` per task), its
95% and 90% intervals, the bootstrap p, Holm over the family, the verdict and, for the primary
comparisons and S1 / S3, H1's status (non-inferiority at −5 pp from the 90% interval). A comparison
is matched when both arms ran in the same prefill regime (a query-aware kvpress press's
"one-shot, first token uncompressed" counts as one-shot: the plan accepts it as the press's own
protocol, and the table says so) and their mean kept tokens differ by at most 2% of the rival's;
otherwise it is "mismatched", and, like one that did not run, enters its Holm family with p = 1
and gets no verdict. Failed units count as wrong.

The analysis runs once the primary cells are complete (``benchmarks.quality_v3_coverage``), or with
``--budget-exhausted`` once the GPU budget is declared spent; before that it refuses, so that no
outcome is read early. Beside the families: S10's figure (``s10_curve.png`` and its numbers) and
S2's per-task losses on S5's tasks, both descriptive (no test).

    python -m benchmarks.quality_v3 docs/quality/runs/q15_v3 --out docs/quality/v3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.stats import (
    EQUIVALENCE_MARGIN,
    holm,
    mean_interval,
    paired_comparison,
    paired_task_average,
    stratum_contrast,
    verdict,
)
from analysis.table import ScoredTable, scored_table
from analysis.views import KEPT_TOLERANCE, SAMPLE_KEY, complete_samples
from benchmarks.quality_v3_coverage import (
    AS_SHIPPED,
    EXPECTED_ATTENTION,
    ONE_SHOT,
    PLANNED,
    SAMPLES_PER_TASK,
    per_config,
    primary_missing,
    read_coverage,
)
from benchmarks.quality_v3_power import PLAN_SD, Design, power_at
from cluster.presets import sweep_methods
from cluster.rows import ONE_SHOT_FIRST_UNCOMPRESSED
from cluster.writer import read_manifests
from evals.ruler import task_names
from reports.plots import line_plot
from reports.tables import interval_text, markdown_text, p_text


@dataclass(frozen=True)
class Comparison:
    """One registered comparison: its id, the arm's and the rival's configuration labels."""

    id: str
    arm: str
    rival: str


@dataclass(frozen=True)
class Family:
    """A Holm family: its id, title, comparisons, length and whether H1 is reported."""

    id: str
    title: str
    comparisons: tuple[Comparison, ...]
    length: str = "16k"
    non_inferiority: bool = False


def _planned(*ids: str) -> tuple[Comparison, ...]:
    found = {item.id: item for item in PLANNED}
    return tuple(Comparison(name, found[name].arm, found[name].rival) for name in ids)


PRIMARY = _planned("P-a", "P-b1", "P-b2")
FAMILIES = (
    Family("primary", "Primary: LASER-KV (equal tokens) − query-aware rival, 16k, r = 0.25", PRIMARY,
           non_inferiority=True),
    Family("S1", "S1: the primary comparisons at r = 0.125",
           _planned("S1 (P-a)", "S1 (P-b1)", "S1 (P-b2)"), non_inferiority=True),
    Family("S2", "S2: laser − full", (Comparison("S2 r=0.25", "laser[compression_ratio=0.25]", "full"),
                                       Comparison("S2 r=0.125", "laser[compression_ratio=0.125]", "full"))),
    Family("S3", "S3: the primary comparisons at 32k (a k-task average where fewer than 13 are complete)",
           tuple(Comparison(f"S3 ({item.id})", item.arm, item.rival) for item in PRIMARY), length="32k",
           non_inferiority=True),
    Family("S7", "S7: LASER-KV as shipped − laser",
           (Comparison("S7 r=0.25", AS_SHIPPED, "laser[compression_ratio=0.25]"),
            Comparison("S7 r=0.125", AS_SHIPPED.replace("0.25", "0.125"), "laser[compression_ratio=0.125]"))),
    Family("S8", "S8: score pooling − laser",
           tuple(Comparison(f"S8 r={r}", f"laser[compression_ratio={r},score_pooling=7]",
                            f"laser[compression_ratio={r}]") for r in ("0.25", "0.125"))),
    Family("S9", "S9: kvpress SnapKV query-aware − query-agnostic",
           tuple(Comparison(f"S9 r={r}", f"kvpress:snapkv_query_aware[compression_ratio={r}]",
                            f"kvpress:snapkv[compression_ratio={r}]") for r in ("0.25", "0.125"))),
    Family("S10", "S10: LASER-KV (equal tokens) − SnapKV along the budget axis",
           _planned("S10 (0.5)", "S10 (0.0625)")),
)  # fmt: skip
"""The families with a family-wise Holm adjustment, as the plan registers them."""
assert ONE_SHOT and EXPECTED_ATTENTION  # the labels above come from the coverage module's


class NotYet(RuntimeError):
    """The primary cells are not complete and the GPU budget was not declared exhausted."""


def check_ready(directory: Path, budget_exhausted: bool) -> None:
    """Refuse to read outcomes before the primary cells are complete (unless the budget is spent),
    or from runs of another engine path (``check_engine_path``).

    Raises:
        NotYet: how many primary units are missing.
        ValueError: a run of another engine path.
    """
    check_engine_path(directory)
    configs = per_config(read_coverage(directory), "16k", task_names())
    if configs.empty:
        raise NotYet(f"{directory} holds no 16k rows")
    missing = primary_missing(configs, task_names())
    if missing and not budget_exhausted:
        raise NotYet(
            f"the primary cells miss {missing} units: resume the sweep (docs/quality/v3-plan.md), or pass "
            "--budget-exhausted once the GPU budget is declared spent"
        )


def check_engine_path(directory: Path) -> None:
    """Every run of v3 ran the engine path its first rows ran (``V3_ENGINE_PATH``): a manifest
    written before runs recorded their switches predates issue 40's fused layers and kernel, so it
    ran that path; a later one must record both switches, and no worker it records may have run
    fused layers or FlashAttention-3.

    Raises:
        ValueError: the runs whose manifests name another path (their rows must not be mixed in).
    """
    other = [
        str(manifest.get("run_id"))
        for manifest in read_manifests(directory)
        if (
            "engine_switches" in manifest
            and any(manifest["engine_switches"].get(name) != value for name, value in V3_ENGINE_PATH.items())
        )
        or any(
            worker.get("fused_modules") or worker.get("block_kernel") == "fa3"
            for worker in manifest.get("workers", [])
        )
    ]
    if other:
        raise ValueError(
            f"runs {', '.join(other)} did not run v3's engine path ("
            + ", ".join(f"{name}={value}" for name, value in V3_ENGINE_PATH.items())
            + "): their rows would mix two numerics; move them out of the directory"
        )


def regime_of(label: object) -> str:
    """A row's regime as matched: a query-aware press's first uncompressed token counts as one-shot."""
    return "one-shot" if label == ONE_SHOT_FIRST_UNCOMPRESSED else str(label)


def differences(paired: pd.DataFrame, check_protocol: bool) -> list[str]:
    """What keeps a comparison from being matched (the plan's matching rules), from the rows that
    did not fail: protocol (unless the comparison is about it), prefill regime (a query-aware
    press's first uncompressed token counts as one-shot), and mean kept tokens more than 2% from
    the rival's (or unknown)."""
    found = []
    ran = paired[~paired["failed"]]
    ran_rival = paired[~paired["failed_rival"]]
    if check_protocol and set(ran["protocol"].dropna()) != set(ran_rival["protocol_rival"].dropna()):
        found.append("protocol")
    regimes = sorted({regime_of(value) for value in ran["regime"]})
    rival_regimes = sorted({regime_of(value) for value in ran_rival["regime_rival"]})
    if regimes != rival_regimes:
        found.append(f"regime ({', '.join(regimes)} vs {', '.join(rival_regimes)})")
    kept, kept_rival = ran["kept_tokens_final"].mean(), ran_rival["kept_tokens_final_rival"].mean()
    if pd.isna(kept) or pd.isna(kept_rival):
        found.append("kept tokens unknown")
    elif abs(kept / kept_rival - 1) > KEPT_TOLERANCE:
        found.append(f"kept tokens ({kept:.0f} vs {kept_rival:.0f})")
    return found


PAIR_KEYS = (*SAMPLE_KEY, "task", "length")


def pair_rows(frame: pd.DataFrame, arm: str, rival: str) -> pd.DataFrame:
    """The arm's rows beside the rival's for the same samples (rival columns suffixed ``_rival``),
    in (task, sample) order."""
    keys = list(PAIR_KEYS)
    ours = frame[frame["method"].eq(arm)].drop_duplicates(keys, keep="last")
    theirs = frame[frame["method"].eq(rival)].drop_duplicates(keys, keep="last")
    paired = ours.merge(theirs, on=keys, suffixes=("", "_rival"))
    return paired.sort_values(["task", "sample_id"], kind="stable").reset_index(drop=True)


def compare_pair(
    table: ScoredTable, item: Comparison, length: str, tasks: Sequence[str] | None = None
) -> dict[str, object]:
    """One comparison over the pairs of its arms at ``length`` (in ``tasks`` when given). Against
    ``full`` (S2) it is a reference comparison: no matching rule applies."""
    frame = table.frame[table.frame["length"].eq(length)]
    if tasks is not None:
        frame = frame[frame["task"].isin(list(tasks))]
    paired = pair_rows(frame, item.arm, item.rival)
    record: dict[str, object] = {"id": item.id, "arm": item.arm, "rival": item.rival, "pairs": len(paired)}
    if paired.empty:
        return {**record, "status": "not run", "p": 1.0}
    reference = item.rival == "full"
    found = [] if reference else differences(paired, check_protocol=not item.id.startswith("S9"))
    gap = (paired["kept_tokens_final"] - paired["kept_tokens_final_rival"]).abs().max()
    comparison = paired_task_average(
        paired["score"].tolist(), paired["score_rival"].tolist(), paired["task"].tolist()
    )
    status = "reference (full cache)" if reference else "matched"
    record.update(
        {
            "tasks": paired["task"].nunique(),
            "kept": " / ".join(
                f"{paired[name].mean():.0f}" for name in ("kept_tokens_final", "kept_tokens_final_rival")
            ),
            "largest kept gap": "-" if pd.isna(gap) else str(int(gap)),
            "comparison": comparison,
            "p": 1.0 if found else comparison.p_value,
            "status": "mismatched: " + "; ".join(found) if found else status,
            "note": "rival's first answer token from its uncompressed forward"
            if paired["regime_rival"].eq(ONE_SHOT_FIRST_UNCOMPRESSED).any()
            else "",
        }
    )
    return record


COMPARABLE = ("matched", "reference (full cache)")


def non_inferiority(record: dict[str, object], margin: float = EQUIVALENCE_MARGIN) -> str:
    """H1 from the 90% interval: supported (low > −margin), refuted (high < −margin), else undecided."""
    comparison = record.get("comparison")
    if record["status"] not in COMPARABLE or comparison is None:
        return "-"
    tost = comparison.equivalence_interval  # type: ignore[attr-defined]
    return "supported" if tost.low > -margin else "refuted" if tost.high < -margin else "undecided"


def family_rows(table: ScoredTable, family: Family) -> ScoredTable:
    """The family's rows at its length, on the samples every one of its configurations ran.

    Raises:
        ValueError: a configuration ran with several settings (config hashes), or the rows span
            several dataset revisions (the plan never mixes them).
    """
    labels = {label for item in family.comparisons for label in (item.arm, item.rival)}
    members = table.frame[table.frame["method"].isin(labels) & table.frame["length"].eq(family.length)]
    hashes = members.groupby("method")["method_hash"].nunique()
    if (hashes > 1).any():
        raise ValueError(f"{family.id}: {list(hashes[hashes > 1].index)} ran with several settings")
    revisions = members["dataset_revision"].dropna().unique()
    if len(revisions) > 1:
        raise ValueError(f"{family.id}: rows of several dataset revisions ({', '.join(map(str, revisions))})")
    complete, _ = complete_samples(
        table.where(members), within=("model", "dataset", "length"), member="method"
    )
    return complete


def family_table(table: ScoredTable, family: Family) -> pd.DataFrame:
    """The family's comparisons over its complete samples, Holm-adjusted, with verdicts."""
    complete = family_rows(table, family)
    tasks = None
    if family.id == "S3":  # the tasks every arm completed (all samples)
        counts = complete.frame.groupby("task")["sample_id"].nunique()
        tasks = sorted(counts[counts.eq(SAMPLES_PER_TASK)].index)
    records = [compare_pair(complete, item, family.length, tasks) for item in family.comparisons]
    adjusted = holm([float(record["p"]) for record in records])  # type: ignore[arg-type]
    for record, p_holm in zip(records, adjusted, strict=True):
        record["p_holm"] = p_holm
        comparison = record.get("comparison")
        comparable = record["status"] in COMPARABLE and comparison is not None
        record["verdict"] = verdict(comparison, p_holm) if comparable else "-"  # type: ignore[arg-type]
        record["H1"] = non_inferiority(record) if family.non_inferiority else ""
    return pd.DataFrame.from_records(records)


def joint_h1(frame: pd.DataFrame) -> str:
    """H1's joint claim (intersection-union): LASER-KV is not worse than any of the three rivals
    only if H1 is supported for each."""
    if (frame["H1"] == "supported").all():
        return "supported for all three: LASER-KV is not worse than any query-aware rival by 5 pp or more"
    return "not supported for all three: no joint non-inferiority claim"


def per_task_families(table: ScoredTable) -> list[tuple[str, pd.DataFrame]]:
    """S4: for each primary comparison, its 13 per-task differences as one Holm family, on the
    primary family's complete samples (so they add up to the primary estimate); exact McNemar
    where a task's scores are all 0/1, else the paired bootstrap (``paired_comparison``)."""
    complete = family_rows(table, FAMILIES[0])
    found = []
    for item in PRIMARY:
        records = []
        for task in task_names():
            paired = pair_rows(complete.frame[complete.frame["task"].eq(task)], item.arm, item.rival)
            if paired.empty:
                records.append({"task": task, "pairs": 0, "p": 1.0})
                continue
            comparison = paired_comparison(paired["score"].tolist(), paired["score_rival"].tolist())
            records.append(
                {"task": task, "pairs": len(paired), "comparison": comparison, "p": comparison.p_value}
            )
        title = f"S4 {item.id}: {item.arm} − {item.rival}, per task (Holm over 13)"
        found.append((title, holm_family(records)))
    return found


VALUE_TYPE_CONTRASTS = (
    ("S5 C1", "niah_single_3", "niah_single_2", "UUID vs number value (essay haystack, word key)"),
    ("S5 C2", "niah_multikey_3", "niah_multikey_2", "UUID key and value vs word key, number value (needles)"),
)  # fmt: skip
"""S5: Δ(first task) − Δ(second task) of P-a (LASER-KV equal tokens − SnapKV, blocks of 4,096)."""
S6 = Family(
    "S6",
    "S6: LASER-KV (equal tokens) − SnapKV per prefill regime (H5)",
    (*_planned("S6 (1,024)"), Comparison("S6 (4,096) = P-a", PRIMARY[0].arm, PRIMARY[0].rival),
     *_planned("S6 (one-shot)")),
)  # fmt: skip


def holm_family(records: list[dict[str, object]]) -> pd.DataFrame:
    """Records of one family (each with ``p``, and its ``comparison`` where it ran) with their Holm
    p and verdicts (two-sided)."""
    adjusted = holm([float(record["p"]) for record in records])  # type: ignore[arg-type]
    for record, p_holm in zip(records, adjusted, strict=True):
        record["p_holm"] = p_holm
        comparison = record.get("comparison")
        record["verdict"] = verdict(comparison, p_holm) if comparison is not None else "-"  # type: ignore[arg-type]
    return pd.DataFrame.from_records(records)


def contrast_record(
    name: str, arm: str, rival: str, values: pd.Series, weights: dict[str, float]
) -> dict[str, object]:
    """One contrast of per-sample values (indexed by task) with its stratified bootstrap, or
    "not run" when a stratum it weighs has no sample."""
    record: dict[str, object] = {"id": name, "arm": arm, "rival": rival, "pairs": len(values), "p": 1.0}
    tasks = values.index.get_level_values("task").tolist()
    if not tasks or set(weights) - set(tasks):
        return {**record, "status": "not run"}
    comparison = stratum_contrast(values.tolist(), tasks, weights)
    return {**record, "status": "matched", "comparison": comparison, "p": comparison.p_value}


def value_type_contrasts(table: ScoredTable) -> pd.DataFrame:
    """S5 (H4): per contrast, P-a's paired differences on its two tasks, each task resampled on its
    own (``analysis.stats.stratum_contrast`` with weights +1 and −1)."""
    complete = family_rows(table, Family("S5", "", (PRIMARY[0],)))
    paired = pair_rows(complete.frame, PRIMARY[0].arm, PRIMARY[0].rival).set_index(["task", "sample_id"])
    gap = paired["score"] - paired["score_rival"]
    records = []
    for name, first, second, what in VALUE_TYPE_CONTRASTS:
        values = gap[gap.index.get_level_values("task").isin([first, second])]
        records.append(
            contrast_record(name, f"Δ({first}) − Δ({second})", what, values, {first: 1.0, second: -1.0})
        )
    return holm_family(records)


def regime_contrasts(table: ScoredTable) -> pd.DataFrame:
    """S6 (H5): per sample, gap(regime) = LASER-KV (eq) − SnapKV in that regime; the contrasts
    gap(1,024) − gap(4,096) and gap(one-shot) − gap(4,096), as task averages, bootstrap stratified
    by task, on the samples all six arms ran."""
    complete = family_rows(table, S6)
    gaps = {}
    for item in S6.comparisons:
        paired = pair_rows(complete.frame, item.arm, item.rival).set_index(["task", "sample_id"])
        gaps[item.id] = paired["score"] - paired["score_rival"]
    base = S6.comparisons[1].id
    records = []
    for other in (S6.comparisons[0].id, S6.comparisons[2].id):
        joined = (gaps[other] - gaps[base]).dropna()
        tasks = set(joined.index.get_level_values("task"))
        weights = {task: 1 / len(tasks) for task in tasks}
        label = other.removeprefix("S6 ").strip("()")
        records.append(contrast_record(f"gap({label}) − gap(4,096)", other, base, joined, weights))
    return holm_family(records)


def _difference_cells(record: dict[str, object]) -> tuple[str, str, str]:
    comparison = record.get("comparison")
    if comparison is None or (isinstance(comparison, float) and pd.isna(comparison)):
        return "-", "-", "-"
    difference, tost = comparison.difference, comparison.equivalence_interval  # type: ignore[attr-defined]
    return (interval_text(difference.estimate, difference.low, difference.high, "+"),
            interval_text(tost.estimate, tost.low, tost.high, "+"), p_text(comparison.p_value))  # type: ignore[attr-defined]  # fmt: skip


def markdown(tables: list[tuple[str, pd.DataFrame]], rows_read: int) -> str:
    """The analysis as Markdown: one table per family."""
    lines = ["# Quality v3: the registered families", "",
             f"From {rows_read} units; every number regenerates with `python -m benchmarks.quality_v3`.",
             ""]  # fmt: skip
    for title, frame in tables:
        per_task = "task" in frame.columns
        header = (["task"] if per_task else ["id", "arm", "rival"]) + [
            "pairs", "Δ pp [95% CI]", "90% CI", "p", "Holm p", "verdict (±5 pp)"]  # fmt: skip
        if not per_task:
            header += ["tasks", "kept (arm / rival)", "largest kept gap", "comparison", "H1"]
        lines += [
            f"## {markdown_text(title)}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for record in frame.to_dict("records"):
            difference, tost, p_value = _difference_cells(record)
            cells = (
                [str(record["task"])]
                if per_task
                else [str(record["id"]), str(record["arm"]), str(record["rival"])]
            )
            cells += [
                str(record["pairs"]),
                difference,
                tost,
                p_value,
                p_text(record["p_holm"]),
                str(record["verdict"]),
            ]
            if not per_task:
                status = str(record["status"]) + (f" ({record['note']})" if record.get("note") else "")
                kept = [str(record.get(name, "-")) for name in ("tasks", "kept", "largest kept gap")]
                cells += [*kept, status, str(record.get("H1") or "")]
            lines.append("| " + " | ".join(markdown_text(cell) for cell in cells) + " |")
        if title == FAMILIES[0].title:
            lines += ["", f"H1 jointly: {joint_h1(frame)}."]
        lines.append("")
    return "\n".join(lines)


CURVE_RATIOS = ("0.5", "0.25", "0.125", "0.0625")
CURVE_SERIES = {
    "laser": "laser[compression_ratio={r}]",
    "LASER-KV (equal tokens)": "laser[budget_rule=exact,compression_ratio={r}]",
    "snapkv": "snapkv[compression_ratio={r}]",
}
"""S10's figure: each series' configuration label at ratio r."""
S5_TASKS = ("niah_single_2", "niah_single_3", "niah_multikey_2", "niah_multikey_3")


def curve_points(table: ScoredTable) -> pd.DataFrame:
    """S10's figure data: per series and r, the 13-task graded average at 16k in percent with its
    95% interval (bootstrap stratified by task: the task average when tasks have equal samples) and
    the mean realised kept tokens, on the samples every point's configuration ran."""
    labels = {
        template.format(r=r): (series, float(r))
        for series, template in CURVE_SERIES.items()
        for r in CURVE_RATIOS
    }
    members = table.frame[table.frame["method"].isin(labels) & table.frame["length"].eq("16k")]
    complete, _ = complete_samples(
        table.where(members), within=("model", "dataset", "length"), member="method"
    )
    records = []
    for label, rows in complete.frame.groupby("method"):
        series, ratio = labels[str(label)]
        interval = mean_interval(rows["score"].astype(float).tolist(), rows["task"].tolist())
        kept = rows["kept_tokens_final"].mean()
        bounds = {"accuracy": interval.estimate, "low": interval.low, "high": interval.high}
        records.append({"series": series, "r": ratio, "kept": kept, "n": len(rows), **bounds})
    return pd.DataFrame.from_records(records)


def s2_task_losses(table: ScoredTable) -> pd.DataFrame:
    """S2's per-task losses against ``full`` on S5's four tasks, without a test: per arm and task,
    the pairs and the mean paired difference in pp."""
    family = FAMILIES[2]
    complete = family_rows(table, family)
    records = []
    for item in family.comparisons:
        paired = pair_rows(complete.frame, item.arm, item.rival)
        for task in S5_TASKS:
            rows = paired[paired["task"].eq(task)]
            difference = 100 * (rows["score"] - rows["score_rival"]).mean() if len(rows) else None
            records.append({"id": item.id, "task": task, "pairs": len(rows), "difference": difference})
    return pd.DataFrame.from_records(records)


def descriptive_markdown(points: pd.DataFrame, losses: pd.DataFrame) -> str:
    """S10's figure data and S2's per-task losses as Markdown (no test, no verdict)."""
    lines = ["## S10's figure: 13-task graded average against mean kept tokens, 16k (no test)", "",
             "| series | r | mean kept tokens | samples | accuracy % [95% CI] |",
             "|---|---|---|---|---|"]  # fmt: skip
    for record in points.sort_values(["series", "r"]).to_dict("records") if not points.empty else []:
        accuracy = interval_text(record["accuracy"], record["low"], record["high"])
        lines.append(
            f"| {record['series']} | {record['r']:g} | {record['kept']:.0f} | {record['n']} | {accuracy} |"
        )
    lines += ["", "## S2: per-task loss against full on S5's four tasks (no test)", "",
              "| comparison | task | pairs | Δ pp |", "|---|---|---|---|"]  # fmt: skip
    for record in losses.to_dict("records") if not losses.empty else []:
        difference = (
            "-"
            if record["difference"] is None or pd.isna(record["difference"])
            else f"{record['difference']:+.1f}"
        )
        lines.append(f"| {record['id']} | {record['task']} | {record['pairs']} | {difference} |")
    return "\n".join(lines)


V3_ENGINE_PATH = {"LASERKV_FUSED_LAYERS": "0", "LASERKV_BLOCK_KERNEL": "torch"}
"""The engine path v3's rows started on (before issue 40): layers not fused, PyTorch's block kernel."""
RESUME_COMMAND = (
    " ".join(f"{name}={value}" for name, value in V3_ENGINE_PATH.items()) + " "
    "laserkv sweep --grid quality-v3 --dataset ruler --model qwen2.5-coder-1.5b-instruct --lengths 16k "
    "--tasks " + ",".join(task_names()) + " --demo-samples 50 --limit 50 --gpus 1 --workers-per-gpu 10 "
    "--output docs/quality/runs/q15_v3"
)
"""The sweep that resumes v3 into its committed rows (``--workers-per-gpu 12`` on an H200)."""


def missing_table(directory: Path, length: str = "16k") -> pd.DataFrame:
    """Per configuration of the ``quality-v3`` preset at ``length`` (coverage columns only): units
    ok, failed and missing of 13 tasks x 50, and the fewest samples any task has."""
    tasks = task_names()
    labels = [method.name for method in sweep_methods("quality-v3", {})]
    configs = per_config(read_coverage(directory), length, tasks).set_index("configuration").reindex(labels)
    never_ran = {"ok": 0, "failed": 0, "missing": SAMPLES_PER_TASK * len(tasks), "fewest per task": 0}
    return configs.fillna(never_ran).astype(int).rename_axis("configuration").reset_index()


def coverage_markdown(directory: Path, table: ScoredTable) -> str:
    """What ran and what did not (the plan's "What is missing is listed"): per configuration at 16k,
    units done and missing, the command that resumes the sweep and, where a primary cell stopped
    short, the achieved power (``power_at`` at the primary family's fewest complete samples per task
    and the plan's SD)."""
    frame = missing_table(directory)
    lines = [
        "## Coverage at 16k: what ran and what is missing",
        "",
        "| configuration | ok | failed | missing | fewest samples per task |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {markdown_text(str(row.configuration))} | {row.ok} | {row.failed} | {row.missing} | {row[5]} |"
        for row in frame.itertuples()
    ]
    missing = int(frame["missing"].sum())
    lines += ["", f"{missing} of {SAMPLES_PER_TASK * len(task_names()) * len(frame)} units at 16k are missing"
              + (f"; resume with `{RESUME_COMMAND}`." if missing else ".")]  # fmt: skip
    primary = family_rows(table, FAMILIES[0]).frame
    per_task = primary.groupby("task")["sample_id"].nunique().reindex(task_names(), fill_value=0)
    if int(per_task.min()) == 0:
        empty = ", ".join(per_task[per_task.eq(0)].index)
        lines += [
            "",
            f"The primary cells stopped short: no complete sample of {empty}, so no 13-task average.",
        ]
    elif int(per_task.min()) < SAMPLES_PER_TASK:
        difference, equivalence = power_at(int(per_task.min()), PLAN_SD, Design())
        lines += [
            "",
            f"The primary cells stopped short: {int(per_task.min())} complete samples in the sparsest task. "
            f"Achieved power at the plan's SD ({PLAN_SD}): {difference:.3f} for a 5 pp difference (Holm's "
            f"strictest step), {equivalence:.3f} for equivalence at ±5 pp.",
        ]
    return "\n".join(lines)


def analyse(table: ScoredTable) -> list[tuple[str, pd.DataFrame]]:
    """Every family's table."""
    tables = [(family.title, family_table(table, family)) for family in FAMILIES]
    tables += [
        ("S5: needle value type, Δ(UUID task) − Δ(number task) of P-a (H4)", value_type_contrasts(table)),
        (S6.title, family_table(table, S6)),
        ("S6: regime contrasts of the gap, task averages (H5)", regime_contrasts(table)),
    ]
    return tables + per_task_families(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write tables.md here (default: print)")
    parser.add_argument(
        "--budget-exhausted", action="store_true", help="analyse although primary cells miss units"
    )
    args = parser.parse_args()
    try:
        check_ready(args.directory, args.budget_exhausted)
    except (NotYet, ValueError) as error:
        raise SystemExit(f"quality_v3: {error}") from None
    table = scored_table([args.directory])  # every row scored once, for every family
    points = curve_points(table)
    text = (
        markdown(analyse(table), len(table.frame))
        + "\n"
        + descriptive_markdown(points, s2_task_losses(table))
        + "\n\n"
        + coverage_markdown(args.directory, table)
    )
    if args.out is None:
        print(text)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text(text + "\n")
    if not points.empty:
        labels = ("mean realised kept tokens", "RULER 13-task graded average (%)")
        line_plot(points, "series", "kept", "accuracy", labels, "S10: accuracy against kept tokens, 16k",
                  args.out / "s10_curve.png")  # fmt: skip


if __name__ == "__main__":
    main()
