"""Issue 20's quality study: LASER-KV against the rivals at equal kept fractions, on RULER and the
demo set, from the rows of ``laserkv sweep --grid quality-v2`` runs::

    laserkv sweep --grid quality-v2 --dataset ruler --demo-samples 50 --model qwen2.5-coder-0.5b-instruct \\
        --lengths 8k --tasks qa_1,qa_2,niah_multikey_2,vt,niah_multivalue --limit 50 --block-size 4096 \\
        --gpus 1 --workers-per-gpu 8 --output results/q05_ruler
    python -m benchmarks.quality_v2 results/q05_ruler --out docs/quality/v2

Every method keeps the fraction r (0.25 or 0.125) of each context (labels like
``laser[compression_ratio=0.25]``; ``laser[compression_ratio=0.25,score_pooling=7]`` is the
pooled variant). Only samples that every method of their (model, task, length) has a row for
are counted (``analysis.views.complete_samples``), so every comparison is paired on the same
samples; the coverage table says how many that is (a sweep stopped early leaves cells partly
done). A failed unit counts as wrong. Accuracy is the benchmark's right/wrong (RULER: every
reference found); the RULER score column is the official graded per-sample score. Per cell:
accuracy with its Wilson 95% interval, the realised kept tokens, retention against ``full``
(paired bootstrap) and the paired difference to it (``analysis.views.compare``: exact McNemar p
and the interval consistent with it). Pooled per (model, length), over its word-answer tasks and
over all its tasks: each method against ``full``, LASER-KV against each rival at the same r (with
both realised kept counts), and the LASER-KV ablation. Each printed table of comparisons is one
family: its p-values are also given Holm-adjusted, and its verdicts use the adjusted p and a
±5 pp equivalence test (TOST).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis.stats import retention_interval
from analysis.table import BASELINE, ScoredTable, scored_table
from analysis.views import accuracy, complete_samples, pairs, reversed_comparisons
from benchmarks.quality_text import (
    compare_per_table,
    comparison_text,
    family_of,
    family_text,
    length_order,
    markdown_table,
    study_main,
)
from cluster.labels import base_name
from reports.tables import interval_text, number_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RATIO = "compression_ratio"
LASER = "laser"
ABLATION = ("laser", "laser_recursive", "exact", "lsh_magicpig", "laser[score_pooling=7]")
"""LASER-KV proper (hybrid, accumulate) vs recursive, vs each of its selectors alone, and vs score
pooling 7 (the open question of issue 8)."""
WORD_TASKS = ("qa_1", "qa_2", "vt", "qa2")
"""Tasks whose answers are words (RULER's QA and variable tracking, the demo set's qa2)."""
GROUP = ("model", "dataset", "task", "length")
"""A cell table: one model's task at one length."""
CELL = (*GROUP, "variant", "ratio", "method")
"""A cell: a sweep label (``method``) on one group, with its variant and kept fraction."""
POOL = ("model", "length")
"""A pooled table: one model at one length, over its word-answer tasks and over all."""
TASK_SETS = ("word-answer", "all")
"""The task sets every pooled table is given for (the ``tasks`` column): the word-answer tasks,
then all."""
PAIR_ON = ("tasks", "task", "length")
"""What pooled pairs must share besides the sample (``analysis.views.SAMPLE_KEY``)."""


@cache  # a study has a few dozen labels
def ratio_variant(label: str) -> tuple[str, float | None]:
    """A sweep label split into its variant and kept fraction:
    ``laser[compression_ratio=0.25,score_pooling=7]`` -> (``laser[score_pooling=7]``, 0.25)."""
    name = base_name(label)
    changes = [change for change in label[len(name) + 1 : -1].split(",") if change]
    ratios = [float(change.split("=", 1)[1]) for change in changes if change.startswith(f"{RATIO}=")]
    others = [change for change in changes if not change.startswith(f"{RATIO}=")]
    variant = f"{name}[{','.join(others)}]" if others else name
    return variant, (ratios[0] if ratios else None)


def with_variants(table: ScoredTable) -> ScoredTable:
    """The table with each row's ``variant`` and kept fraction ``ratio`` (NaN for ``full``), parsed
    from its stored label (``method``)."""
    split = pd.DataFrame(
        [ratio_variant(str(label)) for label in table.frame["method"]],
        columns=["variant", "ratio"],
        index=table.frame.index,
    )
    return table.where(table.frame.assign(variant=split["variant"], ratio=split["ratio"].astype(float)))


def study_table(results: Sequence[Path]) -> ScoredTable:
    """The scored rows of every results directory (a unit found in several counts once), with
    their variants (``with_variants``)."""
    return with_variants(scored_table(list(results)))


def complete(table: ScoredTable) -> tuple[ScoredTable, pd.DataFrame]:
    """The rows of samples that every method label of their group has a row for, and per group
    the coverage (``members``, ``complete``, ``seen``)."""
    return complete_samples(table, GROUP, member="method")


def _retention(table: ScoredTable) -> pd.DataFrame:
    """Per cell other than ``full``: retention of ``correct`` against ``full`` on the same samples."""
    paired = pairs(table, BASELINE, member="method", match=("task", "length")).sort_values("sample_id")

    def interval(members: pd.DataFrame) -> pd.Series:
        found = retention_interval(members["correct"].astype(float).tolist(),
                                   members["base_correct"].astype(float).tolist())  # fmt: skip
        values = (None, None, None) if found is None else (found.estimate, found.low, found.high)
        return pd.Series(values, index=["retention", "retention_low", "retention_high"], dtype=float)

    if paired.empty:
        return pd.DataFrame(columns=[*CELL, "retention", "retention_low", "retention_high"])
    return paired.groupby(list(CELL), sort=False, dropna=False).apply(interval).reset_index()


def study_cells(table: ScoredTable) -> pd.DataFrame:
    """Every cell of complete-sample rows (``complete``): ``n``, accuracy of ``correct`` with its
    interval, mean ``kept`` and ``context`` tokens, the mean RULER ``ruler_score`` (%), retention,
    and the comparison with ``full`` (one family per group), in table order."""
    found = accuracy(table, CELL, value="correct")
    scores = table.frame.groupby(list(CELL), dropna=False)["score"].mean().mul(100).rename("ruler_score")
    found = found.merge(scores.reset_index(), on=list(CELL), how="left")
    found = found.merge(_retention(table), on=list(CELL), how="left")
    versus = compare_per_table(table, GROUP, ("variant", "ratio"), BASELINE, "method", ("task", "length"))
    if not versus.empty:
        comparison = ["difference", "low", "high", "p", "p_holm", "verdict"]
        versus = versus[[*CELL, *comparison]].rename(columns={"low": "diff_low", "high": "diff_high"})
        found = found.merge(versus, on=list(CELL), how="left")
    found["protocol"] = found["protocol"].fillna("-").where(found["variant"] != BASELINE, "-")
    order = found.assign(
        _length=found["length"].map(length_order),
        _ratio=-found["ratio"].fillna(1.0),
        _other=found["variant"] != BASELINE,
    )
    order = order.sort_values(
        ["model", "dataset", "task", "_length", "_ratio", "_other", "variant"], kind="stable"
    )
    return order.drop(columns=["_length", "_ratio", "_other"]).reset_index(drop=True)


def task_sets(table: ScoredTable) -> ScoredTable:
    """The rows once per task set they belong to (``tasks``: word-answer, then all)."""
    frame = table.frame
    words = frame[frame["task"].isin(WORD_TASKS)].assign(tasks=TASK_SETS[0])
    return table.where(pd.concat([words, frame.assign(tasks=TASK_SETS[1])], ignore_index=True))


def versus_full(table: ScoredTable) -> pd.DataFrame:
    """Per (model, length) and task set: each variant at each r against ``full`` on every paired
    sample; one family per (model, length)."""
    return compare_per_table(task_sets(table), POOL, ("tasks", "ratio"), BASELINE, "variant", PAIR_ON)


def versus_laser(table: ScoredTable) -> pd.DataFrame:
    """Per (model, length) and task set: LASER-KV minus each rival (a variant outside the ablation)
    at the same r; one family per (model, length)."""
    frame = table.frame
    rivals = frame[(frame["variant"] == LASER) | ~frame["variant"].isin((*ABLATION, BASELINE))]
    found = compare_per_table(
        task_sets(table.where(rivals)), POOL, ("tasks", "ratio"), LASER, "variant", (*PAIR_ON, "ratio")
    )
    return found if found.empty else reversed_comparisons(found)


def ablation(table: ScoredTable) -> pd.DataFrame:
    """Per (model, length) and task set: each of LASER-KV's variants (``ABLATION``) minus LASER-KV
    at the same r; one family per (model, length)."""
    frame = table.frame
    variants = table.where(frame[frame["variant"].isin(ABLATION)])
    return compare_per_table(
        task_sets(variants), POOL, ("tasks", "ratio"), LASER, "variant", (*PAIR_ON, "ratio")
    )


def _ordered(found: pd.DataFrame, variant_rank: pd.Series) -> pd.DataFrame:
    """Comparison rows by task set, r (largest first), then ``variant_rank``."""
    keys = found.assign(
        _tasks=found["tasks"].map(TASK_SETS.index), _ratio=-found["ratio"].fillna(1.0), _rank=variant_rank
    )
    return keys.sort_values(["_tasks", "_ratio", "_rank", "variant"], kind="stable").drop(
        columns=["_tasks", "_ratio", "_rank"]
    )


def _ratio_text(ratio: object) -> str:
    return "-" if ratio is None or pd.isna(ratio) or not ratio else f"{ratio:g}"


def _protocols(table: ScoredTable) -> pd.DataFrame:
    """Each (model, length, variant, r)'s protocol (``-`` where none is stored)."""
    found = table.frame.groupby([*POOL, "variant", "ratio"], dropna=False)["protocol"].first()
    return found.fillna("-").reset_index()


def coverage_table(coverage: pd.DataFrame) -> list[str]:
    ordered = coverage.assign(_length=coverage["length"].map(length_order)).sort_values(
        ["model", "dataset", "_length", "task"], kind="stable"
    )
    rows = [
        (str(row.model), str(row.dataset), str(row.task), str(row.length), str(row.members),
         str(row.complete), str(row.seen))
        for row in ordered.itertuples()
    ]  # fmt: skip
    header = ("model", "dataset", "task", "length", "methods", "samples under every method", "samples seen")
    return markdown_table(header, rows)


def cell_tables(cells: pd.DataFrame) -> list[str]:
    """One table per (model, dataset, task, length), its comparisons with ``full`` one family."""
    lines: list[str] = []
    header = (
        "method", "r", "protocol", "kept tokens", "accuracy % [95% CI]", "RULER score",
        "retention % [95% CI]", "Δ vs full, pp [95% CI]", "p", "Holm p", "verdict",
    )  # fmt: skip
    for (model, dataset, task, length), mine in cells.groupby(list(GROUP), sort=False):
        full = mine[mine["variant"] == BASELINE]
        context = full["context"].mean() if len(full) else None
        compared = int(mine["p"].notna().sum()) if "p" in mine else 0
        about = f"{number_text(context)} context tokens, n={mine['n'].iloc[0]}; {family_text(compared)}"
        lines += [f"### {model}, {dataset} {task}, {length} ({about})", ""]
        rows = [
            (
                str(cell["variant"]),
                _ratio_text(cell["ratio"]),
                str(cell["protocol"]),
                number_text(cell["kept"]),
                interval_text(cell["accuracy"], cell["low"], cell["high"]),
                f"{cell['ruler_score']:.1f}",
                interval_text(cell["retention"], cell["retention_low"], cell["retention_high"]),
                *(
                    comparison_text(cell, "diff_low", "diff_high")
                    if "p" in cell and not pd.isna(cell["p"])
                    else ("-", "-", "-", "-")
                ),
            )
            for _, cell in mine.iterrows()
        ]
        lines += markdown_table(header, rows)
    return lines


def pooled_tables(table: ScoredTable) -> list[str]:
    """Per model and length, pooled over its word-answer tasks and over all its tasks: every method
    against ``full``, LASER-KV against every rival, the ablation; each table one family."""
    protocols = _protocols(table)
    full = versus_full(table)
    rivals = versus_laser(table)
    variants = ablation(table)
    lines: list[str] = []
    groups = sorted(
        table.frame[list(POOL)].drop_duplicates().itertuples(index=False, name=None),
        key=lambda group: (group[0], length_order(group[1])),
    )
    pooled_over = f"pooled over the word-answer tasks ({', '.join(WORD_TASKS)}) and over all"

    def mine(found: pd.DataFrame, model: str, length: str) -> pd.DataFrame:
        if found.empty:
            return found
        here = found[(found["model"] == model) & (found["length"] == length)]
        return here.merge(protocols, on=[*POOL, "variant", "ratio"], how="left")

    for model, length in groups:
        heading = f"{model}, {length}"
        here = mine(full, model, length)
        if len(here):
            here = _ordered(here, ~here["variant"].isin(ABLATION))
        lines += [f"### {heading}: each method against full, {pooled_over} ({family_of(here)})", ""]
        lines += markdown_table(
            ("tasks", "method", "r", "protocol", "pairs", "kept tokens", "Δ vs full, pp [95% CI]",
             "p", "Holm p", "verdict"),
            [(str(row["tasks"]), str(row["variant"]), _ratio_text(row["ratio"]), str(row["protocol"]),
              str(row["pairs"]), number_text(row["kept"]), *comparison_text(row))
             for _, row in here.iterrows()],
        )  # fmt: skip
        here = mine(rivals, model, length)
        if len(here):
            here = _ordered(here, pd.Series(0, index=here.index))
        lines += [
            f"### {heading}: LASER-KV against each rival at the same r, {pooled_over} ({family_of(here)})",
            "",
        ]
        lines += markdown_table(
            ("tasks", "rival", "r", "rival's protocol", "pairs", "kept tokens (LASER-KV / rival)",
             "LASER-KV − rival, pp [95% CI]", "only LASER-KV / only rival right", "p", "Holm p", "comparison",
             "verdict"),
            [(str(row["tasks"]), str(row["variant"]), _ratio_text(row["ratio"]), str(row["protocol"]),
              str(row["pairs"]), f"{number_text(row['kept'])} / {number_text(row['base_kept'])}",
              *_discordant(row, with_match=True))
             for _, row in here.iterrows()],
        )  # fmt: skip
        here = mine(variants, model, length)
        if len(here):
            here = _ordered(here, here["variant"].map(ABLATION.index))
        lines += [f"### {heading}: LASER-KV ablation, {pooled_over} ({family_of(here)})", ""]
        lines += markdown_table(
            ("tasks", "variant", "r", "pairs", "kept tokens (variant / laser)",
             "variant − laser, pp [95% CI]", "only variant / only laser right", "p", "Holm p", "comparison",
             "verdict"),
            [(str(row["tasks"]), str(row["variant"]), _ratio_text(row["ratio"]), str(row["pairs"]),
              f"{number_text(row['kept'])} / {number_text(row['base_kept'])}",
              *_discordant(row, with_match=True))
             for _, row in here.iterrows()],
        )  # fmt: skip
    return lines


def _discordant(row: pd.Series, with_match: bool = False) -> tuple[str, ...]:
    """The difference, the discordant counts (member / baseline), p, Holm p, (``with_match``:
    whether the comparison is matched, or what differs) and the verdict."""
    difference, p, p_holm, verdict = comparison_text(row)
    matched = (str(row["matched"]),) if with_match else ()
    return difference, f"{row['only_member']} / {row['only_baseline']}", p, p_holm, *matched, verdict


LEGEND_INCHES = 1.1
TITLE_INCHES = 0.4
"""Room below the panels for the shared legend (four rows of entries) and above them for the title,
whatever the number of panel rows."""


def accuracy_figure(cells: pd.DataFrame) -> Figure:
    """One model and dataset's cells (``study_cells``) as a matplotlib figure: accuracy vs realised
    kept tokens, one panel per (task, length), one line per variant (a point per r), ``full``
    dashed, one legend below the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, dataset = cells["model"].iloc[0], cells["dataset"].iloc[0]
    panels = list(cells.groupby(["task", "length"], sort=False))
    names = sorted(set(cells["variant"]) - {BASELINE})
    colours = {name: plt.get_cmap("tab20")(index % 20) for index, name in enumerate(names)}
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    height = 4.0 * rows + LEGEND_INCHES + TITLE_INCHES
    figure, axes_grid = plt.subplots(rows, columns, figsize=(5.2 * columns, height), dpi=100, squeeze=False)
    for axes, ((task, length), here) in zip(axes_grid.flat, panels, strict=False):
        for method, series in here.groupby("variant", sort=False):
            series = series[series["kept"].notna()].sort_values("kept", kind="stable")
            if method == BASELINE:
                axes.axhline(series["accuracy"].iloc[0], color="black", linestyle="--", label="full")
                continue
            axes.errorbar(
                series["kept"], series["accuracy"],
                yerr=[(series["accuracy"] - series["low"]).clip(lower=0),
                      (series["high"] - series["accuracy"]).clip(lower=0)],
                marker="o", capsize=2, label=method, color=colours[str(method)],
            )  # fmt: skip
        axes.set_ylim(-3, 103)
        axes.set_title(f"{task}, {length} (n={here['n'].iloc[0]})")
        axes.set_xlabel("realised kept tokens")
        axes.set_ylabel("accuracy (%)")
        axes.grid(alpha=0.3)
    for axes in list(axes_grid.flat)[len(panels) :]:
        axes.axis("off")
    handles, labels = axes_grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=5, fontsize=7)
    figure.suptitle(f"{model}, {dataset}: accuracy vs kept tokens")
    figure.tight_layout(rect=(0, LEGEND_INCHES / height, 1, 1 - TITLE_INCHES / height))
    return figure


def plots(cells: pd.DataFrame, directory: Path) -> list[Path]:
    """``accuracy_figure`` per model and dataset, written as ``accuracy_vs_kept_<model>_<dataset>.png``."""
    import matplotlib.pyplot as plt

    written = []
    for (model, dataset), mine in cells.groupby(["model", "dataset"], sort=True):
        figure = accuracy_figure(mine)
        path = directory / f"accuracy_vs_kept_{model}_{dataset}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def report(results: list[Path], out: Path) -> Path:
    """Score every results directory and write ``tables.md`` and the plots into ``out``."""
    table, coverage = complete(study_table(results))
    if table.frame.empty:
        raise ValueError("no sample has a row under every method of its cell")
    cells = study_cells(table)
    out.mkdir(parents=True, exist_ok=True)
    images = plots(cells, out)
    lines = ["## Coverage", "", *coverage_table(coverage)]
    lines += ["## Pooled per length, over its word-answer tasks and over all", ""]
    lines += pooled_tables(table)
    lines += ["## Every cell", "", *cell_tables(cells), "## Plots", ""]
    lines += [f"![{image.stem}]({image.name})" for image in images]
    path = out / "tables.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """Write the tables and plots of the given results directories; print the tables."""
    study_main("python -m benchmarks.quality_v2", __doc__, Path("docs/quality/v2"), report, argv)


if __name__ == "__main__":
    main()
