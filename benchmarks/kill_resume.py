"""Kill and resume: run ``laserkv eval``, kill its whole process group (driver, Ray, workers) with
SIGKILL once the results directory holds some rows, run the same command again (it resumes), and
check that no unit is lost or written twice.

    python -m benchmarks.kill_resume --after-rows 4 --reference /tmp/res/scaling/gpus2 -- \\
        --model /tmp/llama8b --lengths 32k,128k --tasks qa1 --limit 4 --method laser \\
        --method full --budget 4096 --gpus 2 --output /tmp/res/kill_resume

Everything after ``--`` is passed to ``laserkv eval`` (without ``--overwrite``: the second run must
resume). ``--reference``: a finished results directory of the same units (e.g. a scaling run);
its unit ids are the ones expected. Prints one JSON object; exits 1 if a unit is lost or doubled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cluster.writer import read_results, shard_paths


def published_rows(output_dir: Path) -> int:
    """Rows in the shards published so far."""
    return read_results(output_dir).num_rows if shard_paths(output_dir) else 0


def run_and_kill(
    command: list[str], output_dir: Path, after_rows: int, poll_s: float = 1.0
) -> dict[str, Any]:
    """Start ``command`` in its own process group, SIGKILL the group once ``after_rows`` rows are
    published (or let it finish, if it finishes first)."""
    started = time.monotonic()
    process = subprocess.Popen(command, start_new_session=True)
    while process.poll() is None and published_rows(output_dir) < after_rows:
        time.sleep(poll_s)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(2.0)  # let the killed group's processes go before the rerun starts Ray again
    seconds = time.monotonic() - started
    return {"killed": killed, "seconds": seconds, "rows_at_kill": published_rows(output_dir)}


def check_rows(output_dir: Path, reference: Path | None) -> dict[str, Any]:
    """Unit counts after the resume: rows, distinct units, doubled units, and (with a reference)
    units lost or foreign."""
    ids = read_results(output_dir).column("unit_id").to_pylist()
    counts = Counter(ids)
    result: dict[str, Any] = {
        "rows": len(ids),
        "units": len(counts),
        "doubled_units": sum(count > 1 for count in counts.values()),
    }
    if reference is not None:
        expected = set(read_results(reference).column("unit_id").to_pylist())
        result["expected_units"] = len(expected)
        result["lost_units"] = len(expected - counts.keys())
        result["foreign_units"] = len(counts.keys() - expected)
    return result


def main(argv: list[str] | None = None) -> None:
    """Kill, resume, check; print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--after-rows", type=int, default=1, help="kill once this many rows are published")
    parser.add_argument("--reference", type=Path, default=None, help="finished run of the same units")
    parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then laserkv eval's options")
    args = parser.parse_args(argv)
    eval_args = [arg for arg in args.eval_args if arg != "--"]
    if "--overwrite" in eval_args or "--output" not in eval_args:
        parser.error("pass laserkv eval's --output, and not --overwrite (the second run must resume)")
    output_dir = Path(eval_args[eval_args.index("--output") + 1])
    if shard_paths(output_dir):
        parser.error(f"{output_dir} already holds results: start from an empty directory")
    command = [sys.executable, "-m", "cli.main", "eval", "--quiet", *eval_args]
    first = run_and_kill(command, output_dir, args.after_rows)
    started = time.monotonic()
    resumed = subprocess.run(command, check=False).returncode
    result = {
        "first_run": first,
        "resume_seconds": time.monotonic() - started,
        "resume_exit_code": resumed,
        **check_rows(output_dir, args.reference),
    }
    print(json.dumps(result), flush=True)
    bad = result["doubled_units"] or result.get("lost_units") or result.get("foreign_units") or resumed
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
