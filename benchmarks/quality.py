"""Issue 8's quality benchmark: the accuracy each method keeps against the full cache.

The runs go through the normal Ray path, as the ``quality`` sweep preset (``full`` plus seven
methods at budgets 256/512/1024/2048), for example::

    laserkv sweep --grid quality --model smollm2-135m-instruct --lengths 1k,2k,4k \\
        --tasks niah_multikey --limit 50 --block-size 1024 --gpus 1 --workers-per-gpu 8 \\
        --output results/quality-smollm2

This script reads such results directories (Parquet only, scored as ``analysis.table`` scores
them) and writes tables and plots::

    python -m benchmarks.quality results/quality-smollm2 results/quality-qwen --out docs/quality

Per (model, task, length, method, budget): accuracy with its Wilson 95% interval, retention =
accuracy / full-cache accuracy with a paired bootstrap 95% interval, the paired difference to
``full`` (exact McNemar p and the interval consistent with it; ``analysis.views.compare``), and
the realised kept tokens. Then the targets, LASER-KV against ``streaming`` and ``snapkv`` at the
same budget (paired, with their realised kept tokens), and the ablation table. A method run with
settings beyond B (a sweep YAML's ``score_pooling: [7]``) is a variant with its own cells
(``laser[score_pooling=7]``), compared with its method at the same B on the same samples. A unit
found in several directories counts once. Each printed table of comparisons is one family: its
p-values are also given Holm-adjusted, and its verdicts use the adjusted p and a ±5 pp
equivalence test (TOST). The cells are computed in ``benchmarks.quality_cells``, the plots in
``benchmarks.quality_plots``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.table import BASELINE, ScoredTable
from benchmarks.quality_cells import CELL, TABLE, TARGET_BUDGET, compare_cells, quality_cells, study_table
from benchmarks.quality_plots import plots
from benchmarks.quality_text import comparison_text, family_text, length_order, markdown_table, study_main
from cluster.labels import base_name
from reports.tables import interval_text, number_text

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


def _budget_text(budget: object) -> str:
    return "-" if pd.isna(budget) else str(int(budget))  # type: ignore[call-overload]


def main_tables(cells: pd.DataFrame) -> list[str]:
    """One table per (model, task, length): every method and budget; its comparisons with
    ``full`` one family."""
    lines: list[str] = []
    for (model, task, length), members in cells.groupby(list(TABLE), sort=False):
        context = members["context"].mean()
        compared = int(members["p"].notna().sum())
        lines.append(
            f"### {model}, {task}, {length} (mean context {0 if pd.isna(context) else context:.0f} tokens; "
            f"{family_text(compared)})"
        )
        lines.append("")
        ordered = members.assign(_other=members["variant"] != BASELINE, _B=members["B"].fillna(0))
        ordered = ordered.sort_values(["_other", "variant", "_B"], kind="stable")
        lines += markdown_table(
            ("method", "B", "kept tokens", "n", "errors", "accuracy % [95% CI]", "retention % [95% CI]",
             "delta vs full, pp [95% CI]", "p", "Holm p", "verdict"),
            [
                (
                    str(cell["variant"]), _budget_text(cell["B"]), number_text(cell["kept"]), str(cell["n"]),
                    str(cell["errors"]), interval_text(cell["accuracy"], cell["low"], cell["high"]),
                    interval_text(cell["retention"], cell["retention_low"], cell["retention_high"]),
                    *(("-",) * 4 if pd.isna(cell["p"]) else comparison_text(cell, "diff_low", "diff_high")),
                )
                for _, cell in ordered.iterrows()
            ],
        )  # fmt: skip
    return lines


def target_lines(cells: pd.DataFrame) -> list[str]:
    """The retention target per model it names (LASER-KV, B=1024, at the model's target length)."""
    targets = cells[
        (cells["variant"].map(base_name) == LASER)
        & (cells["B"] == TARGET_BUDGET)
        & (cells["model"].map(TARGETS) == cells["length"])
    ]
    lines = []
    for _, cell in targets.iterrows():
        if pd.isna(cell["retention"]):
            verdict = "undefined: full cache never answered"
        else:
            met = cell["retention"] >= TARGET_RETENTION
            verdict = ("met" if met else "missed") + f" (point estimate vs {TARGET_RETENTION:.0f}%)"
        retention = interval_text(cell["retention"], cell["retention_low"], cell["retention_high"])
        accuracy = interval_text(cell["accuracy"], cell["low"], cell["high"])
        lines.append(
            f"- {cell['model']}, {cell['task']}, {cell['length']}: {cell['variant']} B={TARGET_BUDGET} "
            f"retention {retention} % (accuracy {accuracy} %, n={cell['n']}): {verdict}."
        )
    return lines or ["- no cell matches a target (LASER-KV at B=1024 at the model's target length)."]


def rival_matches(cells: pd.DataFrame, match: str) -> pd.DataFrame:
    """Each LASER-KV cell (both modes) beside each rival's cell of its (model, task, length) taken
    at the same budget B (``match="budget"``) or at the budget whose realised kept tokens are
    nearest to LASER-KV's (``match="kept"``: accumulate mode keeps more than B); rival columns
    suffixed ``_rival``, in the cells' order, a ``comparison`` id per row."""
    laser = cells[cells["variant"].isin(LASER_MODES) & cells["kept"].notna()].reset_index(names="_order")
    rivals = cells[cells["variant"].isin(RIVALS)]
    found = laser.merge(rivals, on=list(TABLE), suffixes=("", "_rival"))
    if match == "budget":
        found = found[found["B"] == found["B_rival"]]
    found = found.assign(
        _rival=found["variant_rival"].map(RIVALS.index),
        _distance=(found["kept_rival"].fillna(0) - found["kept"]).abs(),
    )
    found = found.sort_values(["_order", "_rival", "_distance", "B_rival"], kind="stable")
    found = found.drop_duplicates(["_order", "_rival"]).reset_index(drop=True)
    return found.assign(comparison=range(len(found))).drop(columns=["_order", "_rival", "_distance"])


def _versus_cells(table: ScoredTable, matches: pd.DataFrame) -> pd.DataFrame:
    """``compare_cells`` of the matched cells (``CELL`` columns against their ``_rival`` ones)."""
    theirs = matches[
        [f"{column}_rival" if column not in TABLE else column for column in CELL] + ["comparison"]
    ]
    theirs = theirs.rename(columns={f"{column}_rival": column for column in CELL})
    found = compare_cells(table, matches, theirs)
    if found.empty:
        return found
    compared = ["comparison", "pairs", "difference", "low", "high", "p", "p_holm", "verdict", "ours_percent",
                "theirs_percent", "matched"]  # fmt: skip
    found = found[compared].rename(columns={"low": "diff_low", "high": "diff_high"})
    clashing = [column for column in found.columns if column in matches.columns and column != "comparison"]
    return matches.drop(columns=clashing).merge(found, on="comparison")


def versus_rows(table: ScoredTable, cells: pd.DataFrame, match: str) -> list[tuple[str, ...]]:
    """LASER-KV (both modes) minus each rival (``rival_matches``) on the samples both ran
    (accuracies on those), one family."""
    found = _versus_cells(table, rival_matches(cells, match))
    return [
        (
            str(row["model"]), str(row["length"]), str(row["variant"]), _budget_text(row["B"]),
            f"{row['kept']:.0f}", str(row["variant_rival"]), _budget_text(row["B_rival"]),
            number_text(row["kept_rival"]), str(row["pairs"]), f"{row['ours_percent']:.1f}",
            f"{row['theirs_percent']:.1f}", *_with_match(comparison_text(row, "diff_low", "diff_high"), row),
        )
        for _, row in found.iterrows()
    ]  # fmt: skip


def _with_match(texts: tuple[str, str, str, str], row: pd.Series) -> tuple[str, ...]:
    """``comparison_text`` with the comparison's matched label before the verdict."""
    return (*texts[:3], str(row["matched"]), texts[3])


def versus_table(table: ScoredTable, cells: pd.DataFrame, match: str, title: str) -> list[str]:
    """``versus_rows`` as a titled Markdown table."""
    rows = versus_rows(table, cells, match)
    inside = sum(row[-3] != "-" for row in rows)  # Holm p is given to the family's comparisons only
    return [f"## {title} ({family_text(inside, len(rows) - inside)})", "", *markdown_table(
        ("model", "length", "method", "B", "kept", "rival", "rival B", "rival kept", "n paired",
         "method %", "rival %", "method - rival, pp [95% CI]", "p", "Holm p", "comparison", "verdict"),
        rows,
    )]  # fmt: skip


def variant_table(table: ScoredTable, cells: pd.DataFrame) -> list[str]:
    """Each variant (a method run with settings beyond B, e.g. ``laser[score_pooling=7]``) against
    its method at the same B, on the samples both ran (one family); no lines without a variant."""
    variants = cells[cells["variant"] != cells["variant"].map(base_name)].reset_index(drop=True)
    variants = variants.assign(_base=variants["variant"].map(base_name))
    matches = variants.merge(
        cells, left_on=[*TABLE, "_base", "B"], right_on=[*TABLE, "variant", "B"], suffixes=("", "_rival")
    ).drop(columns=["_base"])
    matches = matches.assign(B_rival=matches["B"], comparison=range(len(matches)))
    found = _versus_cells(table, matches)
    rows = [
        (
            str(row["model"]), str(row["task"]), str(row["length"]), str(row["variant"]),
            _budget_text(row["B"]), number_text(row["kept"]),
            interval_text(row["retention"], row["retention_low"], row["retention_high"]),
            str(row["pairs"]), f"{row['ours_percent']:.1f}", f"{row['theirs_percent']:.1f}",
            *_with_match(comparison_text(row, "diff_low", "diff_high"), row),
        )
        for _, row in found.iterrows()
    ]  # fmt: skip
    if not rows:
        return []
    inside = sum(row[-3] != "-" for row in rows)
    title = f"Variants against their method at the same B ({family_text(inside, len(rows) - inside)})"
    return [f"## {title}", "", *markdown_table(
        ("model", "task", "length", "variant", "B", "kept", "retention % [95% CI]", "n paired",
         "variant %", "method %", "variant - method, pp [95% CI]", "p", "Holm p", "comparison", "verdict"),
        rows,
    )]  # fmt: skip


def _ablation_methods(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The ablation's rows: full, the registered methods, then each variant found in ``cells``
    (its method's selector and mode, plus its settings)."""
    described = {method: (selector, mode) for method, selector, mode in ABLATION}
    variants = sorted(
        {str(variant) for variant in cells["variant"] if base_name(variant) in described} - described.keys()
    )
    extra = []
    for variant in variants:
        selector, mode = described[base_name(variant)]
        extra.append((variant, f"{selector}, {variant[len(base_name(variant)) + 1 : -1]}", mode))
    return [(BASELINE, "none (full cache)", "-"), *ABLATION, *extra]


def ablation_table(cells: pd.DataFrame, budget: int = TARGET_BUDGET) -> list[str]:
    """Selector x mode at one budget: accuracy (retention) per model and length."""
    columns = sorted(
        set(cells[list(TABLE)].itertuples(index=False, name=None)),
        key=lambda key: (key[0], key[1], length_order(key[2])),
    )
    at_budget = cells[(cells["B"] == budget) | (cells["variant"] == BASELINE)]
    found = at_budget.set_index([*TABLE, "variant"])
    header = ("method", "selector", "mode", *(f"{model} {task} {length}" for model, task, length in columns))
    table_rows = []
    for method, selector, mode in _ablation_methods(cells):
        values = []
        for key in columns:
            where = (*key, method)
            if where not in found.index:
                values.append("-")
                continue
            cell = found.loc[where]
            cell = cell.iloc[0] if isinstance(cell, pd.DataFrame) else cell
            if pd.isna(cell["retention"]):
                values.append(f"{cell['accuracy']:.0f}")
            else:
                values.append(f"{cell['accuracy']:.0f} ({cell['retention']:.0f}%)")
        table_rows.append((method, selector, mode, *values))
    return markdown_table(header, table_rows)


def report(results: list[Path], out: Path) -> Path:
    """Score every results directory and write ``quality_tables.md`` and the plots into ``out``."""
    table = study_table(results)
    cells = quality_cells(table)
    out.mkdir(parents=True, exist_ok=True)
    images = plots(cells, out)
    lines = ["## Targets", "", *target_lines(cells), ""]
    lines += versus_table(
        table, cells, "kept", "LASER-KV vs the baselines at the nearest realised kept tokens"
    )
    lines += versus_table(table, cells, "budget", "LASER-KV vs the baselines at the same budget B")
    lines += [f"## Ablation at B={TARGET_BUDGET}: accuracy % (retention)", "", *ablation_table(cells)]
    lines += variant_table(table, cells)
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
