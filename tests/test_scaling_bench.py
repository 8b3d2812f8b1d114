"""The scaling benchmark's helpers: GPU utilisation windows, the scaling table, and the kill/resume
check of lost and doubled units on results directories written by the real shard writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import cluster_scaling, kill_resume
from benchmarks.gpu_util import UtilisationSampler, run_gpu_indices
from cluster.driver import Progress
from cluster.rows import blank_row
from cluster.writer import ShardWriter


def write_units(directory: Path, unit_ids: list[str]) -> None:
    """One result row per id (ids may repeat), through the real shard writer."""
    writer = ShardWriter(directory, run_id="r", rows_per_shard=2)
    for unit in unit_ids:
        row: dict[str, Any] = blank_row()
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


def test_without_a_reference_the_manifest_says_what_was_planned(tmp_path: Path) -> None:
    write_units(tmp_path, ["a", "b", "c"])
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "20261129T000000-x.json").write_text(json.dumps({"units_planned": 4}))
    assert kill_resume.check_rows(tmp_path, None) == {
        "rows": 3,
        "units": 3,
        "doubled_units": 0,
        "expected_units": 4,
        "lost_units": 1,
    }


@pytest.mark.parametrize(
    ("eval_args", "message"),
    [
        (["--model", "m"], "pass laserkv eval's --output"),
        (["--output"], "pass laserkv eval's --output"),
        (["--output", "OUT", "--overwrite"], "--overwrite and --retry-failed are refused"),
        (["--output=OUT", "--retry-failed"], "--overwrite and --retry-failed are refused"),
        (["--output", "USED"], "already holds results"),
    ],
)
def test_kill_resume_refuses_what_would_not_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], eval_args: list[str], message: str
) -> None:
    write_units(tmp_path / "used", ["a"])
    paths = {"OUT": str(tmp_path / "out"), "USED": str(tmp_path / "used")}
    args = [paths.get(arg, arg).replace("=OUT", "=" + paths["OUT"]) for arg in eval_args]
    with pytest.raises(SystemExit) as exit_info:
        kill_resume.main(["--", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_eval_output_reads_both_spellings() -> None:
    assert kill_resume.eval_output(["--gpus", "2", "--output", "d"]) == Path("d")
    assert kill_resume.eval_output(["--output=d"]) == Path("d")
    assert kill_resume.eval_output(["--output"]) is None


def test_kill_session_ends_processes_that_left_the_process_group() -> None:
    """A child in its own process group (as Ray may put workers) is still in the session."""
    child = "import os, time; os.setpgid(0, 0); time.sleep(120)"
    parent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)"
    )
    process = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)

    def groups_in_session() -> set[int]:
        return {os.getpgid(pid) for pid in kill_resume.session_members(process.pid)}

    deadline = time.monotonic() + 30  # until the child has started and left its parent's group
    while len(groups_in_session()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = kill_resume.session_members(process.pid)
    assert len(members) == 2 and process.pid in members
    groups = {os.getpgid(pid) for pid in members}
    assert len(groups) == 2  # the child moved to its own group: killpg would miss it
    kill_resume.kill_session(process.pid)
    process.wait(timeout=10)
    assert kill_resume.session_members(process.pid) == []


def test_utilisation_means_only_the_window_and_the_gpus_asked() -> None:
    sampler = UtilisationSampler()
    sampler.samples = [(1.0, [100, 0, 50]), (2.0, [50, 10, 50]), (3.0, [0, 20, 50]), (9.0, [0, 0, 0])]
    assert sampler.mean_percent(1.5, 3.0, range(2)) == [25.0, 15.0]
    assert sampler.mean_percent(0.0, 3.0, range(3)) == [50.0, 10.0, 50.0]
    assert sampler.mean_percent(4.0, 8.0, range(1)) is None


def test_the_sampler_reads_nvml_only_where_a_gpu_is() -> None:
    pytest.importorskip("pynvml")  # nvidia-ml-py: in the dev and bench extras
    with UtilisationSampler(interval_s=0.01) as sampler:
        time.sleep(0.1)
    if torch.cuda.is_available():
        assert sampler.available and sampler.samples and sampler.device_count >= 1
    else:  # the package is there, NVML finds no driver
        assert not sampler.available and sampler.samples == [] and sampler.device_count == 0
        assert sampler.mean_percent(0.0, time.monotonic(), range(1)) is None


def test_the_dispatch_window_ends_at_the_last_report() -> None:
    def report(done: int, elapsed: float) -> Progress:
        return Progress(done=done, total=3, errors=0, skipped=0, elapsed_s=elapsed)

    events = [(105.0, report(1, 5.0)), (107.5, report(2, 7.5)), (112.0, report(3, 12.0))]
    assert cluster_scaling.dispatch_window(events) == (100.0, 112.0)
    with pytest.raises(ValueError, match="no unit ran"):
        cluster_scaling.dispatch_window([])


def test_run_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert run_gpu_indices(2) == [0, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1,2")
    assert run_gpu_indices(2) == [3, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5b335cc8")
    assert run_gpu_indices(1) is None


def test_scaling_table_shows_speed_up_overhead_and_utilisation() -> None:
    base = dict(workers=1, units=24, errors=0, gpu_seconds=100.0, mean_unit_s=2.5, driver_overhead=0.01)
    results = [
        {**base, "gpus": 1, "wall_s": 60.0, "samples_per_hour": 1440.0, "gpu_util_percent": [90.0, 0.0],
         "run_gpu_indices": [0]},
        {**base, "gpus": 2, "wall_s": 31.0, "samples_per_hour": 2787.0, "gpu_util_percent": [88.0, 92.0],
         "run_gpu_indices": [0, 1]},
        {**base, "gpus": 1, "wall_s": 60.0, "samples_per_hour": 1440.0, "gpu_util_percent": [0.0, 70.0],
         "run_gpu_indices": [1]},
        {**base, "gpus": 1, "wall_s": 60.0, "samples_per_hour": 1440.0, "gpu_util_percent": [50.0, 0.0],
         "run_gpu_indices": None},
        {**base, "gpus": 2, "wall_s": 31.0, "samples_per_hour": 2880.0, "gpu_util_percent": None,
         "run_gpu_indices": [0, 1]},
    ]  # fmt: skip
    lines = cluster_scaling.table(results).splitlines()
    assert lines[2].endswith("| 1.00x | 2.50 | 1.00% | 90% (90, 0) |")
    assert lines[3].endswith("| 1.94x | 2.50 | 1.00% | 90% (88, 92) |")
    assert lines[4].endswith("| 1.00x | 2.50 | 1.00% | 70% (0, 70) |")
    assert lines[5].endswith("| 1.00x | 2.50 | 1.00% | (50, 0) |")
    assert lines[6].endswith("| 2.00x | 2.50 | 1.00% | - |")


def test_cluster_scaling_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in (
        (["--method", "bogus"], "method='bogus' is not allowed"),
        (["--method", "laser", "--gpus", "1,a"], "'1,a' is not a comma-separated list of GPU counts"),
        (["--method", "laser", "--gpus", "0"], "every GPU count must be at least 1"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cluster_scaling.main(["--model", "smollm2-135m-instruct", "--output", str(tmp_path), *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_kill_resume_refuses_an_empty_reference_and_stops_when_eval_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        kill_resume.main(["--reference", str(tmp_path / "none"), "--", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "holds no result shards" in capsys.readouterr().err
    # laserkv eval refuses the dataset at once: no resume is tried, one line says why
    with pytest.raises(SystemExit) as exit_info:
        kill_resume.main(["--", "--dataset", "nosuch", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "laserkv eval failed (exit 2) before it was killed" in capsys.readouterr().err
