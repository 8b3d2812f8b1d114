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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.rows import RESULT_SCHEMA, ResultRow, SchemaError, upgrade_table
from laserkv.errors import LaserKVError
from laserkv.switches import engine_switches

RESULTS = "results"
MANIFESTS = "manifests"
PACKAGES = ("laserkv", "torch", "transformers", "ray", "datasets", "pyarrow", "kvpress", "fa3-fwd")


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
        publish(final, lambda path: pq.write_table(table, path))
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
    except (pa.ArrowException, TypeError, ValueError, KeyError) as error:  # a column of another type
        reason = column_problem(table) or str(error).splitlines()[0] or type(error).__name__
        raise ResultsError(
            f"{path} is not a laserkv result shard: {reason}; move it out of the results dir"
        ) from error


def column_problem(stored: pa.Table) -> str | None:
    """Which column of a stored table does not fit ``RESULT_SCHEMA``: null where it may not be, or
    values of a type that does not convert (None: no single column found)."""
    for field in RESULT_SCHEMA:
        if field.name not in stored.column_names:
            continue
        column = stored.column(field.name)
        if not field.nullable and column.null_count:
            return f"column {field.name!r} is null in {column.null_count} of {stored.num_rows} rows"
        try:
            column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return f"column {field.name!r} holds {column.type} values where laserkv stores {field.type}"
    return None


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


EXPORT_COMMIT = Path(__file__).resolve().parent / "export_commit.txt"
"""``$Format:%H$`` in the repository; ``git archive`` writes the exported commit into it (export-subst)."""


def git_sha() -> str | None:
    """The commit of the code that runs: the checkout's ``HEAD`` when this file is tracked there,
    else the commit ``git archive`` wrote into ``EXPORT_COMMIT`` (an export, even one copied inside
    another repository's tree), else None."""
    here = Path(__file__).resolve()
    try:
        subprocess.run(["git", "ls-files", "--error-unmatch", here.name], cwd=here.parent,
                       capture_output=True, timeout=10, check=True)  # fmt: skip
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here.parent, capture_output=True,
                                text=True, timeout=10, check=True)  # fmt: skip
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        exported = EXPORT_COMMIT.read_text().strip()
    except OSError:
        return None
    return exported if len(exported) == 40 and all(c in "0123456789abcdef" for c in exported) else None


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
    """``manifests/<run_id>.json``: config, package versions, git sha, the engine's comparison
    switches set (``laserkv.switches``), host, plus ``details``."""
    directory = Path(output_dir) / MANIFESTS
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": run_id,
        "config": config,
        "versions": {package: _version(package) for package in PACKAGES},
        "git_sha": git_sha(),
        "engine_switches": engine_switches(),
        "host": {
            "node": platform.node(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **details,
    }
    path = directory / f"{run_id}.json"
    _publish_manifest(path, manifest)
    return path


def update_manifest(path: Path, extra: dict[str, Any]) -> None:
    """Add ``extra``'s fields to the manifest at ``path`` (replaced atomically)."""
    _publish_manifest(path, {**json.loads(path.read_text()), **extra})


def _publish_manifest(path: Path, manifest: dict[str, Any]) -> None:
    publish(path, lambda partial: partial.write_text(json.dumps(manifest, indent=1, default=str)))


def publish(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a hidden partial file beside ``path``, then rename it to ``path`` atomically
    (readers see the old file or the new one, never half of one; partial files are not shards)."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def check_shards(output_dir: Path) -> list[Path]:
    """The published shards of ``output_dir``, each read as a laserkv result shard (``--overwrite``
    removes only these, and only after this check).

    Raises:
        ResultsError: a ``*.parquet`` under ``results/`` that is not a laserkv result shard (it is
            never removed).
    """
    paths = shard_paths(output_dir)
    for path in paths:
        read_shard(path)
    return paths


def remove_shards(paths: list[Path]) -> None:
    """Remove shards ``check_shards`` read as laserkv's; each is read again just before (a file
    put there since is never removed), and one already gone is skipped."""
    for path in paths:
        if path.exists():
            read_shard(path)
            path.unlink(missing_ok=True)


def is_run_directory(directory: Path) -> bool:
    """Whether ``directory`` holds a run: a manifest under ``manifests/`` or a shard under ``results/``."""
    return any((directory / MANIFESTS).glob("*.json")) or bool(shard_paths(directory))


def check_output_placement(output_dir: Path) -> None:
    """Refuse an output directory inside another run's directory (its ``results/`` or
    ``manifests/``, or any folder below a run): the run's own files (``summary.parquet``, its
    ``results/``) would land among that run's, which then neither reports nor resumes.

    Raises:
        ResultsError: the enclosing run's directory, and what to do.
    """
    resolved = Path(output_dir).expanduser().resolve()
    for parent in resolved.parents:
        if is_run_directory(parent):
            raise ResultsError(
                f"{output_dir} is inside the run directory {parent}: its files would mix with that "
                "run's; give an --output outside it"
            )


LOCK = ".laserkv.lock"
LOCK_STARTING_S = 10.0  # a lock file still empty this long after its creation is stale


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), to tell it from a later one reusing the pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    except OverflowError:
        return False
    return started is None or _process_start(pid) in (None, started)


class OutputLock:
    """One running driver per output directory: ``<output>/.laserkv.lock`` (pid, host, start time,
    run id), created with ``O_EXCL``, removed by ``release``. A lock whose process is no longer
    alive on this host (a killed driver) is stale and taken over.

    Raises (``acquire``):
        ResultsError: another driver holds the directory (its pid, host, start time and run id).
    """

    def __init__(self, output_dir: Path, run_id: str) -> None:
        self.path = Path(output_dir) / LOCK
        self.run_id = run_id
        self.held = False

    def _content(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "pid": pid,
            "host": platform.node(),
            "process_start": _process_start(pid),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_id": self.run_id,
        }

    def acquire(self) -> OutputLock:
        for _ in range(5):  # a stale lock removed, then created again by us (or a racing driver)
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_remove_stale()
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(self._content()))
            self.held = True
            return self
        raise ResultsError(f"could not take the lock {self.path}: it keeps coming back; retry")

    def _refuse_or_remove_stale(self) -> None:
        try:
            text = self.path.read_text()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        try:
            holder = json.loads(text)
            pid = int(holder["pid"])
        except (ValueError, KeyError, TypeError):
            if not text and age < LOCK_STARTING_S:  # another driver is writing it right now
                raise ResultsError(
                    f"{self.path.parent} is being claimed by another laserkv driver (lock {self.path}); "
                    "wait for it to finish, or use another --output"
                ) from None
            holder, pid = {}, -1
        here = holder.get("host") == platform.node()
        if pid > 0 and (not here or _alive(pid, holder.get("process_start"))):
            where = "" if here else f" on host {holder.get('host')}"
            raise ResultsError(
                f"{self.path.parent} is in use by another laserkv driver (pid {pid}{where}, started "
                f"{holder.get('started')}, run {holder.get('run_id')}): wait for it to finish, or use "
                f"another --output (remove {self.path} only if that process is gone)"
            )
        # stale (its driver was killed): take it over, unless it changed since it was read
        try:
            if self.path.read_text() == text:
                self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Remove the lock if it is still this driver's."""
        if not self.held:
            return
        self.held = False
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if holder.get("pid") == os.getpid() and holder.get("run_id") == self.run_id:
            self.path.unlink(missing_ok=True)
