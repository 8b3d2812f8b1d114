"""The quality benchmark's plots: per model, accuracy vs budget (one panel per length) and
accuracy vs length at B=1024, from the cells of ``benchmarks.quality_cells.quality_cells``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.table import BASELINE
from benchmarks.quality_cells import TARGET_BUDGET
from benchmarks.quality_text import length_order
from cluster.presets import QUALITY_BUDGETS


def plots(cells: pd.DataFrame, directory: Path) -> list[Path]:
    """Per model: accuracy vs budget (one panel per length, full as a dashed line) and accuracy
    vs length at B=1024."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    cells = cells.assign(_length=cells["length"].map(length_order), _B=cells["B"].fillna(0))
    written = []
    for model, mine in cells.groupby("model", sort=True):
        panels = mine.sort_values(["task", "_length"], kind="stable").groupby(["task", "length"], sort=False)
        figure, axes_list = plt.subplots(
            1, panels.ngroups, figsize=(4.2 * panels.ngroups, 3.8), dpi=110, squeeze=False
        )
        for axes, ((task, length), here) in zip(axes_list[0], panels, strict=True):
            for method, series in here.sort_values(["variant", "_B"], kind="stable").groupby("variant"):
                if method == BASELINE:
                    axes.axhline(
                        series["accuracy"].iloc[0], color="black", linestyle="--", label="full", zorder=5
                    )
                    continue
                axes.plot(series["_B"], series["accuracy"], marker="o", label=method)
                axes.fill_between(series["_B"], series["low"], series["high"], alpha=0.1)
            axes.set_xscale("log", base=2)
            axes.set_xticks(list(QUALITY_BUDGETS), [str(b) for b in QUALITY_BUDGETS])
            axes.minorticks_off()
            axes.set_ylim(-3, 103)
            axes.set_title(f"{task}, {length}")
            axes.set_xlabel("budget B (tokens)")
            axes.set_ylabel("accuracy (%)")
            axes.grid(alpha=0.3)
        axes_list[0][-1].legend(fontsize=7)
        figure.suptitle(f"{model}: accuracy vs budget")
        figure.tight_layout()
        path = directory / f"accuracy_vs_budget_{model}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)

        figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        at_target = mine[mine["B"].isna() | (mine["B"] == TARGET_BUDGET)].sort_values(
            "_length", kind="stable"
        )
        for method, series in at_target.groupby("variant"):
            style = {"color": "black", "linestyle": "--", "zorder": 5} if method == BASELINE else {}
            axes.plot(series["_length"], series["accuracy"], marker="o", label=method, **style)  # type: ignore[arg-type]
        axes.set_xscale("log", base=2)
        ticks = sorted(set(mine["_length"]))
        axes.set_xticks(ticks, [f"{tick // 1000}k" for tick in ticks])
        axes.minorticks_off()
        axes.set_ylim(-3, 103)
        axes.set_xlabel("context length (nominal tokens)")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(f"{model}: accuracy vs length, B={TARGET_BUDGET}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = directory / f"accuracy_vs_length_{model}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
