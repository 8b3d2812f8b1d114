"""The report's header: the runs behind the rows (from their manifests) and the package versions
they used."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.writer import MANIFESTS, ResultsError
from reports.tables import markdown_text


@dataclass(frozen=True)
class RunInfo:
    """One run in brief, from its manifest."""

    run: str
    date: str
    directory: str
    commit: str
    units_planned: str


def json_kind(value: object) -> str:
    """What JSON calls a parsed value's type (``array``, ``string``, ...)."""
    names = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_manifest(path: Path) -> dict[str, Any]:
    """One run manifest: a JSON object whose ``config`` and ``versions`` (where present) are objects.

    Raises:
        ResultsError: unreadable, not JSON, or not of that shape (the message names the file).
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path} is not a readable run manifest: {error}") from error
    if not isinstance(manifest, dict):
        raise ResultsError(
            f"{path} is not a run manifest: it holds a JSON {json_kind(manifest)}, not an object"
        )
    for key in ("config", "versions"):
        value = manifest.get(key)
        if value is not None and not isinstance(value, dict):
            raise ResultsError(
                f"{path} is not a run manifest: its {key!r} is a JSON {json_kind(value)}, not an object"
            )
    return manifest


def run_descriptions(directories: list[Path]) -> tuple[list[RunInfo], dict[str, list[str]]]:
    """Each run's manifest in brief (id, date, directory, commit, units planned) and the package
    versions the runs used (package -> versions seen).

    Raises:
        ResultsError: a manifest that is unreadable or not of a manifest's shape (``read_manifest``).
    """
    runs, versions = [], defaultdict(set)
    for directory in directories:
        for path in sorted((Path(directory) / MANIFESTS).glob("*.json")):
            manifest = read_manifest(path)
            run = str(manifest.get("run_id", path.stem))
            stamp = run.split("-")[0]
            date = stamp
            if len(stamp) >= 13:  # YYYYMMDDTHHMMSS
                date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
            commit = str(manifest.get("git_sha") or "-")[:10]
            runs.append(RunInfo(run, date, str(directory), commit, str(manifest.get("units_planned", "-"))))
            for package, version in (manifest.get("versions") or {}).items():
                if version:
                    versions[str(package)].add(str(version))
    return runs, {package: sorted(found) for package, found in sorted(versions.items())}


@dataclass(frozen=True)
class About:
    """What a report describes: models, datasets, unit count, runs, package versions."""

    models: list[str]
    datasets: list[str]
    rows: int
    runs: list[RunInfo]
    versions: dict[str, list[str]]


def header_fields(about: About) -> list[tuple[str, str]]:
    """The report's header as (name, plain text) pairs; each page escapes them its own way."""
    runs = "; ".join(
        f"{run.run} ({run.date}, {run.directory}, commit {run.commit}, {run.units_planned} units planned)"
        for run in about.runs
    )
    versions = ", ".join(f"{package} {' / '.join(found)}" for package, found in about.versions.items())
    return [
        ("Models", ", ".join(about.models)),
        ("Datasets", ", ".join(about.datasets)),
        ("Units", f"{about.rows} (each counted once)"),
        ("Runs", runs or "-"),
        ("Versions", versions or "-"),
    ]


def header_lines(about: About) -> list[str]:
    """The report's header as Markdown lines (values escaped: ``reports.tables.markdown_text``)."""
    return [f"- **{name}**: {markdown_text(value)}" for name, value in header_fields(about)]
