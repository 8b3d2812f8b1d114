"""``datasets`` loading shared by the benchmarks: a hub id or a local file / directory, with one
clear error when the data is not available offline or lacks fields."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evals.errors import DatasetNotAvailableError, EvalError

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def datasets_package() -> Any:
    """The ``datasets`` package, imported on first load (it takes a second; checking a run's
    arguments must not wait for it), with its progress bars off (laserkv reports progress)."""
    import datasets

    datasets.disable_progress_bars()
    return datasets


def offline_hint(hub_id: str) -> str:
    """How to make ``hub_id`` available without network."""
    return (
        f"download it where the hub is reachable (datasets.load_dataset({hub_id!r}) fills the cache; "
        "then set HF_DATASETS_OFFLINE=1 here) or pass a local copy: a .json/.jsonl/.parquet file, a "
        "directory of such files, or a directory written by Dataset.save_to_disk"
    )


def load_local(path: Path, split: str | None = None) -> Any:
    """A local file or directory through ``datasets``: a saved dataset (``save_to_disk``), one
    data file, or a directory of data files. Returns a ``Dataset`` (or ``DatasetDict`` if no
    split is given and the data has several)."""
    datasets = datasets_package()
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))
        if split is not None and isinstance(loaded, datasets.DatasetDict):
            return loaded[split]
        return loaded
    if path.is_file():
        builder = FILE_FORMATS.get(path.suffix)
        if builder is None:
            raise EvalError(f"{path}: unknown data file type; use one of {', '.join(FILE_FORMATS)}")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    return datasets.load_dataset(str(path), split=split or "train")


def load_hub(hub_id: str, name: str | None, split: str | None, revision: str | None) -> Any:
    """``datasets.load_dataset(hub_id, name, split=...)``, with offline failures as one error.

    Raises:
        DatasetNotAvailableError: the hub is unreachable and nothing is cached.
    """
    datasets = datasets_package()
    try:
        return datasets.load_dataset(hub_id, name, split=split, revision=revision)
    except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        label = hub_id if name is None else f"{hub_id} ({name})"
        raise DatasetNotAvailableError(f"{label} is not available offline: {offline_hint(hub_id)}") from error


def check_fields(rows: Any, required: Iterable[str], source: str) -> None:
    """Refuse data that lacks any of the ``required`` columns, naming them and the source."""
    missing = [name for name in required if name not in rows.column_names]
    if missing:
        raise EvalError(
            f"{source} lacks the field(s) {', '.join(missing)}; the official schema has {', '.join(required)}"
        )
