"""The quality benchmark's plots: per model, accuracy vs budget (one panel per length) and
accuracy vs length at B=1024."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.quality_cells import TARGET_BUDGET, Cell, length_order
from cluster.presets import QUALITY_BUDGETS
from cluster.reduce import BASELINE


def plots(cells: list[Cell], directory: Path) -> list[Path]:
    """Per model: accuracy vs budget (one panel per length, full as a dashed line) and accuracy
    vs length at B=1024."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in sorted({cell.model for cell in cells}):
        mine = [cell for cell in cells if cell.model == model]
        panels = sorted(
            {(cell.task, cell.length) for cell in mine}, key=lambda key: (key[0], length_order(key[1]))
        )
        figure, axes_list = plt.subplots(
            1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=110, squeeze=False
        )
        for axes, (task, length) in zip(axes_list[0], panels, strict=True):
            here = [cell for cell in mine if (cell.task, cell.length) == (task, length)]
            for method in sorted({cell.method for cell in here}):
                series = sorted((c for c in here if c.method == method), key=lambda c: c.budget or 0)
                if method == BASELINE:
                    axes.axhline(
                        series[0].accuracy.estimate, color="black", linestyle="--", label="full", zorder=5
                    )
                    continue
                xs = [c.budget or 0 for c in series]
                axes.plot(xs, [c.accuracy.estimate for c in series], marker="o", label=method)
                axes.fill_between(
                    xs, [c.accuracy.low for c in series], [c.accuracy.high for c in series], alpha=0.1
                )
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
        for method in sorted({cell.method for cell in mine}):
            series = sorted(
                (c for c in mine if c.method == method and c.budget in (None, TARGET_BUDGET)),
                key=lambda c: length_order(c.length),
            )
            if not series:
                continue
            xs = [length_order(c.length) for c in series]
            style: dict[str, Any] = (
                {"color": "black", "linestyle": "--", "zorder": 5} if method == BASELINE else {}
            )
            axes.plot(xs, [c.accuracy.estimate for c in series], marker="o", label=method, **style)
        axes.set_xscale("log", base=2)
        ticks = sorted({length_order(cell.length) for cell in mine})
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
