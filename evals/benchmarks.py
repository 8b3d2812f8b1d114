"""The benchmark registry: name -> ``Benchmark``. Adding a benchmark = one module implementing
``evals.benchmark.Benchmark``, one entry here, and its conformance tests
(``tests/test_benchmarks.py`` runs the protocol checks over every entry)."""

from __future__ import annotations

import difflib

from evals.babilong import BABILONG, BABILONG_1K
from evals.benchmark import Benchmark
from evals.demo_set import DEMO
from evals.errors import EvalError
from evals.longbench_v2 import LONGBENCH_V2
from evals.ruler import RULER

BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark for benchmark in (DEMO, BABILONG, BABILONG_1K, LONGBENCH_V2, RULER)
}

OFFLINE_DEFAULT = DEMO.name
"""The benchmark a run uses when none is named: the offline demo set (no hub needed)."""


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``.

    Raises:
        EvalError: unknown name (the message names the closest and every registered one).
    """
    if name not in BENCHMARKS:
        close = difflib.get_close_matches(name, BENCHMARKS, n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise EvalError(f"dataset={name!r} is not allowed: one of {', '.join(BENCHMARKS)}{hint}")
    return BENCHMARKS[name]


def task_summary(tasks: list[str]) -> str:
    """Tasks as a short list: runs of ``qaN`` become ``qa1-qa20``, the others are named (RULER's
    13 by name)."""
    numbered = sorted(
        (task for task in tasks if task[:2] == "qa" and task[2:].isdigit()), key=lambda t: int(t[2:])
    )
    others = sorted(task for task in tasks if task not in numbered)
    head = [f"{numbered[0]}-{numbered[-1]}"] if len(numbered) > 1 else numbered
    return ", ".join([*head, *others])


def listing() -> list[tuple[str, str, str, str, str]]:
    """(name, source, lengths, tasks, description) of every registered benchmark."""
    rows = []
    for name, benchmark in BENCHMARKS.items():
        lengths = benchmark.lengths()
        tasks = sorted({task for length in lengths for task in benchmark.tasks(length)})
        rows.append((name, benchmark.source, ", ".join(lengths), task_summary(tasks), benchmark.description))
    return rows
