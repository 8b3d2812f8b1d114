"""Losing a node: a real two-node Ray cluster on this machine (a head and a second ``ray start
--address`` node, both on 127.0.0.1); the run's workers start on the second node (a custom
resource), which is SIGKILLed once the first row is written. The run still finishes, on the
head, with every unit written exactly once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.kill_resume import kill_session, session_members
from cluster.writer import read_manifests, read_results

RAY = str(Path(sys.executable).parent / "ray")
ROOT = Path(__file__).resolve().parents[1]
HEAD_PORT = 26479
LOOPBACK = "127.0.0.1"
CLUSTER_ENV = {  # loopback only, and a silent node is declared dead within seconds
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # loopback only and for this test alone; the driver process gets the same environment
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "4",
}


def start_node(arguments: list[str], joining: bool = False) -> subprocess.Popen[bytes]:
    """``ray start <arguments> --block`` in a session of its own (so it can be killed whole).

    A joining node needs ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` (``ray start`` refuses to join
    otherwise), which makes Ray rewrite ``127.0.0.1`` to the machine's outward IP; its addresses
    are therefore given in the IPv4-mapped form ``::ffff:127.0.0.1``, which Ray leaves as it is,
    so every connection of the test goes to 127.0.0.1. (Such a node's dashboard agent and two
    raylet ports still listen on all interfaces, as Ray binds them on multi-node clusters;
    nothing connects to them from outside this machine.)"""
    env = {**os.environ, **CLUSTER_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if joining else "0"}
    node_ip = f"::ffff:{LOOPBACK}" if joining else LOOPBACK
    command = [RAY, "start", *arguments, f"--node-ip-address={node_ip}", "--disable-usage-stats", "--block"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_for_port(port: int, node: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"ray start exited with {node.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout_s:.0f} s")


@pytest.fixture
def two_nodes() -> Any:
    """(head address, the second node's ``ray start`` process); both sessions ended at teardown."""
    head = start_node(["--head", f"--port={HEAD_PORT}", "--num-cpus=2", "--include-dashboard=false"])
    second = None
    try:
        wait_for_port(HEAD_PORT, head)
        address = f"{LOOPBACK}:{HEAD_PORT}"
        joining = [
            f"--address=[::ffff:{LOOPBACK}]:{HEAD_PORT}",
            "--num-cpus=2",
            '--resources={"second_node": 2}',
        ]
        second = start_node(joining, joining=True)
        yield address, second
    finally:
        for node in (second, head):
            if node is not None and session_members(node.pid):
                kill_session(node.pid)
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would clean up
        if current.is_file() and current.read_text().strip().endswith(f":{HEAD_PORT}"):
            current.unlink()


def test_losing_a_node_mid_run_loses_and_duplicates_no_unit(
    two_nodes: tuple[str, subprocess.Popen[bytes]], tiny_llama_dir: Path, tmp_path: Path
) -> None:
    address, second = two_nodes
    driver = [sys.executable, "-m", "tests.node_loss_driver", address, str(tiny_llama_dir), str(tmp_path)]
    env = {**os.environ, **CLUSTER_ENV}
    done = subprocess.run(
        [*driver, str(second.pid)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"killed": True, "second_node_left": 0}, "the node is gone"
    rows = read_results(tmp_path).to_pylist()
    assert len(rows) == 12 and len({row["unit_id"] for row in rows}) == 12, "none lost, none twice"
    assert {row["status"] for row in rows} == {"ok"}
    assert max(row["attempt"] for row in rows) >= 2, "units of the lost node ran again"
    assert len({row["worker"] for row in rows}) >= 3, "the first workers and their replacements"
    assert read_manifests(tmp_path)[-1]["units_planned"] == 12
