"""The single writer: result rows stream into Parquet shards under ``<output>/results/``, each
published by atomic rename, so a crash never leaves a half-written shard; plus the run manifest
(``<output>/manifests/<run_id>.json``) and the reading side (resume, reducer)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.rows import RESULT_SCHEMA, ResultRow, SchemaError, upgrade_table
from laserkv.errors import LaserKVError

RESULTS = "results"
MANIFESTS = "manifests"
PACKAGES = ("laserkv", "torch", "transformers", "ray", "datasets", "pyarrow")


class ResultsError(LaserKVError):
    """An output directory holds something that is not a laserkv result shard."""


class ShardWriter:
    """Buffers rows and writes them as Parquet shards ``part-<run_id>-<n>.parquet``.

    Args:
        output_dir: the run's output directory.
        run_id: names this run's shards.
        rows_per_shard / seconds_per_shard: flush when either is reached.
    """

    def __init__(
        self, output_dir: Path, run_id: str, rows_per_shard: int = 64, seconds_per_shard: float = 60.0
    ):
        self.directory = Path(output_dir) / RESULTS
        self.directory.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.rows_per_shard = rows_per_shard
        self.seconds_per_shard = seconds_per_shard
        self.buffer: list[ResultRow] = []
        self.shards = 0
        self.rows_written = 0
        self.last_flush = time.monotonic()

    def add(self, row: ResultRow) -> None:
        """Queue one row; flush when the shard is full or old enough."""
        self.buffer.append(row)
        if (
            len(self.buffer) >= self.rows_per_shard
            or time.monotonic() - self.last_flush >= self.seconds_per_shard
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one shard (tmp file, then atomic rename)."""
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        table = pa.Table.from_pylist(self.buffer, schema=RESULT_SCHEMA)
        final = self.directory / f"part-{self.run_id}-{self.shards:05d}.parquet"
        partial = self.directory / f".{final.name}.partial"
        pq.write_table(table, partial)
        os.replace(partial, final)
        self.shards += 1
        self.rows_written += len(self.buffer)
        self.buffer = []


def shard_paths(output_dir: Path) -> list[Path]:
    """Every published shard (hidden partial files are ignored)."""
    directory = Path(output_dir) / RESULTS
    return sorted(directory.glob("*.parquet")) if directory.exists() else []


def read_shard(path: Path) -> pa.Table:
    """One shard, checked to be a laserkv result shard, in the current schema (shards of an
    earlier schema version are upgraded as they are read; the file is left as it is).

    Raises:
        ResultsError: unreadable Parquet or a schema without laserkv's result columns.
    """
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ResultsError(
            f"{path} is not a readable Parquet file ({error}); move it out of the results dir"
        ) from error
    try:
        return upgrade_table(table)
    except SchemaError as error:
        raise ResultsError(
            f"{path} is not a laserkv result shard (it lacks {error}); move it out of the results dir"
        ) from error


def read_results(output_dir: Path) -> pa.Table:
    """All result rows of an output directory (an empty table if there are none)."""
    tables = [read_shard(path) for path in shard_paths(output_dir)]
    return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()


def done_unit_ids(output_dir: Path, ok_only: bool = False) -> set[str]:
    """Ids of the units that already have a row (any status, or only ``ok`` rows)."""
    table = read_results(output_dir)
    ids = table.column("unit_id").to_pylist()
    if not ok_only:
        return set(ids)
    return {
        unit for unit, status in zip(ids, table.column("status").to_pylist(), strict=True) if status == "ok"
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    """The checkout's commit, if laserkv runs from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def read_manifests(output_dir: Path) -> list[dict[str, Any]]:
    """The run manifests of ``output_dir``, oldest first (run ids start with their UTC time).

    Raises:
        ResultsError: a manifest that is not readable JSON.
    """
    manifests = []
    for path in sorted((Path(output_dir) / MANIFESTS).glob("*.json")):
        try:
            manifests.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsError(f"{path} is not a readable run manifest: {error}") from error
    return manifests


def previous_revisions(output_dir: Path, dataset: str) -> set[str]:
    """The data versions earlier runs in ``output_dir`` used for ``dataset`` (from their manifests)."""
    return {
        str(manifest["dataset_revision"])
        for manifest in read_manifests(output_dir)
        if manifest.get("config", {}).get("dataset") == dataset and "dataset_revision" in manifest
    }


def previous_cell_revisions(output_dir: Path, dataset: str) -> dict[str, set[str]]:
    """The data version of each ``task/length`` cell earlier runs in ``output_dir`` planned for
    ``dataset``: a manifest's ``cell_revisions``, or for manifests written before those existed,
    the run's revision for each of its configured lengths x tasks."""
    found: dict[str, set[str]] = {}
    for manifest in read_manifests(output_dir):
        config = manifest.get("config", {})
        if config.get("dataset") != dataset or "dataset_revision" not in manifest:
            continue
        cells = manifest.get("cell_revisions") or {
            f"{task}/{length}": manifest["dataset_revision"]
            for length in config.get("lengths") or ()
            for task in config.get("tasks") or ()
        }
        for cell, revision in cells.items():
            found.setdefault(str(cell), set()).add(str(revision))
    return found


def write_manifest(output_dir: Path, run_id: str, config: dict[str, Any], details: dict[str, Any]) -> Path:
    """``manifests/<run_id>.json``: config, package versions, git sha, host, plus ``details``."""
    directory = Path(output_dir) / MANIFESTS
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": run_id,
        "config": config,
        "versions": {package: _version(package) for package in PACKAGES},
        "git_sha": git_sha(),
        "host": {
            "node": platform.node(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **details,
    }
    path = directory / f"{run_id}.json"
    partial = directory / f".{run_id}.json.partial"
    partial.write_text(json.dumps(manifest, indent=1, default=str))
    os.replace(partial, path)
    return path
