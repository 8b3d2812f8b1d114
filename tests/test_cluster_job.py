"""``ray start --head`` on 127.0.0.1, then ``JobSubmissionClient`` submits ``python -m cluster.job``
with the repository as working dir; the job finishes with the expected Parquet output."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cluster.writer import read_results

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
DASHBOARD_PORT = 28265


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ray_head(tmp_path: Path) -> Any:
    """A one-node Ray cluster started with the ``ray`` CLI, loopback only, with token
    authentication (this test's own random token). ``ray start --block`` runs in its own process
    group, and teardown ends that group (SIGTERM, then SIGKILL after 5 s): other Ray clusters on the
    machine (a developer's run) are left alone, which ``ray stop`` would not do."""
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    command = [
        RAY, "start", "--head", "--port=26379", "--num-cpus=2", "--include-dashboard=true",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={DASHBOARD_PORT}", "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",  # not Ray's fixed 52365: another Ray may hold it
        "--block",
    ]  # fmt: skip
    head = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    address = f"http://127.0.0.1:{DASHBOARD_PORT}"
    try:
        wait_for_dashboard(address, head, timeout_s=180)
        yield address, token
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:  # the workers and raylet go at once; the GCS and autoscaler take ~30 s to stop gracefully
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would clean up
        if current.is_file() and current.read_text().strip().endswith(":26379"):
            current.unlink()


def wait_for_dashboard(address: str, head: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Until the dashboard answers HTTP (401 without the token counts: it is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the Ray dashboard at {address} did not answer within {timeout_s:.0f} s")


def test_job_submission_runs_the_entry_point(
    ray_head: tuple[str, str], tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, token = ray_head
    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
    output = tmp_path / "job-output"
    entrypoint = (
        f"{sys.executable} -m cluster.job --model {tiny_llama_dir} --method full --method streaming "
        f"--budget 256 --demo-samples 2 --lengths 1k --tasks qa1 --device cpu --output {output}"
    )
    runtime_env = {
        "working_dir": str(REPO),
        "excludes": [
            ".venv", ".git", "**/__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
            ".whl", "results",  # a developer's wheels and results stay behind
        ],
        "env_vars": {"LASERKV_CACHE": os.environ["LASERKV_CACHE"], "HF_HUB_OFFLINE": "1"},
    }  # fmt: skip
    ready = time.monotonic() + 300
    while True:  # the head's job agent may still be starting on a busy machine (minutes on 2 cores)
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > ready:
                raise
            time.sleep(2)
    deadline = time.monotonic() + 240
    status = client.get_job_status(job_id)
    while (
        status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
        and time.monotonic() < deadline
    ):
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    rows = read_results(output).to_pylist()
    assert sorted((row["method"], row["sample_id"]) for row in rows) == [
        ("full", "1k/qa1/0"), ("full", "1k/qa1/1"), ("streaming", "1k/qa1/0"), ("streaming", "1k/qa1/1"),
    ]  # fmt: skip
    assert all(row["status"] == "ok" for row in rows) and (output / "summary.json").exists()
    assert "2/4 units" in logs and "babilong_demo" in logs
