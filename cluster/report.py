"""The report of a results directory: tables per method x dataset x length (task-pooled accuracy
with bootstrap 95% CIs, the paired difference to ``full``, cost), the official breakdowns, the
published numbers for the same model, and PNG plots; as Markdown or one self-contained HTML page.
Reads the Parquet shards only (through the reducer)."""

from __future__ import annotations

import base64
import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.reduce import BASELINE, baseline_key, config_key, mean_of, paired_scores, reduce_and_score
from cluster.writer import MANIFESTS
from evals.babilong import length_order
from evals.benchmark import percent_cell
from evals.benchmarks import get_benchmark
from evals.stats import bootstrap_ci, paired_comparison

FORMATS = ("md", "html")


@dataclass(frozen=True)
class Table:
    """A titled table of strings."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


def _interval(estimate: float, low: float, high: float, sign: str) -> str:
    return f"{estimate:{sign}.1f} [{low:{sign}.1f}, {high:{sign}.1f}]"


def length_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task-pooled results per (configuration, length), with the paired comparison to ``full``
    (``method`` is the configuration's label, ``reduce.label_configs``)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        group = (*config_key(row), row["length"])
        groups[group].append(row)
    baseline = {baseline_key(r): r for r in rows if r["method"] == BASELINE}
    results = []
    for (dataset, model, name, _, length), members in sorted(
        groups.items(), key=lambda item: (item[0][0], length_order(item[0][4]), item[1][0]["config"])
    ):
        ok = [row for row in members if row["status"] == "ok"]
        counted = [float(row["score"]) for row in members if row["counts"]]
        accuracy = bootstrap_ci(counted) if counted else None  # none: every output was skipped
        entry: dict[str, Any] = {
            "dataset": dataset,
            "model": model,
            "length": length,
            "method": members[0]["config"],
            "protocol": members[0]["method_protocol"],
            "base": name,
            "n": len(members),
            "errors": len(members) - len(ok),
            "accuracy": accuracy,
            "budget": mean_of([row["budget"] for row in ok]),
            "kept": mean_of([row["kept_tokens_final"] for row in ok]),
            "context": mean_of([row["context_tokens"] for row in ok]),
            "seconds": mean_of([row["seconds_total"] for row in ok]),
            "peak_gib": None,
            "comparison": None,
        }
        peak = mean_of([row["peak_memory_bytes"] for row in ok])
        entry["peak_gib"] = None if peak is None else peak / 2**30
        ours, theirs = paired_scores(members, baseline)
        if name != BASELINE and ours:
            entry["comparison"] = paired_comparison(ours, theirs)
        results.append(entry)
    return results


def tables(output_dir: Path) -> tuple[list[Table], list[dict[str, Any]], dict[str, Any]]:
    """The report's tables, the per-length rows (for plots) and the run's description."""
    output = Path(output_dir)
    summary, rows = reduce_and_score(output)
    per_length = length_rows(rows)
    models = sorted({row["model"] for row in rows})
    manifests = sorted((output / MANIFESTS).glob("*.json"))
    about = {
        "models": models,
        "rows": len(rows),
        "runs": len(manifests),
        "datasets": sorted({r["dataset"] for r in rows}),
    }
    main = Table(
        "Accuracy per method x dataset x length (tasks pooled; 95% bootstrap CIs; paired with full)",
        (
            "dataset", "length", "method", "protocol", "n", "errors", "accuracy % [95% CI]",
            "delta vs full, pp [95% CI]", "McNemar p", "budget B", "kept tokens", "context tokens",
            "seconds/sample", "peak GiB",
        ),
        [
            (
                entry["dataset"],
                entry["length"],
                entry["method"],
                entry["protocol"] or "-",
                str(entry["n"]),
                str(entry["errors"]),
                "-" if entry["accuracy"] is None else _interval(
                    entry["accuracy"].estimate, entry["accuracy"].low, entry["accuracy"].high, ""
                ),
                "-" if entry["comparison"] is None else _interval(
                    entry["comparison"].difference.estimate,
                    entry["comparison"].difference.low,
                    entry["comparison"].difference.high,
                    "+",
                ),
                "-" if entry["comparison"] is None else f"{entry['comparison'].mcnemar_p:.3g}",
                "-" if entry["budget"] is None else f"{entry['budget']:.0f}",
                "-" if entry["kept"] is None else f"{entry['kept']:.0f}",
                "-" if entry["context"] is None else f"{entry['context']:.0f}",
                "-" if entry["seconds"] is None else f"{entry['seconds']:.2f}",
                "-" if entry["peak_gib"] is None else f"{entry['peak_gib']:.2f}",
            )
            for entry in per_length
        ],
    )  # fmt: skip
    datasets = sorted({row["dataset"] for row in rows})
    result = [main, *official_tables(summary["official"]), *published_tables(models, datasets)]
    return result, per_length, about


def official_tables(official: dict[str, Any]) -> list[Table]:
    """Each benchmark's official tables, one row per configuration."""
    found = []
    for dataset, by_config in sorted(official.items()):
        for table in get_benchmark(dataset).official_tables(by_config):
            found.append(Table(table.title, table.header, table.rows))
    return found


def published_tables(models: list[str], datasets: list[str]) -> list[Table]:
    """Published full-cache numbers for the run's models on its benchmarks, where known."""
    found = []
    for model in models:
        for dataset in datasets:
            match = get_benchmark(dataset).published(model)
            if match is None:
                continue
            name, values = match
            found.append(
                Table(
                    f"Published full-cache numbers, {name}, {dataset} (%)",
                    tuple(values),
                    [tuple(percent_cell(float(value)) for value in values.values())],
                )
            )
    return found


def series_name(label: str) -> str:
    """A configuration label without its sweep settings: ``laser[budget=256] @ m`` -> ``laser @ m``."""
    return re.sub(r"\[[^\]]*\]", "", label)


def budget_series(per_length: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """For accuracy vs budget: one series per base method (``streaming[budget=128]`` and
    ``streaming[budget=256]`` are one line), one point per budget, lengths pooled by size (the
    band is the n-weighted mean of the per-length CIs: indicative, not a pooled bootstrap)."""
    pooled: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for entry in per_length:
        if entry["budget"] is not None and entry["accuracy"] is not None:
            pooled[(series_name(entry["method"]), entry["budget"])].append(entry)
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (method, budget), entries in sorted(pooled.items()):
        total = sum(entry["n"] for entry in entries)
        estimate = sum(entry["accuracy"].estimate * entry["n"] for entry in entries) / total
        low = sum(entry["accuracy"].low * entry["n"] for entry in entries) / total
        high = sum(entry["accuracy"].high * entry["n"] for entry in entries) / total
        interval = type(entries[0]["accuracy"])(estimate, low, high, total)
        series[method].append({"budget": budget, "accuracy": interval})
    return series


def plots(per_length: list[dict[str, Any]], directory: Path) -> list[Path]:
    """accuracy_vs_length.png, accuracy_vs_budget.png, peak_memory_vs_length.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in per_length:
        by_method[entry["method"]].append(entry)
    specs = [
        ("accuracy_vs_length.png", "context length (tokens)", "accuracy (%)", "context", "accuracy"),
        ("accuracy_vs_budget.png", "budget B (tokens)", "accuracy (%)", "budget", "accuracy"),
        ("peak_memory_vs_length.png", "context length (tokens)", "peak memory (GiB)", "context", "peak_gib"),
    ]
    written = []
    for filename, xlabel, ylabel, xkey, ykey in specs:
        figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        series = budget_series(per_length) if xkey == "budget" else by_method
        for method, entries in sorted(series.items()):
            points = sorted(
                (entry[xkey], entry[ykey].estimate if ykey == "accuracy" else entry[ykey])
                for entry in entries
                if entry[xkey] is not None and entry[ykey] is not None
            )
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=method)
            if ykey == "accuracy":
                lows = [
                    e["accuracy"].low
                    for e in sorted(entries, key=lambda e: e[xkey] or 0)
                    if e[xkey] is not None and e["accuracy"] is not None
                ]
                highs = [
                    e["accuracy"].high
                    for e in sorted(entries, key=lambda e: e[xkey] or 0)
                    if e[xkey] is not None and e["accuracy"] is not None
                ]
                if len(lows) == len(xs) and all(e["accuracy"] is not None for e in entries):
                    axes.fill_between(xs, lows, highs, alpha=0.15)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if ykey == "accuracy":
            axes.set_ylim(-3, 103)
        if xkey == "context":
            axes.set_xscale("log", base=2)
            ticks = sorted({entry[xkey] for entry in per_length if entry[xkey] is not None})
            axes.set_xticks(ticks, [f"{tick / 1000:.1f}k" for tick in ticks])
            axes.minorticks_off()
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
        axes.set_title(filename.removesuffix(".png").replace("_", " "))
        figure.tight_layout()
        path = directory / filename
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def markdown(report_tables: list[Table], about: dict[str, Any], images: list[Path], base: Path) -> str:
    """The report as Markdown (images linked relative to ``base``)."""
    lines = [
        "# laserkv report",
        "",
        f"Models: {', '.join(about['models'])}. Datasets: {', '.join(about['datasets'])}. "
        f"Rows: {about['rows']}. Runs: {about['runs']}.",
        "",
    ]
    for table in report_tables:
        lines += [
            f"## {table.title}",
            "",
            "| " + " | ".join(table.header) + " |",
            "|" + "---|" * len(table.header),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        lines.append("")
    for image in images:
        lines += [f"![{image.stem}]({image.relative_to(base).as_posix()})", ""]
    return "\n".join(lines)


def html_page(report_tables: list[Table], about: dict[str, Any], images: list[Path]) -> str:
    """The report as one self-contained HTML page (images embedded as data URIs)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>laserkv report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}"
        "</style></head><body>",
        "<h1>laserkv report</h1>",
        f"<p>{html.escape(json.dumps(about))}</p>",
    ]
    for table in report_tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(cell)}</th>" for cell in table.header]
        parts.append("</tr>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(image.stem)}</h3><img alt='{image.stem}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def write_report(output_dir: Path, fmt: str = "md", with_plots: bool = True) -> Path:
    """Write ``report.md`` or ``report.html`` (and ``plots/*.png``) into the results directory."""
    output = Path(output_dir)
    report_tables, per_length, about = tables(output)
    images = plots(per_length, output / "plots") if with_plots else []
    if fmt == "html":
        path = output / "report.html"
        path.write_text(html_page(report_tables, about, images))
    else:
        path = output / "report.md"
        path.write_text(markdown(report_tables, about, images, output))
    return path
