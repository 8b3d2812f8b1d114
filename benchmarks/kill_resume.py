"""Kill and resume: run ``laserkv eval``, kill everything it started (driver, local Ray, workers:
every process of its session) with SIGKILL once the results directory holds some rows, run the
same command again (it resumes), and check that no unit is lost or written twice.

    python -m benchmarks.kill_resume --after-rows 4 --reference /tmp/res/scaling/gpus2 -- \\
        --model /tmp/llama8b --lengths 32k,128k --tasks qa1 --limit 4 --method laser \\
        --method full --budget 4096 --gpus 2 --output /tmp/res/kill_resume

Everything after ``--`` is passed to ``laserkv eval`` (without ``--overwrite`` or
``--retry-failed``: the second run must resume, and write each unit once). The units expected are
those of ``--reference`` (a finished results directory of the same units, e.g. a scaling run),
else the count the resumed run's manifest planned. Prints one JSON object; exits 1 if the first
run was not killed (it finished first: ask for fewer rows), or a unit is lost or doubled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TypedDict

import pyarrow.parquet as pq

from cluster.writer import read_manifests, read_results, shard_paths


def published_rows(output_dir: Path) -> int:
    """Rows in the shards published so far, from their Parquet footers (polled every second
    while the run works: the rows themselves are not read)."""
    return sum(pq.read_metadata(path).num_rows for path in shard_paths(output_dir))


def session_members(session: int) -> list[int]:
    """Pids of the live processes in ``session`` (Linux ``/proc``): a process keeps its session
    when it moves to its own process group, so this finds every worker Ray started."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the fields after the parenthesised command: state, ppid, pgrp, session, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_session(session: int, timeout_s: float = 60.0) -> None:
    """SIGKILL every process of ``session`` until none is left (or raise after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while members := session_members(session):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {members} of session {session} outlived SIGKILL")
        for pid in members:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


class FirstRun(TypedDict):
    """How the killed run went (a field of the printed JSON)."""

    killed: bool
    exit_code: int | None
    seconds: float
    rows_at_kill: int


class _Units(TypedDict):
    rows: int
    units: int
    doubled_units: int
    expected_units: int | None
    lost_units: int | None


class UnitCheck(_Units, total=False):
    """Unit counts after the resume (fields of the printed JSON); ``foreign_units`` only against a
    reference run."""

    foreign_units: int


def run_and_kill(command: list[str], output_dir: Path, after_rows: int, poll_s: float = 1.0) -> FirstRun:
    """Start ``command`` in a new session; once ``after_rows`` rows are published, SIGKILL the
    session (or let it finish, if it finishes first)."""
    started = time.monotonic()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        while process.poll() is None and published_rows(output_dir) < after_rows:
            time.sleep(poll_s)
        killed = process.poll() is None
        seconds = time.monotonic() - started
    finally:
        kill_session(process.pid)  # also on Ctrl-C or an error here: nothing keeps the GPUs
        process.wait()
    return {
        "killed": killed,
        "exit_code": None if killed else process.returncode,
        "seconds": seconds,
        "rows_at_kill": published_rows(output_dir),
    }


def planned_units(output_dir: Path) -> int | None:
    """Units the latest manifest of ``output_dir`` planned (None without manifests)."""
    manifests = read_manifests(output_dir)
    return int(manifests[-1]["units_planned"]) if manifests else None


def check_rows(output_dir: Path, reference: Path | None) -> UnitCheck:
    """Unit counts after the resume: rows, distinct units, doubled units, and units lost (and,
    with a reference, foreign ones)."""
    ids = read_results(output_dir).column("unit_id").to_pylist()
    counts = Counter(ids)
    doubled = sum(count > 1 for count in counts.values())
    if reference is None:
        planned = planned_units(output_dir)
        lost = None if planned is None else planned - len(counts)
        return {"rows": len(ids), "units": len(counts), "doubled_units": doubled, "expected_units": planned,
                "lost_units": lost}  # fmt: skip
    expected = set(read_results(reference).column("unit_id").to_pylist())
    return {
        "rows": len(ids),
        "units": len(counts),
        "doubled_units": doubled,
        "expected_units": len(expected),
        "lost_units": len(expected - counts.keys()),
        "foreign_units": len(counts.keys() - expected),
    }


def eval_output(eval_args: list[str]) -> Path | None:
    """The ``--output`` of laserkv eval's options (``--output D`` or ``--output=D``)."""
    for index, arg in enumerate(eval_args):
        if arg.startswith("--output="):
            return Path(arg.split("=", 1)[1])
        if arg == "--output" and index + 1 < len(eval_args):
            return Path(eval_args[index + 1])
    return None


def main(argv: list[str] | None = None) -> None:
    """Kill, resume, check; print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--after-rows", type=int, default=1, help="kill once this many rows are published")
    parser.add_argument("--reference", type=Path, default=None, help="finished run of the same units")
    parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then laserkv eval's options")
    args = parser.parse_args(argv)
    eval_args = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
    output_dir = eval_output(eval_args)
    if output_dir is None:
        parser.error("pass laserkv eval's --output (after --)")
    if {"--overwrite", "--retry-failed"} & set(eval_args):
        parser.error("--overwrite and --retry-failed are refused: the second run must resume")
    if shard_paths(output_dir):
        parser.error(f"{output_dir} already holds results: start from an empty directory")
    if args.reference is not None and not shard_paths(args.reference):
        parser.error(f"--reference {args.reference} holds no result shards: pass a finished run")
    command = [sys.executable, "-m", "cli.main", "eval", "--quiet", *eval_args]
    first = run_and_kill(command, output_dir, args.after_rows)
    if not first["killed"] and first["exit_code"] != 0:
        parser.exit(
            2, f"laserkv eval failed (exit {first['exit_code']}) before it was killed: see its error above\n"
        )
    started = time.monotonic()
    resumed = subprocess.run(command, check=False).returncode
    result = {
        "first_run": first,
        "resume_seconds": time.monotonic() - started,
        "resume_exit_code": resumed,
        **check_rows(output_dir, args.reference),
    }
    print(json.dumps(result), flush=True)
    failed = (
        not first["killed"]
        or resumed != 0
        or result["doubled_units"]
        or result["lost_units"] != 0
        or result.get("foreign_units")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
