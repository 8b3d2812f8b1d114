"""``laserkv report``: one or more results directories read as the scored table, rendered as
Markdown or HTML with plots into ``out``. Nothing is written into a results directory unless it
is also the output (the default for one writable directory)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from analysis.table import scored_table
from analysis.views import accuracy
from laserkv.errors import LaserKVError
from reports.diagnostics import diagnostic_views, diagnostics_plots, diagnostics_tables
from reports.pages import html_page, markdown, sample_rows
from reports.plots import plots
from reports.runs import About, run_descriptions
from reports.tables import breakdown_tables, main_table, official_tables, published_tables, versus_table

FORMATS = ("md", "html")


class ReportWriteError(LaserKVError, OSError):
    """The report could not be written (a full disk, an unwritable ``--out``); the message names
    the path."""


def output_directory(directories: list[Path], out: Path | None) -> Path:
    """Where a report goes: ``out``, else the one results directory given if it is writable.

    Raises:
        ValueError: several directories and no ``out``, a read-only directory and no ``out``, or an
            ``out`` that is a file.
    """
    if out is not None:
        if Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"--out {out} is a file: give a directory for the report")
        return Path(out)
    if len(directories) > 1:
        raise ValueError("several results directories are reported together into --out DIR: give one")
    if not os.access(directories[0], os.W_OK):
        raise ValueError(f"{directories[0]} is not writable: give --out DIR for the report")
    return directories[0]


def write_report(
    directories: Path | list[Path],
    fmt: str = "md",
    with_plots: bool = True,
    out: Path | None = None,
    versus_method: str | None = "laser",
    mismatched: bool = False,
) -> Path:
    """Write ``report.md`` or ``report.html`` (and ``plots/*.png``) into the output directory.
    ``versus_method`` (when it ran) is compared with every other configuration at the same
    settings; ``mismatched`` gives verdicts to comparisons that differ in protocol, regime or kept
    tokens too.

    Raises:
        ValueError: no usable output directory (``output_directory``).
        ResultsError: no result shards, a shard that is not laserkv's or holds a malformed row, or a
            manifest that is not a run manifest (each names its file).
        ReportWriteError: the report or its plots could not be written (names the path; what this
            call created is removed).
    """
    found = [Path(directories)] if isinstance(directories, (str, Path)) else [Path(d) for d in directories]
    output = output_directory(found, out)
    table = scored_table(found)
    main, per_length = main_table(table)
    models = sorted(table.frame["model"].astype(str).unique())
    datasets = sorted(table.frame["dataset"].astype(str).unique())
    compared = versus_table(table, versus_method, mismatched) if versus_method else None
    diagnosed = diagnostic_views(table)
    report_tables = [
        main,
        *([compared] if compared else []),
        *breakdown_tables(table),
        *diagnostics_tables(diagnosed),
        *official_tables(table),
        *published_tables(models, datasets),
    ]
    runs, versions = run_descriptions(found)
    about = About(models, datasets, len(table.frame), runs, versions)
    path = output / ("report.html" if fmt == "html" else "report.md")
    new = [directory for directory in (output, *output.parents) if not directory.exists()]
    new_plots = with_plots and not (output / "plots").exists()
    writing = output
    try:
        output.mkdir(parents=True, exist_ok=True)
        images: list[Path] = []
        if with_plots:
            writing = output / "plots"
            kept = accuracy(table, ("dataset", "task", "config", "length"))
            images = plots(per_length, kept, output / "plots")
            images += diagnostics_plots(diagnosed, output / "plots")
        writing = path
        if fmt == "html":
            text = html_page(report_tables, about, images, sample_rows(table))
        else:
            text = markdown(report_tables, about, images, output)
        write_text(path, text)
    except OSError as error:
        if new:
            shutil.rmtree(new[-1], ignore_errors=True)  # every directory this call made, and their files
        elif new_plots:
            shutil.rmtree(output / "plots", ignore_errors=True)
        raise ReportWriteError(f"cannot write the report to {writing}: {error.strerror or error}") from error
    return path


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all: written beside it, then renamed over it (a full
    disk leaves the previous file, and no partial one)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
