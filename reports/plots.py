"""The report's PNG plots, drawn from views: accuracy vs context length, vs budget (one line per
base method), vs realised kept tokens per task, and peak memory vs length (CUDA runs). A plot
whose data has fewer than two distinct x values is left out (one point says nothing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

ACCURACY = "accuracy (%)"
LENGTH = "context length (tokens)"


def series_name(label: str) -> str:
    """A configuration label without its sweep settings: ``laser[budget=256] @ m`` -> ``laser @ m``."""
    return re.sub(r"\[[^\]]*\]", "", label)


def budget_points(view: pd.DataFrame) -> pd.DataFrame:
    """For accuracy vs budget: one series per base method, one point per budget, lengths pooled by
    size (the band is the n-weighted mean of the per-length intervals: indicative, not a pooled
    interval)."""
    found = view.dropna(subset=["budget", "accuracy"]).assign(series=lambda f: f["config"].map(series_name))
    weighted = found.assign(**{name: found[name] * found["n"] for name in ("accuracy", "low", "high")})
    pooled = weighted.groupby(["series", "budget"], as_index=False)[["accuracy", "low", "high", "n"]].sum()
    return pooled.assign(**{name: pooled[name] / pooled["n"] for name in ("accuracy", "low", "high")})


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_plot(
    points: pd.DataFrame, series: str, x: str, y: str, labels: tuple[str, str], title: str, path: Path
) -> Path | None:
    """One line per ``series`` value, with the 95% interval (``low`` / ``high``) as error bars when
    ``y`` is the accuracy; None when the data has fewer than two distinct x values."""
    points = points.dropna(subset=[x, y])
    if points[x].nunique() < 2:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, line in sorted(points.groupby(series), key=lambda item: str(item[0])):
        line = line.sort_values(x)
        errors = None
        if y == "accuracy":
            errors = [line[y] - line["low"], line["high"] - line[y]]
        axes.errorbar(line[x], line[y], yerr=errors, marker="o", capsize=3, label=str(name))
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    if y == "accuracy":
        axes.set_ylim(-3, 103)
    if x in ("context", "kept"):
        axes.set_xscale("log", base=2)
        ticks = sorted(points[x].unique())
        axes.set_xticks(ticks, [f"{tick / 1000:.1f}k" for tick in ticks])
        axes.minorticks_off()
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plots(per_length: pd.DataFrame, kept: pd.DataFrame, directory: Path) -> list[Path]:
    """The plots the data supports, written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    per_length = per_length.assign(peak_gib=per_length["peak_bytes"] / 2**30)
    specs: list[tuple[str, pd.DataFrame, str, str, str, tuple[str, str]]] = [
        ("accuracy_vs_length", per_length, "config", "context", "accuracy", (LENGTH, ACCURACY)),
        ("accuracy_vs_budget", budget_points(per_length), "series", "budget", "accuracy",
         ("budget B (tokens)", ACCURACY)),
    ]  # fmt: skip
    kept = kept.assign(series=kept["config"].map(series_name)) if not kept.empty else kept
    for (dataset, task), points in sorted(kept.groupby(["dataset", "task"])) if not kept.empty else []:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"accuracy_vs_kept_{dataset}_{task}")
        labels = ("realised kept tokens", f"accuracy (%), {dataset} {task}")
        specs.append((name, points, "series", "kept", "accuracy", labels))
    specs.append(
        ("peak_memory_vs_length", per_length, "config", "context", "peak_gib", (LENGTH, "peak memory (GiB)"))
    )
    written = []
    for name, points, series, x, y, labels in specs:
        path = line_plot(points, series, x, y, labels, name.replace("_", " "), directory / f"{name}.png")
        if path is not None:
            written.append(path)
    return written
