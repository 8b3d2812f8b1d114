"""Issue 8's quality benchmark: the accuracy each method keeps against the full cache.

The runs go through the normal Ray path, as the ``quality`` sweep preset (``full`` plus seven
methods at budgets 256/512/1024/2048), for example::

    laserkv sweep --grid quality --model smollm2-135m-instruct --lengths 1k,2k,4k \\
        --tasks niah_multikey --limit 50 --block-size 1024 --gpus 1 --workers-per-gpu 8 \\
        --output results/quality-smollm2

This script reads such results directories (Parquet only, scored by the reducer) and writes
tables and plots::

    python -m benchmarks.quality results/quality-smollm2 results/quality-qwen --out docs/quality

Per (model, task, length, method, budget): accuracy with a bootstrap 95% CI, retention =
accuracy / full-cache accuracy with a paired bootstrap 95% CI, the paired difference to ``full``
with McNemar's exact p, and the realised kept tokens. Then the targets, LASER-KV against
``streaming`` and ``snapkv`` at the same budget (paired, with their realised kept tokens), and
the ablation table. A method run with settings beyond B (a sweep YAML's ``score_pooling: [7]``)
is a variant with its own cells (``laser[score_pooling=7]``), compared with its method at the
same B on the same samples. A unit found in several directories counts once. The cells are
computed in ``benchmarks.quality_cells``, the plots in ``benchmarks.quality_plots``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.quality_cells import TARGET_BUDGET, Cell, cell_key, length_order, quality_cells, study_rows
from benchmarks.quality_plots import plots
from benchmarks.quality_text import interval_text, markdown_table, number_text, study_main
from cluster.labels import base_name
from cluster.reduce import BASELINE, mean_of
from evals.stats import PairedComparison, paired_comparison

LASER = "laser"
LASER_MODES = ("laser", "laser_recursive")
RIVALS = ("streaming", "snapkv")
ABLATION = (
    ("exact", "exact scores", "accumulate"),
    ("lsh_frequency_rank", "LSH frequency_rank", "accumulate"),
    ("lsh_magicpig", "LSH magicpig", "accumulate"),
    ("laser", "hybrid exact + magicpig 0.75 (LASER-KV)", "accumulate"),
    ("laser_recursive", "hybrid exact + magicpig 0.75", "recursive"),
)
TARGET_RETENTION = 90.0
TARGETS = {
    "smollm2-135m-instruct": "4k",
    "qwen2.5-coder-0.5b-instruct": "16k",
    "qwen2.5-coder-1.5b-instruct": "16k",
}
"""Issue 8: LASER-KV at B=1024 keeps >= 90% of full-cache accuracy at 4k (SmolLM2), 16k (Qwen)."""


def main_tables(cells: list[Cell]) -> list[str]:
    """One table per (model, task, length): every method and budget."""
    lines: list[str] = []
    groups: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.model, cell.task, cell.length)].append(cell)
    for (model, task, length), members in groups.items():
        context = mean_of([cell.context for cell in members])
        lines.append(f"### {model}, {task}, {length} (mean context {context or 0:.0f} tokens)")
        lines.append("")
        lines += markdown_table(
            ("method", "B", "kept tokens", "n", "errors", "accuracy % [95% CI]", "retention % [95% CI]",
             "delta vs full, pp [95% CI]", "McNemar p"),
            [
                (
                    cell.method,
                    "-" if cell.budget is None else str(cell.budget),
                    number_text(cell.kept),
                    str(cell.n),
                    str(cell.errors),
                    interval_text(cell.accuracy),
                    interval_text(cell.retention),
                    "-" if cell.versus_full is None else interval_text(cell.versus_full.difference, "+"),
                    "-" if cell.versus_full is None else f"{cell.versus_full.mcnemar_p:.3g}",
                )
                for cell in sorted(members, key=lambda c: (c.method != BASELINE, c.method, c.budget or 0))
            ],
        )  # fmt: skip
    return lines


def _find(cells: list[Cell], **where: Any) -> Cell | None:
    found = [cell for cell in cells if all(getattr(cell, key) == value for key, value in where.items())]
    return found[0] if found else None


def target_lines(cells: list[Cell]) -> list[str]:
    """The retention target per model it names (LASER-KV, B=1024, at the model's target length)."""
    lines = []
    for cell in cells:
        laser = base_name(cell.method) == LASER
        if not laser or cell.budget != TARGET_BUDGET or TARGETS.get(cell.model) != cell.length:
            continue
        if cell.retention is None:
            verdict = "undefined: full cache never answered"
        else:
            met = cell.retention.estimate >= TARGET_RETENTION
            verdict = ("met" if met else "missed") + f" (point estimate vs {TARGET_RETENTION:.0f}%)"
        lines.append(
            f"- {cell.model}, {cell.task}, {cell.length}: {cell.method} B={TARGET_BUDGET} retention "
            f"{interval_text(cell.retention)} % (accuracy {interval_text(cell.accuracy)} %, "
            f"n={cell.n}): {verdict}."
        )
    return lines or ["- no cell matches a target (LASER-KV at B=1024 at the model's target length)."]


def correct_by_cell(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, float]]:
    """(model, task, length, method, budget) -> sample id -> 1.0 if answered right, else 0.0."""
    correct: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    for row in rows:
        correct[cell_key(row)][row["sample_id"]] = float(row["correct"])
    return correct


def _paired(
    correct: dict[tuple[Any, ...], dict[str, float]], ours: Cell, theirs: Cell
) -> tuple[PairedComparison, float, float, int] | None:
    """``ours`` minus ``theirs`` on the samples both ran, with both accuracies (%) on those
    samples and their number."""
    mine = correct[(ours.model, ours.task, ours.length, ours.method, ours.budget)]
    other = correct[(theirs.model, theirs.task, theirs.length, theirs.method, theirs.budget)]
    shared = sorted(mine.keys() & other.keys())
    if not shared:
        return None
    first, second = [mine[sample] for sample in shared], [other[sample] for sample in shared]
    n = len(shared)
    return paired_comparison(first, second), 100 * sum(first) / n, 100 * sum(second) / n, n


def versus_rows(rows: list[dict[str, Any]], cells: list[Cell], match: str) -> list[tuple[str, ...]]:
    """LASER-KV (both modes) minus each rival on the samples both ran (accuracies on those), the
    rival taken at the same
    budget B (``match="budget"``) or at the budget whose realised kept tokens are nearest to
    LASER-KV's (``match="kept"``: accumulate mode keeps more than B)."""
    correct = correct_by_cell(rows)
    table: list[tuple[str, ...]] = []
    for cell in cells:
        if cell.method not in LASER_MODES:
            continue
        for rival in RIVALS:
            candidates = [
                other
                for other in cells
                if (other.model, other.task, other.length, other.method)
                == (cell.model, cell.task, cell.length, rival)
            ]
            if match == "budget":
                candidates = [other for other in candidates if other.budget == cell.budget]
            if not candidates or cell.kept is None:
                continue
            other = min(candidates, key=lambda c: (abs((c.kept or 0) - cell.kept), c.budget or 0))  # type: ignore[operator]
            paired = _paired(correct, cell, other)
            if paired is None:
                continue
            comparison, ours, theirs, n_paired = paired
            table.append(
                (
                    cell.model, cell.length, cell.method, str(cell.budget), f"{cell.kept:.0f}",
                    rival, str(other.budget), number_text(other.kept),
                    str(n_paired), f"{ours:.1f}", f"{theirs:.1f}",
                    interval_text(comparison.difference, "+"), f"{comparison.mcnemar_p:.3g}",
                )
            )  # fmt: skip
    return table


def versus_table(rows: list[dict[str, Any]], cells: list[Cell], match: str) -> list[str]:
    """``versus_rows`` as Markdown lines."""
    return markdown_table(
        ("model", "length", "method", "B", "kept", "rival", "rival B", "rival kept", "n paired",
         "method %", "rival %", "method - rival, pp [95% CI]", "McNemar p"),
        versus_rows(rows, cells, match),
    )  # fmt: skip


def variant_table(rows: list[dict[str, Any]], cells: list[Cell]) -> list[str]:
    """Each variant (a method run with settings beyond B, e.g. ``laser[score_pooling=7]``) against
    its method at the same B, on the samples both ran."""
    correct = correct_by_cell(rows)
    table: list[tuple[str, ...]] = []
    for cell in cells:
        if cell.method == base_name(cell.method):
            continue  # not a variant
        base = _find(cells, model=cell.model, task=cell.task, length=cell.length,
                     method=base_name(cell.method), budget=cell.budget)  # fmt: skip
        if base is None:
            continue
        paired = _paired(correct, cell, base)
        if paired is None:
            continue
        comparison, ours, theirs, n_paired = paired
        table.append(
            (
                cell.model, cell.task, cell.length, cell.method, str(cell.budget),
                number_text(cell.kept), interval_text(cell.retention),
                str(n_paired),
                f"{ours:.1f}", f"{theirs:.1f}", interval_text(comparison.difference, "+"),
                f"{comparison.mcnemar_p:.3g}",
            )
        )  # fmt: skip
    return markdown_table(
        ("model", "task", "length", "variant", "B", "kept", "retention % [95% CI]", "n paired",
         "variant %", "method %", "variant - method, pp [95% CI]", "McNemar p"),
        table,
    )  # fmt: skip


def _ablation_methods(cells: list[Cell]) -> list[tuple[str, str, str]]:
    """The ablation's rows: full, the registered methods, then each variant found in ``cells``
    (its method's selector and mode, plus its settings)."""
    described = {method: (selector, mode) for method, selector, mode in ABLATION}
    variants = sorted(
        {cell.method for cell in cells if base_name(cell.method) in described} - described.keys()
    )
    extra = []
    for variant in variants:
        selector, mode = described[base_name(variant)]
        extra.append((variant, f"{selector}, {variant[len(base_name(variant)) + 1 : -1]}", mode))
    return [(BASELINE, "none (full cache)", "-"), *ABLATION, *extra]


def ablation_table(cells: list[Cell], budget: int = TARGET_BUDGET) -> list[str]:
    """Selector x mode at one budget: accuracy (retention) per model and length."""
    columns = sorted(
        {(cell.model, cell.task, cell.length) for cell in cells},
        key=lambda key: (key[0], key[1], length_order(key[2])),
    )
    header = ("method", "selector", "mode", *(f"{model} {task} {length}" for model, task, length in columns))
    table_rows = []
    for method, selector, mode in _ablation_methods(cells):
        values = []
        for model, task, length in columns:
            cell = _find(cells, model=model, task=task, length=length, method=method,
                         budget=None if method == BASELINE else budget)  # fmt: skip
            if cell is None:
                values.append("-")
            elif cell.retention is None:
                values.append(f"{cell.accuracy.estimate:.0f}")
            else:
                values.append(f"{cell.accuracy.estimate:.0f} ({cell.retention.estimate:.0f}%)")
        table_rows.append((method, selector, mode, *values))
    return markdown_table(header, table_rows)


def report(results: list[Path], out: Path) -> Path:
    """Score every results directory and write ``quality_tables.md`` and the plots into ``out``."""
    rows = study_rows(results)
    cells = quality_cells(rows)
    out.mkdir(parents=True, exist_ok=True)
    images = plots(cells, out)
    lines = ["## Targets", "", *target_lines(cells), ""]
    lines += ["## LASER-KV vs the baselines at the nearest realised kept tokens", ""]
    lines += versus_table(rows, cells, "kept")
    lines += ["## LASER-KV vs the baselines at the same budget B", ""]
    lines += versus_table(rows, cells, "budget")
    lines += [f"## Ablation at B={TARGET_BUDGET}: accuracy % (retention)", "", *ablation_table(cells)]
    variants = variant_table(rows, cells)
    if len(variants) > 3:  # header, rule and the blank line: only with a variant
        lines += ["## Variants against their method at the same B", "", *variants]
    lines += ["## Every cell", "", *main_tables(cells), "## Plots", ""]
    lines += [f"![{image.stem}]({image.name})" for image in images]
    path = out / "quality_tables.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    """Write the tables and plots of the given results directories; print the tables."""
    study_main("python -m benchmarks.quality", __doc__, Path("docs/quality"), report, argv)


if __name__ == "__main__":
    main()
