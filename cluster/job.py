"""Entry point of a run: ``python -m cluster.job <args>``, locally or under
``ray job submit --working-dir . -- python -m cluster.job <args>`` (then Ray's job sets
``RAY_ADDRESS`` and the run joins that cluster). Runs the plan, then the reducer."""

from __future__ import annotations

import argparse
import json
import sys
import typing

from cluster.config import RunConfig
from cluster.driver import Progress, run_eval
from cluster.options import JOB, add_arguments
from cluster.reduce import reduce_results
from cluster.run_options import build_run_config
from laserkv.errors import LaserKVError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage error is one line (``error: ...``, exit 2), like every
    other error of the run."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"error: {' '.join(message.split())} (see python -m cluster.job --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The run options as flags (``cluster.options``; unset = not given: the run file's value,
    else the default)."""
    parser = OneLineParser(prog="python -m cluster.job", description=__doc__)
    parser.add_argument(
        "--run-file", default=None, help="A YAML run file (cluster.run_options); flags override it."
    )
    add_arguments(parser, JOB)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run of these flags (``cluster.run_options.build_run_config``)."""
    flags = {key: value for key, value in vars(args).items() if key != "run_file"}
    return build_run_config(flags, args.run_file)


def print_progress(progress: Progress) -> None:
    print(progress.line(), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run (or resume) the run the flags describe, then reduce it; bad input is one line, exit 2."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args)
        output = run_eval(config, progress=print_progress)
        summary = reduce_results(output)
    except (LaserKVError, ValueError, OSError) as error:  # EvalError is a ValueError; OSError: a path
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, as laserkv's
        raise SystemExit(2) from None
    print(json.dumps(summary["official"], indent=1))


if __name__ == "__main__":
    main()
