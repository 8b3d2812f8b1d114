"""The report's diagnostics section, drawn from ``analysis.diagnostics`` where the rows recorded the
data: misses split by whether the final cache kept the answer ("evicted or ignored?"), accuracy per
answer-kept class, needles found by depth x length (tables and one heatmap per method), and the
attention recall per layer (a table and a plot)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.diagnostics import (
    DEPTH_BINS,
    answer_kept_split,
    depth_bin,
    depth_grid,
    misses_of,
    recall_by_layer,
)
from analysis.table import ScoredTable
from reports.plots import pyplot
from reports.tables import Table, interval_text, number_text, ordered


@dataclass(frozen=True)
class DiagnosticViews:
    """The views the section draws on, computed once for its tables and its plots."""

    split: pd.DataFrame
    grid: pd.DataFrame
    recall: pd.DataFrame


def diagnostic_views(table: ScoredTable) -> DiagnosticViews:
    """``answer_kept_split``, ``depth_grid`` (every located needle scored once) and
    ``recall_by_layer`` of the table."""
    return DiagnosticViews(answer_kept_split(table), depth_grid(table), recall_by_layer(table))


def diagnostics_tables(views: DiagnosticViews) -> list[Table]:
    """The section's tables, each only where its data exists."""
    found = []
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    misses = misses_of(views.split)
    if not misses.empty:
        header = ("dataset", "method", "samples", "misses", "evicted (no answer token kept)", "partly kept",
                  "ignored (answer kept whole)")  # fmt: skip
        rows = [
            (str(row["dataset"]), str(row["config"]), str(row["n"]), str(row["misses"]), str(row["evicted"]),
             str(row["partial"]), str(row["ignored"]))
            for row in misses.sort_values(["dataset", "config"]).to_dict("records")
        ]  # fmt: skip
        title = (
            "Evicted or ignored? Each miss by what the final cache kept of the answer's tokens "
            "(samples whose benchmark locates the answer)"
        )
        found.append(Table(title, header, rows))
        split = views.split
        header = ("dataset", "method", "answer kept", "n", "misses", "accuracy % [95% CI]")
        rows = [
            (str(row["dataset"]), str(row["config"]), str(row["answer_kept_class"]), str(row["n"]),
             str(row["misses"]), interval_text(row["accuracy"], row["low"], row["high"]))
            for row in split.to_dict("records")
        ]  # fmt: skip
        found.append(Table("Accuracy by answer kept (all / partial / none of its tokens)", header, rows))
    grid = views.grid
    if not grid.empty:
        header = (
            "dataset",
            "method",
            "length",
            "depth",
            "needles",
            "found % [95% CI]",
            "answer tokens kept %",
        )
        rows = [
            (str(row["dataset"]), str(row["config"]), str(row["length"]), str(row["depth_bin"]),
             str(row["n"]), interval_text(row["found"], row["low"], row["high"]),
             number_text(row["kept"], "{:.1f}"))
            for row in grid.to_dict("records")
        ]  # fmt: skip
        title = "Needles found by depth (% of the context) x length (the heatmaps' numbers)"
        found.append(Table(title, header, rows))
    recall = views.recall
    for dataset, members in recall.groupby("dataset") if not recall.empty else []:
        configs = sorted(members["config"].unique())
        wide = members.pivot_table(index="layer", columns="config", values="recall")
        counts = members.groupby("config")["n"].max()
        rows = [("mean", *(number_text(wide[config].mean(), "{:.1f}") for config in configs))]
        rows += [(str(layer), *(number_text(wide.loc[layer, config], "{:.1f}") for config in configs))
                 for layer in wide.index]  # fmt: skip
        header = ("layer", *(f"{config} (n={counts[config]})" for config in configs))
        title = (
            f"Attention recall by layer, {dataset} (%): the share of the full cache's attention from the "
            "question on the context that falls on the kept tokens (mean over KV heads and samples)"
        )
        found.append(Table(title, header, rows))
    return found


def file_name(*parts: object) -> str:
    """A plot's file name from its parts (anything but letters, digits, ``_.-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(str(part) for part in parts)) + ".png"


def depth_heatmap(cells: pd.DataFrame, title: str, path: Path) -> Path:
    """Needles found (%) by depth bin (rows, 0% at the top, every bin shown; grey: no needle there)
    x length (columns), in each cell the share found and the share of the needles' tokens kept."""
    plt = pyplot()
    lengths = ordered(cells.drop_duplicates("length"), "length")["length"].tolist()
    values = cells.pivot_table(index="bin", columns="length", values="found").reindex(
        index=range(DEPTH_BINS), columns=lengths
    )
    figure, axes = plt.subplots(figsize=(3.6 + 1.1 * len(lengths), 4.8), dpi=110)
    colours = plt.get_cmap("RdYlGn").with_extremes(bad="#dddddd")
    image = axes.imshow(values.to_numpy(dtype=float), cmap=colours, vmin=0, vmax=100, aspect="auto")
    kept = cells.pivot_table(index="bin", columns="length", values="kept").reindex(
        index=range(DEPTH_BINS), columns=lengths
    )
    for row, column in [(r, c) for r in range(values.shape[0]) for c in range(values.shape[1])]:
        value = values.iat[row, column]
        if pd.notna(value):
            text = f"{value:.0f} (kept {kept.iat[row, column]:.0f})"
            axes.text(column, row, text, ha="center", va="center", fontsize=7)
    axes.set_xticks(range(len(lengths)), lengths)
    axes.set_yticks(
        range(DEPTH_BINS), [depth_bin(100 * (index + 0.5) / DEPTH_BINS) for index in range(DEPTH_BINS)]
    )
    axes.set_xlabel("context length (cells: % found, and % of the needles' tokens kept)")
    axes.set_ylabel("needle depth (% of the context)")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="needles found (%)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def recall_plot(members: pd.DataFrame, title: str, path: Path) -> Path:
    """The attention recall per layer, one line per method."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for config, line in sorted(members.groupby("config"), key=lambda item: str(item[0])):
        axes.plot(line["layer"], line["recall"], marker="o", markersize=3, label=str(config))
    axes.set_xlabel("layer")
    axes.set_ylabel("attention recall (%)")
    axes.set_ylim(-3, 103)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def diagnostics_plots(views: DiagnosticViews, directory: Path) -> list[Path]:
    """One depth heatmap per (dataset, method) with located needles, one recall plot per dataset."""
    written = []
    grid = views.grid
    for (dataset, config), cells in grid.groupby(["dataset", "config"]) if not grid.empty else []:
        directory.mkdir(parents=True, exist_ok=True)
        title = f"{config}\nneedles found, {dataset}"
        written.append(depth_heatmap(cells, title, directory / file_name("depth_heatmap", dataset, config)))
    recall = views.recall
    for dataset, members in recall.groupby("dataset") if not recall.empty else []:
        directory.mkdir(parents=True, exist_ok=True)
        title = f"attention recall by layer, {dataset}"
        written.append(
            recall_plot(members, title, directory / file_name("attention_recall_by_layer", dataset))
        )
    return written
