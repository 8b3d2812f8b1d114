"""Bad input at the driver (issue 38): the address Ray will really use is the one checked,
``--overwrite`` removes only laserkv's shards, no output inside another run, one driver per
output directory (a lock; a killed driver's stale lock is taken over), a run whose workers do not
all fit says so and runs on those that fit, and a run failing before any unit leaves nothing new.

The checks that decide before Ray starts run without Ray; one module-scoped local Ray cluster of 2
CPUs (loopback only) serves the last tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.test_cluster import config as cluster_config

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # listen on 127.0.0.1 only

import ray

from cli.main import app
from cluster.address import AddressError, AddressKind, check_address
from cluster.config import RunConfig
from cluster.driver import FaultInjection, execute, run_eval
from cluster.pool import WorkerStartError
from cluster.rows import RESULT_SCHEMA, blank_row
from cluster.writer import LOCK, OutputLock, ResultsError, check_shards, read_results, remove_shards
from laserkv import get_method

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
CLIENT = "ray://10.1.2.3:10001"


def config(model_dir: Path, output: Path, **changes: Any) -> RunConfig:
    """``tests.test_cluster.config`` with ``full`` alone."""
    return cluster_config(model_dir, output, (get_method("full"),), **changes)


def tree(directory: Path) -> list[str]:
    """Every path under ``directory`` (relative), sorted: what a run left behind."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def shard(path: Path, unit_id: str = "u-1") -> None:
    """A laserkv result shard of one row."""
    row: dict[str, Any] = dict(blank_row())
    row.update(unit_id=unit_id, status="ok", dataset="babilong_demo", sample_id="s", method="full")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row], schema=RESULT_SCHEMA), path)


# -- 2: the address Ray will use ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (CLIENT, f"refusing Ray Client address {CLIENT} (RAY_ADDRESS, which Ray uses for address auto):"),
        ("http://10.0.0.5:8265", "refusing job address http://10.0.0.5:8265 (RAY_ADDRESS, which Ray uses"),
        ("http://127.0.0.1:8265", "job address http://127.0.0.1:8265 (RAY_ADDRESS, which Ray uses for"),
    ],
)
def test_auto_is_checked_as_the_ray_address_that_replaces_it(
    environment: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", environment)
    with pytest.raises(AddressError) as refused:
        check_address("auto")
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # the GCS address `ray job submit` gives a job
    assert check_address("auto").kind is AddressKind.GCS
    monkeypatch.setenv("RAY_ADDRESS", CLIENT)
    assert check_address("auto", allow_remote=True).kind is AddressKind.CLIENT
    assert check_address("local").kind is AddressKind.LOCAL  # Ray never replaces local


def test_laserkv_eval_address_auto_with_a_remote_ray_address_is_one_line(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", CLIENT)
    output = tmp_path / "out"
    refused = runner.invoke(
        app, ["eval", "--model", str(tiny_llama_dir), "--address", "auto", "--output", str(output)]
    )
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert refused.exit_code == 2 and len(lines) == 1, refused.output
    assert lines[0].startswith(f"error: refusing Ray Client address {CLIENT} (RAY_ADDRESS")
    assert not output.exists()


def test_the_driver_checks_the_address_again_when_it_connects(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAY_ADDRESS set after the config was checked (the run file's ``auto`` then means it)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    run = config(tiny_llama_dir, tmp_path / "out", address="auto")
    monkeypatch.setenv("RAY_ADDRESS", CLIENT)
    assert not ray.is_initialized()
    with pytest.raises(AddressError, match="refusing Ray Client address"):
        execute(run, None, FaultInjection())
    assert not ray.is_initialized()  # refused before Ray was asked to join it
    assert not (tmp_path / "out").exists()  # 6: what the failed run created, it removed


# -- 3: no file deleted that laserkv did not write ---------------------------------------------


def test_overwrite_refuses_a_foreign_parquet_and_deletes_nothing(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    shard(output / "results" / "part-old-00000.parquet")
    pq.write_table(pa.table({"id": [1, 2]}), output / "results" / "theirs.parquet")
    before = tree(output)
    with pytest.raises(ResultsError, match=r"theirs.parquet is not a laserkv result shard"):
        run_eval(config(tiny_llama_dir, output, overwrite=True))
    assert tree(output) == before  # both files kept; no manifest, no lock left
    assert not ray.is_initialized()


def test_only_shards_read_as_laserkv_ones_are_removed(tmp_path: Path) -> None:
    ours = tmp_path / "results" / "part-old-00000.parquet"
    shard(ours)
    checked = check_shards(tmp_path)
    assert checked == [ours]
    pq.write_table(pa.table({"id": [1]}), ours)  # replaced by someone else's file since the check
    with pytest.raises(ResultsError, match="is not a laserkv result shard"):
        remove_shards(checked)
    assert ours.exists()
    shard(ours)
    remove_shards(checked)
    assert not ours.exists()


@pytest.mark.parametrize("inside", ["results", "manifests", "results/deeper", "sub/dir"])
def test_an_output_inside_another_runs_directory_is_refused(
    inside: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    (other / "manifests").mkdir(parents=True)
    (other / "manifests" / "20260101T000000-abcdef.json").write_text("{}")
    shard(other / "results" / "part-x-00000.parquet")
    before = tree(other)
    with pytest.raises(ResultsError, match=r"is inside the run directory .*other: its files would mix"):
        run_eval(config(tiny_llama_dir, other / inside))
    assert tree(other) == before


# -- 5: one driver per output directory ---------------------------------------------------------


def test_a_second_driver_is_refused_and_a_killed_drivers_lock_is_taken_over(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    code = (
        "import sys, time\nfrom cluster.writer import OutputLock\n"
        "OutputLock(sys.argv[1], 'other-run').acquire()\nprint('held', flush=True)\ntime.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(output)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ResultsError) as refused:
            run_eval(config(tiny_llama_dir, output))
        message = str(refused.value)
        assert f"in use by another laserkv driver (pid {holder.pid}, started " in message
        assert "run other-run" in message and "\n" not in message
        assert tree(output) == [LOCK]  # the other driver's lock, untouched; nothing of ours
    finally:
        holder.kill()
        holder.wait()
    mine = OutputLock(output, "mine").acquire()  # the killed driver's lock is stale: taken over
    assert json.loads((output / LOCK).read_text())["pid"] == os.getpid()
    with pytest.raises(ResultsError, match=rf"pid {os.getpid()}, started .*run mine\)"):
        OutputLock(output, "third").acquire()  # a live holder in this process too
    mine.release()
    assert tree(output) == []


# -- 4 and 6 on a real Ray cluster of 2 CPUs ----------------------------------------------------


@pytest.fixture(scope="module")
def ray_two_cpus() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_no_worker_fits_is_refused_at_once_and_leaves_nothing(
    ray_two_cpus: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    start = time.monotonic()
    with pytest.raises(
        WorkerStartError, match=r"none of the 2 worker\(s\) fits: the Ray cluster has 2 CPU, 0 nowhere"
    ):
        execute(
            config(tiny_llama_dir, tmp_path / "a" / "b"), None, FaultInjection(first_placement={"nowhere": 1})
        )
    assert time.monotonic() - start < 30
    assert tree(tmp_path) == []  # 6: no directory, manifest or lock left behind


def test_three_workers_on_two_cpus_run_on_the_two_that_fit(
    ray_two_cpus: Any, tiny_llama_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = {"pid": int(gone.stdout), "host": os.uname().nodename, "started": "earlier", "run_id": "killed"}
    (output / LOCK).write_text(json.dumps(stale))  # a driver killed with SIGKILL left it
    start = time.monotonic()
    run_eval(config(tiny_llama_dir, output, workers=3))
    assert time.monotonic() - start < 60
    assert (
        "warning: only 2 of 3 workers fit (the Ray cluster has 2 CPU over 1 node(s)" in capfd.readouterr().err
    )
    assert read_results(output).num_rows == 3
    assert not (output / LOCK).exists()  # the stale lock was taken over, then released


def test_a_shard_with_a_column_of_another_type_is_one_line(tmp_path: Path) -> None:
    row: dict[str, Any] = dict(blank_row())
    row.update(unit_id="u-1", status="ok")
    table = pa.Table.from_pylist([row], schema=RESULT_SCHEMA)
    table = table.set_column(table.schema.get_field_index("seed"), "seed", pa.array(["abc"]))
    shard_path = tmp_path / "results" / "part-x-00000.parquet"
    shard_path.parent.mkdir()
    pq.write_table(table, shard_path)
    with pytest.raises(
        ResultsError,
        match=r"part-x-00000.parquet is not a laserkv result shard: column 'seed' holds string values where",
    ):
        read_results(tmp_path)
