"""Issue 20's quality study: LASER-KV against the rivals at equal kept fractions, on RULER and the
demo set, from the rows of ``laserkv sweep --grid quality-v2`` runs::

    laserkv sweep --grid quality-v2 --dataset ruler --demo-samples 50 --model qwen2.5-coder-0.5b-instruct \\
        --lengths 8k --tasks qa_1,qa_2,niah_multikey_2,vt,niah_multivalue --limit 50 --block-size 4096 \\
        --gpus 1 --workers-per-gpu 8 --output results/q05_ruler
    python -m benchmarks.quality_v2 results/q05_ruler --out docs/quality/v2

Every method keeps the fraction r (0.25 or 0.125) of each context (labels like
``laser[compression_ratio=0.25]``; ``laser[compression_ratio=0.25,score_pooling=7]`` is the
pooled variant). Only samples that every method of their (model, task, length) has a row for
are counted, so every comparison is paired on the same samples; the coverage table says how
many that is (a sweep stopped early leaves cells partly done). A failed unit counts as wrong.
Accuracy is the benchmark's right/wrong (RULER: every reference found); the RULER score column
is the official graded per-sample score. Per cell: accuracy with a bootstrap 95% CI, the
realised kept tokens, retention against ``full`` and the paired difference to it with McNemar's
exact p. Pooled per (model, length), over its word-answer tasks and over all its tasks: each
method against ``full``, LASER-KV against each rival at the same r (with both realised kept
counts), and the LASER-KV ablation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.quality_cells import length_order, study_rows
from benchmarks.quality_text import interval_text, markdown_table, number_text, study_main
from cluster.labels import base_name
from cluster.reduce import BASELINE, mean_of
from evals.stats import Interval, PairedComparison, bootstrap_ci, paired_comparison, retention_ci

RATIO = "compression_ratio"
LASER = "laser"
ABLATION = ("laser", "laser_recursive", "exact", "lsh_magicpig", "laser[score_pooling=7]")
"""LASER-KV proper (hybrid, accumulate) vs recursive, vs each of its selectors alone, and vs score
pooling 7 (the open question of issue 8)."""
WORD_TASKS = ("qa_1", "qa_2", "vt", "qa2")
"""Tasks whose answers are words (RULER's QA and variable tracking, the demo set's qa2)."""
GroupKey = tuple[str, str, str, str]  # (model, dataset, task, length)


@cache  # a study has a few dozen labels and calls this once per row per comparison
def ratio_variant(label: str) -> tuple[str, float | None]:
    """A sweep label split into its variant and kept fraction:
    ``laser[compression_ratio=0.25,score_pooling=7]`` -> (``laser[score_pooling=7]``, 0.25)."""
    name = base_name(label)
    changes = [change for change in label[len(name) + 1 : -1].split(",") if change]
    ratios = [float(change.split("=", 1)[1]) for change in changes if change.startswith(f"{RATIO}=")]
    others = [change for change in changes if not change.startswith(f"{RATIO}=")]
    variant = f"{name}[{','.join(others)}]" if others else name
    return variant, (ratios[0] if ratios else None)


def group_key(row: dict[str, Any]) -> GroupKey:
    return row["model"], row["dataset"], row["task"], row["length"]


def complete_samples(
    rows: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[GroupKey, tuple[int, int, int]]]:
    """The rows of samples that every method label of their group has a row for, and per group
    (complete samples, samples seen, method labels)."""
    labels: dict[GroupKey, set[str]] = defaultdict(set)
    per_sample: dict[tuple[GroupKey, str], set[str]] = defaultdict(set)
    for row in rows:
        labels[group_key(row)].add(row["method"])
        per_sample[(group_key(row), row["sample_id"])].add(row["method"])
    complete = {key for key, seen in per_sample.items() if seen == labels[key[0]]}
    seen_in, complete_in = Counter(group for group, _ in per_sample), Counter(group for group, _ in complete)
    coverage = {group: (complete_in[group], seen_in[group], len(labels[group])) for group in labels}
    kept = [row for row in rows if (group_key(row), row["sample_id"]) in complete]
    return kept, coverage


@dataclass(frozen=True)
class StudyCell:
    """One (model, dataset, task, length, variant, r) cell on its group's complete samples."""

    group: GroupKey
    method: str
    ratio: float | None
    protocol: str
    kept: float | None
    context: float | None
    accuracy: Interval
    score: float
    retention: Interval | None
    versus_full: PairedComparison | None


def _by_sample(rows: list[dict[str, Any]]) -> dict[tuple[GroupKey, str], dict[str, Any]]:
    return {(group_key(row), row["sample_id"]): row for row in rows}


def study_cells(rows: list[dict[str, Any]]) -> list[StudyCell]:
    """Every cell of complete-sample rows (``complete_samples``), paired with ``full``."""
    full = _by_sample([row for row in rows if row["method"] == BASELINE])
    groups: dict[tuple[GroupKey, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(group_key(row), row["method"])].append(row)
    cells = []
    for (group, label), members in groups.items():
        members.sort(key=lambda row: row["sample_id"])
        method, ratio = ratio_variant(label)
        baseline = label == BASELINE
        ours = [float(row["correct"]) for row in members]
        theirs = [float(full[(group, row["sample_id"])]["correct"]) for row in members]
        ok = [row for row in members if row["status"] == "ok"]
        cells.append(
            StudyCell(
                group=group,
                method=method,
                ratio=ratio,
                protocol="-" if baseline else members[0]["method_protocol"] or "-",
                kept=mean_of([row["kept_tokens_final"] for row in ok]),
                context=mean_of([row["context_tokens"] for row in ok]),
                accuracy=bootstrap_ci(ours),
                score=100 * sum(float(row["score"]) for row in members) / len(members),
                retention=None if baseline else retention_ci(ours, theirs),
                versus_full=None if baseline else paired_comparison(ours, theirs),
            )
        )
    return sorted(cells, key=_cell_order)


def _cell_order(cell: StudyCell) -> tuple[Any, ...]:
    model, dataset, task, length = cell.group
    return (
        model,
        dataset,
        task,
        length_order(length),
        -(cell.ratio or 1.0),
        cell.method != BASELINE,
        cell.method,
    )


def pooled(
    rows: list[dict[str, Any]],
    ours: str,
    theirs: str,
    ratio: float | None,
    tasks: tuple[str, ...] | None = None,
) -> tuple[PairedComparison, float | None, float | None] | None:
    """``ours`` against ``theirs`` (variants; ``full`` has no r) at kept fraction ``ratio`` over
    every paired sample of a model's rows (``tasks``: only those), with both realised kept means.
    None when they share no sample."""
    index: dict[str, dict[tuple[GroupKey, str], dict[str, Any]]] = {ours: {}, theirs: {}}
    for row in rows:
        method, row_ratio = ratio_variant(row["method"])
        if tasks is not None and row["task"] not in tasks:
            continue
        for wanted in (ours, theirs):
            if method == wanted and (row_ratio == ratio or method == BASELINE):
                index[wanted][(group_key(row), row["sample_id"])] = row
    shared = sorted(set(index[ours]) & set(index[theirs]))
    if not shared:
        return None
    mine = [index[ours][key] for key in shared]
    other = [index[theirs][key] for key in shared]
    comparison = paired_comparison([float(r["correct"]) for r in mine], [float(r["correct"]) for r in other])

    def kept(members: list[dict[str, Any]]) -> float | None:
        return mean_of([row["kept_tokens_final"] for row in members if row["status"] == "ok"])

    return comparison, kept(mine), kept(other)


def coverage_table(coverage: dict[GroupKey, tuple[int, int, int]]) -> list[str]:
    rows = [
        (model, dataset, task, length, str(methods), str(complete), str(seen))
        for (model, dataset, task, length), (complete, seen, methods) in sorted(
            coverage.items(), key=lambda item: (item[0][0], item[0][1], length_order(item[0][3]), item[0][2])
        )
    ]
    header = ("model", "dataset", "task", "length", "methods", "samples under every method", "samples seen")
    return markdown_table(header, rows)


def cell_tables(cells: list[StudyCell]) -> list[str]:
    """One table per (model, dataset, task, length)."""
    lines: list[str] = []
    header = (
        "method", "r", "protocol", "kept tokens", "accuracy % [95% CI]", "RULER score",
        "retention % [95% CI]", "Δ vs full, pp [95% CI]", "McNemar p",
    )  # fmt: skip
    for group in dict.fromkeys(cell.group for cell in cells):
        mine = [cell for cell in cells if cell.group == group]
        model, dataset, task, length = group
        context = mean_of([cell.context for cell in mine if cell.method == BASELINE])
        about = f"{number_text(context)} context tokens, n={mine[0].accuracy.n}"
        lines += [f"### {model}, {dataset} {task}, {length} ({about})", ""]
        rows = [
            (
                cell.method,
                "-" if cell.ratio is None else f"{cell.ratio:g}",
                cell.protocol,
                number_text(cell.kept),
                interval_text(cell.accuracy),
                f"{cell.score:.1f}",
                interval_text(cell.retention),
                interval_text(cell.versus_full.difference if cell.versus_full else None, "+"),
                "-" if cell.versus_full is None else f"{cell.versus_full.mcnemar_p:.3g}",
            )
            for cell in mine
        ]
        lines += markdown_table(header, rows)
    return lines


def _versus(comparison: PairedComparison, ours: float | None, theirs: float | None) -> tuple[str, ...]:
    """Pairs, both kept means, the paired difference, the discordant counts and McNemar's p."""
    return (
        str(comparison.difference.n),
        f"{number_text(ours)} / {number_text(theirs)}",
        interval_text(comparison.difference, "+"),
        f"{comparison.method_only} / {comparison.baseline_only}",
        f"{comparison.mcnemar_p:.3g}",
    )


def _variants(rows: list[dict[str, Any]]) -> list[tuple[str, float | None, str]]:
    """(variant, r, protocol) of every non-baseline label: by r (largest first), LASER-KV's
    variants first, then by name."""
    seen: dict[tuple[str, float | None], str] = {}
    for row in rows:
        method, ratio = ratio_variant(row["method"])
        if method != BASELINE:
            seen.setdefault((method, ratio), row["method_protocol"] or "-")
    found = [(method, ratio, protocol) for (method, ratio), protocol in seen.items()]
    return sorted(found, key=lambda item: (-(item[1] or 1.0), item[0] not in ABLATION, item[0]))


TASK_SETS: tuple[tuple[tuple[str, ...] | None, str], ...] = ((WORD_TASKS, "word-answer"), (None, "all"))
"""The task sets every pooled table is given for: the word-answer tasks, then all."""


def pooled_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Per model and length, pooled over its word-answer tasks and over all its tasks: every method
    against ``full``, LASER-KV against every rival, the ablation."""
    lines: list[str] = []
    groups = sorted({(row["model"], row["length"]) for row in rows}, key=lambda g: (g[0], length_order(g[1])))
    word_tasks = ", ".join(WORD_TASKS)
    for model, length in groups:
        mine = [row for row in rows if row["model"] == model and row["length"] == length]
        heading = f"{model}, {length}"
        variants = _variants(mine)
        ratios = sorted({ratio for _, ratio, _ in variants if ratio is not None}, reverse=True)
        versus_full = []
        versus_laser = []
        ablation = []
        for tasks, tasks_name in TASK_SETS:
            for method, ratio, protocol in variants:
                r = f"{ratio:g}" if ratio else "-"
                result = pooled(mine, method, BASELINE, ratio, tasks)
                if result is not None:
                    comparison, kept, _ = result
                    versus_full.append(
                        (tasks_name, method, r, protocol, str(comparison.difference.n), number_text(kept),
                         interval_text(comparison.difference, "+"), f"{comparison.mcnemar_p:.3g}")
                    )  # fmt: skip
                if method not in ABLATION:  # LASER-KV's own variants are the ablation
                    result = pooled(mine, LASER, method, ratio, tasks)
                    if result is not None:
                        versus_laser.append((tasks_name, method, r, protocol, *_versus(*result)))
            for ratio in ratios:
                for method in ABLATION[1:]:
                    result = pooled(mine, method, LASER, ratio, tasks)
                    if result is not None:
                        ablation.append((tasks_name, method, f"{ratio:g}", *_versus(*result)))
        pooled_over = f"pooled over the word-answer tasks ({word_tasks}) and over all"
        lines += [f"### {heading}: each method against full, {pooled_over}", ""]
        lines += markdown_table(
            (
                "tasks",
                "method",
                "r",
                "protocol",
                "pairs",
                "kept tokens",
                "Δ vs full, pp [95% CI]",
                "McNemar p",
            ),
            versus_full,
        )
        lines += [f"### {heading}: LASER-KV against each rival at the same r, {pooled_over}", ""]
        lines += markdown_table(
            ("tasks", "rival", "r", "rival's protocol", "pairs", "kept tokens (LASER-KV / rival)",
             "LASER-KV − rival, pp [95% CI]", "only LASER-KV / only rival right", "McNemar p"),
            versus_laser,
        )  # fmt: skip
        lines += [f"### {heading}: LASER-KV ablation, {pooled_over}", ""]
        lines += markdown_table(
            (
                "tasks",
                "variant",
                "r",
                "pairs",
                "kept tokens (variant / laser)",
                "variant − laser, pp [95% CI]",
                "only variant / only laser right",
                "McNemar p",
            ),
            ablation,
        )
    return lines


LEGEND_INCHES = 1.1
TITLE_INCHES = 0.4
"""Room below the panels for the shared legend (four rows of entries) and above them for the title,
whatever the number of panel rows."""


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(cells: list[StudyCell]) -> Any:
    """One model and dataset's cells as a matplotlib figure: accuracy vs realised kept tokens, one
    panel per (task, length), one line per variant (a point per r), ``full`` dashed, one legend
    below the panels."""
    plt = _pyplot()
    model, dataset = cells[0].group[:2]
    panels = list(dict.fromkeys(cell.group for cell in cells))
    names = sorted({cell.method for cell in cells if cell.method != BASELINE})
    colours = {name: plt.get_cmap("tab20")(index % 20) for index, name in enumerate(names)}
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    height = 4.0 * rows + LEGEND_INCHES + TITLE_INCHES
    figure, axes_grid = plt.subplots(rows, columns, figsize=(5.2 * columns, height), dpi=100, squeeze=False)
    for axes, group in zip(axes_grid.flat, panels, strict=False):
        here = [cell for cell in cells if cell.group == group]
        for method in dict.fromkeys(cell.method for cell in here):
            series = sorted(
                (c for c in here if c.method == method and c.kept is not None), key=lambda c: c.kept or 0
            )
            if method == BASELINE:
                axes.axhline(series[0].accuracy.estimate, color="black", linestyle="--", label="full")
                continue
            xs = [c.kept for c in series]
            axes.errorbar(
                xs, [c.accuracy.estimate for c in series],
                yerr=[[c.accuracy.estimate - c.accuracy.low for c in series],
                      [c.accuracy.high - c.accuracy.estimate for c in series]],
                marker="o", capsize=2, label=method, color=colours[method],
            )  # fmt: skip
        axes.set_ylim(-3, 103)
        axes.set_title(f"{group[2]}, {group[3]} (n={here[0].accuracy.n})")
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


def plots(cells: list[StudyCell], directory: Path) -> list[Path]:
    """``accuracy_figure`` per model and dataset, written as ``accuracy_vs_kept_<model>_<dataset>.png``."""
    plt = _pyplot()
    written = []
    for model, dataset in sorted({cell.group[:2] for cell in cells}):
        figure = accuracy_figure([cell for cell in cells if cell.group[:2] == (model, dataset)])
        path = directory / f"accuracy_vs_kept_{model}_{dataset}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def report(results: list[Path], out: Path) -> Path:
    """Score every results directory and write ``tables.md`` and the plots into ``out``."""
    rows, coverage = complete_samples(study_rows(results))
    if not rows:
        raise ValueError("no sample has a row under every method of its cell")
    cells = study_cells(rows)
    out.mkdir(parents=True, exist_ok=True)
    images = plots(cells, out)
    lines = ["## Coverage", "", *coverage_table(coverage)]
    lines += ["## Pooled per length, over its word-answer tasks and over all", ""]
    lines += pooled_tables(rows)
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
