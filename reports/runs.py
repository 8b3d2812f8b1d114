"""The report's header: the runs behind the rows (from their manifests) and the package versions
they used."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cluster.writer import MANIFESTS


@dataclass(frozen=True)
class RunInfo:
    """One run in brief, from its manifest."""

    run: str
    date: str
    directory: str
    commit: str
    units_planned: str


def run_descriptions(directories: list[Path]) -> tuple[list[RunInfo], dict[str, list[str]]]:
    """Each run's manifest in brief (id, date, directory, commit, units planned) and the package
    versions the runs used (package -> versions seen)."""
    runs, versions = [], defaultdict(set)
    for directory in directories:
        for path in sorted((Path(directory) / MANIFESTS).glob("*.json")):
            manifest = json.loads(path.read_text())
            run = str(manifest.get("run_id", path.stem))
            stamp = run.split("-")[0]
            date = stamp
            if len(stamp) >= 13:  # YYYYMMDDTHHMMSS
                date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
            commit = str(manifest.get("git_sha") or "-")[:10]
            runs.append(RunInfo(run, date, str(directory), commit, str(manifest.get("units_planned", "-"))))
            for package, version in (manifest.get("versions") or {}).items():
                if version:
                    versions[package].add(str(version))
    return runs, {package: sorted(found) for package, found in sorted(versions.items())}


@dataclass(frozen=True)
class About:
    """What a report describes: models, datasets, unit count, runs, package versions."""

    models: list[str]
    datasets: list[str]
    rows: int
    runs: list[RunInfo]
    versions: dict[str, list[str]]


def header_lines(about: About) -> list[str]:
    """The report's header as Markdown lines."""
    runs = "; ".join(
        f"{run.run} ({run.date}, {run.directory}, commit {run.commit}, {run.units_planned} units planned)"
        for run in about.runs
    )
    versions = ", ".join(f"{package} {' / '.join(found)}" for package, found in about.versions.items())
    return [
        f"- **Models**: {', '.join(about.models)}",
        f"- **Datasets**: {', '.join(about.datasets)}",
        f"- **Units**: {about.rows} (each counted once)",
        f"- **Runs**: {runs or '-'}",
        f"- **Versions**: {versions or '-'}",
    ]
