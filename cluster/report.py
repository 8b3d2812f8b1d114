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

from cluster.reduce import (
    BASELINE,
    baseline_key,
    config_key,
    mean_of,
    paired_scores,
    reduce_and_score,
    score_directories,
)
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


def run_descriptions(directories: list[Path]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Each run's manifest in brief (id, date, directory, commit, units planned) and the package
    versions the runs used (package -> versions seen)."""
    runs, versions = [], defaultdict(set)
    for directory in directories:
        for path in sorted((Path(directory) / MANIFESTS).glob("*.json")):
            manifest = json.loads(path.read_text())
            stamp = str(manifest.get("run_id", path.stem)).split("-")[0]
            date = stamp
            if len(stamp) >= 13:  # YYYYMMDDTHHMMSS
                date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
            runs.append(
                {
                    "run": manifest.get("run_id", path.stem),
                    "date": date,
                    "directory": str(directory),
                    "commit": (manifest.get("git_sha") or "-")[:10],
                    "units planned": manifest.get("units_planned", "-"),
                }
            )
            for package, version in (manifest.get("versions") or {}).items():
                if version:
                    versions[package].add(str(version))
    return runs, {package: sorted(found) for package, found in sorted(versions.items())}


def tables(directories: Path | list[Path]) -> tuple[list[Table], list[dict[str, Any]], dict[str, Any]]:
    """The report's tables, the per-length rows (for plots) and the run's description. One
    directory is reduced as ``laserkv eval`` does (its summary files are refreshed); several are
    reported together, a unit found in more than one counted once."""
    found = [Path(directories)] if isinstance(directories, (str, Path)) else [Path(d) for d in directories]
    summary, rows = reduce_and_score(found[0]) if len(found) == 1 else score_directories(found)
    per_length = length_rows(rows)
    models = sorted({row["model"] for row in rows})
    runs, versions = run_descriptions(found)
    about = {
        "models": models,
        "rows": len(rows),
        "runs": runs,
        "versions": versions,
        "datasets": sorted({r["dataset"] for r in rows}),
        "samples": sample_rows(rows),
        "kept": kept_rows(rows),
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


def sample_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per unit for the HTML's per-sample view."""
    return [
        {
            "method": str(row["config"]),
            "dataset": str(row["dataset"]),
            "task": str(row["task"]),
            "length": str(row["length"]),
            "sample": str(row["sample_id"]),
            "correct": "yes" if row["status"] == "ok" and row["score"] >= 1 else "no",
            "score": round(float(row["score"]), 3),
            "target": str(row["target"]),
            "prediction": "" if row["prediction"] is None else str(row["prediction"]),
            "raw output": "" if row["raw_output"] is None else str(row["raw_output"]),
            "kept tokens": row["kept_tokens_final"],
            "seconds": None if row["seconds_total"] is None else round(float(row["seconds_total"]), 2),
            "status": str(row["status"]),
        }
        for row in sorted(rows, key=lambda row: (row["dataset"], row["task"], length_order(row["length"]),
                                                 row["sample_id"], row["config"]))
    ]  # fmt: skip


def kept_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy with a bootstrap 95% CI and the mean realised kept tokens per (dataset, task,
    configuration, length), for accuracy vs kept tokens."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["task"], row["config"], row["length"])].append(row)
    found = []
    for (dataset, task, label, length), members in sorted(groups.items()):
        counted = [float(row["score"]) for row in members if row["counts"]]
        kept = mean_of([row["kept_tokens_final"] for row in members if row["status"] == "ok"])
        if counted and kept is not None:
            found.append(
                {
                    "dataset": dataset, "task": task, "method": label, "length": length,
                    "kept": kept, "accuracy": bootstrap_ci(counted),
                }
            )  # fmt: skip
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


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.2), dpi=110)


def _save(figure: Any, axes: Any, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _points(entries: list[dict[str, Any]], xkey: str, ykey: str) -> list[tuple[float, float, float, float]]:
    """``(x, y, low, high)`` of the entries that have both values, by x (low = high = y when
    the value has no interval)."""
    points = []
    for entry in entries:
        x, y = entry[xkey], entry[ykey]
        if x is None or y is None:
            continue
        if ykey == "accuracy":
            points.append((float(x), y.estimate, y.low, y.high))
        else:
            points.append((float(x), float(y), float(y), float(y)))
    return sorted(points)


def _line_plot(
    series: dict[str, list[dict[str, Any]]],
    xkey: str,
    ykey: str,
    labels: tuple[str, str],
    title: str,
    path: Path,
) -> Path | None:
    """One line per series with its 95% CI (accuracy) as error bars; None when the data has
    fewer than two distinct x values (a plot of one point says nothing)."""
    lines = {name: _points(entries, xkey, ykey) for name, entries in sorted(series.items())}
    lines = {name: points for name, points in lines.items() if points}
    if len({point[0] for points in lines.values() for point in points}) < 2:
        return None
    figure, axes = _figure()
    for name, points in lines.items():
        xs, ys, lows, highs = zip(*points, strict=True)
        errors = [
            [y - low for y, low in zip(ys, lows, strict=True)],
            [h - y for y, h in zip(ys, highs, strict=True)],
        ]
        axes.errorbar(xs, ys, yerr=errors if ykey == "accuracy" else None, marker="o", capsize=3, label=name)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    if ykey == "accuracy":
        axes.set_ylim(-3, 103)
    if xkey in ("context", "kept"):
        axes.set_xscale("log", base=2)
        ticks = sorted({point[0] for points in lines.values() for point in points})
        axes.set_xticks(ticks, [f"{tick / 1000:.1f}k" for tick in ticks])
        axes.minorticks_off()
    return _save(figure, axes, title, path)


def plots(
    per_length: list[dict[str, Any]], directory: Path, kept: list[dict[str, Any]] | None = None
) -> list[Path]:
    """The plots the data supports: accuracy vs context length, accuracy vs budget (one line per
    base method), accuracy vs realised kept tokens per task (one line per base method, a point
    per configuration and length), peak memory vs length (CUDA runs). A plot whose data has fewer
    than two distinct x values is left out."""
    directory.mkdir(parents=True, exist_ok=True)
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in per_length:
        by_method[entry["method"]].append(entry)
    length_axis, accuracy_axis = "context length (tokens)", "accuracy (%)"
    specs = [
        ("accuracy_vs_length", by_method, "context", "accuracy", (length_axis, accuracy_axis)),
        (
            "accuracy_vs_budget",
            budget_series(per_length),
            "budget",
            "accuracy",
            ("budget B (tokens)", accuracy_axis),
        ),
        ("peak_memory_vs_length", by_method, "context", "peak_gib", (length_axis, "peak memory (GiB)")),
    ]
    by_task: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for entry in kept or []:
        by_task[(entry["dataset"], entry["task"])][series_name(entry["method"])].append(entry)
    for (dataset, task), series in sorted(by_task.items()):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"accuracy_vs_kept_{dataset}_{task}")
        specs.insert(
            2, (name, series, "kept", "accuracy", ("realised kept tokens", f"accuracy (%), {dataset} {task}"))
        )
    written = []
    for name, series, xkey, ykey, labels in specs:
        path = _line_plot(series, xkey, ykey, labels, name.replace("_", " "), directory / f"{name}.png")
        if path is not None:
            written.append(path)
    return written


def header_lines(about: dict[str, Any]) -> list[str]:
    """The report's header as Markdown lines: models, datasets, units, runs with their dates and
    commits, package versions."""
    lines = [
        f"- **Models**: {', '.join(about['models'])}",
        f"- **Datasets**: {', '.join(about['datasets'])}",
        f"- **Units**: {about['rows']} (each counted once)",
        "- **Runs**: "
        + (
            "; ".join(
                f"{run['run']} ({run['date']}, {run['directory']}, commit {run['commit']}, "
                f"{run['units planned']} units planned)"
                for run in about["runs"]
            )
            or "-"
        ),
        "- **Versions**: "
        + (
            ", ".join(f"{package} {' / '.join(found)}" for package, found in about["versions"].items()) or "-"
        ),
    ]
    return lines


def markdown(report_tables: list[Table], about: dict[str, Any], images: list[Path], base: Path) -> str:
    """The report as Markdown (images linked relative to ``base``)."""
    lines = ["# laserkv report", "", *header_lines(about), ""]
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


SAMPLE_FILTERS = ("method", "task", "length", "correct")
SAMPLE_COLUMNS = ("method", "dataset", "task", "length", "sample", "correct", "score", "target", "prediction",
                  "raw output", "kept tokens", "seconds")  # fmt: skip
SAMPLE_SCRIPT = """
(function () {
  var table = document.getElementById('samples');
  var selects = document.querySelectorAll('select[data-filter]');
  function apply() {
    var shown = 0;
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var keep = true;
      for (var j = 0; j < selects.length; j++) {
        var value = selects[j].value;
        if (value && rows[i].getAttribute('data-' + selects[j].getAttribute('data-filter')) !== value) {
          keep = false;
        }
      }
      rows[i].style.display = keep ? '' : 'none';
      if (keep) { shown++; }
    }
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' samples shown';
  }
  for (var j = 0; j < selects.length; j++) { selects[j].addEventListener('change', apply); }
  apply();
})();
"""
"""The per-sample view's filter: plain DOM script, inline (the page needs nothing from the network)."""


def sample_section(samples: list[dict[str, Any]]) -> str:
    """The HTML per-sample view: one select per filter, then one table row per unit."""
    parts = ["<h2>Per-sample results</h2><p class='filters'>"]
    for name in SAMPLE_FILTERS:
        values = sorted({str(sample[name]) for sample in samples}, key=lambda value: (len(value), value))
        options = "".join(
            f"<option value='{html.escape(v, quote=True)}'>{html.escape(v)}</option>" for v in values
        )
        parts.append(
            f"<label>{name} <select data-filter='{name}' id='filter-{name}'>"
            f"<option value=''>all</option>{options}</select></label> "
        )
    parts.append("<span id='shown'></span></p><table id='samples'><thead><tr>")
    parts += [f"<th>{html.escape(column)}</th>" for column in SAMPLE_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for sample in samples:
        data = " ".join(
            f"data-{name}='{html.escape(str(sample[name]), quote=True)}'" for name in SAMPLE_FILTERS
        )
        cells = "".join(
            f"<td>{html.escape('-' if sample[column] is None else str(sample[column]))}</td>"
            for column in SAMPLE_COLUMNS
        )
        parts.append(f"<tr {data}>{cells}</tr>")
    parts.append(f"</tbody></table><script>{SAMPLE_SCRIPT}</script>")
    return "".join(parts)


def _inline_markdown(line: str) -> str:
    """A header line's ``**bold**`` as HTML (everything else escaped)."""
    escaped = html.escape(line.removeprefix("- "))
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)


def html_page(report_tables: list[Table], about: dict[str, Any], images: list[Path]) -> str:
    """The report as one self-contained HTML page (images embedded as data URIs, the per-sample
    view's filter inline; nothing is fetched)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>laserkv report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}th{background:#f3f3f3}"
        "#samples td{max-width:28em;overflow-wrap:anywhere}.filters label{margin-right:1em}"
        "</style></head><body>",
        "<h1>laserkv report</h1><ul>",
        *(f"<li>{_inline_markdown(line)}</li>" for line in header_lines(about)),
        "</ul>",
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
    parts.append(sample_section(about["samples"]))
    parts.append("</body></html>")
    return "".join(parts)


def write_report(
    directories: Path | list[Path], fmt: str = "md", with_plots: bool = True, out: Path | None = None
) -> Path:
    """Write ``report.md`` or ``report.html`` (and ``plots/*.png``) into ``out`` (default: the
    one results directory given).

    Raises:
        ValueError: several directories and no ``out``.
    """
    found = [Path(directories)] if isinstance(directories, (str, Path)) else [Path(d) for d in directories]
    if out is None and len(found) > 1:
        raise ValueError("several results directories are reported together into --out DIR: give one")
    output = Path(out) if out is not None else found[0]
    output.mkdir(parents=True, exist_ok=True)
    report_tables, per_length, about = tables(found)
    images = plots(per_length, output / "plots", about["kept"]) if with_plots else []
    if fmt == "html":
        path = output / "report.html"
        path.write_text(html_page(report_tables, about, images))
    else:
        path = output / "report.md"
        path.write_text(markdown(report_tables, about, images, output))
    return path
