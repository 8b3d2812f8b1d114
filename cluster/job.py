"""Entry point of a run: ``python -m cluster.job <args>``, locally or under
``ray job submit --working-dir . -- python -m cluster.job <args>`` (then Ray's job sets
``RAY_ADDRESS`` and the run joins that cluster). Runs the plan, then the reducer."""

from __future__ import annotations

import argparse
import json
import sys

from cluster.address import ALLOW_FLAG
from cluster.config import DATASETS, RunConfig
from cluster.driver import Progress, run_eval
from cluster.reduce import reduce_results
from cluster.run_options import build_run_config
from laserkv.errors import LaserKVError


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The run options as flags (unset = not given: the run file's value, else the default)."""
    parser = argparse.ArgumentParser(prog="python -m cluster.job", description=__doc__)
    add = parser.add_argument
    add("--run-file", default=None, help="YAML run file (cluster.run_options); flags override it")
    add("--model", default=None, help="local directory, HF id or packaged model name")
    add("--dataset", default=None, choices=DATASETS)
    add("--method", dest="methods", action="append", default=None, help="registered method (repeat)")
    add("--grid", default=None, help="a sweep preset or grid YAML instead of --method")
    add("--output", default=None, help="output directory (results/, manifests/, summary)")
    add("--source", default=None, help="local copy of the dataset")
    add("--lengths", default=None, help="comma-separated, e.g. 1k,2k (default 1k,2k,4k)")
    add("--tasks", default=None, help="comma-separated, e.g. qa1,qa2 (default qa1,qa2)")
    add("--limit", type=int, default=None, help="samples per cell (LongBench: in all)")
    add("--demo-samples", type=int, default=None, help="samples made per cell (demo set, RULER; default 100)")
    add("--budget", type=int, default=None, help="override every method's budget")
    add("--ratio", type=float, default=None, help="override with a compression ratio")
    add("--protection-divisor", type=int, default=None, help="override every method's divisor n")
    add("--block-size", type=int, default=None)
    add("--seed", type=int, default=None, help="sampling seed (default 0)")
    add("--gpus", type=int, default=None, help="GPUs (default 0: CPU workers)")
    add("--workers-per-gpu", type=int, default=None, help="worker actors sharing each GPU (default 1)")
    add("--workers", type=int, default=None, help="CPU workers when --gpus 0 (default 1)")
    add("--max-in-flight", type=int, default=None, help="units queued per worker (default 1)")
    add("--max-retries", type=int, default=None, help="re-queues of a unit whose worker died (default 2)")
    add("--address", default=None, help="existing Ray cluster: auto, host:port or ray://host:port")
    add(
        ALLOW_FLAG,
        dest="allow_remote_address",
        action="store_true",
        default=None,
        help="accept a job API or Ray Client address that is not loopback (default: refused, tunnel first)",
    )
    add("--device", default=None)
    add("--dtype", default=None)
    add("--timeout", type=float, default=None, help="seconds per unit (default 3600)")
    add("--greedy", action="store_true", default=None, help="LongBench v2: greedy instead of temperature 0.1")
    add("--overwrite", action="store_true", default=None, help="drop previous results instead of resuming")
    add("--retry-failed", action="store_true", default=None, help="on resume, rerun failed units too")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run of these flags (``cluster.run_options.build_run_config``)."""
    flags = {key: value for key, value in vars(args).items() if key != "run_file"}
    return build_run_config(flags, args.run_file)


def print_progress(progress: Progress) -> None:
    print(progress.line(), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the run the flags describe, then reduce it; bad input is one line, exit 2."""
    try:
        config = config_from_args(parse_args(sys.argv[1:] if argv is None else argv))
    except (LaserKVError, ValueError) as error:  # EvalError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    output = run_eval(config, progress=print_progress)
    summary = reduce_results(output)
    print(json.dumps(summary["official"], indent=1))


if __name__ == "__main__":
    main()
