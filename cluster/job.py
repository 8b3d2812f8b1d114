"""Entry point of a run: ``python -m cluster.job <args>``, locally or under
``ray job submit --working-dir . -- python -m cluster.job <args>`` (then Ray's job sets
``RAY_ADDRESS`` and the run joins that cluster). Runs the plan, then the reducer."""

from __future__ import annotations

import argparse
import json
import sys

from cluster.config import DATASETS, RunConfig
from cluster.driver import Progress, run_eval
from cluster.presets import methods_with_overrides
from cluster.reduce import reduce_results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster.job", description=__doc__)
    parser.add_argument("--model", required=True, help="local directory, HF id or packaged model name")
    parser.add_argument("--dataset", default="babilong_demo", choices=DATASETS)
    parser.add_argument("--method", action="append", required=True, help="registered method (repeat)")
    parser.add_argument("--output", required=True, help="output directory (results/, manifests/, summary)")
    parser.add_argument("--source", default=None, help="local copy of the dataset")
    parser.add_argument("--lengths", default="1k", help="comma-separated, e.g. 1k,2k")
    parser.add_argument("--tasks", default="qa1", help="comma-separated, e.g. qa1,qa2")
    parser.add_argument("--limit", type=int, default=None, help="samples per cell (LongBench: in all)")
    parser.add_argument("--demo-samples", type=int, default=100, help="demo-set samples per cell")
    parser.add_argument("--budget", type=int, default=None, help="override every method's budget")
    parser.add_argument("--ratio", type=float, default=None, help="override with a compression ratio")
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--workers-per-gpu", type=int, default=1, help="worker actors sharing each GPU")
    parser.add_argument("--workers", type=int, default=1, help="CPU workers when --gpus 0")
    parser.add_argument("--address", default=None, help="existing Ray cluster (auto or host:port)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per unit")
    parser.add_argument(
        "--greedy", action="store_true", help="LongBench v2: greedy instead of temperature 0.1"
    )
    parser.add_argument("--overwrite", action="store_true", help="drop previous results instead of resuming")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, rerun failed units too")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {"budget": args.budget, "compression_ratio": args.ratio, "block_size": args.block_size}
    methods = methods_with_overrides(tuple(args.method), overrides)
    return RunConfig(
        model=args.model,
        dataset=args.dataset,
        methods=methods,
        output_dir=args.output,
        dataset_source=args.source,
        lengths=tuple(args.lengths.split(",")),
        tasks=tuple(args.tasks.split(",")),
        limit=args.limit,
        demo_samples_per_cell=args.demo_samples,
        greedy=args.greedy,
        gpus=args.gpus,
        workers_per_gpu=args.workers_per_gpu,
        workers=args.workers,
        address=args.address,
        device=args.device,
        dtype=args.dtype,
        unit_timeout_s=args.timeout,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
    )


def print_progress(progress: Progress) -> None:
    print(progress.line(), flush=True)


def main(argv: list[str] | None = None) -> None:
    config = config_from_args(parse_args(sys.argv[1:] if argv is None else argv))
    output = run_eval(config, progress=print_progress)
    summary = reduce_results(output)
    print(json.dumps(summary["official"], indent=1))


if __name__ == "__main__":
    main()
