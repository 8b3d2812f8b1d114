"""Cluster scaling: the same units run with 1, 2, ... GPUs through the normal Ray path
(``cluster.driver.run_eval``); prints samples/hour, the speed-up over the first GPU count and
the driver overhead.

    python -m benchmarks.cluster_scaling --model /tmp/llama8b --lengths 32k --tasks qa1 \\
        --limit 24 --method laser --gpus 1,2 --output /tmp/scaling

- samples/hour: units / dispatch wall time (from the moment every worker has loaded its model
  to the last row) x 3600;
- GPU time: the sum of the units' own ``seconds_total`` (what the workers spent on them);
- driver overhead: 1 - GPU time / (workers x dispatch wall time): every second a worker was not
  running a unit (dispatch, result transfer, writing, and the tail where some workers are done);
- GPU utilisation: NVML's busy percentage of each GPU used, averaged over the dispatch window.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TypedDict

from analysis.table import latest_units
from benchmarks.gpu_util import UtilisationSampler, run_gpu_indices
from cluster.config import RunConfig
from cluster.driver import Progress, run_eval
from cluster.run_options import build_run_config
from cluster.writer import read_results
from evals.benchmarks import OFFLINE_DEFAULT
from laserkv.errors import LaserKVError


class Scaling(TypedDict):
    """One GPU count's throughput figures (a line of the printed JSON and of ``scaling.json``)."""

    gpus: int
    workers: int
    units: int
    errors: int
    wall_s: float
    samples_per_hour: float
    gpu_seconds: float
    mean_unit_s: float
    driver_overhead: float
    gpu_util_percent: list[float] | None
    run_gpu_indices: list[int] | None


def dispatch_window(events: list[tuple[float, Progress]]) -> tuple[float, float]:
    """(start, end) of the dispatch window in ``time.monotonic()`` time, from the progress reports
    and the moments they came: the last report's ``elapsed_s`` counts from the window's start."""
    if not events:
        raise ValueError("no progress report: no unit ran")
    end, final = events[-1]
    return end - final.elapsed_s, end


def measure(config: RunConfig) -> Scaling:
    """Run ``config`` from scratch and return its throughput figures, with every local GPU's
    utilisation over the dispatch window where NVML is there (not for a remote ``--address``:
    the GPUs sampled would not be the run's)."""
    events: list[tuple[float, Progress]] = []
    with UtilisationSampler() as sampler:
        run_eval(config, progress=lambda progress: events.append((time.monotonic(), progress)))
    if not events:
        raise RuntimeError(f"{config.output}: no unit ran")
    rows = latest_units(read_results(Path(config.output)).to_pandas())  # one row per unit, retries included
    start, end = dispatch_window(events)
    wall = end - start
    gpu_seconds = float(rows["seconds_total"].fillna(0.0).sum())
    remote = config.address is not None or bool(os.environ.get("RAY_ADDRESS"))
    utilisation = None if remote else sampler.mean_percent(start, end, range(sampler.device_count))
    return {
        "gpus": config.gpus,
        "workers": config.n_workers,
        "units": len(rows),
        "errors": int(rows["status"].ne("ok").sum()),
        "wall_s": wall,
        "samples_per_hour": len(rows) / wall * 3600,
        "gpu_seconds": gpu_seconds,
        "mean_unit_s": gpu_seconds / len(rows),
        "driver_overhead": 1 - gpu_seconds / (config.n_workers * wall),
        "gpu_util_percent": utilisation,
        "run_gpu_indices": run_gpu_indices(config.gpus),
    }


def table(results: list[Scaling]) -> str:
    """The results as a Markdown table, speed-up relative to the first row."""
    base = results[0]["samples_per_hour"]
    lines = [
        "| GPUs | workers | units | errors | dispatch wall s | samples/hour | speed-up | mean unit s "
        "| driver overhead | GPU utilisation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result['gpus']} | {result['workers']} | {result['units']} | {result['errors']} "
            f"| {result['wall_s']:.1f} | {result['samples_per_hour']:.0f} "
            f"| {result['samples_per_hour'] / base:.2f}x | {result['mean_unit_s']:.2f} "
            f"| {100 * result['driver_overhead']:.2f}% "
            f"| {_utilisation(result['gpu_util_percent'], result.get('run_gpu_indices'))} |"
        )
    return "\n".join(lines)


def _utilisation(percent: list[float] | None, used: list[int] | None) -> str:
    """Mean over the run's GPUs (NVML indices ``used``), then every GPU of the machine in
    brackets: ``93% (92, 94, 0, 0)``; only the brackets where the run's GPUs are not known."""
    if not percent:
        return "-"
    every = ", ".join(f"{value:.0f}" for value in percent)
    if not used or max(used) >= len(percent):
        return f"({every})"
    return f"{sum(percent[i] for i in used) / len(used):.0f}% ({every})"


def main(argv: list[str] | None = None) -> None:
    """Run the GPU counts in order, print one JSON line each and the table; write scaling.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default=OFFLINE_DEFAULT)
    parser.add_argument("--lengths", default="32k")
    parser.add_argument("--tasks", default="qa1")
    parser.add_argument("--limit", type=int, default=24, help="samples per cell")
    parser.add_argument("--demo-samples", type=int, default=100, help="demo-set samples generated per cell")
    parser.add_argument("--method", action="append", required=True)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument(
        "--gpus", type=_gpu_counts, default="1,2", help="comma-separated GPU counts, run in order"
    )
    parser.add_argument("--in-flight", type=int, default=2, help="units queued per worker")
    parser.add_argument("--output", required=True, help="one results directory per GPU count under it")
    args = parser.parse_args(argv)
    try:
        results = run_counts(args)
    except (LaserKVError, ValueError, OSError) as error:  # as the CLI: bad method, data, model; too few GPUs
        parser.error(str(error))
    print(table(results))
    Path(args.output, "scaling.json").write_text(json.dumps(results, indent=1))


def _gpu_counts(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (argparse type: a bad value is a one-line usage error)."""
    try:
        counts = [int(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of GPU counts") from None
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: every GPU count must be at least 1")
    return counts


def run_counts(args: argparse.Namespace) -> list[Scaling]:
    """``measure`` for each GPU count in turn; one JSON line each."""
    options = {
        "model": args.model, "dataset": args.dataset, "methods": args.method, "lengths": args.lengths,
        "tasks": args.tasks, "limit": args.limit, "demo_samples": args.demo_samples, "budget": args.budget,
        "block_size": args.block_size, "max_in_flight": args.in_flight, "overwrite": True,
    }  # fmt: skip
    results = []
    for gpus in args.gpus:
        config = build_run_config({**options, "gpus": gpus, "output": str(Path(args.output) / f"gpus{gpus}")})
        results.append(measure(config))
        print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
