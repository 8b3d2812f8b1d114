"""The driver of ``tests/test_node_loss.py``, run in its own process (so its Ray connection and
authentication mode are its own, not the test session's): a run on the two-node cluster whose
first workers sit on the second node, which it SIGKILLs once the first row is written.

Usage: ``python -m tests.node_loss_driver <head address> <model dir> <output dir> <node session>``
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray

from benchmarks.kill_resume import kill_session
from cluster.config import RunConfig
from cluster.driver import FaultInjection, execute
from laserkv import get_method


def main(address: str, model: str, output: str, node_session: int) -> None:
    ray.init(address=address, log_to_driver=False)
    deadline = time.monotonic() + 120
    while ray.cluster_resources().get("second_node", 0) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the second node did not join")
        time.sleep(0.5)
    methods = (get_method("full"), get_method("streaming", budget=256, block_size=512))
    config = RunConfig(
        model=model, dataset="babilong_demo", methods=methods, output=output, lengths=("1k",),
        tasks=("qa1",), demo_samples=6, workers=2, device="cpu", dtype="float32",
        address=address, max_retries=3,
    )  # fmt: skip
    killed: list[float] = []

    def kill_the_second_node(row: dict[str, Any], pool: Any) -> None:
        if not killed:
            killed.append(time.monotonic())
            kill_session(node_session)

    execute(config, None, FaultInjection(on_row=kill_the_second_node, first_placement={"second_node": 1}))
    left = ray.cluster_resources().get("second_node", 0)
    ray.shutdown()
    print(json.dumps({"killed": bool(killed), "second_node_left": left}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
