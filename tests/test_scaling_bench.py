"""The scaling benchmark's helpers: GPU utilisation windows, the scaling table, and the kill/resume
check of lost and doubled units on results directories written by the real shard writer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import cluster_scaling, kill_resume
from benchmarks.gpu_util import UtilisationSampler
from cluster.rows import RESULT_SCHEMA
from cluster.writer import ShardWriter


def write_units(directory: Path, unit_ids: list[str]) -> None:
    """One result row per id (ids may repeat), through the real shard writer."""
    writer = ShardWriter(directory, run_id="r", rows_per_shard=2)
    for unit in unit_ids:
        row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA.names)
        row.update(unit_id=unit, status="ok", run_id="r", attempt=1)
        writer.add(row)
    writer.flush()


def test_check_rows_counts_lost_doubled_and_foreign_units(tmp_path: Path) -> None:
    write_units(tmp_path / "reference", ["a", "b", "c", "d"])
    write_units(tmp_path / "resumed", ["a", "b", "b", "c", "e"])
    assert kill_resume.published_rows(tmp_path / "resumed") == 5
    assert kill_resume.published_rows(tmp_path / "empty") == 0
    result = kill_resume.check_rows(tmp_path / "resumed", tmp_path / "reference")
    assert result == {
        "rows": 5,
        "units": 4,
        "doubled_units": 1,  # b
        "expected_units": 4,
        "lost_units": 1,  # d
        "foreign_units": 1,  # e
    }
    write_units(tmp_path / "clean", ["d", "c", "b", "a"])
    clean = kill_resume.check_rows(tmp_path / "clean", tmp_path / "reference")
    assert (clean["doubled_units"], clean["lost_units"], clean["foreign_units"]) == (0, 0, 0)


def test_kill_resume_refuses_overwrite_or_a_missing_output(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        kill_resume.main(["--", "--model", "m"])
    with pytest.raises(SystemExit):
        kill_resume.main(["--", "--output", str(tmp_path), "--overwrite"])
    write_units(tmp_path / "used", ["a"])
    with pytest.raises(SystemExit):
        kill_resume.main(["--", "--output", str(tmp_path / "used")])


def test_utilisation_means_only_the_window_and_the_gpus_asked() -> None:
    sampler = UtilisationSampler()
    sampler.samples = [(1.0, [100, 0, 50]), (2.0, [50, 10, 50]), (3.0, [0, 20, 50]), (9.0, [0, 0, 0])]
    assert sampler.mean_percent(1.5, 3.0, range(2)) == [25.0, 15.0]
    assert sampler.mean_percent(0.0, 3.0, range(3)) == [50.0, 10.0, 50.0]
    assert sampler.mean_percent(4.0, 8.0, range(1)) is None


def test_the_sampler_reads_nvml_only_where_a_gpu_is() -> None:
    with UtilisationSampler(interval_s=0.01) as sampler:
        time.sleep(0.1)
    if torch.cuda.is_available():
        assert sampler.available and sampler.samples
    else:
        assert not sampler.available and sampler.samples == [] and sampler.device_count == 0
        assert sampler.mean_percent(0.0, time.monotonic(), range(1)) is None


def test_scaling_table_shows_speed_up_overhead_and_utilisation() -> None:
    base = dict(workers=1, units=24, errors=0, gpu_seconds=100.0, mean_unit_s=2.5, driver_overhead=0.01)
    results = [
        {**base, "gpus": 1, "wall_s": 60.0, "samples_per_hour": 1440.0, "gpu_util_percent": [90.0, 0.0]},
        {**base, "gpus": 2, "wall_s": 31.0, "samples_per_hour": 2787.0, "gpu_util_percent": [88.0, 92.0]},
        {**base, "gpus": 2, "wall_s": 31.0, "samples_per_hour": 2880.0, "gpu_util_percent": None},
    ]
    lines = cluster_scaling.table(results).splitlines()
    assert lines[2].endswith("| 1.00x | 2.50 | 1.00% | 90% (90, 0) |")
    assert lines[3].endswith("| 1.94x | 2.50 | 1.00% | 90% (88, 92) |")
    assert lines[4].endswith("| 2.00x | 2.50 | 1.00% | - |")
